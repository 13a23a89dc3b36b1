"""The container endpoint's fast lane (ecslane.py): what it answers is byte for byte what
aiohttp's handler sends, and everything it must not answer still gets aiohttp's answer.

aiohttp adds a Server header to every response and the lane does not, so a reply without one
came from the lane. The rig (real store and listeners, fake clock, fake STS) is the one of
test_endpoints.py.
"""

import asyncio
import contextlib
import json
from typing import Any

import pytest

from rolecached.core.bindings import ECS_MIN_TTL
from rolecached.endpoints import ecslane, policy
from rolecached.front import httphead
from tests.endpointkit import Rig, new_manager
from tests.kit import THROTTLED, TIMEOUT, Reply, http

PATH = "/v1/credentials/dev"


def by_lane(reply: Reply) -> bool:
    return "server" not in reply.headers


async def via_aiohttp(rig: Rig, name: str = "dev") -> Reply:
    """A request aiohttp answers 200 but the lane does not take (its path has a query)."""
    token = rig.manager.get(name).ring.current
    path = f"/v1/credentials/{name}?via=aiohttp"
    return await http(rig.ecs_port, "GET", path, headers={"Authorization": token})


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response from a kept-alive connection."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), TIMEOUT)
    return int(status_line.split()[1]), headers, body


# -- answers -----------------------------------------------------------------------------------


async def test_lane_answers_with_the_handlers_bytes(rig: Rig) -> None:
    """A plain request is answered by the lane with aiohttp's status, body, Content-Type and
    Cache-Control, and a repeat gets the same bytes."""
    await rig.add()
    reference = await via_aiohttp(rig)
    first, repeat = await rig.ecs(), await rig.ecs()
    assert not by_lane(reference) and reference.status == 200
    for reply in (first, repeat):
        assert by_lane(reply)
        assert reply.status == 200 and reply.body == reference.body
        for name in ("content-type", "cache-control", "content-length"):
            assert reply.headers[name] == reference.headers[name]


async def test_lane_serves_renewed_credentials(rig: Rig) -> None:
    """Once the held credentials are replaced, the lane answers with the new ones, exactly as
    aiohttp renders them, never the old rendering."""
    await rig.add()
    old = await rig.ecs()
    rig.store.forget()
    fetched = await rig.ecs()  # nothing held: aiohttp fetches
    renewed = await rig.ecs()
    assert by_lane(old) and not by_lane(fetched) and by_lane(renewed)
    assert fetched.status == renewed.status == 200
    assert renewed.body == fetched.body != old.body


async def test_lane_serves_a_replaced_binding(rig: Rig) -> None:
    """Replacing a binding with another session is seen by the lane at once."""
    await rig.add()
    before = (await rig.ecs()).json()
    await rig.add(replace=True, role_session_name="other")
    after = await rig.ecs()
    assert by_lane(after) and after.json()["AccessKeyId"] != before["AccessKeyId"]
    assert after.body == (await via_aiohttp(rig)).body


async def test_lane_answers_in_the_sandbox_with_its_marker(rig: Rig) -> None:
    """In sandbox mode the lane's answer carries the sandbox header, as aiohttp's does."""
    rig.manager = await new_manager(rig)
    rig.manager.ports.sandbox = True
    await rig.add()
    lane, reference = await rig.ecs(), await via_aiohttp(rig)
    assert by_lane(lane) and not by_lane(reference)
    sandbox = [h for h in reference.headers if h.startswith("x-rolecache")]
    assert sandbox and all(lane.headers[h] == reference.headers[h] for h in sandbox)


async def test_rotation_grace_through_the_lane(rig: Rig) -> None:
    """After a rotation the lane answers both tokens during the grace period; afterwards the
    old token gets aiohttp's 403 and no credentials."""
    rig.manager = await new_manager(rig, token_grace=60.0)
    await rig.add()
    old = rig.manager.get("dev").ring.current
    rig.manager.rotate("dev")
    new = rig.manager.get("dev").ring.current
    during = [await rig.ecs(token=new), await rig.ecs(token=old)]
    assert all(by_lane(r) and r.status == 200 for r in during)
    rig.clock.advance(rig.manager.settings.token_grace)
    stale, fresh = await rig.ecs(token=old), await rig.ecs(token=new)
    assert stale.status == 403 and not by_lane(stale) and stale.has_no_credentials()
    assert fresh.status == 200 and by_lane(fresh)


async def test_kept_alive_connection_is_served_then_handed_over(rig: Rig) -> None:
    """On a kept-alive connection the lane answers request after request; a request it does
    not take goes to aiohttp on the same connection, which refuses it."""
    await rig.add()
    token = rig.manager.get("dev").ring.current
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.ecs_port)
    request = (
        f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{rig.ecs_port}\r\nAuthorization: {{}}\r\n\r\n"
    )
    try:
        answers = []
        for presented in (token, token, "wrong"):
            writer.write(request.format(presented).encode())
            await writer.drain()
            answers.append(await read_response(reader))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert [(status, "server" in headers) for status, headers, _ in answers] == [
        (200, False),
        (200, False),
        (403, True),
    ]
    assert b"AccessKeyId" not in answers[2][2]


async def test_idle_kept_alive_connection_is_closed(rig: Rig) -> None:
    """After a kept-alive answer, a connection that stays idle for idle_timeout is closed."""
    rig.manager = await new_manager(rig, idle_timeout=0.3)
    await rig.add()
    token = rig.manager.get("dev").ring.current
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.ecs_port)
    host = f"127.0.0.1:{rig.ecs_port}"
    writer.write(f"GET {PATH} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n\r\n".encode())
    status, headers, _ = await read_response(reader)
    assert status == 200 and "server" not in headers
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # closed: nothing else would
    writer.close()


async def test_slow_request_to_the_lane_is_cut_off(rig: Rig) -> None:
    """A request the lane is waiting on that does not complete within idle_timeout is cut off
    with no answer."""
    rig.manager = await new_manager(rig, idle_timeout=0.3)
    await rig.add()
    token = rig.manager.get("dev").ring.current
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.ecs_port)
    writer.write(f"GET {PATH} HTTP/1.1\r\nAuthorization: {token}\r\n".encode())
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    writer.close()


# -- refusals: aiohttp's answer, never credentials -------------------------------------------------


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("no token", 401),
        ("empty token", 401),
        ("blank token", 401),
        ("wrong token", 403),
        ("token with a suffix", 403),
        ("other binding's token", 403),
        ("unknown binding", 403),  # as a wrong token: names are not probe-able
        ("bad Host", 403),
        ("Host without port", 403),
        ("no Host", 400),  # aiohttp's parser refuses it
        ("two Hosts", 400),
        ("Origin", 403),
        ("lower-case origin", 403),
        ("oversized", 413),
        ("chunked", 413),
    ],
)
async def test_refusals_get_aiohttps_answer(rig: Rig, case: str, status: int) -> None:
    """Each request the middleware or handler refuses is handed to aiohttp, which answers its
    status without credentials."""
    await rig.add("dev")
    await rig.add("other")
    port = rig.ecs_port
    token = rig.manager.get("dev").ring.current
    other = rig.manager.get("other").ring.current
    requests: dict[str, tuple[dict[str, str | None], bytes]] = {
        "no token": ({}, b""),
        "empty token": ({"Authorization": ""}, b""),
        "blank token": ({"Authorization": "  "}, b""),
        "wrong token": ({"Authorization": token[:-1] + ("A" if token[-1] != "A" else "B")}, b""),
        "token with a suffix": ({"Authorization": token + "x"}, b""),
        "other binding's token": ({"Authorization": other}, b""),
        "unknown binding": ({"Authorization": token}, b""),
        "bad Host": ({"Authorization": token, "Host": f"evil.example:{port}"}, b""),
        "Host without port": ({"Authorization": token, "Host": "127.0.0.1"}, b""),
        "no Host": ({"Authorization": token, "Host": None}, b""),
        "two Hosts": ({"Authorization": token, "Host": f"127.0.0.1:{port}\r\nHost: x"}, b""),
        "Origin": ({"Authorization": token, "Origin": "http://evil.example"}, b""),
        "lower-case origin": ({"Authorization": token, "origin": "null"}, b""),
        "oversized": ({"Authorization": token}, b"x" * 5000),
        "chunked": (
            {"Authorization": token, "Transfer-Encoding": "chunked"},
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
    }
    headers, body = requests[case]
    path = "/v1/credentials/nope" if case == "unknown binding" else PATH
    reply = await http(port, "GET", path, body or None, headers=headers)
    assert reply.status == status, reply.body
    assert not by_lane(reply) and reply.has_no_credentials()


async def test_rate_limit_is_shared_with_aiohttp(rig: Rig) -> None:
    """The lane and aiohttp draw on one limiter: past the burst, whichever path, the next
    request gets aiohttp's 429 and no credentials until the bucket refills."""
    rig.manager = await new_manager(rig, rate_limit=1.0, rate_burst=4)
    await rig.add()
    served = [await via_aiohttp(rig), await rig.ecs(), await via_aiohttp(rig), await rig.ecs()]
    assert [(r.status, by_lane(r)) for r in served] == [
        (200, False),
        (200, True),
        (200, False),
        (200, True),
    ]
    flood = await rig.ecs()
    assert flood.status == 429 and not by_lane(flood) and flood.has_no_credentials()
    assert flood.headers["retry-after"] == "1"
    rig.clock.advance(1.0)
    again = await rig.ecs()
    assert again.status == 200 and by_lane(again)


async def test_refused_requests_do_not_count_against_the_limit(rig: Rig) -> None:
    """A request refused for its token never uses up the allowance, and one the lane hands
    over is counted by aiohttp's limiter only, not twice."""
    rig.manager = await new_manager(rig, rate_limit=1.0, rate_burst=2)
    await rig.add()
    assert [(await rig.ecs(token="wrong")).status for _ in range(5)] == [403] * 5
    assert (await via_aiohttp(rig)).status == 200
    assert (await rig.ecs()).status == 200
    assert (await rig.ecs()).status == 429


async def test_credentials_under_the_floor_are_never_served(rig: Rig) -> None:
    """With renewal failing, the lane serves down to the 15-minute floor; below it aiohttp
    answers 503 and no credentials."""
    await rig.add()
    rig.sts.failure = THROTTLED
    duration = 3600
    rig.clock.advance(duration - ECS_MIN_TTL - 1)
    above = await rig.ecs()
    rig.clock.advance(2)
    below = await rig.ecs()
    assert above.status == 200 and by_lane(above)
    assert below.status == 503 and not by_lane(below) and below.has_no_credentials()


async def test_removed_binding_is_not_served(rig: Rig) -> None:
    """Once a binding is removed, its token gets aiohttp's 403, never credentials."""
    await rig.add("dev")
    await rig.add("other")  # keeps the listener open
    token = rig.manager.get("dev").ring.current
    assert by_lane(await rig.ecs())
    await rig.manager.remove("dev")
    reply = await rig.ecs(token=token)
    assert reply.status == 403 and not by_lane(reply) and reply.has_no_credentials()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"GET /v1/credentials/dev HTTP/1.1\nHost: x\n\n", "CR LF"),
        (b"GET /latest/meta-data/ HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", "number"),
        (b"PUT /latest HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", "one"),
    ],
    ids=["bare-lf", "not-a-number", "two-lengths"],
)  # fmt: skip
async def test_malformed_heads_get_the_endpoints_json_error(
    rig: Rig, raw: bytes, reason: str
) -> None:
    """A head that is not HTTP gets {"Code", "Message"} 400 from the front layer, on the
    container listener and an IMDS listener alike (aiohttp's own 400 is plain text)."""
    served = await rig.add()
    assert served.imds is not None
    for port in (rig.ecs_port, served.imds.port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        status, headers, body = await read_response(reader)
        writer.close()
        assert status == 400 and headers["content-type"].startswith("application/json")
        assert headers["cache-control"] == "no-store" and headers["connection"] == "close"
        error = json.loads(body)
        assert error["Code"] == "BadRequest" and reason in error["Message"]


# -- the pure parts ------------------------------------------------------------------------------


def request(*headers: str, line: str = f"GET {PATH} HTTP/1.1", end: bytes = b"") -> bytes:
    return ("\r\n".join([line, *headers]) + "\r\n\r\n").encode() + end


GOOD = ("Host: 127.0.0.1:9711", "Authorization: tok")


def parse(raw: bytes) -> ecslane.Ask | httphead.NeedMore | None:
    """What the front layer and the lane make of `raw`: the lane's Ask, NEED_MORE or None."""
    head = httphead.parse(raw)
    return ecslane.ask_of(head) if isinstance(head, httphead.Head) else head


def test_parse_takes_a_plain_request() -> None:
    """A complete plain request parses to its binding, Host (as sent: the guard lower-cases
    it) and token."""
    ask = parse(request("host:  LOCALHOST:9711 ", "Authorization: tok", "Accept: */*"))
    assert ask == ecslane.Ask("dev", "LOCALHOST:9711", "tok", False)
    assert "tok" not in repr(ask)
    closing = parse(request(*GOOD, "Connection: keep-alive, Close"))
    assert isinstance(closing, ecslane.Ask) and closing.close


def test_parse_waits_for_a_whole_head() -> None:
    """An incomplete request waits for more bytes (it may yet prove malformed); a head past
    the limit without an end is handed over."""
    full = request(*GOOD)
    assert parse(full[:10]) is httphead.NEED_MORE
    assert parse(full[:-2]) is httphead.NEED_MORE
    assert parse(b"PUT /latest") is httphead.NEED_MORE
    assert parse(b"GET /v1/credentials/" + b"x" * httphead.MAX_HEAD) is None


@pytest.mark.parametrize(
    "raw",
    [
        request(*GOOD, end=b"GET / HTTP/1.1\r\n\r\n"),  # pipelined
        request(*GOOD, line=f"GET {PATH} HTTP/1.0"),
        request(*GOOD, line=f"HEAD {PATH} HTTP/1.1"),
        request(*GOOD, line=f"GET {PATH}?x=1 HTTP/1.1"),
        request(*GOOD, line=f"GET {PATH}/ HTTP/1.1"),
        request(*GOOD, line="GET /v1/credentials/d%65v HTTP/1.1"),
        request(*GOOD, line=f"GET  {PATH} HTTP/1.1"),
        request(*GOOD, "Authorization: tok"),
        request(*GOOD, "Host: 127.0.0.1:9711"),
        request("Authorization: tok"),
        request("Host: 127.0.0.1:9711"),
        request("Host: 127.0.0.1:9711", "Authorization:  "),
        request(*GOOD, "Origin: null"),
        request(*GOOD, "Content-Length: 0"),
        request(*GOOD, "Transfer-Encoding: chunked"),
        request(*GOOD, "Expect: 100-continue"),
        request(*GOOD, "Connection: Upgrade", "Upgrade: websocket"),
        request(*GOOD, "Host : 127.0.0.1:9711"),
        request(*GOOD, " folded"),
        request(*GOOD, "X-Bad: a\x01b"),
        request(*GOOD, "X-Long: " + "a" * httphead.MAX_LINE),
        request(*GOOD, *[f"X-{n}: 1" for n in range(httphead.MAX_HEADERS)]),
        request(*GOOD, line="GET /v1/credentials/-dev HTTP/1.1"),
        request(*GOOD, line="PUT /v1/credentials/dev HTTP/1.1"),
    ],
)
def test_parse_hands_over_anything_else(raw: bytes) -> None:
    """A request that is not a strict, bodiless GET with one Host and one token is aiohttp's."""
    assert parse(raw) is None


class FakeRing:
    def __init__(self, good: str) -> None:
        self.good = good

    def valid(self, presented: str, now: float) -> bool:
        return presented == self.good


def test_lane_rules_need_host_binding_and_token() -> None:
    """The rules the lane asks (the middleware's and the handler's own) admit only an allowed
    Host, an existing binding and a valid token."""
    ask = ecslane.Ask("dev", "127.0.0.1:9711", "tok")
    hosts = frozenset({"127.0.0.1:9711"})
    ring: Any = FakeRing("tok")

    def admitted(ask: ecslane.Ask, hosts: frozenset[str], ring: Any) -> bool:
        return (
            policy.guard(ask.facts, hosts, 1024) is None
            and policy.container_refusal(ask.token, ring, None, 0.0) is None
        )

    assert admitted(ask, hosts, ring)
    assert admitted(ecslane.Ask("dev", "127.0.0.1:9711".upper(), "tok"), hosts, ring)
    assert not admitted(ask, frozenset({"localhost:9711"}), ring)
    assert not admitted(ask, hosts, None)
    assert not admitted(ecslane.Ask("dev", "127.0.0.1:9711", "bad"), hosts, ring)


async def test_closing_the_listener_closes_kept_alive_lane_connections(rig: Rig) -> None:
    """A kept-alive connection the lane holds between requests is closed with the listener,
    not left open until its idle timeout."""
    rig.manager = await new_manager(rig, idle_timeout=3600)  # only closing can end it in time
    await rig.add()
    token = rig.manager.get("dev").ring.current
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.ecs_port)
    host = f"127.0.0.1:{rig.ecs_port}"
    writer.write(f"GET {PATH} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n\r\n".encode())
    status, headers, _ = await read_response(reader)
    assert status == 200 and "server" not in headers
    await rig.manager.close()
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    writer.close()
