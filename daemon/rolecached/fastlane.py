"""The fast lane: a repeat of a credentials request is answered without aiohttp.

Shells send the same request again and again (`rolecache env --role-arn ...` in a loop), one
connection each. aiohttp spends about 240 µs of CPU setting up each connection here, which
caps the socket API near 4,000 requests a second; answering from a raw protocol costs about
40 µs (bench B4). So when aiohttp has served a request once, the lane remembers its exact
bytes (request line and body) with what they resolved to; a byte-identical repeat whose
credentials are in memory with enough life left gets the same answer straight away.
A request that names a profile is remembered with the stamps of the config files it was
resolved from, and answered only while one stat() of each says they are unchanged. Anything
else (a new request, a miss, an edited config file, an error) goes through aiohttp as
before, so the lane never decides anything aiohttp would not.
"""

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from rolecached import audit
from rolecached.cache import Credentials
from rolecached.front import NEED_MORE, NeedMore, Reply
from rolecached.profiles import Stamp, file_stamp
from rolecached.request import RoleRequest
from rolecached.store import Store

MAX_ROUTES = 4096
MAX_REQUEST = 64 * 1024  # beyond this, aiohttp answers (413)


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


def request_key(request_line: bytes, body: bytes) -> bytes:
    """What identifies a request for the lane: its exact request line and body."""
    return request_line + b"\n" + body


@dataclass(frozen=True)
class Malformed:
    """A request no HTTP server may accept, and why (answered 400 by the lane itself, in
    the API's JSON error shape: aiohttp's own 400s are plain text)."""

    reason: str


def split_request(raw: bytes) -> tuple[bytes, bytes] | Malformed | NeedMore | None:
    """(request line, body) of a complete request in `raw`; NEED_MORE while a request the lane
    may take is incomplete; Malformed for a head that is not HTTP (bare CR or LF line ends,
    a Content-Length that is no number, or two of them); None if it is not one the lane
    takes (only a POST to /v1/credentials with a Content-Length and nothing after its
    body)."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    # A CR or LF that is not part of a CRLF (a last CR may be the start of one).
    loose = head[:-1] if not sep and head.endswith(b"\r") else head
    if b"\r" in loose.replace(b"\r\n", b"") or b"\n" in loose.replace(b"\r\n", b""):
        return Malformed("lines of an HTTP request end in CR LF")
    if not sep:
        return NEED_MORE if len(raw) < MAX_REQUEST else None
    lines = head.split(b"\r\n")
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            digits = value.strip()
            # Ten digits are plenty: int() of thousands of digits would raise.
            if not digits.isdigit() or len(digits) > 10:
                return Malformed("Content-Length must be a number of bytes")
            if length is not None:
                return Malformed("a request has one Content-Length")
            length = int(digits)
        elif name in (b"transfer-encoding", b"expect"):
            return None
    if not lines[0].startswith(b"POST /v1/credentials"):
        return None
    if length is None or length > MAX_REQUEST or len(rest) > length:
        return None
    if len(rest) < length:
        return NEED_MORE
    return lines[0], rest


class FastLane:
    """Remembered routes, and the answers for byte-identical repeats."""

    def __init__(self, store: Store, extra_headers: bytes = b"") -> None:
        self._store = store
        self._routes: OrderedDict[bytes, Route] = OrderedDict()
        self._extra_headers = extra_headers

    def _bad_request(self, reason: str) -> bytes:
        body = json.dumps({"error": {"code": "BadRequest", "message": reason}}).encode()
        return (
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=utf-8"
            + b"\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\nConnection: close\r\n" + self._extra_headers + b"\r\n" + body
        )  # fmt: skip

    def drop(self, request: object) -> None:
        """Forget every route of `request`: their rendered answers hold its secrets."""
        for key in [k for k, route in self._routes.items() if route.request == request]:
            del self._routes[key]

    def held_answers(self) -> list[bytes]:
        """Every rendered answer the lane holds (what a memory audit would look at)."""
        return [route.response for route in self._routes.values()]

    def remember(self, key: bytes, route: Route) -> None:
        """Keep `route` for `key`, dropping the least recently used beyond MAX_ROUTES."""
        self._routes[key] = route
        self._routes.move_to_end(key)
        while len(self._routes) > MAX_ROUTES:
            self._routes.popitem(last=False)

    def answer(self, raw: bytes, requester: Callable[[], str]) -> Reply | NeedMore | None:
        """The Reply to `raw` (the connection then closes); NEED_MORE to wait for more bytes;
        None to let aiohttp handle it. `requester` names who asks (called only when
        answering)."""
        parts = split_request(raw)
        if isinstance(parts, Malformed):
            return Reply(self._bad_request(parts.reason), False)
        if not isinstance(parts, tuple):
            return parts
        route = self._routes.get(request_key(*parts))
        if route is None or any(file_stamp(path) != stamp for path, stamp in route.files):
            return None  # unknown, or a profile whose files changed: aiohttp resolves it
        credentials = self._store.peek(route.request, route.min_ttl)
        if credentials is None:
            return None
        who = requester()
        self._store.record_hit(route.request, who)
        audit.served(route.request.describe(), credentials, who, self._store.now())
        if credentials is not route.credentials:  # renewed since: render once more
            media_type, body = route.render(credentials)
            route.credentials = credentials
            route.response = (
                b"HTTP/1.1 200 OK\r\nContent-Type: " + media_type.encode() + b"; charset=utf-8"
                + b"\r\nContent-Length: " + str(len(body)).encode()
                + b"\r\nConnection: close\r\n" + self._extra_headers + b"\r\n" + body
            )  # fmt: skip
        self._routes.move_to_end(request_key(*parts))
        return Reply(route.response, False)
