"""The front layer's strict HTTP/1.1 request parser, shared by every listener's lane.

A lane answers a request from memory only when this parser and aiohttp are sure to read it
the same way, so the parser accepts a strict subset of HTTP/1.1 and says None ("aiohttp's,
whole") to everything else: a request line `METHOD /target HTTP/1.1`; field names of token
characters with no space before the colon; visible ASCII values; no obs-fold; no
Transfer-Encoding, Content-Encoding, Expect or Upgrade; one Host and one Authorization at
most; a body of exactly one Content-Length; nothing after the body. A few heads are not HTTP
at all, and no server may accept them: line ends other than CR LF, a Content-Length that is
not a number (or absurdly long), two Content-Lengths. Those are `Malformed`, and the front
layer answers them 400 in the listener's own JSON error shape (aiohttp's 400s are plain
text and never pass through the middlewares).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from rolecached.erroranswers import ErrorAnswer

# Within aiohttp's limits on a head (4 KiB lines, 32 fields: endpoints.listeners.HEAD_LIMITS, and
# aiohttp's defaults on the socket): anything bigger is aiohttp's to refuse. Real requests
# are a few hundred bytes.
MAX_HEAD = 8192
MAX_LINE = 4000
MAX_HEADERS = 32


class NeedMore:
    """The type of NEED_MORE."""

    def __repr__(self) -> str:
        return "NEED_MORE"


NEED_MORE = NeedMore()  # the request is not complete yet: wait for more bytes

_REQUEST_LINE = re.compile(rb"([A-Z]{1,16}) (/[\x21-\x7e]*) HTTP/1\.1")
_HEAD_CHARS = re.compile(rb"[\x20-\x7e\t\r\n]*")
# A field line: a name of token characters, the colon at once, the value.
_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):(.*)")
# Fields that change how a request is read or answered, beyond what a lane does: aiohttp's.
_HAND_OVER = frozenset({b"transfer-encoding", b"content-encoding", b"expect", b"upgrade"})
# Fields a request has once; a repeat leaves aiohttp to decide which one counts.
_ONCE = frozenset({b"host", b"authorization"})
_LENGTH_DIGITS = 10  # int() of thousands of digits raises; ten are plenty


class Head(NamedTuple):
    """A complete request the lanes may read: its line, fields (lower-case names, values
    stripped, repeats joined with ", ") and body. Its repr shows no field value: the
    Authorization field holds a token. (A tuple: one is made per request.)"""

    method: bytes
    target: bytes
    line: bytes
    fields: Mapping[bytes, bytes]
    body: bytes = b""
    close: bool = False  # the client sent `Connection: close`

    def __repr__(self) -> str:
        return f"Head({self.line!r}, fields={sorted(self.fields)}, body={len(self.body)} bytes)"


@dataclass(frozen=True)
class Malformed:
    """A request no HTTP server may accept, and why (a sentence for the 400's message)."""

    reason: str


def parse(raw: bytes, max_body: int = 0) -> Head | Malformed | NeedMore | None:
    """The Head of the complete request in `raw`; NEED_MORE while it is incomplete; Malformed
    for a head that is not HTTP; None for a request outside the strict subset, a body over
    `max_body` bytes, or anything after the request (see the module doc)."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    # A CR or LF that is not part of a CRLF (a last CR may be the start of one).
    ends = head[:-1] if not sep and head.endswith(b"\r") else head
    pairs = ends.count(b"\r\n")
    if ends.count(b"\r") != pairs or ends.count(b"\n") != pairs:
        return Malformed("lines of an HTTP request end in CR LF")
    if not sep:
        return NEED_MORE if len(raw) < MAX_HEAD else None
    lines = head.split(b"\r\n")
    if len(head) > MAX_HEAD or len(lines) - 1 > MAX_HEADERS:
        return None
    fields: dict[bytes, bytes] = {}
    # Visible ASCII, space and tab only (control characters, obs-text): one pass for the head.
    strict = _HEAD_CHARS.fullmatch(head) is not None
    for line in lines[1:]:
        field = _FIELD.fullmatch(line)
        if field is None:  # obs-fold, a space before the colon, no colon...
            strict = False
            continue
        name, value = field[1].lower(), field[2].strip(b" \t")
        if name == b"content-length":
            if not value.isdigit() or len(value) > _LENGTH_DIGITS:
                return Malformed("Content-Length must be a number of bytes")
            if name in fields:
                return Malformed("a request has one Content-Length")
        elif len(line) > MAX_LINE or name in _HAND_OVER or (name in _ONCE and name in fields):
            strict = False
        fields[name] = fields[name] + b", " + value if name in fields else value
    request_line = _REQUEST_LINE.fullmatch(lines[0])
    options = fields.get(b"connection")
    connection = {o.strip(b" \t") for o in options.lower().split(b",")} if options else set()
    if not strict or request_line is None or b"upgrade" in connection:
        return None
    length = int(fields.get(b"content-length", b"0"))
    if length > max_body or len(rest) > length:
        return None  # too big for a lane, or pipelined
    if len(rest) < length:
        return NEED_MORE
    method, target = request_line.groups()
    return Head(method, target, lines[0], fields, rest, b"close" in connection)


def response(
    status: bytes, content_type: bytes, body: bytes, headers: bytes = b"", close: bool = True
) -> bytes:
    """A whole HTTP/1.1 response: `status` such as b"200 OK", `headers` as ready CRLF-ended
    lines, and `Connection: close` when the connection closes after it."""
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type
        + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + headers
        + (b"Connection: close\r\n" if close else b"") + b"\r\n" + body
    )  # fmt: skip


def error_response(answer: ErrorAnswer, headers: bytes = b"") -> bytes:
    """A whole HTTP/1.1 response for an error answer, as aiohttp's json_response writes it;
    the connection closes after it."""
    extra = b"".join(f"{name}: {value}\r\n".encode() for name, value in answer.headers.items())
    return response(
        answer.status_line, b"application/json; charset=utf-8", answer.body(), extra + headers
    )
