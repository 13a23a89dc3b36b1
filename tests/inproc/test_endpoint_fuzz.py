"""Fuzzing the container endpoints (hypothesis): the ECS fast lane's parser with random and
mutated bytes, then random requests to the real container and IMDS listeners (front guard,
fast lane, aiohttp) served in-process on loopback with a fake STS. Nothing may crash or answer
5xx, and no answer may hold credentials unless the request carried a valid token (the
binding's token or container token on the container listener; a valid IMDSv2 session token on
the IMDS listener). Each test records how many cases it ran (listed at the end of the run);
together well over 5,000."""

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolecached.core.bindings import parse_spec, resolve
from rolecached.core.request import parse_request
from rolecached.core.store import Settings, Store
from rolecached.endpoints import ecslane
from rolecached.endpoints.manager import EndpointManager
from rolecached.front import httphead
from tests.endpointkit import ROLE, T0, endpoint_manager
from tests.kit import SECRET_MARK, FakeClock, FakeSts, RecordProperty, exchange, no_sleep

CASES: Counter[str] = Counter()
FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CREDENTIAL_MARKERS = (b"AccessKeyId", SECRET_MARK.encode(), b"SecretAccessKey")


# -- the lane's parser -----------------------------------------------------------------------

GOOD_HEAD = b"GET /v1/credentials/dev HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAuthorization: t0k\r\n\r\n"


def mutate(raw: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """`raw` with each (position, length) span replaced by the given bytes."""
    for position, length, replacement in edits:
        at = position % (len(raw) + 1)
        raw = raw[:at] + replacement + raw[at + length :]
    return raw


def test_lane_parser_never_crashes_and_takes_only_strict_requests(
    record_property: RecordProperty,
) -> None:
    """The front layer's parser and the lane's ask_of on 3,000 random and mutated byte
    strings never raise; whatever the lane takes is a complete GET of a credentials path
    with exactly one Host and one Authorization, no Origin or body, nothing after the
    head."""

    @settings(FUZZ, max_examples=3000)
    @given(
        raw=st.one_of(
            st.binary(max_size=600),
            st.lists(
                st.tuples(
                    st.integers(0, 200),
                    st.integers(0, 8),
                    st.sampled_from(
                        [
                            b"",
                            b"\r\n",
                            b"\r\n\r\n",
                            b":",
                            b" ",
                            b"\t",
                            b"\x00",
                            b"\x7f",
                            b"/",
                            b"%2e",
                            b"..",
                            b"Host: a\r\n",
                            b"Authorization: x\r\n",
                            b"Origin: o\r\n",
                            b"Content-Length: 5\r\n",
                            b"Connection: close\r\n",
                            b"\xff",
                            b"GET ",
                        ]
                    ),
                ),
                max_size=6,
            ).map(lambda edits: mutate(GOOD_HEAD, edits)),
        )
    )
    def check(raw: bytes) -> None:
        CASES["lane parser"] += 1
        head = httphead.parse(raw)
        result = ecslane.ask_of(head) if isinstance(head, httphead.Head) else None
        if result is None:
            return
        head, _, rest = raw.partition(b"\r\n\r\n")
        assert rest == b""
        lines = head.split(b"\r\n")
        assert lines[0] == f"GET /v1/credentials/{result.name} HTTP/1.1".encode()
        names = [line.split(b":", 1)[0].lower() for line in lines[1:]]
        assert names.count(b"host") == 1 and names.count(b"authorization") == 1
        assert b"origin" not in names and b"content-length" not in names
        assert result.token and result.host

    check()
    assert CASES["lane parser"] >= 3000
    record_property("fuzz cases", CASES["lane parser"])


# -- the listeners -----------------------------------------------------------------------------


@dataclass
class Listeners:
    """The manager served on a loop of its own thread, and what tests need to reach it."""

    ecs_port: int
    imds_port: int
    tokens: tuple[str, ...]  # every valid token of binding dev (file token, container token)
    other_token: str  # binding other's token: valid, but not for dev
    imds_token: str
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)


@pytest.fixture(scope="module")
def listeners(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listeners]:
    """Bindings dev and other on a fake clock, their listeners on loopback."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzzed-endpoints", daemon=True)
    thread.start()
    tokens_dir: Path = tmp_path_factory.mktemp("tokens")
    clock = FakeClock(T0)
    store = Store(FakeSts(), Settings(idle_ttl=600), clock=clock, sleep=no_sleep)

    async def start() -> EndpointManager:
        # No rate limit: the fuzz sends thousands of requests a second.
        manager = endpoint_manager(store, tokens_dir, clock, rate_limit=1e9, rate_burst=10**9)
        for name in ("dev", "other"):
            body = {"role_arn": ROLE, "role_session_name": name}
            await manager.add(resolve(parse_spec(name, body), parse_request))
        return manager

    manager = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    dev, other = manager.get("dev"), manager.get("other")
    assert manager.ecs_port is not None and dev.imds is not None
    imds_token = dev.imds_tokens.issue(21600, clock())
    yield Listeners(
        manager.ecs_port,
        dev.imds.port,
        (dev.ring.current, dev.container_file.read_text()),
        other.ring.current,
        imds_token,
        loop,
    )
    asyncio.run_coroutine_threadsafe(manager.close(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def judge(raw: bytes, token_ok: bool, kind: str, sent: bytes) -> None:
    """A well-formed non-5xx answer (or a closed connection), with credentials only when the
    request carried a valid token. A marker the request itself carried proves nothing (an
    error page may quote the request back), so only the others are looked for."""
    CASES[kind] += 1
    if not raw:
        return
    status_line = raw.split(b"\r\n", 1)[0]
    assert status_line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), raw[:200]
    status = int(status_line.split(b" ")[1])
    assert status < 500, raw[:300]
    if not token_ok:
        markers = [marker for marker in CREDENTIAL_MARKERS if marker not in sent]
        assert not any(marker in raw for marker in markers), raw[:300]


METHODS = st.sampled_from(
    ["GET", "GET", "GET", "PUT", "POST", "HEAD", "DELETE", "OPTIONS", "G\x00T"]
)
TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
HEADER_NAMES = st.sampled_from(
    ["Host", "Origin", "Content-Length", "Transfer-Encoding", "Expect", "Upgrade", "Connection",
     "User-Agent", "X-Forwarded-For", "Content-Type", "X-aws-ec2-metadata-token-ttl-seconds"]
)  # fmt: skip


def request(method: str, path: str, headers: list[tuple[str, str]]) -> bytes:
    """A request head (Connection: close last, so every answer ends), and no body."""
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


CONTAINER_PATHS = st.one_of(
    st.sampled_from(["/v1/credentials/dev", "/v1/credentials/other", "/v1/credentials/%64ev",
                     "/v1/credentials/dev/", "/v1/credentials/dev?x=1", "/v1/credentials/",
                     "//v1/credentials/dev", "/v1/credentials/dev/../dev", "*"]),
    TEXT.map(lambda text: "/" + text.replace(" ", "")),
)  # fmt: skip
IMDS_PATHS = st.one_of(
    st.sampled_from(["/latest/api/token", "/latest/meta-data/iam/security-credentials/dev",
                     "/latest/meta-data/iam/security-credentials/",
                     "/latest/meta-data/iam/security-credentials-extended/dev",
                     "/latest/meta-data/iam/security-credentials/other",
                     "/latest/meta-data/iam/security-credentials/%64ev"]),
    TEXT.map(lambda text: "/" + text.replace(" ", "")),
)  # fmt: skip


def test_container_listener_gives_credentials_only_for_a_valid_token(
    listeners: Listeners, record_property: RecordProperty
) -> None:
    """2,500 random methods, paths, Hosts, tokens and headers (in random order) at the
    container listener (fast lane and aiohttp): never a 5xx, and credentials only when the
    first Authorization header holds a valid token (dev's, its container token, or other's);
    the listener still serves afterwards."""
    port = listeners.ecs_port
    hosts = {
        "ours": [f"127.0.0.1:{port}"],
        "gateway": [f"169.254.170.2:{port}"],
        "bare": ["169.254.170.2"],
        "evil": ["evil.example"],
        "none": [],
        "two": [f"127.0.0.1:{port}", "localhost"],
    }
    values = {
        "dev": [listeners.tokens[0]],
        "container": [listeners.tokens[1]],
        "other": [listeners.other_token],
        "wrong": [listeners.tokens[0][::-1]],
        "none": [],
        "empty": [""],
        "then junk": [listeners.tokens[0], "x"],
        "junk first": ["x", listeners.tokens[1]],
    }

    @settings(FUZZ, max_examples=2500)
    @given(
        data=st.data(),
        method=METHODS,
        path=CONTAINER_PATHS,
        token=st.sampled_from(sorted(values)),
        host=st.sampled_from(sorted(hosts)),
        extra=st.lists(st.tuples(HEADER_NAMES, TEXT), max_size=4),
    )
    def check(
        data: Any, method: str, path: str, token: str, host: str, extra: list[tuple[str, str]]
    ) -> None:
        headers = [("Host", h) for h in hosts[host]]
        headers += [("Authorization", v) for v in values[token]]
        headers += extra
        order = data.draw(st.permutations(range(len(headers))))
        headers = [headers[i] for i in order]
        sent = request(method, path, headers)
        raw = exchange(port, sent, half_close=True)
        # aiohttp reads the first Authorization (the lane takes none of two): it decides.
        first = next((v for k, v in headers if k == "Authorization"), None)
        valid = first in (*listeners.tokens, listeners.other_token)
        judge(raw, valid, "container listener", sent)

    check()
    assert CASES["container listener"] >= 2500
    record_property("fuzz cases", CASES["container listener"])
    good = [("Host", f"127.0.0.1:{port}"), ("Authorization", listeners.tokens[1])]
    answer = exchange(port, request("GET", "/v1/credentials/dev", good), half_close=True)
    assert answer.startswith(b"HTTP/1.1 200") and b"AccessKeyId" in answer


def test_imds_listener_gives_credentials_only_for_a_valid_session_token(
    listeners: Listeners, record_property: RecordProperty
) -> None:
    """1,500 random requests at an IMDS listener (v2 only): never a 5xx, and credentials
    only with a valid session token."""
    port = listeners.imds_port
    valid = listeners.imds_token
    expiry, _, signature = valid.partition(".")
    values = {
        "valid": [valid],
        "forged": [f"{int(expiry) + 1}.{signature}"],
        "expired": ["1." + signature],
        "none": [],
        "then junk": [valid, "x"],
    }

    @settings(FUZZ, max_examples=1500)
    @given(
        method=METHODS,
        path=IMDS_PATHS,
        token=st.sampled_from(sorted(values)),
        extra=st.lists(st.tuples(HEADER_NAMES, TEXT), max_size=4),
    )
    def check(method: str, path: str, token: str, extra: list[tuple[str, str]]) -> None:
        headers = [("Host", f"127.0.0.1:{port}")]
        headers += [("X-aws-ec2-metadata-token", v) for v in values[token]]
        sent = request(method, path, [*headers, *extra])
        raw = exchange(port, sent, half_close=True)
        judge(raw, token in ("valid", "then junk"), "IMDS listener", sent)

    check()
    assert CASES["IMDS listener"] >= 1500
    record_property("fuzz cases", CASES["IMDS listener"])
