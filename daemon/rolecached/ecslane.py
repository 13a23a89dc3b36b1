"""The container endpoint's fast lane: a plain credentials request answered without aiohttp.

SDKs refresh through the ECS-style endpoint with one connection per request, and aiohttp
spends about 240 µs of CPU setting up each one, which caps the listener near 3,500 requests a
second on two cores (bench B5). The socket API met the same limit with fastlane.py; this is
its counterpart for the container listener. The listener's front guard (front.py) parses
each admitted connection's request strictly (httphead.py) and offers it to `EcsLane.answer`
first. The lane answers only a `GET /v1/credentials/NAME` that aiohttp would answer 200 from
memory:

- one Host in the listener's allow-list, no Origin, no body, no query;
- an Authorization value the binding's `TokenRing.valid` accepts (constant time, grace);
- the binding's credentials held with the container floor (`ECS_MIN_TTL`) left;
- a request the listener's rate limiter (the middleware's own instance, keyed by peer and
  binding) lets through, asked last so that a request the lane passes on is not counted
  twice.

Its answer is the handler's JSON body with the headers the middleware adds (Cache-Control,
the sandbox marker), rendered once per credentials object (endpoint_apps.render_ecs); the
hand-out is counted and audited by `Handout.held`, as the handler's are. Everything else,
every refusal included, is handed to aiohttp unchanged (from that request on, the connection
is aiohttp's), so the lane never decides anything aiohttp would not. A kept-alive connection
stays open for the next request, unless the client said `Connection: close`.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from rolecache.protocol import SANDBOX_HEADER, valid_binding_name
from rolecached.bindings import ECS_MIN_TTL, ECS_PATH, Binding
from rolecached.cache import Credentials
from rolecached.errors import NotHttp, answer_for
from rolecached.front import Reply
from rolecached.gate import peer_key
from rolecached.host import Peer
from rolecached.httphead import Head, error_response, response
from rolecached.ratelimit import RateLimiter
from rolecached.tokens import TokenRing


class Served(Protocol):
    """What the lane reads of a served binding (registry.Served is one): it needs no more,
    and endpoint_apps.py imports this module, not the other way round."""

    binding: Binding
    ring: TokenRing


_PREFIX = ECS_PATH.removesuffix("{name}").encode()
# Headers that change how aiohttp reads or answers the request: theirs to handle.
_HAND_OVER = (b"origin", b"content-length", b"content-type")


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


def ask_of(head: Head) -> Ask | None:
    """The Ask of a request the lane may take: a bodiless GET of a credentials path (a valid
    binding name, no query) with one Host and one non-empty Authorization; None for the rest,
    which is aiohttp's."""
    name = head.target[len(_PREFIX) :].decode()
    fields = head.fields
    if (
        head.method != b"GET"
        or not head.target.startswith(_PREFIX)
        or not valid_binding_name(name)
        or any(field in fields for field in _HAND_OVER)
        or not fields.get(b"host")
        or not fields.get(b"authorization")
    ):
        return None
    agent = fields.get(b"user-agent")
    return Ask(
        name,
        fields[b"host"].decode().lower(),
        fields[b"authorization"].decode(),
        head.close,
        None if agent is None else agent.decode(),
    )


def admissible(ask: Ask, hosts: frozenset[str], served: Served | None, now: float) -> bool:
    """True when the middleware and the handler would both let `ask` reach the credentials:
    its Host is allowed, the binding exists and the token is valid for it at `now` (the
    binding's TokenRing decides: constant time, previous token within its grace)."""
    return ask.host in hosts and served is not None and served.ring.valid(ask.token, now)


def _headers(sandbox: bool) -> bytes:
    # What the endpoints' middleware adds to every answer.
    sandboxed = SANDBOX_HEADER.encode() + b": 1\r\n" if sandbox else b""
    return b"Cache-Control: no-store\r\n" + sandboxed


def http_responses(body: bytes, sandbox: bool) -> tuple[bytes, bytes]:
    """The lane's whole HTTP responses for the handler's JSON `body`, with the handler's
    Content-Type and the middleware's headers: (closing the connection, keeping it alive)."""
    return tuple(  # type: ignore[return-value]
        response(b"200 OK", b"application/json", body, _headers(sandbox), close)
        for close in (True, False)
    )


def bad_request(reason: str, sandbox: bool) -> bytes:
    """An endpoint's JSON 400 ({"Code", "Message"}, the middleware's headers) for a head
    that is not HTTP; the connection closes after it."""
    return error_response(answer_for(NotHttp(reason), "endpoint"), _headers(sandbox))


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

    def answer(self, head: Head, peer: Peer) -> Reply | None:
        """The Reply to `head` from `peer` (with the binding, the rate-limit key), or None to
        let aiohttp handle it."""
        ask = ask_of(head)
        if ask is None:
            return None
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
