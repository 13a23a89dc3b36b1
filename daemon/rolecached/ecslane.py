"""The container endpoint's fast lane: a plain credentials request answered without aiohttp.

SDKs refresh through the ECS-style endpoint with one connection per request, and aiohttp
spends about 240 µs of CPU setting up each one, which caps the listener near 3,500 requests a
second on two cores (bench B5). The socket API met the same limit with fastlane.py; this is
its counterpart for the container listener. The listener's front guard (front.py) offers the
request bytes of each admitted connection to `EcsLane.answer` first. The lane answers
only a complete `GET /v1/credentials/NAME` that aiohttp would answer 200 from memory:

- one Host in the listener's allow-list, no Origin, no body (Content-Length,
  Transfer-Encoding), nothing after the head, a strict head aiohttp parses the same way;
- an Authorization value the binding's `TokenRing.valid` accepts (constant time, grace);
- the binding's credentials held with the container floor (`ECS_MIN_TTL`) left;
- a request the listener's rate limiter (the middleware's own instance, keyed by peer and
  binding) lets through, asked last so that a request the lane passes on is not counted
  twice.

Its answer is the handler's JSON body with the headers the middleware adds (Cache-Control,
the sandbox marker), rendered once per credentials object by the manager; the hand-out is
counted and audited by the manager's `handed_out`, as the handler's are. Everything else,
every refusal included, is handed to aiohttp unchanged (from that request on, the connection
is aiohttp's), so the lane never decides anything aiohttp would not. A kept-alive connection
stays open for the next request, unless the client said `Connection: close`.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from rolecache.protocol import SANDBOX_HEADER
from rolecached.bindings import ECS_MIN_TTL, Binding
from rolecached.cache import Credentials
from rolecached.front import NEED_MORE, NeedMore, Reply
from rolecached.gate import peer_key
from rolecached.host import Peer
from rolecached.ratelimit import RateLimiter
from rolecached.tokens import TokenRing


class Served(Protocol):
    """What the lane reads of a served binding (endpoints.Served is one): it needs no more,
    and endpoints.py imports this module, not the other way round."""

    binding: Binding
    ring: TokenRing


# Well inside aiohttp's limits (_HEAD_LIMITS in endpoints.py): a head beyond them is aiohttp's
# to refuse. SDK requests are a few hundred bytes.
MAX_HEAD = 8192
MAX_LINE = 4000
MAX_HEADERS = 32

_PREFIX = b"GET /v1/credentials/"
_REQUEST_LINE = re.compile(rb"GET /v1/credentials/([A-Za-z0-9][A-Za-z0-9_.-]{0,63}) HTTP/1\.1")
_FIELD_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_VALUE = re.compile(rb"[\x20-\x7e\t]*")
# Headers that change how aiohttp reads or answers the request: theirs to handle.
_HAND_OVER = frozenset(
    {b"origin", b"content-length", b"transfer-encoding", b"expect", b"upgrade", b"content-type"}
)


@dataclass(frozen=True)
class Ask:
    """What a request the lane may answer asks for; the token is never shown."""

    name: str
    host: str  # lower-cased, as the Host allow-list holds it
    token: str
    close: bool = False  # the client sent `Connection: close`
    agent: str | None = None  # User-Agent, for the audit trail

    def __repr__(self) -> str:
        return f"Ask(name={self.name!r}, host={self.host!r}, close={self.close})"


def parse(raw: bytes) -> Ask | NeedMore | None:
    """The Ask of a complete request in `raw`; NEED_MORE while a request the lane may take is
    incomplete; None when aiohttp should have it (anything but a strict, bodiless GET of a
    credentials path with exactly one Host and one non-empty Authorization)."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        if len(raw) >= MAX_HEAD or raw[: len(_PREFIX)] != _PREFIX[: len(raw)]:
            return None
        return NEED_MORE
    if rest or len(head) > MAX_HEAD:
        return None  # pipelined or oversized
    lines = head.split(b"\r\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None or len(lines) - 1 > MAX_HEADERS:
        return None
    host = token = agent = None
    close = False
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if (
            not colon
            or len(line) > MAX_LINE
            or not _FIELD_NAME.fullmatch(name)
            or not _FIELD_VALUE.fullmatch(value)
        ):
            return None
        name = name.lower()
        if name == b"host":
            if host is not None:
                return None
            host = value.strip(b" \t")
        elif name == b"authorization":
            if token is not None:
                return None
            token = value.strip(b" \t")
        elif name == b"user-agent":
            agent = value
        elif name == b"connection":
            options = {option.strip(b" \t") for option in value.lower().split(b",")}
            if b"upgrade" in options:
                return None
            close = close or b"close" in options
        elif name in _HAND_OVER:
            return None
    if not host or not token:
        return None
    return Ask(
        match.group(1).decode(),
        host.decode().lower(),
        token.decode(),
        close,
        None if agent is None else agent.decode(),
    )


def admissible(ask: Ask, hosts: frozenset[str], served: Served | None, now: float) -> bool:
    """True when the middleware and the handler would both let `ask` reach the credentials:
    its Host is allowed, the binding exists and the token is valid for it at `now` (the
    binding's TokenRing decides: constant time, previous token within its grace)."""
    return ask.host in hosts and served is not None and served.ring.valid(ask.token, now)


def http_responses(body: bytes, sandbox: bool) -> tuple[bytes, bytes]:
    """The lane's whole HTTP responses for the handler's JSON `body`, with the handler's
    Content-Type and the middleware's headers: (closing the connection, keeping it alive)."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nCache-Control: no-store\r\n"
        + (SANDBOX_HEADER.encode() + b": 1\r\n" if sandbox else b"")
    )
    return head + b"Connection: close\r\n\r\n" + body, head + b"\r\n" + body


class EcsLane:
    """Answers the container listener's plain credentials requests (see the module doc)."""

    def __init__(
        self,
        served: Mapping[str, Served],
        hosts: Callable[[], frozenset[str]],
        limiter: RateLimiter,
        clock: Callable[[], float],
        held: Callable[[Binding, float, Peer, str | None, Callable[[], bool]], Credentials | None],
        render: Callable[[Served, Credentials], tuple[bytes, bytes]],
    ) -> None:
        self._served = served  # the handler's own mapping: adds and removes show at once
        self._hosts = hosts
        self._limiter = limiter
        self._clock = clock
        # The handler's own source (Handout.held): it counts and audits what it returns.
        self._held = held
        self._render = render  # -> http_responses(), cached per credentials object

    def answer(self, raw: bytes, peer: Peer) -> Reply | NeedMore | None:
        """The Reply to `raw` from `peer` (with the binding, the rate-limit key); NEED_MORE
        to wait for more bytes; None to let aiohttp handle it."""
        ask = parse(raw)
        if not isinstance(ask, Ask):
            return ask
        now = self._clock()
        served = self._served.get(ask.name)
        if served is None or not admissible(ask, self._hosts(), served, now):
            return None
        # What the handler would serve without waiting; else aiohttp fetches, waits or refuses.
        # The limiter is asked only once credentials are held (a refusal is aiohttp's to
        # answer 429, asking it again), and only what it lets through is counted.
        key = f"{peer_key(peer)} {ask.name}"
        credentials = self._held(
            served.binding, ECS_MIN_TTL, peer, ask.agent, lambda: not self._limiter.wait(key, now)
        )
        if credentials is None:
            return None
        closing, keeping = self._render(served, credentials)
        return Reply(closing, False) if ask.close else Reply(keeping, True)
