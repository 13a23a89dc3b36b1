"""Fuzzing the socket API (hypothesis): random and mutated JSON bodies, headers, paths,
methods, sizes and encodings, then raw random bytes and truncated requests, all sent to the
real listener (peer guard, fast lane, aiohttp app) served in-process on a Unix socket with a
fake STS. The daemon must never crash, never answer 5xx for a client's mistake, never hand
out a credential for an invalid request, and keep serving a good request after each batch.
Each test records how many cases it ran (listed at the end of the run)."""

import asyncio
import contextlib
import json
import logging
import re
import socket
import string
import threading
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rolecached.api.requestbody import MAX_BODY
from rolecached.core.store import Store
from rolecached.main import event_loop_factory
from tests.kit import (
    ACCOUNT,
    SECRET_MARK,
    FakeSts,
    RecordProperty,
    Reply,
    exchange,
    no_sleep,
    parse_reply,
    serving,
)

ROLE = f"arn:aws:iam::{ACCOUNT}:role/fuzzed"
GOOD = {"role_arn": ROLE, "role_session_name": "fuzz-session"}
CASES: Counter[str] = Counter()
ANSWER_WAIT = 1.0  # seconds: the daemon answers a complete request in milliseconds
FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# What only a credential answer holds (an error may echo the caller's words, not these).
SECRET_MARKERS = (
    b'"SecretAccessKey": "',
    b'"SessionToken": "',
    b"AWS_SECRET_ACCESS_KEY=",
    b"export AWS_",
    SECRET_MARK.encode(),
)
# What a request must look like for credentials to be a right answer (an independent, rough
# reading of the API's rules: valid ARN and session name, no field the API does not know).
ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\x21-\x7e]{1,2048}")
SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
FIELDS = (
    "role_arn",
    "role_session_name",
    "duration_seconds",
    "external_id",
    "policy",
    "policy_arns",
    "tags",
    "transitive_tag_keys",
    "source_identity",
    "source_profile",
    "region",
    "min_ttl",
    "profile",
    "config_file",
    "credentials_file",
    "mfa_serial",
    "token_code",
    "query",
)


# -- the daemon under fire ---------------------------------------------------------------


class ErrorLog(logging.Handler):
    """Collects every ERROR the daemon logs (its "internal error" is a crash). aiohttp's own
    ERRORs about malformed HTTP (answered 400 before or after the app ran) are only counted:
    they are aiohttp's log lines, not failures of the daemon."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("aiohttp"):
            CASES["aiohttp ERROR log lines"] += 1
            return
        self.records.append(f"{record.name}: {record.getMessage()}")


@dataclass
class Served:
    """The in-process daemon: its socket, the fake STS, its error log and its thread."""

    path: Path
    sts: FakeSts
    errors: ErrorLog
    thread: threading.Thread

    def send(self, raw: bytes, incomplete: bool = False) -> bytes:
        """Send `raw` and read the whole answer. A request the daemon is still waiting on
        after ANSWER_WAIT (or one sent `incomplete`) gets our side closed, which makes
        aiohttp hang up: b"" then means the daemon dropped it without a word."""
        if incomplete:
            return exchange(self.path, raw, timeout=10, half_close=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self.path))
            chunks = []
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(raw)
                sock.settimeout(ANSWER_WAIT)
                try:
                    chunks.append(sock.recv(65536))
                except TimeoutError:
                    CASES["waited on (then half-closed)"] += 1
                    sock.shutdown(socket.SHUT_WR)
                sock.settimeout(10)
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            return b"".join(chunks)

    def assert_alive(self) -> None:
        """Not crashed, nothing logged as an internal error, and a good request is served."""
        assert self.thread.is_alive(), "the daemon's loop died"
        assert not self.errors.records, self.errors.records[:3]
        reply = parse_reply(self.send(request("POST", "/v1/credentials", json.dumps(GOOD))))
        assert reply.status == 200, reply.body
        assert reply.json()["AccessKeyId"].startswith("ASIA")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`runtime.serve` on its own event loop in a thread, for the whole module."""
    path = tmp_path_factory.mktemp("fuzz") / "run" / "s.sock"
    sts = FakeSts()
    errors = ErrorLog()
    loggers = [logging.getLogger(name) for name in ("rolecached", "aiohttp")]
    for logger in loggers:
        logger.addHandler(errors)
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        box["loop"] = asyncio.get_running_loop()
        box["stop"] = asyncio.Event()

        async with serving(path, Store(sts, sleep=no_sleep)) as served:
            box["path"] = served
            ready.set()
            await box["stop"].wait()

    factory = event_loop_factory()  # uvloop, as the daemon runs, when installed

    def run() -> None:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())

    thread = threading.Thread(target=run, name="fuzzed-daemon", daemon=True)
    thread.start()
    assert ready.wait(10), "the daemon did not become ready"
    yield Served(box["path"], sts, errors, thread)
    box["loop"].call_soon_threadsafe(box["stop"].set)
    thread.join(10)
    for logger in loggers:
        logger.removeHandler(errors)


# -- building and judging requests -------------------------------------------------------


def request(
    method: str,
    target: str,
    body: bytes | str | None = None,
    headers: list[tuple[str, str]] | None = None,
    length: bool = True,
) -> bytes:
    """An HTTP/1.1 request; a Content-Length matching the body unless told otherwise."""
    data = body.encode() if isinstance(body, str) else body
    lines = [f"{method} {target} HTTP/1.1", "Host: rolecache", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    if data is not None and length:
        lines.append(f"Content-Length: {len(data)}")
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + (data or b"")


def may_get_credentials(method: str, target: str, body: Any) -> bool:
    """True when credentials are a right answer to this request (our own rough reading)."""
    if method != "POST" or target.split("?", 1)[0] != "/v1/credentials":
        return False
    if not isinstance(body, dict) or set(body) - set(FIELDS):
        return False
    arn, name = body.get("role_arn"), body.get("role_session_name")
    return (
        isinstance(arn, str)
        and isinstance(name, str)
        and bool(ROLE_ARN.fullmatch(arn))
        and bool(SESSION_NAME.fullmatch(name))
    )


def judge(
    raw: bytes, allowed: bool, kind: str, must_answer: bool = False, head: bool = False
) -> Reply | None:
    """The answer is well formed (or, unless `must_answer`, the connection was just closed),
    never a 5xx, and holds a credential only for a request that may get one. `head`: the
    answer to a HEAD request, which has headers only."""
    CASES[kind] += 1
    if not raw:
        assert not must_answer, "a complete request got no answer"
        CASES[f"{kind}: hung up"] += 1
        return None  # the daemon hung up on garbage: fine
    if head:  # headers only (unless aiohttp's parser refused it), so nothing to leak
        assert int(raw.split(b" ", 2)[1]) < 500, raw[:300]
        for marker in SECRET_MARKERS:
            assert marker not in raw, raw[:300]
        return None
    reply = parse_reply(raw)
    assert reply.status < 500, (reply.status, reply.body[:300])
    if reply.status != 200 or not allowed:
        for marker in SECRET_MARKERS:
            assert marker not in reply.body, (reply.status, reply.body[:300])
    if reply.status >= 400:
        if reply.status in (400, 417) and reply.headers["content-type"].startswith("text/"):
            # aiohttp refused the request before the app saw it: its HTTP parser (400) or
            # its Expect handling (417). Not the API's JSON shape, but a 4xx all the same.
            CASES[f"{kind}: {reply.status} from aiohttp itself"] += 1
            return reply
        assert reply.headers["content-type"].startswith("application/json"), reply.headers
        error = reply.error
        assert error["code"] and error["message"]
    return reply


def decoded(body: bytes) -> Any:
    """The body as the API would read it, or None when it is not JSON."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


# -- strategies --------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
# Values near the rules: right type, wrong shape, boundaries, control characters.
field_values = st.one_of(
    json_values,
    st.sampled_from(
        [
            ROLE,
            "fuzz-session",
            "x",
            "a" * 65,
            f"arn:aws:iam::{ACCOUNT}:role/",
            f"arn:aws:iam::{ACCOUNT}:user/someone",
            "arn:aws:iam::12345678901:role/short-account",
            f"arn:aws:iam::{ACCOUNT}:role/{'p/' * 600}name",
            899,
            900,
            43200,
            43201,
            -1,
            0,
            2**63,
            3.5,
            True,
            "3600",
            "\x00",
            "aws:reserved",
            "us-east-1",
            "not a region",
            "123456",
            "12345a",
            "[",
            "{}",
            '{"Version": "2012-10-17"}',
            "/relative/../etc",
            "relative",
            "/tmp",
            "/nonexistent/config\x00",
            [{"Key": "k", "Value": "v"}],
            [{"Key": "", "Value": "v"}],
            [{"Key": "k\n", "Value": "v"}],
            [{"Key": "k"}] * 51,
            ["arn:aws:iam::aws:policy/ReadOnlyAccess"] * 11,
            "Credentials.SecretAccessKey",
            "[[[[",
        ]
    ),
)
bodies = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=6),
    st.fixed_dictionaries(
        {"role_arn": field_values, "role_session_name": field_values},
        optional={name: field_values for name in FIELDS[2:]},
    ),
)
queries = st.one_of(
    st.just(""),
    st.sampled_from(
        [
            "?format=json",
            "?format=env&shell=fish",
            "?format=process",
            "?format=aws-json",
            "?format=aws-text",
            "?format=xml",
            "?shell=cmd",
            "?format=",
            "?format=json&format=env",
            "?%ff%fe=1",
            "?format=%00",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30).map(
        lambda q: "?" + q
    ),
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, Any]:
    """A good request's JSON, changed a little: a field replaced, dropped or added, or the
    bytes themselves flipped, cut, repeated or re-encoded. Returns (body bytes, its JSON)."""
    doc: dict[str, Any] = dict(GOOD)
    action = draw(st.sampled_from(["replace", "drop", "add", "bytes", "encode", "nest"]))
    if action == "replace":
        doc[draw(st.sampled_from(sorted(doc)))] = draw(field_values)
    elif action == "drop":
        del doc[draw(st.sampled_from(sorted(doc)))]
    elif action == "add":
        doc[draw(st.sampled_from(FIELDS) | st.text(max_size=10))] = draw(field_values)
    elif action == "nest":
        depth = draw(st.integers(1, 5000))
        return ("[" * depth + "]" * draw(st.integers(0, depth))).encode(), None
    data = json.dumps(doc).encode()
    if action == "bytes":
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data) - 1))
            what = draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
            if what == "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            elif what == "cut":
                del data[at:]
            elif what == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            else:
                data = data + data[at:]
            if not data:
                data = bytearray(b" ")
        data = bytes(data)
    elif action == "encode":
        encoding = draw(st.sampled_from(["utf-16", "utf-32", "utf-8-sig", "latin-1", "cp500"]))
        text = json.dumps(doc, ensure_ascii=False).replace("fuzz", draw(st.sampled_from(
            ["fuzz", "fü", "ﬀ", "\u200b"]
        )))  # fmt: skip
        try:
            data = text.encode(encoding)
        except UnicodeEncodeError:
            data = text.encode("utf-8")
    return data, decoded(data)


tokens = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=20,
)
header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
known_methods = st.sampled_from(
    ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "PROPFIND"]
)
methods = st.one_of(known_methods, known_methods, known_methods, tokens)  # mostly real ones
paths = st.one_of(
    st.just("/v1/credentials"),
    st.sampled_from(
        [
            "/v1/credentials",
            "/v1/credentials/",
            "/v1//credentials",
            "/V1/credentials",
            "/v1/sessions",
            "/v1/sessions/forget",
            "/v1/sessions/0123456789abcdef",
            "/v1/sessions/../credentials",
            "/v1/status",
            "/v1/%63redentials",
            "/v2/credentials",
            "/",
            "*",
            "/v1/credentials%00",
            "/v1/credentials;x=1",
            "http://rolecache/v1/credentials",
            "/" + "a" * 9000,
        ]
    ),
    # Characters a request target may hold (RFC 3986), percent signs included.
    st.text(alphabet=string.ascii_letters + string.digits + "-._~/%!$&'()*+,;=:@", max_size=60).map(
        lambda p: "/" + p
    ),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60).map(
        lambda p: "/" + p
    ),
)
# Headers with a meaning to aiohttp or to the API, with awkward values.
special_headers = st.tuples(
    st.sampled_from(
        [
            "Content-Type",
            "Content-Encoding",
            "Transfer-Encoding",
            "Expect",
            "Connection",
            "Upgrade",
            "Content-Length",
            "Host",
            "Origin",
            "Authorization",
            "X-Rolecache-Sandbox",
            "Accept-Encoding",
        ]
    ),
    st.one_of(
        header_values,
        st.sampled_from(
            [
                "gzip",
                "deflate",
                "br",
                "chunked",
                "chunked, gzip",
                "identity",
                "100-continue",
                "websocket",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "text/plain; charset=utf-16",
                "-1",
                "99999999999999999999",
                " 10",
            ]
        ),
    ),
)


# -- the properties ----------------------------------------------------------------------


def test_random_json_bodies(served: Served, record_property: RecordProperty) -> None:
    """Random JSON documents, and objects of API fields with random or edge-case values,
    never crash the daemon, never get a 5xx, and get credentials only when valid."""

    @FUZZ
    @given(body=bodies, query=queries)
    def check(body: Any, query: str) -> None:
        raw = served.send(request("POST", "/v1/credentials" + query, json.dumps(body)))
        allowed = may_get_credentials("POST", "/v1/credentials", body)
        judge(raw, allowed, "json bodies", must_answer=True)

    check()
    served.assert_alive()
    assert CASES["json bodies"] >= 200
    record_property("fuzz cases", CASES["json bodies"])


def test_mutated_good_requests(served: Served, record_property: RecordProperty) -> None:
    """A good request with one field replaced, dropped or added, its bytes flipped, cut or
    repeated, deep nesting, or another text encoding: no 5xx, no credential unless the
    mutated request is still a valid one."""

    @FUZZ
    @given(case=mutated(), query=queries)
    def check(case: tuple[bytes, Any], query: str) -> None:
        data, doc = case
        raw = served.send(request("POST", "/v1/credentials" + query, data))
        allowed = may_get_credentials("POST", "/v1/credentials", doc)
        reply = judge(raw, allowed, "mutated", must_answer=True)
        if doc is None and reply is not None:
            assert reply.status == 400, (reply.status, reply.body[:200])

    check()
    served.assert_alive()
    assert CASES["mutated"] >= 200
    record_property("fuzz cases", CASES["mutated"])


def test_random_methods_paths_and_headers(served: Served, record_property: RecordProperty) -> None:
    """Any method on any path with random and meaningful headers (encodings, chunking,
    Expect, Upgrade, bogus lengths) around a good or bad body gets a well-formed non-5xx
    answer (or a closed connection) and credentials only for a valid credentials POST."""

    @FUZZ
    @example(  # aiohttp answers `100 Continue` first, then the real answer
        method="GET",
        path="/v1/credentials",
        query="",
        headers=[("Expect", "100-CONTINUE")],
        good_body=False,
        length=True,
    )
    @given(
        method=methods,
        path=paths,
        query=queries,
        headers=st.lists(st.one_of(special_headers, st.tuples(tokens, header_values)), max_size=5),
        good_body=st.booleans(),
        length=st.sampled_from([True] * 7 + [False]),  # mostly with a Content-Length
    )
    def check(
        method: str,
        path: str,
        query: str,
        headers: list[tuple[str, str]],
        good_body: bool,
        length: bool,
    ) -> None:
        body = json.dumps(GOOD if good_body else {"role_arn": 1})
        raw = served.send(request(method, path + query, body, headers, length))
        # Headers that change how the body is read (encodings, chunking, a second length)
        # may leave a valid body unread: the answer may then be an error, never a 5xx.
        allowed = good_body and may_get_credentials(method, path + query, GOOD)
        judge(raw, allowed, "methods, paths, headers", head=method == "HEAD")

    check()
    served.assert_alive()
    assert CASES["methods, paths, headers"] >= 200
    record_property("fuzz cases", CASES["methods, paths, headers"])


def test_body_sizes_and_content_encodings(served: Served, record_property: RecordProperty) -> None:
    """Bodies of every size up to well past the 64 KiB limit, sent plain, gzip or deflate
    compressed (correctly or not) or chunked, get 200 or a 4xx (413 above the limit), never
    a 5xx, and credentials only when the decoded request is valid."""

    @FUZZ
    @given(
        size=st.one_of(
            st.integers(0, 300),
            st.integers(MAX_BODY - 64, MAX_BODY + 64),
            st.integers(MAX_BODY, 4 * MAX_BODY),
        ),
        coding=st.sampled_from(["plain", "gzip", "deflate", "bad-gzip", "chunked"]),
        valid=st.booleans(),
    )
    def check(size: int, coding: str, valid: bool) -> None:
        doc = dict(GOOD) if valid else {"role_arn": ROLE}
        text = json.dumps(doc)
        data = (text[:-1] + " " * max(0, size - len(text)) + "}").encode()
        headers: list[tuple[str, str]] = []
        length = True
        if coding == "gzip":
            compressor = zlib.compressobj(wbits=31)
            data = compressor.compress(data) + compressor.flush()
            headers.append(("Content-Encoding", "gzip"))
        elif coding == "deflate":
            data = zlib.compress(data)
            headers.append(("Content-Encoding", "deflate"))
        elif coding == "bad-gzip":
            headers.append(("Content-Encoding", "gzip"))
        elif coding == "chunked":
            data = (
                b"".join(
                    b"%x\r\n%s\r\n" % (len(data[i : i + 4096]), data[i : i + 4096])
                    for i in range(0, len(data), 4096)
                )
                + b"0\r\n\r\n"
            )
            headers.append(("Transfer-Encoding", "chunked"))
            length = False
        raw = served.send(request("POST", "/v1/credentials", data, headers, length))
        reply = judge(raw, valid, "sizes and encodings")
        if reply is not None and coding == "plain" and size > MAX_BODY + 1:
            assert reply.status == 413, (size, reply.status)

    check()
    served.assert_alive()
    assert CASES["sizes and encodings"] >= 200
    record_property("fuzz cases", CASES["sizes and encodings"])


def test_raw_random_bytes(served: Served, record_property: RecordProperty) -> None:
    """Random bytes (alone, after a plausible request line, or ended like a request head)
    get a 4xx or a closed connection, never a 5xx or a credential, and the daemon keeps
    serving."""

    @FUZZ
    @given(
        prefix=st.sampled_from([b"", b"POST /v1/credentials HTTP/1.1\r\n", b"GET / HTTP/1.1\r\n"]),
        noise=st.binary(min_size=1, max_size=2048),
        ended=st.booleans(),
    )
    def check(prefix: bytes, noise: bytes, ended: bool) -> None:
        if ended:  # a complete (if senseless) request head: aiohttp answers it
            judge(served.send(prefix + noise + b"\r\n\r\n"), False, "raw bytes")
        else:  # bytes that may never form a request: sent, then our side closed
            judge(served.send(prefix + noise, incomplete=True), False, "raw bytes")

    check()
    served.assert_alive()
    assert CASES["raw bytes"] >= 200
    record_property("fuzz cases", CASES["raw bytes"])


def test_truncated_requests(served: Served, record_property: RecordProperty) -> None:
    """A good request (once new, once a repeat the fast lane knows) cut at any byte, then
    the connection half-closed or dropped, never yields a credential or a 5xx, and the
    daemon keeps serving."""
    full = request("POST", "/v1/credentials?format=env", json.dumps(GOOD))
    assert parse_reply(served.send(full)).status == 200  # now remembered by the fast lane

    @FUZZ
    @given(cut=st.integers(0, len(full) - 1), drop=st.booleans())
    def check(cut: int, drop: bool) -> None:
        if drop:
            CASES["truncated"] += 1
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(served.path))
                sock.sendall(full[:cut])
            return
        judge(served.send(full[:cut], incomplete=True), False, "truncated")

    check()
    served.assert_alive()
    assert CASES["truncated"] >= 200
    record_property("fuzz cases", CASES["truncated"])


def test_the_fuzzed_daemon_survived_every_case(served: Served) -> None:
    """After everything above (in this worker), the daemon still answers and logged no
    internal error."""
    served.assert_alive()
    assert served.sts.issued  # good requests did reach the fake STS
    for marker in (b"Traceback",):
        assert not any(marker.decode() in record for record in served.errors.records)
