"""Suspend: idleness counts awake time (a clock that stops while the machine sleeps), expiry
counts wall time. A store on a fake wall clock and a fake awake clock, nothing sleeps."""

import asyncio
import random

from rolecached.core.store import Settings, Store
from tests.kit import T0, FakeClock, FakeSleep, FakeSts, role

HOUR = 3600.0
MIN_TTL = 300.0


def make_store(wall: FakeClock, awake: FakeClock, sts: FakeSts) -> Store:
    """A store with the default idle_ttl (8 h) on the two fake clocks."""
    return Store(
        sts,
        Settings(),
        clock=wall,
        awake_clock=awake,
        sleep=FakeSleep(wall),
        rng=random.Random(3),
    )


async def tick(store: Store) -> None:
    """One renewer tick, awaited to the end."""
    await asyncio.gather(*store.tick(), return_exceptions=True)


async def test_entries_used_before_a_10_hour_suspend_are_renewed_not_dropped() -> None:
    """Used just before a 10-hour suspend (longer than idle_ttl on the wall clock, zero
    awake seconds), entries are renewed on the first tick after waking; their old
    credentials, expired by wall time, are never served."""
    wall, awake, sts = FakeClock(), FakeClock(0.0), FakeSts()
    store = make_store(wall, awake, sts)
    keys = [role(f"suspend-{i}") for i in range(3)]
    try:
        held = [await store.get(key, MIN_TTL) for key in keys]
        wall.advance(10 * HOUR)  # suspended: the awake clock stands still
        assert all(store.peek(key, 0) is None for key in keys)  # expired by wall time
        await tick(store)
        assert len(store.entries()) == 3
        assert sts.per_key == {key: 2 for key in keys}
        for key, old in zip(keys, held, strict=True):
            fresh = store.peek(key, MIN_TTL)
            assert fresh is not None and fresh is not old
            assert fresh.expiration == wall.now + HOUR
    finally:
        await store.close()


async def test_entries_idle_for_10_awake_hours_are_dropped() -> None:
    """The control: 10 hours awake with nobody asking is over idle_ttl, so the entries are
    not renewed and are dropped once expired."""
    wall, awake, sts = FakeClock(), FakeClock(0.0), FakeSts()
    store = make_store(wall, awake, sts)
    try:
        await store.get(role("idle"), MIN_TTL)
        for _ in range(10 * 12):  # ten hours of 5-minute steps, awake
            wall.advance(300)
            awake.advance(300)
            await tick(store)
        assert store.entries() == []
        # Renewed while in use, then no more once idle_ttl (8 h) of awake time had passed.
        assert 1 < len(sts.calls) <= 1 + (8 * HOUR) // 1620 + 1
        assert all(c.now <= T0 + 8 * HOUR + 300 for c in sts.calls)
    finally:
        await store.close()


async def test_idleness_before_a_suspend_still_counts() -> None:
    """Awake time before the suspend counts: 7.5 awake hours unused, a 10-hour suspend, then
    31 awake minutes is over idle_ttl, so the entry is dropped rather than renewed."""
    wall, awake, sts = FakeClock(), FakeClock(0.0), FakeSts()
    store = make_store(wall, awake, sts)
    try:
        await store.get(role("dozy"), MIN_TTL)
        for step in range(15):  # 7.5 awake hours in half-hour steps
            wall.advance(1800)
            awake.advance(1800)
            await tick(store)
            assert store.entries(), step
        wall.advance(10 * HOUR)
        wall.advance(31 * 60)
        awake.advance(31 * 60)
        calls = len(sts.calls)
        await tick(store)
        assert store.entries() == []
        assert len(sts.calls) == calls
    finally:
        await store.close()
