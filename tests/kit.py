"""The test kit: fakes and helpers shared across the suite. A settable clock and the sleep
that moves it, a scriptable STS (with STS's own MFA and signing rules) that records its calls,
the daemon's socket API served in-process, and raw HTTP/1.1 to the daemon's Unix socket and
its TCP listeners."""

import asyncio
import contextlib
import json
import os
import socket
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rolecached import apisocket, runtime
from rolecached.core.cache import Credentials
from rolecached.core.request import MfaSession, RoleRequest
from rolecached.errors import StsFailure
from rolecached.stserrors import StsCallFailed

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


def assumed_arn(role_arn: str, session: str) -> str:
    """The ARN STS gives the session of `role_arn` named `session`."""
    account, name = role_arn.split(":")[4], role_arn.rsplit("/", 1)[1]
    return f"arn:aws:sts::{account}:assumed-role/{name}/{session}"


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


# -- the fake STS ------------------------------------------------------------------------

# Device codes the fake STS accepts, each once, as a real MFA device's would be.
MFA_CODES = ("123456", "234567", "345678", "456789")
MFA_REJECTED = "MultiFactorAuthentication failed with invalid MFA one time pass code. "
_SCRIPT_DONE = object()  # no scripted outcome left for this call


@dataclass
class Call:
    """One call the fake STS took: the action, for what, when, signed by what credentials
    (None: the long-term keys) and with which device code; what it issued or why it refused."""

    action: str  # "AssumeRole", or "GetSessionToken" for an MFA session
    request: RoleRequest | MfaSession
    now: float
    signer: Credentials | None
    token_code: str | None
    issued: Credentials | None = None
    refused: StsFailure | None = None


class FakeSts:
    """AssumeRole and GetSessionToken stand-in, `(request, now, signer, token_code) ->
    Credentials`, called in the store's worker threads.

    What a test injects decides first: the next outcomes in `script` (a failure, or None for
    an answer), then `failures[role ARN]`, `failure`, and what `fail(request, now)` says.
    Then what real STS checks: a device code (GetSessionToken, or AssumeRole of a role that
    carries its code) must be one of `codes`, and works once; AssumeRole must be signed by
    the newest credentials issued for its previous hop or its MFA session (the long-term keys
    when it has neither), a signer that expired is refused, and a chained call may not ask
    for more than an hour.

    `gate`, when set, holds every call until it opens; `hold` makes each call take that much
    real time. Records every call, counts them per key, and the most in flight at once.
    """

    def __init__(
        self, failure: StsFailure | None = None, script: Iterable[StsFailure | None] = ()
    ) -> None:
        self.lock = threading.Lock()
        self.calls: list[Call] = []
        self.per_key: Counter[RoleRequest | MfaSession] = Counter()
        self.script: deque[StsFailure | None] = deque(script)
        self.failure = failure
        self.failures: dict[str, StsFailure] = {}
        self.fail: Callable[[RoleRequest, float], StsFailure | None] = lambda r, now: None
        self.codes = set(MFA_CODES)
        self.latest: dict[RoleRequest | MfaSession, Credentials] = {}
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.hold = 0.0
        self.running = 0
        self.max_running = 0
        self._running_per_key: Counter[RoleRequest | MfaSession] = Counter()
        self.max_running_per_key = 0
        self.issued: list[Credentials] = []

    def __call__(
        self,
        request: RoleRequest | MfaSession,
        now: float,
        signer: Credentials | None = None,
        token_code: str | None = None,
    ) -> Credentials:
        action = "GetSessionToken" if isinstance(request, MfaSession) else "AssumeRole"
        call = Call(action, request, now, signer, token_code)
        with self.lock:
            self.calls.append(call)
            self.per_key[request] += 1
            number = len(self.calls)
            # The script is read in the order calls arrive, before any gate holds them.
            scripted = self.script.popleft() if self.script else _SCRIPT_DONE
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
            with self.lock:
                refusal = self._refusal(request, now, signer, token_code, scripted)
                if refusal is not None:
                    call.refused = refusal
                    raise StsCallFailed(refusal)
                credentials = issue(request, now, number)
                call.issued = self.latest[request] = credentials
                self.issued.append(credentials)
            return credentials
        finally:
            with self.lock:
                self.running -= 1
                self._running_per_key[request] -= 1

    def _refusal(
        self,
        request: RoleRequest | MfaSession,
        now: float,
        signer: Credentials | None,
        token_code: str | None,
        scripted: object,
    ) -> StsFailure | None:
        """Why this call is refused, if it is: the test's injected failure, else STS's own
        checks (called with the lock held)."""
        if scripted is not _SCRIPT_DONE:
            return scripted  # type: ignore[return-value]
        role_arn = getattr(request, "role_arn", "")
        injected = self.failures.get(role_arn) or self.failure
        if injected is None and isinstance(request, RoleRequest):
            injected = self.fail(request, now)
        if injected is not None:
            return injected
        if isinstance(request, MfaSession):
            assert signer is None, "GetSessionToken must be signed by the long-term keys"
            return self._spend(token_code)
        if request.direct_mfa and (rejected := self._spend(token_code)):
            return rejected
        if signer is not None and request.duration_seconds > 3600:
            return StsFailure("ValidationError", "role chaining caps the session at 1 hour", False)
        hop = request.source_role or request.mfa_session
        expected = None if hop is None else self.latest.get(hop)
        assert signer is expected, f"{role_arn} signed by {signer!r}"
        if signer is not None and signer.expiration <= now:
            return StsFailure("ExpiredToken", "The security token included expired", False)
        return None

    def _spend(self, token_code: str | None) -> StsFailure | None:
        """Use up a device code; a wrong or reused one is refused, as STS refuses it."""
        if token_code not in self.codes:
            return StsFailure("AccessDenied", MFA_REJECTED, False)
        self.codes.discard(token_code)
        return None

    def actions(self) -> list[str]:
        """The action of every call so far, in order."""
        with self.lock:
            return [c.action for c in self.calls]

    def count(self, action: str, request: RoleRequest | MfaSession | None = None) -> int:
        """How many `action` calls were made (for `request` only, when given)."""
        with self.lock:
            return sum(
                1
                for c in self.calls
                if c.action == action and (request is None or c.request == request)
            )


def issue(request: RoleRequest | MfaSession, now: float, number: int) -> Credentials:
    """The `number`th credentials the fake STS issues, shaped as STS's, secrets marked."""
    expiration = now + request.duration_seconds
    if isinstance(request, MfaSession):
        role = ""  # GetSessionToken names no role
    else:
        role = assumed_arn(request.role_arn, request.role_session_name)
    return Credentials(
        access_key_id=f"ASIAFAKE{number:012d}",
        # 40 characters of [A-Za-z0-9/+=], as STS issues them
        secret_access_key=f"{SECRET_MARK}{number:08d}wJalrXUtnFEMIK7MDENGbP",
        session_token=f"IQoJb3JpZ2luX2VjEJr{SECRET_MARK}{number:08d}" + "Zm9v" * 20,
        expiration=expiration,
        issued_at=now,
        assumed_role_arn=role,
        expiration_text=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiration)),
    )


async def no_sleep(_: float) -> None:
    """The store's back-off sleep, skipped: retries happen at once."""


# -- an STS stand-in over HTTP, for tests that script STS's bytes ------------------------------


def sts_stand_in(
    answer: Callable[[str, str], tuple[int, str]], tls: "ssl.SSLContext | None" = None
) -> ThreadingHTTPServer:
    """An STS on 127.0.0.1 (over TLS with `tls`) that answers each POST with `answer(form
    body, Authorization header)`, a (status, XML) pair; `.shutdown()` stops it."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            status, text = answer(body, self.headers.get("Authorization", ""))
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    return server


# -- the socket API, in-process -----------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(path: Path, store: Any, **options: Any) -> AsyncIterator[Path]:
    """`runtime.serve` (front guard, fast lane, aiohttp app) for `store` on a Unix socket at
    `path`, in the running loop: yields the socket's path once it serves (raising serve's
    own error if it failed first), and stops it after. `options` go to runtime.serve."""
    listener = apisocket.open_listener(path)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        runtime.serve(listener, store, stop=stop, on_ready=ready.set, **options)
    )
    try:
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiter}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()  # serve failed: show why
        assert ready.is_set(), "serve did not become ready"
        yield listener.path
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
        os.close(listener.lock_fd)


# -- raw HTTP/1.1: the socket API (a Unix socket path) or a TCP listener (a port) ---------

TIMEOUT = 10.0  # a guard against hanging, never a wait: every exchange ends on its own
Where = Path | str | int  # a Unix socket's path, or a port on `address`


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

    def has_no_credentials(self) -> bool:
        """True when nothing in the body looks like a credential the fake STS issued."""
        return b"AccessKeyId" not in self.body and SECRET_MARK.encode() not in self.body


def http_request(
    method: str,
    target: str,
    body: bytes | dict[str, Any] | None = None,
    *,
    headers: dict[str, str | None] | None = None,
    length: bool = True,
) -> bytes:
    """A complete HTTP/1.1 request: the socket API's headers (Host: rolecache, Connection:
    close, Content-Type: application/json with a body), changed by `headers` (a None value
    drops one); a dict `body` is sent as JSON. A body gets a Content-Length unless `length`
    is false or `headers` bring their own Content-Length or Transfer-Encoding."""
    payload = json.dumps(body).encode() if isinstance(body, dict) else body
    fields: dict[str, str | None] = {"Host": "rolecache", "Connection": "close"}
    if payload is not None:
        fields["Content-Type"] = "application/json"
    fields.update(headers or {})
    if payload is not None and length and not {"Content-Length", "Transfer-Encoding"} & set(fields):
        fields["Content-Length"] = str(len(payload))
    head = [f"{method} {target} HTTP/1.1"] + [
        f"{k}: {v}" for k, v in fields.items() if v is not None
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (payload or b"")


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
    where: Where,
    raw: bytes,
    timeout: float = TIMEOUT,
    half_close: bool = False,
    address: str = "127.0.0.1",
) -> bytes:
    """Send `raw` on a fresh connection and read until the other side closes it (blocking);
    `half_close` shuts our side after sending."""
    if isinstance(where, int):
        sock = socket.create_connection((address, where), timeout=timeout)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
    with sock:
        if not isinstance(where, int):
            sock.connect(str(where))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


async def async_exchange(
    where: Where, raw: bytes, timeout: float = TIMEOUT, address: str = "127.0.0.1"
) -> bytes:
    """`exchange` on the event loop, for many concurrent callers."""
    if isinstance(where, int):
        reader, writer = await asyncio.open_connection(address, where)
    else:
        reader, writer = await asyncio.open_unix_connection(str(where))
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def http(
    where: Where,
    method: str,
    target: str,
    body: bytes | dict[str, Any] | None = None,
    *,
    headers: dict[str, str | None] | None = None,
    length: bool = True,
    address: str = "127.0.0.1",
    timeout: float = TIMEOUT,
) -> Reply:
    """One HTTP/1.1 exchange on a fresh connection, parsed. To a socket path: the socket
    API's request (see http_request). To a port: Host 127.0.0.1:PORT and no Content-Type,
    as a container's SDK asks the endpoints, unless `headers` say otherwise."""
    if isinstance(where, int):
        headers = {"Host": f"127.0.0.1:{where}", "Content-Type": None, **(headers or {})}
    raw = http_request(method, target, body, headers=headers, length=length)
    return parse_reply(await async_exchange(where, raw, timeout, address))
