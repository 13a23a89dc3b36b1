"""SIGHUP applies every reloaded [daemon] setting at once, the STS concurrency cap and its
thread pool included, and says in the log what it applied and what needs a restart."""

import asyncio
import random
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

from rolecached.core.store import Settings, Store
from tests.daemonkit import Moto, base_env, start_daemon
from tests.kit import FakeClock, FakeSleep, FakeSts, role


async def most_in_flight(store: Store, sts: FakeSts, keys: int, label: str) -> int:
    """Ask for `keys` cold keys at once, with STS held until all that may start have; the
    most STS calls that were in flight together."""
    sts.max_running = 0
    sts.gate = threading.Event()
    tasks = [asyncio.create_task(store.get(role(f"cap-{label}-{i}"), 0.0)) for i in range(keys)]
    for _ in range(200):  # let every call the cap admits reach the fake STS
        await asyncio.sleep(0.005)
        if sts.running >= store.settings.max_concurrent_sts:
            break
    sts.gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    return sts.max_running


async def test_a_new_sts_cap_applies_to_the_next_calls() -> None:
    """Lowering max_concurrent_sts from 4 to 2 and raising it to 6 takes effect for the next
    calls; apply_settings names what changed."""
    clock = FakeClock()
    sts = FakeSts()
    settings = Settings(max_concurrent_sts=4)
    store = Store(sts, settings, clock=clock, sleep=FakeSleep(clock), rng=random.Random(1))
    try:
        assert await most_in_flight(store, sts, 8, "a") == 4
        assert store.apply_settings(replace(settings, max_concurrent_sts=2)) == [
            "max_concurrent_sts"
        ]
        assert await most_in_flight(store, sts, 8, "b") == 2
        changed = store.apply_settings(replace(settings, max_concurrent_sts=6, idle_ttl=60.0))
        assert sorted(changed) == ["idle_ttl", "max_concurrent_sts"]
        assert await most_in_flight(store, sts, 8, "c") == 6
        assert store.settings.idle_ttl == 60.0
        assert store.apply_settings(store.settings) == []
    finally:
        await store.close()


def test_sighup_logs_what_it_applied_and_what_needs_a_restart(tmp_path: Path, moto: Moto) -> None:
    """After SIGHUP the log names the [daemon] settings applied and says [endpoints] needs a
    restart; the daemon still serves."""
    config = tmp_path / "rolecached.toml"
    config.write_text("[daemon]\nmax_concurrent_sts = 2\n")
    env = base_env(tmp_path, moto.url)
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    daemon = start_daemon(tmp_path, env, "--config", str(config))
    try:
        assert daemon.client("status").returncode == 0  # serving: its SIGHUP handler is set
        config.write_text("[daemon]\nmax_concurrent_sts = 5\nrequest_timeout = 7\n")
        daemon.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "SIGHUP: reloaded" not in daemon.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)  # waiting for the line, not asserting a time
        line = next(x for x in daemon.log.read_text().splitlines() if "SIGHUP: reloaded" in x)
        assert "applied now: max_concurrent_sts, request_timeout" in line
        assert "[endpoints] is read at start-up only" in line
        result = daemon.client("env", "--role-arn", "arn:aws:iam::123456789012:role/hup",
                               "--role-session-name", "hup")  # fmt: skip
        assert result.returncode == 0, result.stderr
    finally:
        assert daemon.stop() == 0
