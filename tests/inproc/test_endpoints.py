"""The container endpoints in one process: the real store and listeners on loopback, a fake
clock, and a fake STS; spoken to in raw HTTP/1.1 so every header is under the test's control.
The last tests put real botocore (container and IMDS providers) in front of them."""

import asyncio
import json
import logging
import os
import re
import socket
import stat
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from rolecached.core.bindings import (
    ECS_MIN_TTL,
    IMDS_MIN_TTL,
    Binding,
    parse_spec,
    resolve,
)
from rolecached.core.cache import Credentials
from rolecached.core.request import RoleRequest, parse_request
from rolecached.core.store import Settings, Store
from rolecached.endpoints.apps import (
    IMDS_ROLES,
    IMDS_ROLES_EXTENDED,
    IMDS_TOKEN_PATH,
    IMDS_TTL_HEADER,
)
from rolecached.endpoints.manager import EndpointManager
from rolecached.endpoints.registry import Served
from rolecached.errors import BindingExists, InvalidRequest, ListenError, StsFailure
from rolecached.stserrors import StsCallFailed
from tests.endpointkit import ROLE, Rig, endpoint_manager, new_manager, settings
from tests.kit import (
    ACCOUNT,
    DENIED,
    SECRET_MARK,
    THROTTLED,
    TIMEOUT,
    FakeClock,
    FakeSts,
    Reply,
    http,
    no_sleep,
)

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


# -- container endpoint ----------------------------------------------------------------------


async def test_ecs_answer_is_exactly_what_sdks_expect(rig: Rig) -> None:
    """200 with AccessKeyId, SecretAccessKey, Token, Expiration (Z), AccountId and RoleArn,
    and no CORS header."""
    await rig.add()
    reply = await rig.ecs()
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("application/json")
    doc = reply.json()
    assert list(doc) == [
        "AccessKeyId",
        "SecretAccessKey",
        "Token",
        "Expiration",
        "AccountId",
        "RoleArn",
    ]
    assert ISO.fullmatch(doc["Expiration"])
    assert doc["AccountId"] == ACCOUNT and doc["RoleArn"] == ROLE
    assert doc["Token"] == rig.sts.issued[-1].session_token
    assert not [h for h in reply.headers if h.startswith("access-control-")]
    assert reply.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("no token", 401),
        ("empty token", 401),
        ("wrong token", 403),
        ("other binding's token", 403),
        ("unknown binding", 403),  # as a wrong token: names are not probe-able
        ("bad Host", 403),
        ("Host without port", 403),
        ("two Hosts", 400),  # aiohttp's parser refuses it before we see it
        ("Origin", 403),
        ("oversized", 413),
        ("chunked", 413),
    ],
)
async def test_ecs_refusals(rig: Rig, case: str, status: int) -> None:
    """Each refused request gets its documented status, a JSON {Code, Message}, and no
    credentials."""
    await rig.add("dev")
    await rig.add("other")
    other = rig.manager.get("other").ring.current
    port = rig.ecs_port
    path = "/v1/credentials/dev"
    token = rig.manager.get("dev").ring.current
    requests = {
        "no token": ({}, b""),
        "empty token": ({"Authorization": ""}, b""),
        "wrong token": ({"Authorization": token[:-1] + ("A" if token[-1] != "A" else "B")}, b""),
        "other binding's token": ({"Authorization": other}, b""),
        "unknown binding": ({"Authorization": token}, b""),
        "bad Host": ({"Authorization": token, "Host": f"evil.example:{port}"}, b""),
        "Host without port": ({"Authorization": token, "Host": "127.0.0.1"}, b""),
        "two Hosts": ({"Authorization": token, "Host": f"127.0.0.1:{port}\r\nHost: x"}, b""),
        "Origin": ({"Authorization": token, "Origin": "http://evil.example"}, b""),
        "oversized": ({"Authorization": token}, b"x" * 5000),
        "chunked": (
            {"Authorization": token, "Transfer-Encoding": "chunked"},
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
    }
    headers, body = requests[case]
    if case == "unknown binding":
        path = "/v1/credentials/nope"
    reply = await http(port, "GET", path, body or None, headers=headers)
    assert reply.status == status, reply.body
    assert reply.has_no_credentials()
    if case != "two Hosts":
        assert set(reply.json()) == {"Code", "Message"}


async def test_ecs_flood_gets_429(rig: Rig) -> None:
    """Past the burst, a client's requests get 429 with Retry-After and no credentials, until
    the bucket refills."""
    rig.manager = await new_manager(rig, rate_limit=1.0, rate_burst=3)
    await rig.add()
    statuses = [(await rig.ecs()).status for _ in range(3)]
    flood = await rig.ecs()
    assert statuses == [200, 200, 200]
    assert flood.status == 429 and flood.has_no_credentials()
    assert flood.headers["retry-after"] == "1"
    rig.clock.advance(1.0)
    assert (await rig.ecs()).status == 200


async def test_ecs_token_rotation_keeps_the_old_token_for_the_grace(rig: Rig) -> None:
    """After a rotation the token file holds the new token; the old one works until the grace
    period ends, then gets 403."""
    await rig.add()
    old = rig.manager.get("dev").ring.current
    rig.manager.rotate("dev")
    new = (rig.tokens_dir / "dev" / "token").read_text()
    assert new != old
    assert (await rig.ecs(token=new)).status == 200
    assert (await rig.ecs(token=old)).status == 200
    rig.clock.advance(rig.manager.settings.token_grace)
    assert (await rig.ecs(token=old)).status == 403
    assert (await rig.ecs(token=new)).status == 200


async def test_tokens_rotate_on_schedule(rig: Rig) -> None:
    """The manager's tick rotates a token once it is `token_rotation` old."""
    await rig.add()
    first = (rig.tokens_dir / "dev" / "token").read_text()
    rig.clock.advance(rig.manager.settings.token_rotation - 1)
    rig.manager.tick()
    assert (rig.tokens_dir / "dev" / "token").read_text() == first
    rig.clock.advance(1)
    rig.manager.tick()
    assert (rig.tokens_dir / "dev" / "token").read_text() != first


async def test_container_token_works_for_a_week_of_rotations(rig: Rig) -> None:
    """The container token a process got from its environment on day one keeps getting
    credentials through a simulated week of scheduled rotations, while the first day's file
    token stops working once its grace ends."""
    await rig.add()
    served = rig.manager.get("dev")
    container = served.container_file.read_text()
    first_file_token = served.token_file.read_text()
    assert container != first_file_token
    statuses = []
    for _ in range(7 * 24):
        rig.clock.advance(3600)
        await asyncio.gather(*rig.store.tick())
        rig.manager.tick()
        statuses.append((await rig.ecs(token=container)).status)
    assert statuses == [200] * (7 * 24)
    assert (await rig.ecs(token=first_file_token)).status == 403
    assert served.token_file.read_text() != first_file_token


async def test_rotate_containers_revokes_the_container_token_at_once(rig: Rig) -> None:
    """`rotate --containers` replaces the container token: the old one gets 403 with no
    grace, the new one (in the same 0600 file) works, and another binding's is refused."""
    await rig.add()
    await rig.add("other")
    served = rig.manager.get("dev")
    old = served.container_file.read_text()
    other = rig.manager.get("other").container_file.read_text()
    rig.manager.rotate("dev", containers=True)
    new = served.container_file.read_text()
    assert new != old and stat.S_IMODE(served.container_file.stat().st_mode) == 0o600
    assert served.container_file.parent == served.token_file.parent
    reply = await rig.ecs(token=old)
    assert reply.status == 403 and reply.has_no_credentials()
    assert (await rig.ecs(token=new)).status == 200
    refused = await rig.ecs(token=other)
    assert refused.status == 403 and refused.has_no_credentials()


async def test_imds_url_ends_in_a_slash_that_old_botocore_joins_onto(rig: Rig) -> None:
    """The IMDS URL handed out ends in "/", so botocore's old plain join of
    "latest/api/token" onto it reaches the token route."""
    served = await rig.add()
    url = rig.manager.summary(served)["imds_url"]
    assert url == f"http://127.0.0.1:{served.imds.port}/"  # type: ignore[union-attr]
    joined = urllib.parse.urlsplit(url + "latest/api/token")
    assert joined.path == IMDS_TOKEN_PATH
    port = joined.port
    assert port is not None
    reply = await http(port, "PUT", joined.path, headers={IMDS_TTL_HEADER: "60"})
    assert reply.status == 200 and reply.body


async def test_token_file_is_private_without_newline(rig: Rig) -> None:
    """The token file is 0600, holds exactly the token (no trailing newline), and is removed
    with the binding."""
    await rig.add()
    path = rig.tokens_dir / "dev" / "token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_bytes()
    assert content == rig.manager.get("dev").ring.current.encode()
    assert not content.endswith(b"\n") and len(content) >= 22
    await rig.manager.remove("dev")
    assert not path.exists()
    assert list(rig.tokens_dir.iterdir()) == []


# -- lifetimes -----------------------------------------------------------------------------------


def left(reply: Reply, now: float) -> float:
    """Seconds of life the served credentials have at `now`."""
    expiration = time.mktime(time.strptime(reply.json()["Expiration"], "%Y-%m-%dT%H:%M:%SZ"))
    return expiration - time.timezone - now


async def test_ecs_never_serves_under_15_minutes(rig: Rig) -> None:
    """With renewal failing, the container endpoint serves while 15 min or more are left and
    then answers 503 with no credentials."""
    await rig.add()
    rig.sts.failure = THROTTLED
    served = []
    for _ in range(60):  # one simulated minute at a time, through the whole session
        rig.clock.advance(60)
        reply = await rig.ecs()
        if reply.status == 200:
            served.append(left(reply, rig.clock.now))
        else:
            assert reply.status == 503 and reply.has_no_credentials()
            assert reply.json()["Code"] in ("Throttling", "CredentialsUnavailable")
    assert served and min(served) >= ECS_MIN_TTL
    assert min(served) < ECS_MIN_TTL + 60  # it did serve right down to the floor


async def test_imds_never_serves_under_25_minutes_nor_expired(rig: Rig) -> None:
    """With renewal failing, the IMDS endpoint serves while 25 min or more are left, and
    answers an error afterwards, also once the credentials have expired."""
    await rig.add()
    rig.sts.failure = THROTTLED
    served, refused = [], 0
    for _ in range(70):
        rig.clock.advance(60)
        reply = await rig.imds(f"{IMDS_ROLES}/dev")
        if reply.status == 200:
            served.append(left(reply, rig.clock.now))
        else:
            refused += 1
            assert reply.status == 503 and reply.has_no_credentials()
    assert served and min(served) >= IMDS_MIN_TTL
    assert refused == 70 - len(served) and refused > 10


async def test_renewed_credentials_are_served_after_a_failure(rig: Rig) -> None:
    """When STS comes back, the next request gets fresh credentials with a full life."""
    await rig.add()
    rig.sts.failure = THROTTLED
    rig.clock.advance(50 * 60)
    assert (await rig.ecs()).status == 503
    rig.sts.failure = None
    rig.clock.advance(120)  # past the back-off
    reply = await rig.ecs()
    assert reply.status == 200 and left(reply, rig.clock.now) > 50 * 60


async def test_sts_refusal_is_502_with_stss_code(rig: Rig) -> None:
    """When STS refuses the role for good, the endpoint says so: 502 with AccessDenied."""
    await rig.add()
    rig.store.forget()
    rig.sts.failure = DENIED
    reply = await rig.ecs()
    assert reply.status == 502 and reply.json()["Code"] == "AccessDenied"
    assert reply.has_no_credentials()


async def test_endpoint_never_waits_long_for_sts(rig: Rig) -> None:
    """With STS hanging and nothing servable, a request is answered 503 after `wait`, well
    inside botocore's 2 s timeout; the fetch continues and serves the next request."""
    await rig.add()
    rig.store.forget()
    rig.sts.gate = threading.Event()
    assert rig.manager.settings.wait < 2  # botocore gives up on an endpoint after 2 s
    reply = await rig.ecs()  # answered while STS still hangs: it did not wait for STS
    assert reply.status == 503 and reply.json()["Code"] == "CredentialsUnavailable"
    rig.sts.gate.set()
    for _ in range(100):
        reply = await rig.ecs()
        if reply.status == 200:
            break
        await asyncio.sleep(0.02)
    assert reply.status == 200


# -- keeping warm, adding, replacing, removing ----------------------------------------------------


async def test_bindings_are_kept_warm_without_requests(rig: Rig) -> None:
    """A binding's entry is renewed on schedule though nobody asks, past the store's idle
    time; an ordinary entry asked for once is not."""
    await rig.add()
    plain = parse_request({"role_arn": ROLE, "role_session_name": "plain"})[0]
    await rig.store.get(plain, 300)
    calls = len(rig.sts.calls)
    for _ in range(8):  # four hours in 30 min steps
        rig.clock.advance(30 * 60)
        await asyncio.gather(*rig.store.tick())
    entries = {e.request.role_session_name: e for e in rig.store.entries()}
    assert entries["dev"].keep_warm
    assert len(rig.sts.calls) - calls >= 4  # only the binding renewed, at each half hour or so
    assert "plain" not in entries  # idle and expired: dropped
    creds = entries["dev"].credentials
    assert creds is not None and creds.expiration - rig.clock.now >= IMDS_MIN_TTL


async def test_tick_warms_a_binding_that_lost_its_credentials(rig: Rig) -> None:
    """After a forget (or a failed start), the manager's tick fetches the binding's
    credentials again without waiting for a request."""
    await rig.add()
    rig.store.forget()
    calls = len(rig.sts.calls)
    rig.manager.tick()
    task = rig.manager.get("dev").warm_task
    assert task is not None
    await task
    assert len(rig.sts.calls) == calls + 1
    assert rig.store.entries()[0].keep_warm


async def test_adding_an_existing_name_needs_replace(rig: Rig) -> None:
    """Adding a name twice is refused; --replace swaps the role and keeps the token."""
    await rig.add()
    token = rig.manager.get("dev").ring.current
    with pytest.raises(BindingExists, match="--replace"):
        await rig.add()
    await rig.add("dev", replace=True, role_session_name="renamed")
    assert rig.manager.get("dev").binding.request.role_session_name == "renamed"
    assert rig.manager.get("dev").ring.current == token
    assert (await rig.ecs()).status == 200


async def test_a_failing_role_is_not_added(rig: Rig) -> None:
    """If the role cannot be assumed, adding fails with STS's error and nothing is served."""
    rig.sts.failure = DENIED
    with pytest.raises(Exception, match="AccessDenied"):
        await rig.add()
    assert rig.manager.all() == []
    assert list(rig.tokens_dir.iterdir()) == []


async def test_removing_closes_the_imds_listener(rig: Rig) -> None:
    """After remove, the binding's IMDS port refuses connections, its container path is 403
    (as for any name without a valid token), and its entry is no longer kept warm."""
    served = await rig.add()
    port = served.imds.port  # type: ignore[union-attr]
    token = served.ring.current
    await rig.manager.remove("dev")
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    reply = await rig.ecs(token=token)
    assert reply.status == 403 and reply.has_no_credentials()
    assert not any(e.keep_warm for e in rig.store.entries())


async def test_shared_entry_stays_warm_while_one_binding_uses_it(rig: Rig) -> None:
    """Two bindings over the same role request share one entry; removing one keeps it warm."""
    binding = resolve(
        parse_spec("a", {"role_arn": ROLE, "role_session_name": "shared"}), parse_request
    )
    await rig.manager.add(binding)
    await rig.manager.add(Binding(replace(binding.spec, name="b"), binding.request))
    await rig.manager.remove("a")
    assert rig.store.entries()[0].keep_warm
    await rig.manager.remove("b")
    assert not rig.store.entries()[0].keep_warm


# -- IMDS ---------------------------------------------------------------------------------------


async def test_imds_v2_flow(rig: Rig) -> None:
    """PUT a token (plain text, no newline), list exactly the binding's name, get the
    credentials document with the exact fields and time format, and the -extended one."""
    await rig.add()
    port = rig.manager.get("dev").imds.port  # type: ignore[union-attr]
    put = await http(port, "PUT", IMDS_TOKEN_PATH, headers={IMDS_TTL_HEADER: "21600"})
    assert put.status == 200 and put.headers["content-type"].startswith("text/plain")
    token = put.body.decode()
    assert "\n" not in token
    listing = await rig.imds(IMDS_ROLES + "/", token=token)
    assert listing.status == 200 and listing.body == b"dev"
    doc = (await rig.imds(f"{IMDS_ROLES}/dev", token=token)).json()
    assert list(doc) == [
        "Code",
        "LastUpdated",
        "Type",
        "AccessKeyId",
        "SecretAccessKey",
        "Token",
        "Expiration",
    ]
    assert doc["Code"] == "Success" and doc["Type"] == "AWS-HMAC"
    assert ISO.fullmatch(doc["Expiration"]) and ISO.fullmatch(doc["LastUpdated"])
    extended = (await rig.imds(f"{IMDS_ROLES_EXTENDED}/dev", token=token)).json()
    assert extended == {**doc, "AccountId": ACCOUNT}


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("TTL 0", 400),
        ("TTL 21601", 400),
        ("no TTL", 400),
        ("TTL not a number", 400),
        ("X-Forwarded-For", 403),
        ("Origin on PUT", 403),
        ("bad Host on PUT", 403),
    ],
)
async def test_imds_token_put_refusals(rig: Rig, case: str, status: int) -> None:
    """Token PUTs with a bad TTL get 400; forwarded, cross-origin or misdirected ones 403;
    none of them gets a token."""
    served = await rig.add()
    port = served.imds.port  # type: ignore[union-attr]
    headers: dict[str, str | None] = {
        "TTL 0": {IMDS_TTL_HEADER: "0"},
        "TTL 21601": {IMDS_TTL_HEADER: "21601"},
        "no TTL": {},
        "TTL not a number": {IMDS_TTL_HEADER: "6h"},
        "X-Forwarded-For": {IMDS_TTL_HEADER: "60", "X-Forwarded-For": "203.0.113.9"},
        "Origin on PUT": {IMDS_TTL_HEADER: "60", "Origin": "http://evil.example"},
        "bad Host on PUT": {IMDS_TTL_HEADER: "60", "Host": f"169.254.169.254:{port}"},
    }[case]
    reply = await http(port, "PUT", IMDS_TOKEN_PATH, headers=headers)
    assert reply.status == status, reply.body
    assert set(reply.json()) == {"Code", "Message"}


async def test_imds_gets_need_a_valid_token(rig: Rig) -> None:
    """GETs without a token, with a forged one, an expired one, or another binding's token
    get 401 and no credentials; an unknown role name gets 404."""
    await rig.add("dev")
    await rig.add("other")
    path = f"{IMDS_ROLES}/dev"
    other = await rig.imds_token("other")
    short = await rig.imds_token("dev", ttl="1")
    for token in (None, "forged", other):
        reply = await rig.imds(path, token=token)
        assert reply.status == 401 and reply.has_no_credentials(), token
    assert (await rig.imds(IMDS_ROLES + "/", token=None)).status == 401
    assert (await rig.imds(path, token=short)).status == 200
    rig.clock.advance(1)
    assert (await rig.imds(path, token=short)).status == 401
    unknown = await rig.imds(f"{IMDS_ROLES}/admin")
    assert unknown.status == 404 and unknown.has_no_credentials()
    assert (await rig.imds("/latest/meta-data/ami-id")).status == 404


async def test_imds_v1_only_when_enabled(rig: Rig) -> None:
    """A binding with imds_v1 answers GETs without a token; others do not."""
    await rig.add("v1", imds_v1=True)
    await rig.add("v2")
    assert (await rig.imds(f"{IMDS_ROLES}/v1", name="v1", token=None)).status == 200
    assert (await rig.imds(f"{IMDS_ROLES}/v2", name="v2", token=None)).status == 401


async def test_imds_flood_gets_429(rig: Rig) -> None:
    """Token PUTs past the rate limit get 429 and no token."""
    rig.manager = await new_manager(rig, rate_limit=1.0, rate_burst=2)
    served = await rig.add()
    port = served.imds.port  # type: ignore[union-attr]
    statuses = []
    for _ in range(4):
        reply = await http(port, "PUT", IMDS_TOKEN_PATH, headers={IMDS_TTL_HEADER: "60"})
        statuses.append(reply.status)
    assert statuses == [200, 200, 429, 429]


# -- listeners -------------------------------------------------------------------------------


async def test_listeners_bind_loopback_only(rig: Rig) -> None:
    """The IMDS listeners are bound to 127.0.0.1 and ::1 (where localhost may resolve) and
    nothing else; the container listener to those and the docker network's gateway,
    169.254.170.2 (none with docker = false)."""
    loopback = ["127.0.0.1", *(["::1"] if has_ipv6_loopback() else [])]
    served = await rig.add()
    assert rig.manager.ecs_listener is not None
    assert [a for a, _ in rig.manager.ecs_listener.addresses()] == [*loopback, "169.254.170.2"]
    assert served.imds is not None
    assert [a for a, _ in served.imds.addresses()] == loopback
    rig.manager = await new_manager(rig, docker=False)
    await rig.add()
    assert rig.manager.ecs_listener is not None
    assert [a for a, _ in rig.manager.ecs_listener.addresses()] == loopback


def has_ipv6_loopback() -> bool:
    """True when this host has ::1 (IPv6 is on)."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_ipv6_loopback_when_asked(rig: Rig) -> None:
    """With bind = ["127.0.0.1", "::1"] both loopbacks serve on one port, and [::1]:PORT is an
    allowed Host."""
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    rig.manager = await new_manager(rig, bind=("127.0.0.1", "::1"))
    await rig.add()
    listener = rig.manager.ecs_listener
    assert listener is not None
    assert sorted(a for a, _ in listener.addresses()) == ["127.0.0.1", "169.254.170.2", "::1"]
    token = rig.manager.get("dev").ring.current
    reply = await http(
        rig.ecs_port,
        "GET",
        "/v1/credentials/dev",
        headers={"Authorization": token, "Host": f"[::1]:{rig.ecs_port}"},
        address="::1",
    )
    assert reply.status == 200


async def test_non_loopback_is_refused_without_the_flag(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """Listening on a non-loopback address needs allow_non_loopback, and then logs a warning."""
    with pytest.raises(InvalidRequest, match="allow_non_loopback"):
        EndpointManager(rig.store, settings(bind=("0.0.0.0",)), rig.tokens_dir)
    with caplog.at_level(logging.WARNING):
        EndpointManager(
            rig.store, settings(bind=("0.0.0.0",), allow_non_loopback=True), rig.tokens_dir
        )
    assert "not loopback" in caplog.text


async def test_port_in_use_is_a_clear_error(rig: Rig) -> None:
    """A container port held by another program makes adding fail with a message naming the
    port and the setting to change."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        rig.manager = await new_manager(rig, port=holder.getsockname()[1])
        with pytest.raises(ListenError, match=r"\[endpoints\]"):
            await rig.add()
    finally:
        holder.close()


async def test_slow_headers_are_cut_off(rig: Rig) -> None:
    """A connection that does not finish its request head within idle_timeout is closed
    (slowloris), as is one that stays idle."""
    rig.manager = await new_manager(rig, idle_timeout=0.3)
    await rig.add()
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.ecs_port)
    writer.write(b"GET /v1/credentials/dev HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    writer.close()


async def test_errors_never_contain_secrets(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Refusals log without the token, and the error bodies never echo it."""
    await rig.add()
    token = rig.manager.get("dev").ring.current
    with caplog.at_level(logging.DEBUG):
        bad = token[::-1]
        reply = await rig.ecs(token=bad)
        assert reply.status == 403
    assert token not in caplog.text and bad not in caplog.text
    assert bad.encode() not in reply.body
    assert token not in repr(rig.manager.get("dev"))


async def test_requests_without_a_token_are_logged_once(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """A container request with no token gets 401 naming the variables that carry it, and the
    daemon's log says so once (a flood adds no lines), so an SDK that sends none is found."""
    await rig.add()
    with caplog.at_level(logging.WARNING, logger="rolecached"):
        for _ in range(5):
            reply = await rig.ecs(token=None)
            assert reply.status == 401 and reply.has_no_credentials()
    assert "AWS_CONTAINER_AUTHORIZATION_TOKEN" in reply.json()["Message"]
    lines = [r.getMessage() for r in caplog.records if "without a token" in r.getMessage()]
    assert lines == [f"refused container requests without a token from uid {os.getuid()}"]


# -- real botocore in front of the endpoints, for a simulated day ----------------------------


class MotoSts:
    """The real STS caller against moto, with the lifetime moved onto the fake clock: moto's
    keys are real (GetCallerIdentity knows them), their expiry is simulated."""

    def __init__(self, url: str) -> None:
        from rolecached.sources.credsources import StaticSource
        from rolecached.sts import StsCaller

        self.caller = StsCaller(url, StaticSource("AKIASOURCEKEY0000001", "source-secret"))
        self.failure: StsFailure | None = None
        self.calls = 0

    def __call__(
        self, request: RoleRequest, now: float, signer: Any = None, code: Any = None
    ) -> Credentials:
        self.calls += 1
        if self.failure is not None:
            raise StsCallFailed(self.failure)
        creds = self.caller.call(request, now, signer, code)
        return replace(creds, issued_at=now, expiration=now + request.duration_seconds)


@dataclass
class SdkRig:
    """A Rig over moto, with botocore's clock tied to the fake clock."""

    rig: Rig
    sts: MotoSts
    moto_url: str
    served_left: list[float] = field(default_factory=list)


@pytest.fixture
async def sdk_rig(
    tmp_path: Path, moto: Any, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SdkRig]:
    """Store and endpoints on a fake clock that botocore shares, STS from moto, and an
    environment holding nothing but what the endpoint hand-off sets."""
    import datetime

    import botocore.compat
    import botocore.credentials
    import botocore.utils
    from dateutil.tz import tzlocal

    clock = FakeClock(time.time())
    sts = MotoSts(moto.url)
    store = Store(sts, Settings(idle_ttl=600), clock=clock, sleep=no_sleep)
    tokens = tmp_path / "tokens"
    tokens.mkdir(mode=0o700)
    manager = endpoint_manager(store, tokens, clock)
    sdk = SdkRig(Rig(clock, FakeSts(), store, manager, tokens), sts, moto.url)

    # botocore's clocks, moved with ours: the refresh decisions (15/10 min) and the IMDS
    # expiry extension are then botocore's own code at the simulated time.
    def local_now() -> datetime.datetime:
        return datetime.datetime.fromtimestamp(clock(), tzlocal())

    def utc_now(remove_tzinfo: bool = True) -> datetime.datetime:
        now = datetime.datetime.fromtimestamp(clock(), datetime.UTC)
        return now.replace(tzinfo=None) if remove_tzinfo else now

    init = botocore.credentials.RefreshableCredentials.__init__
    defaults = tuple(
        local_now if d is botocore.credentials._local_now else d
        for d in init.__defaults__  # type: ignore[union-attr]
    )
    monkeypatch.setattr(init, "__defaults__", defaults)
    monkeypatch.setattr(botocore.utils, "get_current_datetime", utc_now)
    monkeypatch.setattr(botocore.utils.ContainerMetadataFetcher, "SLEEP_TIME", 0)

    # What a served program sees: no keys, no profile, no config files.
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    # Every answer the endpoints give (the handler's, the lane's, IMDS's: each is counted by
    # handed_out), as seconds of life left at the simulated time.
    count = manager.handout.handed_out

    def recorded(served: Served, creds: Credentials, *args: Any, **kwargs: Any) -> None:
        sdk.served_left.append(creds.expiration - clock())
        count(served, creds, *args, **kwargs)

    monkeypatch.setattr(manager.handout, "handed_out", recorded)
    yield sdk
    await manager.close()
    await store.close()


async def point_sdk_at(sdk: SdkRig, monkeypatch: pytest.MonkeyPatch, imds: bool) -> None:
    """Add binding "dev" and set the variables `rolecache endpoint env` would print."""
    from rolecache.commands import endpoint

    served = await sdk.rig.add("dev")
    variables, unset = endpoint.handoff(sdk.rig.manager.summary(served), imds, os.environ)
    for name in unset:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def identity_caller(moto_url: str) -> Any:
    """A plain boto3.Session() STS client (credentials from the environment's chain), and a
    function that calls GetCallerIdentity with it and returns the caller's ARN and the
    credential provider's method."""
    import boto3

    session = boto3.Session()
    client = session.client("sts", endpoint_url=moto_url)

    def call() -> tuple[str, str]:
        arn = client.get_caller_identity()["Arn"]
        return arn, session.get_credentials().method

    return call


@pytest.mark.parametrize(
    ("imds", "method", "floor"),
    [(False, "container-role", ECS_MIN_TTL), (True, "iam-role", IMDS_MIN_TTL)],
)
async def test_boto3_works_for_a_simulated_day(
    sdk_rig: SdkRig,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    imds: bool,
    method: str,
    floor: float,
) -> None:
    """One boto3 session, never restarted, calls STS every 10 simulated minutes for 24 h
    while the store renews underneath; botocore refreshes from the endpoint many times, never
    gets credentials under the floor, and never stretches them (IMDS)."""
    rig = sdk_rig.rig
    await point_sdk_at(sdk_rig, monkeypatch, imds)
    call = await asyncio.to_thread(identity_caller, sdk_rig.moto_url)
    expected = f"arn:aws:sts::{ACCOUNT}:assumed-role/app/dev"
    with caplog.at_level(logging.INFO, logger="botocore"):
        for _ in range(24 * 6):
            rig.clock.advance(600)
            await asyncio.gather(*rig.store.tick())
            rig.manager.tick()
            arn, used = await asyncio.to_thread(call)
            assert arn == expected and used == method
    assert len(sdk_rig.served_left) >= 24  # botocore refetched at least hourly
    assert min(sdk_rig.served_left) >= floor
    assert sdk_rig.sts.calls >= 40  # about one renewal per half hour, all in the background
    assert "expiration extension" not in caplog.text


@pytest.mark.parametrize("imds", [False, True])
async def test_botocore_raises_rather_than_use_expired_credentials(
    sdk_rig: SdkRig, monkeypatch: pytest.MonkeyPatch, imds: bool
) -> None:
    """When renewal keeps failing, the endpoint stops serving at its floor and botocore raises
    once its credentials near expiry, instead of signing with expired ones."""
    import botocore.exceptions

    rig = sdk_rig.rig
    await point_sdk_at(sdk_rig, monkeypatch, imds)
    call = await asyncio.to_thread(identity_caller, sdk_rig.moto_url)
    await asyncio.to_thread(call)
    sdk_rig.sts.failure = THROTTLED
    outcomes = []
    for _ in range(12):  # two simulated hours, 10 min at a time
        rig.clock.advance(600)
        await asyncio.gather(*rig.store.tick(), return_exceptions=True)  # failed renewals
        try:
            await asyncio.to_thread(call)
            outcomes.append("ok")
        except (botocore.exceptions.CredentialRetrievalError, RuntimeError):
            outcomes.append("raised")
    assert outcomes[0] == "ok" and "raised" in outcomes
    # Once it raises it keeps raising: nothing expired is ever used after that.
    assert set(outcomes[outcomes.index("raised") :]) == {"raised"}
    assert min(sdk_rig.served_left) >= (IMDS_MIN_TTL if imds else ECS_MIN_TTL)


async def test_forget_drops_the_rendered_container_answer(rig: Rig) -> None:
    """Once the binding's session is forgotten, the container answer rendered from it (its
    secret inside) is no longer held; the next request renders fresh credentials."""
    served = await rig.add()
    first = await rig.ecs()
    assert served.rendered is not None and SECRET_MARK.encode() in served.rendered.body
    rig.store.forget()
    assert served.rendered is None
    again = await rig.ecs()
    assert again.status == 200
    assert again.json()["SecretAccessKey"] != first.json()["SecretAccessKey"]


@pytest.mark.parametrize("variable_only", [False, True])
async def test_botocore_with_the_token_variables_across_rotations(
    sdk_rig: SdkRig, monkeypatch: pytest.MonkeyPatch, variable_only: bool
) -> None:
    """With both token variables set (botocore reads the file), and with only
    AWS_CONTAINER_AUTHORIZATION_TOKEN (as SDKs from before late 2023 read it), one botocore
    session keeps refetching credentials across two rotations, each past its grace."""
    rig = sdk_rig.rig
    await point_sdk_at(sdk_rig, monkeypatch, imds=False)
    assert os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    if variable_only:
        monkeypatch.delenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    call = await asyncio.to_thread(identity_caller, sdk_rig.moto_url)
    first_token = rig.manager.get("dev").token_file.read_text()
    await asyncio.to_thread(call)
    fetched = len(sdk_rig.served_left)
    for step in range(1, 25):  # four simulated hours, 10 min at a time
        rig.clock.advance(600)
        if step % 6 == 0:
            rig.manager.rotate("dev")
        await asyncio.gather(*rig.store.tick())
        arn, method = await asyncio.to_thread(call)
        assert method == "container-role" and arn.endswith("assumed-role/app/dev")
    assert len(sdk_rig.served_left) >= fetched + 3  # refetched after the rotations
    assert (await rig.ecs(token=first_token)).status == 403


# -- every hand-out audited -----------------------------------------------------------------


def test_user_agents_are_cleaned_and_cut() -> None:
    """A User-Agent loses control and format characters (escapes, CR LF, NUL, bidi
    overrides) and is cut to a sane length with a marker."""
    from rolecached.observe.audit import AGENT_MAX, clean_agent

    assert clean_agent("aws-cli/2.9.19 Python/3.11.2") == "aws-cli/2.9.19 Python/3.11.2"
    assert clean_agent("a\x1b[31mb\r\nserved x to y\x00\u202ez\x7f\x85") == "a[31mbserved x to yz"
    long = clean_agent("x" * 10_000)
    assert len(long) == AGENT_MAX and long.endswith("...")
    assert clean_agent("\t\x01") == ""


async def test_container_and_imds_hand_outs_are_audited_and_counted(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """Each container hand-out (the fast lane's and aiohttp's) and each IMDS hand-out counts
    a hit and writes one audit line naming the binding, the client address and uid and the
    cleaned User-Agent; refusals write none and count nothing."""
    await rig.add()
    await asyncio.gather(*rig.store.tick())
    entry = next(iter(rig.store.entries()))
    hits = entry.hits
    agent = "Boto3/1.40 md/Botocore#1.40 " + "y" * 300
    with caplog.at_level(logging.INFO, logger="rolecached.audit"):
        assert (await rig.ecs(**{"User-Agent": agent})).status == 200  # the fast lane
        # Content-Type makes the lane hand the request to aiohttp.
        slow = await rig.ecs(**{"User-Agent": "js\u202e-sdk/3", "Content-Type": "text/plain"})
        assert slow.status == 200
        assert (await rig.ecs(token="wrong")).status == 403
        reply = await rig.imds(f"{IMDS_ROLES}/dev")
        assert reply.status == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "rolecached.audit"]
    assert len(lines) == 3
    uid = f"127.0.0.1 uid {os.getuid()}"
    assert f"{uid} via container endpoint dev (Boto3/1.40 md/Botocore#1.40 yyy" in lines[0]
    assert "y" * 200 not in lines[0]
    assert f"{uid} via container endpoint dev (js-sdk/3)" in lines[1]
    assert f"{uid} via IMDS dev (" in lines[2]
    assert entry.hits == hits + 3
    assert entry.last_requester is not None and "via IMDS dev" in entry.last_requester
    token = rig.manager.get("dev").ring.current
    assert all(token not in line and SECRET_MARK not in line for line in lines)


# -- bindings that last -----------------------------------------------------------------------


async def restarted(rig: Rig, state: Path) -> EndpointManager:
    """Stop the rig's manager cleanly and start a new one on the same state file and token
    folder, as a daemon restart does."""
    await rig.manager.close()
    manager = EndpointManager(
        rig.store,
        settings(),
        rig.tokens_dir,
        clock=rig.clock,
        state_file=state,
        resolver=parse_request,
    )
    rig.extra.append(manager)
    await manager.start()
    return manager


async def test_runtime_bindings_come_back_with_their_ports_and_tokens(
    rig: Rig, tmp_path: Path
) -> None:
    """After a restart a runtime binding is served again on the same container and IMDS
    ports, and both the token file's token and the container token handed out before still
    get credentials; a removed binding does not come back."""
    state = tmp_path / "state" / "rolecache-endpoints.json"
    rig.manager.state_file = state
    rig.manager.resolver = parse_request
    await rig.manager.start()
    await rig.add()
    await rig.add("gone")
    await rig.manager.remove("gone")
    before = rig.manager.summary(rig.manager.get("dev"))
    file_token = rig.manager.get("dev").token_file.read_text()
    container = rig.manager.get("dev").container_file.read_text()
    rig.manager = await restarted(rig, state)
    assert [s.binding.name for s in rig.manager.all()] == ["dev"]
    after = rig.manager.summary(rig.manager.get("dev"))
    assert (after["ecs_url"], after["imds_url"]) == (before["ecs_url"], before["imds_url"])
    assert (await rig.ecs(token=file_token)).status == 200
    assert (await rig.ecs(token=container)).status == 200
    assert (await rig.imds(f"{IMDS_ROLES}/dev")).status == 200


async def test_a_container_port_taken_at_restart_is_waited_for(rig: Rig, tmp_path: Path) -> None:
    """When the container port is taken as the manager starts again, its bindings are kept
    (listed as waiting, still in the state file) and, once the port is free, served on it
    with the tokens handed out before: a program of ours held it, so nothing is revoked."""
    state = tmp_path / "state" / "rolecache-endpoints.json"
    rig.manager.state_file = state
    rig.manager.resolver = parse_request
    await rig.manager.start()
    await rig.add()
    port = rig.ecs_port
    container = rig.manager.get("dev").container_file.read_text()
    await rig.manager.close()
    taker = socket.socket()
    taker.bind(("127.0.0.1", port))
    taker.listen()
    with taker:
        rig.manager = await restarted(rig, state)
        waiting = f"waiting for port {port}, held by uid {os.getuid()}"
        assert rig.manager.summary(rig.manager.get("dev"))["waiting"] == waiting
        assert rig.manager.status()["endpoints_waiting"] == f"container endpoint: {waiting}"
        saved = json.loads(state.read_text())
        assert saved["container_port"] == port and saved["bindings"][0]["name"] == "dev"
        await rig.manager.retry_waiting()
        assert rig.manager.ecs_port is None  # still taken
    await rig.manager.retry_waiting()
    assert rig.ecs_port == port and rig.manager.summary(rig.manager.get("dev"))["waiting"] is None
    assert "endpoint_alerts" not in rig.manager.status()
    assert (await rig.ecs(token=container)).status == 200


async def test_state_file_is_private_and_holds_only_digests(rig: Rig, tmp_path: Path) -> None:
    """The state file is 0600 in a 0700 folder and holds the SHA-256 digests of the container
    token and the capability, never them nor the token file's token; a container token revoked
    before a restart stays revoked after it."""
    import hashlib

    state = tmp_path / "state" / "rolecache-endpoints.json"
    rig.manager.state_file = state
    rig.manager.resolver = parse_request
    await rig.manager.start()
    await rig.add()
    served = rig.manager.get("dev")
    revoked = served.container_file.read_text()
    rig.manager.rotate("dev", containers=True)
    container = served.container_file.read_text()
    text = state.read_text()
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o700
    capability = served.capability_file.read_text()
    assert hashlib.sha256(container.encode()).hexdigest() in text
    assert hashlib.sha256(capability.encode()).hexdigest() in text
    secrets = (container, revoked, capability, served.token_file.read_text(), served.ring.current)
    for secret in secrets:
        assert secret not in text
    rig.manager = await restarted(rig, state)
    assert (await rig.ecs(token=revoked)).status == 403
    assert (await rig.ecs(token=container)).status == 200


async def test_a_damaged_state_file_is_set_aside(rig: Rig, tmp_path: Path) -> None:
    """A state file that is not ours is renamed *.bad and the manager starts without it."""
    state = tmp_path / "rolecache-endpoints.json"
    state.write_text('{"version": 1, "bindings": [{"name": 3}]}')
    manager = EndpointManager(
        rig.store, settings(), rig.tokens_dir, clock=rig.clock, state_file=state
    )
    rig.extra.append(manager)
    await manager.start()
    assert manager.all() == []
    assert state.with_name(state.name + ".bad").exists()
