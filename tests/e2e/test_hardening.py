"""Lifecycle hardening: reloading refused source credentials, the session cap, the audit
trail, slow and surplus connections, and SIGHUP."""

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from rolecached.core.request import RoleRequest
from rolecached.core.store import Settings, Store
from rolecached.errors import StsFailure
from rolecached.front.gate import Caps, Gate
from tests.daemonkit import BIN, Daemon, Moto, base_env, start_daemon, unique_role
from tests.kit import FakeSts, serving
from tests.strict_sts import StsProxy, sts_error_xml

ROLE = "arn:aws:iam::123456789012:role/hard"


async def test_refused_source_credentials_are_reloaded_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ExpiredToken from STS makes the store reload the source credentials and try again
    once, saying so in the log, before reporting anything."""
    reloads: list[int] = []
    sts = FakeSts(
        script=[
            StsFailure(
                "ExpiredToken", "The security token included in the request is expired", False
            )
        ]
    )
    store = Store(sts, reload_sources=lambda: reloads.append(1))
    with caplog.at_level(logging.WARNING):
        creds = await store.get(RoleRequest(ROLE, "s1"), 300)
    assert creds is sts.issued[0]
    assert reloads == [1] and len(sts.calls) == 2
    assert "reloading them from their chain" in caplog.text
    await store.close()


async def test_source_refused_twice_is_reported_after_one_reload() -> None:
    """If the reloaded credentials are refused too, the caller gets STS's error; one reload."""
    reloads: list[int] = []
    refused = StsFailure("InvalidClientTokenId", "The security token is invalid", False)
    store = Store(FakeSts(script=[refused] * 3), reload_sources=lambda: reloads.append(1))
    with pytest.raises(Exception, match="InvalidClientTokenId"):
        await store.get(RoleRequest(ROLE, "s2"), 300)
    assert reloads == [1]
    await store.close()


async def test_session_cap_drops_the_least_recently_used(caplog: pytest.LogCaptureFixture) -> None:
    """Past max_sessions the entry asked for longest ago is dropped (logged), never one kept
    warm for a container binding."""
    now = [1000.0]
    store = Store(FakeSts(), Settings(max_sessions=3), clock=lambda: now[0])
    pinned = RoleRequest(ROLE, "pinned")
    store.pin(pinned)
    for name in ("pinned", "a", "b"):
        await store.get(RoleRequest(ROLE, name), 300)
        now[0] += 10
    await store.get(RoleRequest(ROLE, "b"), 300)  # b used again: a is now the oldest unpinned
    with caplog.at_level(logging.WARNING):
        await store.get(RoleRequest(ROLE, "c"), 300)
    names = {e.request.role_session_name for e in store.entries()}
    assert names == {"pinned", "b", "c"}
    assert "session cap (3) reached: dropped" in caplog.text
    await store.close()


def test_every_hand_out_is_audited_with_its_requester(daemon: Daemon) -> None:
    """Each credential handed out (through aiohttp and through the fast lane) is logged with
    the requesting process's pid, uid and command and the program that ran it (here a
    script), and `list` shows the last requester."""
    role = unique_role("audit")
    script = daemon.tmp / "deploy.sh"
    client = f"{BIN / 'rolecache'} env --role-arn {role} --role-session-name aud"
    # Twice (the second is a repeat, which the fast lane answers), and not as the script's
    # last command, which the shell might exec in its own place.
    script.write_text(f"#!/bin/sh\n{client} >/dev/null\n{client} >/dev/null\ntrue\n")
    script.chmod(0o755)
    assert subprocess.run([str(script)], env=daemon.env, timeout=60).returncode == 0
    table = daemon.client("list").stdout
    daemon.stop()
    served = [line for line in daemon.log.read_text().splitlines() if f"served {role}" in line]
    assert len(served) == 2
    who = re.compile(rf"pid \d+ uid {os.getuid()} \(rolecache, from deploy\.sh pid \d+\)")
    assert all(who.search(line) and "key ASIA..." in line for line in served), served
    assert "LAST REQUESTER" in table and "(rolecache, from deploy.sh pid" in table


@pytest.fixture
async def socket_api(tmp_path: Path) -> AsyncIterator[tuple[Path, Gate]]:
    """The real listener in-process, with tight connection limits."""
    gate = Gate(os.getuid(), Caps(unix=250, tcp_total=64, per_listener=32, per_peer=16))
    store = Store(FakeSts())
    path = tmp_path / "run" / "s.sock"
    async with serving(path, store, gate=gate, arrival_timeout=REQUEST_TIMEOUT) as path:
        yield path, gate


REQUEST_TIMEOUT = 1.0
STATUS = b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Yield to the loop until `condition` holds (the server's side of the connections)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.001)


async def request(path: Path, raw: bytes = STATUS) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(raw)
    answer = await reader.read()
    writer.close()
    return answer


async def test_dribbling_clients_are_cut_off_and_do_not_block_others(socket_api) -> None:
    """200 clients that send half a request (slowloris) hold no slot past the request
    timeout, and a normal request made while they dribble is answered at once."""
    path, gate = socket_api
    dribblers = [await asyncio.open_unix_connection(str(path)) for _ in range(200)]
    for _, writer in dribblers:
        writer.write(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")  # never finished
    await until(lambda: gate.open_connections == 200)
    assert (await request(path)).startswith(b"HTTP/1.1 200")
    assert gate.open_connections == 200  # answered while every dribbler still held its slot
    for reader, _ in dribblers:  # the server closes each without an answer
        assert await asyncio.wait_for(reader.read(), 5) == b""
    assert gate.open_connections == 0


async def test_connections_beyond_the_cap_are_refused(socket_api) -> None:
    """With the socket's cap of connections open, one more connection is closed unanswered;
    once a slot is free, requests are served again."""
    path, gate = socket_api
    held = [await asyncio.open_unix_connection(str(path)) for _ in range(gate.caps.unix)]
    await until(lambda: gate.open_connections == gate.caps.unix)
    try:
        answer = await request(path)
    except ConnectionError:
        answer = b""  # refused with a reset: no answer at all either
    assert answer == b""
    for _, writer in held:
        writer.close()
    await until(lambda: gate.open_connections == 0)
    assert (await request(path)).startswith(b"HTTP/1.1 200")


def test_sighup_reloads_config_and_keeps_the_cache(tmp_path: Path, moto: Moto) -> None:
    """SIGHUP re-reads the config file and the source credentials without dropping cached
    sessions or calling STS."""
    config = tmp_path / "rolecached.toml"
    config.write_text("[daemon]\nnegative_ttl = 10\n")
    env = base_env(tmp_path, moto.url)
    daemon = start_daemon(tmp_path, env, "--config", str(config))
    try:
        role = unique_role("hup")
        first = daemon.client("env", "--role-arn", role, "--role-session-name", "hup")
        config.write_text("[daemon]\nnegative_ttl = 42\n")
        daemon.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "SIGHUP: reloaded" not in daemon.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "negative_ttl=42" in daemon.log.read_text()
        second = daemon.client("env", "--role-arn", role, "--role-session-name", "hup")
        assert second.stdout == first.stdout
        assert moto.assume_role_calls(role) == 1
        assert json.loads(daemon.client("list", "--json").stdout)["sessions"][0]["role_arn"] == role
    finally:
        assert daemon.stop() == 0


def test_expired_source_token_is_reloaded_end_to_end(tmp_path: Path, sts_proxy: StsProxy) -> None:
    """When STS answers ExpiredToken for the source credentials, the daemon reloads them and
    the client still gets credentials."""
    refused = []

    def expire_once(form: dict[str, str]) -> tuple[int, str] | None:
        if form.get("Action") == "AssumeRole" and not refused:
            refused.append(1)
            return 403, sts_error_xml(
                "ExpiredToken", "The security token included in the request is expired"
            )
        return None

    sts_proxy.rules.append(expire_once)
    daemon = start_daemon(tmp_path, base_env(tmp_path, sts_proxy.url))
    try:
        result = daemon.client(
            "env", "--role-arn", unique_role("exp"), "--role-session-name", "exp"
        )
        assert result.returncode == 0, result.stderr
        assert sts_proxy.calls.count("AssumeRole") == 2
        assert "reloading them from their chain" in daemon.log.read_text()
    finally:
        daemon.stop()
