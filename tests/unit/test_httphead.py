"""The front layer's strict HTTP head parser, shared by the socket's and the container
endpoint's lanes: what it takes, what it waits for, what it leaves to aiohttp whole, and the
heads it calls malformed."""

import pytest

from rolecached.front.httphead import (
    MAX_HEAD,
    MAX_HEADERS,
    MAX_LINE,
    NEED_MORE,
    Head,
    Malformed,
    parse,
)

LINE = b"POST /v1/credentials HTTP/1.1"


def request(*fields: bytes, line: bytes = LINE, body: bytes = b"") -> bytes:
    return b"\r\n".join([line, *fields]) + b"\r\n\r\n" + body


def test_a_complete_request_parses_to_its_line_fields_and_body() -> None:
    """Names are lower-cased, values stripped, repeats of a list field joined; the body is
    exactly Content-Length bytes; the repr shows no field value."""
    raw = request(
        b"Host:  Localhost:9 ", b"Authorization: tok", b"Accept: a", b"accept: b",
        b"Content-Length: 2", b"Connection: keep-alive, Close", body=b"{}",
    )  # fmt: skip
    head = parse(raw, 64)
    assert isinstance(head, Head)
    assert (head.method, head.target, head.line) == (b"POST", b"/v1/credentials", LINE)
    assert head.body == b"{}"
    assert head.fields[b"host"] == b"Localhost:9" and head.fields[b"accept"] == b"a, b"
    assert head.close
    assert b"tok" not in repr(head).encode()


@pytest.mark.parametrize(
    "raw",
    [
        LINE + b"\r\nContent-Le",  # the head goes on
        request(b"Content-Length: 5", body=b"{}"),  # the body goes on
        LINE + b"\r\nHost: x\r\n\r",  # the CR of the last CRLF is there, its LF to come
        b"PUT /lat",
    ],
    ids=["head", "body", "last-cr", "any-method"],
)
def test_an_incomplete_request_waits_for_more(raw: bytes) -> None:
    """A request cut short, head or body, is NEED_MORE (any request: it may be malformed)."""
    assert parse(raw, 64) is NEED_MORE


@pytest.mark.parametrize(
    "raw",
    [
        request(b"Content-Length: 2", body=b"{}GET / HTTP/1.1\r\n\r\n"),  # pipelined
        request(b"Content-Length: 65", body=b"x" * 65),  # over max_body: aiohttp's 413
        request(b"Transfer-Encoding: chunked", body=b"2\r\n{}\r\n0\r\n\r\n"),
        request(b"Content-Encoding: gzip"),
        request(b"Expect: 100-continue"),
        request(b"Upgrade: websocket"),
        request(b"Connection: Upgrade"),
        request(b"Host: a", b"Host: b"),
        request(b"Authorization: a", b"Authorization: b"),
        request(b"Host : a"),  # space before the colon
        request(b"X: a", b" folded"),  # obs-fold
        request(b"X: a\x01b"),
        request(b"X: \xff"),
        request(b"no colon"),
        request(b"X: " + b"a" * MAX_LINE),
        request(*[b"X-%d: 1" % n for n in range(MAX_HEADERS + 1)]),
        request(line=b"POST /v1/credentials HTTP/1.0"),
        request(line=b"POST  /v1/credentials HTTP/1.1"),
        request(line=b"POST v1/credentials HTTP/1.1"),
        request(line=b"post /v1/credentials HTTP/1.1"),
        b"GET /" + b"x" * MAX_HEAD,  # no end of head in sight
    ],
)
def test_anything_outside_the_strict_subset_is_aiohttps(raw: bytes) -> None:
    """Requests aiohttp might read differently from a simple parser are handed over whole."""
    assert parse(raw, 64) is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"GET /v1/status HTTP/1.1\nHost: x\n\n", "CR LF"),
        (LINE + b"\rContent-Length: 2\r\n\r\n{}", "CR LF"),
        (b"GET /\r\nHost: x\n", "CR LF"),  # seen before the head is complete
        (request(b"Content-Length: x2"), "number"),
        (request(b"Content-Length: -1"), "number"),
        (request(b"Content-Length: " + b"9" * 5000), "number"),
        (request(b"Content-Length: 2", b"content-length: 2", body=b"{}"), "one"),
        (request(b"Transfer-Encoding: chunked", b"Content-Length: 2", b"Content-Length: 2"), "one"),
    ],
    ids=["bare-lf", "bare-cr", "bare-lf-early", "letters", "negative", "absurd", "two", "two-te"],
)  # fmt: skip
def test_heads_that_are_not_http_are_malformed(raw: bytes, reason: str) -> None:
    """Bare CR or LF line ends, a Content-Length that is no number, two Content-Lengths: no
    server may accept them, on any path, and the reason says which."""
    result = parse(raw, 64)
    assert isinstance(result, Malformed) and reason in result.reason
