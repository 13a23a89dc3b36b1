"""The fast lane: a repeat of a credentials request is answered without aiohttp.

Shells send the same request again and again (`rolecache env --role-arn ...` in a loop), one
connection each. aiohttp spends about 240 µs of CPU setting up each connection here, which
caps the socket API near 4,000 requests a second; answering from a raw protocol costs about
40 µs (bench B4). So when aiohttp has served a request once, the lane remembers its exact
bytes (request line and body) with what they resolved to; a byte-identical repeat whose
credentials are in memory with enough life left gets the same answer straight away.
A request that names a profile is remembered with the stamps of the config files it was
resolved from, and answered only while one stat() of each says they are unchanged (one per
loop turn: requests read in the same turn arrived together, and an edit among them is as
new to each). When the client sent the files' stamps itself and they matched, the route has
no files to check: an edit changes the client's stamps, so its bytes miss
(api/credentials_route.py). Anything else (a new request, a miss, an edited config file, an
error) goes through aiohttp as before, so the lane never decides anything aiohttp would not.
"""

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from rolecache.protocol import Stamp, file_stamp
from rolecached.core.cache import Credentials
from rolecached.core.request import RoleRequest
from rolecached.core.store import Store
from rolecached.erroranswers import answer_for
from rolecached.errors import NotHttp
from rolecached.front.httphead import Head, error_response, response
from rolecached.front.site import Reply
from rolecached.host.peers import Peer
from rolecached.observe import audit

MAX_ROUTES = 4096


@dataclass
class Route:
    """What a remembered request means, and its last rendered answer."""

    request: RoleRequest
    min_ttl: float
    render: Callable[[Credentials], tuple[str, bytes]]  # -> (media type, UTF-8 body)
    credentials: Credentials | None = None
    response: bytes = b""
    # Files the request was resolved from (a profile's), and their stamps then.
    files: tuple[tuple[str, Stamp | None], ...] = ()
    what: str = field(init=False)  # how the audit line names the request

    def __post_init__(self) -> None:
        self.what = self.request.describe()


def request_key(request_line: bytes, body: bytes) -> bytes:
    """What identifies a request for the lane: its exact request line and body."""
    return request_line + b"\n" + body


def takes(head: Head) -> bool:
    """Whether the lane may answer `head`: a POST to /v1/credentials with a Content-Length
    (the front layer parsed it strictly, so the body is whole and nothing follows it)."""
    return (
        head.method == b"POST"
        and head.target.startswith(b"/v1/credentials")
        and b"content-length" in head.fields
    )


class FastLane:
    """Remembered routes, and the answers for byte-identical repeats."""

    def __init__(self, store: Store, extra_headers: bytes = b"") -> None:
        self._store = store
        self._routes: OrderedDict[bytes, Route] = OrderedDict()
        self._extra_headers = extra_headers
        self._stamps: dict[str, Stamp | None] = {}  # this loop turn's, see stamp()

    def bad_request(self, reason: str) -> bytes:
        """The API's JSON 400 for a head that is not HTTP, as the error middleware shapes it."""
        return error_response(answer_for(NotHttp(reason), "api"), self._extra_headers)

    def drop(self, request: object) -> None:
        """Forget every route of `request`: their rendered answers hold its secrets."""
        for key in [k for k, route in self._routes.items() if route.request == request]:
            del self._routes[key]

    def held_answers(self) -> list[bytes]:
        """Every rendered answer the lane holds (what a memory audit would look at)."""
        return [route.response for route in self._routes.values()]

    def stamp(self, path: str) -> Stamp | None:
        """`path`'s file_stamp, read at most once per loop turn (syscalls are the lane's
        biggest cost under load, when many requests share a turn)."""
        stamps = self._stamps
        if path not in stamps:
            if not stamps:
                asyncio.get_running_loop().call_soon(stamps.clear)
            stamps[path] = file_stamp(path)
        return stamps[path]

    def remember(self, key: bytes, route: Route) -> None:
        """Keep `route` for `key`, dropping the least recently used beyond MAX_ROUTES."""
        self._routes[key] = route
        self._routes.move_to_end(key)
        while len(self._routes) > MAX_ROUTES:
            self._routes.popitem(last=False)

    def answer(self, head: Head, peer: Peer) -> Reply | None:
        """The Reply to `head` from `peer` (the connection then closes), or None to let
        aiohttp handle it."""
        if not takes(head):
            return None
        key = request_key(head.line, head.body)
        route = self._routes.get(key)
        if route is None or any(self.stamp(path) != stamp for path, stamp in route.files):
            return None  # unknown, or a profile whose files changed: aiohttp resolves it
        now = self._store.now()  # one instant for the decision and the audit line's life left
        credentials = self._store.peek(route.request, route.min_ttl, now)
        if credentials is None:
            return None
        who = audit.describe_peer(peer)  # only now: a /proc read for a new pid
        self._store.record_hit(route.request, who)
        audit.served(route.what, credentials, who, now)
        if credentials is not route.credentials:  # renewed since: render once more
            media_type, body = route.render(credentials)
            route.credentials = credentials
            route.response = response(
                b"200 OK", media_type.encode() + b"; charset=utf-8", body, self._extra_headers
            )
        self._routes.move_to_end(key)
        return Reply(route.response, False)
