"""The container endpoint's fast lane: a plain credentials request answered without aiohttp.

SDKs refresh through the ECS-style endpoint with one connection per request, and aiohttp
spends about 240 µs of CPU setting up each one, which caps the listener near 3,500 requests a
second on two cores (bench B5). The socket API met the same limit with fastlane.py; this is
its counterpart for the container listener. The listener's front guard (front/site.py) parses
each admitted connection's request strictly (httphead.py) and offers it to `EcsLane.answer`
first. The lane answers only a `GET /v1/credentials/NAME` that aiohttp would answer 200 from
memory. It decides nothing itself: it asks the rules the middleware and the handler ask
(policy: the guard, the token rule, then the rate limit, asked last so that a
request the lane passes on is not counted twice), and the binding's credentials held with
the container floor (`ECS_MIN_TTL`) left. Its answer is the one answers.py renders for
the handler too; the hand-out is counted and audited by `Handout.held`, as the handler's
are. Everything else, every refusal included, is handed to aiohttp unchanged (from that
request on, the connection is aiohttp's), so the lane never decides anything aiohttp would
not. A kept-alive connection stays open for the next request, unless the client said
`Connection: close`.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from rolecache.protocol import valid_binding_name
from rolecached.core.bindings import ECS_MIN_TTL, ECS_PATH
from rolecached.endpoints import policy
from rolecached.endpoints.guard import Guard
from rolecached.endpoints.handout import Handout
from rolecached.endpoints.registry import Served
from rolecached.front.httphead import Head
from rolecached.front.site import Reply
from rolecached.host.peers import Peer

_PREFIX = ECS_PATH.removesuffix("{name}").encode()
# Headers that change how aiohttp reads or answers the request: theirs to handle.
_HAND_OVER = (b"origin", b"content-length", b"content-type")


@dataclass(frozen=True)
class Ask:
    """What a request the lane may answer asks for; the token is never shown."""

    name: str
    host: str
    token: str
    close: bool = False  # the client sent `Connection: close`
    agent: str | None = None  # User-Agent, for the audit trail

    def __repr__(self) -> str:
        return f"Ask(name={self.name!r}, host={self.host!r}, close={self.close})"

    @property
    def facts(self) -> policy.Facts:
        """What the guard reads of it: one Host, and no Origin or body (else not an Ask)."""
        return policy.Facts((self.host,), origin=False, length=None, chunked=False)


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
        fields[b"host"].decode(),
        fields[b"authorization"].decode(),
        head.close,
        None if agent is None else agent.decode(),
    )


class EcsLane:
    """Answers the container listener's plain credentials requests (see the module doc)."""

    def __init__(self, served: Mapping[str, Served], guard: Guard, handout: Handout) -> None:
        self._served = served  # the handler's own mapping: adds and removes show at once
        self._guard = guard  # the middleware's own: Host allow-list, limiter, clock
        self._handout = handout  # the handler's own: it counts and audits what it returns

    def answer(self, head: Head, peer: Peer) -> Reply | None:
        """The Reply to `head` from `peer` (with the binding, the rate-limit key), or None to
        let aiohttp handle it."""
        ask = ask_of(head)
        if ask is None:
            return None
        guard = self._guard
        now = guard.clock()
        served = self._served.get(ask.name)
        if (
            served is None
            or policy.guard(ask.facts, guard.hosts, guard.settings.max_body) is not None
            or policy.container_refusal(ask.token, served.ring, None, now) is not None
        ):
            return None  # aiohttp refuses it, by the same rules
        # What the handler would serve without waiting; else aiohttp fetches, waits or refuses.
        # The limiter is asked only once credentials are held (a refusal is aiohttp's to
        # answer 429, asking it again), and only what it lets through is counted.
        credentials = self._handout.held(
            served.binding,
            ECS_MIN_TTL,
            peer,
            ask.agent,
            lambda: policy.throttle(guard.limiter, peer, ask.name, now) is None,
        )
        if credentials is None:
            return None
        rendered = served.container_answer(credentials, guard.sandbox)
        return Reply(rendered.closing, False) if ask.close else Reply(rendered.keeping, True)
