"""The test kit: fakes and helpers shared across the suite. A settable clock and the sleep
that moves it, a scriptable STS that counts calls per key and in flight, and HTTP/1.1 over
the daemon's Unix socket."""

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rolecached.cache import Credentials
from rolecached.errors import StsFailure
from rolecached.request import RoleRequest
from rolecached.sts import StsCallFailed

T0 = 1_700_000_000.0
ACCOUNT = "123456789012"
THROTTLED = StsFailure("Throttling", "Rate exceeded", retryable=True)
UNAVAILABLE = StsFailure("ServiceUnavailable", "Service is unavailable", retryable=True)
DENIED = StsFailure("AccessDenied", "not authorized to perform: sts:AssumeRole", retryable=False)
# Marks every secret the fakes issue, so a test can grep any output for a leak.
SECRET_MARK = "fakesecret"
# pytest's record_property fixture: a count a test reports (the run's summary lists them).
RecordProperty = Callable[[str, object], None]


def role(name: str = "app", duration: int = 3600, session: str = "faults") -> RoleRequest:
    """A role request for the store, as the API would build it."""
    return RoleRequest(
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/{name}",
        role_session_name=session,
        duration_seconds=duration,
    )


class FakeClock:
    """Wall-clock seconds that move only when the test moves them."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSleep:
    """The store's back-off sleep: advances the fake clock at once, never sleeps for real."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)


class FakeSts:
    """AssumeRole stand-in, called in the store's worker threads.

    Each call fails with `failures[role ARN]`, else `failure`, else what `fail(request,
    now)` says (None: credentials). `gate`, when set, holds every call until it opens;
    `hold` makes each call take that much real time. Counts calls overall and per key, and
    the most calls in flight at once.
    """

    def __init__(self, failure: StsFailure | None = None) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[RoleRequest, float]] = []
        self.per_key: Counter[RoleRequest] = Counter()
        self.failure = failure
        self.failures: dict[str, StsFailure] = {}
        self.fail: Callable[[RoleRequest, float], StsFailure | None] = lambda r, now: None
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.hold = 0.0
        self.running = 0
        self.max_running = 0
        self._running_per_key: Counter[RoleRequest] = Counter()
        self.max_running_per_key = 0
        self.issued: list[Credentials] = []

    def __call__(
        self,
        request: RoleRequest,
        now: float,
        signer: Credentials | None = None,
        token_code: str | None = None,
    ) -> Credentials:
        with self.lock:
            self.calls.append((request, now))
            self.per_key[request] += 1
            number = len(self.calls)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self._running_per_key[request] += 1
            self.max_running_per_key = max(self.max_running_per_key, self._running_per_key[request])
        try:
            self.entered.set()
            if self.gate is not None and not self.gate.wait(timeout=10):
                raise AssertionError("the test never opened the gate")
            if self.hold:
                time.sleep(self.hold)
            failure = self.failures.get(request.role_arn) or self.failure or self.fail(request, now)
            if failure is not None:
                raise StsCallFailed(failure)
            credentials = Credentials(
                access_key_id=f"ASIAFAKE{number:012d}",
                # 40 characters of [A-Za-z0-9/+=], as STS issues them
                secret_access_key=f"{SECRET_MARK}{number:08d}wJalrXUtnFEMIK7MDENGbP",
                session_token=f"IQoJb3JpZ2luX2VjEJr{SECRET_MARK}{number:08d}" + "Zm9v" * 20,
                expiration=now + request.duration_seconds,
                issued_at=now,
                assumed_role_arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/"
                f"{request.role_arn.rsplit('/', 1)[1]}/{request.role_session_name}",
                expiration_text=time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + request.duration_seconds)
                ),
            )
            with self.lock:
                self.issued.append(credentials)
            return credentials
        finally:
            with self.lock:
                self.running -= 1
                self._running_per_key[request] -= 1


# -- HTTP/1.1 over the Unix socket -------------------------------------------------------


@dataclass
class Reply:
    """A parsed answer: status, lower-cased headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON; the answer must say it is JSON when it names a type."""
        kind = self.headers.get("content-type", "application/json")
        assert kind.startswith("application/json"), self.headers
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()

    @property
    def error(self) -> dict[str, str]:
        """The API's error object ({"error": {"code", "message"}})."""
        doc = self.json()
        assert set(doc) == {"error"}, doc
        return doc["error"]


def http_request(
    method: str, target: str, body: bytes | dict[str, Any] | None = None, length: bool = True
) -> bytes:
    """A complete HTTP/1.1 request for the socket API with Connection: close; `body` dicts
    are sent as JSON, with a Content-Length unless `length` is false."""
    payload = json.dumps(body).encode() if isinstance(body, dict) else body
    head = [f"{method} {target} HTTP/1.1", "Host: rolecache", "Connection: close"]
    if payload is not None:
        head.append("Content-Type: application/json")
        if length:
            head.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (payload or b"")


def credentials_request(body: dict[str, Any] | bytes, target: str = "/v1/credentials") -> bytes:
    """A complete POST for the socket API, with Content-Length and Connection: close."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (
        f"POST {target} HTTP/1.1\r\nHost: rolecache\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def parse_reply(raw: bytes) -> Reply:
    """Parse a complete HTTP/1.1 answer read up to EOF; assert it is well formed. Interim
    answers (`100 Continue` to an `Expect`) are skipped, as HTTP clients skip them."""
    while raw.startswith(b"HTTP/1.1 1"):
        raw = raw.partition(b"\r\n\r\n")[2]
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {raw[:200]!r}"
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert int(headers["content-length"]) == len(body), (headers, len(body))
    return Reply(int(status_line.split()[1]), headers, body)


def exchange(
    path: Path | str, raw: bytes, timeout: float = 10.0, half_close: bool = False
) -> bytes:
    """Send `raw` on a fresh connection and read until the daemon closes it (blocking)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


async def async_exchange(path: Path | str, raw: bytes, timeout: float = 30.0) -> bytes:
    """`exchange` on the event loop, for many concurrent callers."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
