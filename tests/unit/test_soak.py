"""A simulated day at store level: 50 keys with 1 h sessions, requests at random times, the
renewer ticking every 5 s, idle keys, and the wall clock jumping forward (suspend) and back.
Time is a fake clock and STS a fake, so 24 hours take a few seconds and nothing sleeps."""

import asyncio
import heapq
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from rolecached.core.cache import Credentials
from rolecached.core.store import Settings, Store
from tests.kit import T0, FakeClock, FakeSleep, FakeSts, RecordProperty, role

HOUR = 3600.0
DAY = 24 * HOUR
TICK = 5.0
KEYS = 50
IDLE_KEYS = 10  # the last ten stop being asked for after hour 2
IDLE_AFTER = 2 * HOUR
IDLE_TTL = 1800.0
MAX_GAP = 600.0  # a key in use is asked for at least this often (well under IDLE_TTL)
MIN_TTLS = (0.0, 300.0, 900.0, 1500.0)  # shells, credential_process, container, and more
SUSPEND_AT, SUSPEND_FOR = 12 * HOUR, 3 * HOUR
STEP_BACK_AT, STEP_BACK = 18 * HOUR, 600.0


@dataclass
class Day:
    """What the simulated day saw, for the assertions (keys by their index)."""

    served: int = 0
    on_demand: int = 0  # STS calls requests made, each one the model predicted
    renewals: int = 0  # STS calls ticks made, each one the model predicted
    started_per_tick: Counter[int] = field(default_factory=Counter)
    last_request: dict[int, float] = field(default_factory=dict)  # wall time
    dropped_at: dict[int, float] = field(default_factory=dict)  # idle keys leaving the store
    calls: list[tuple[int, float]] = field(default_factory=list)  # (key, wall time)
    issued: dict[int, list[Credentials]] = field(default_factory=dict)
    wake: float = 0.0  # wall time the machine woke from suspend
    max_running: int = 0
    max_running_per_key: int = 0


async def simulate_day(seed: int = 20240601) -> Day:
    """Run the day; every served credential and every STS call is checked as it happens."""
    clock = FakeClock()
    sts = FakeSts()
    store = Store(
        sts,
        Settings(idle_ttl=IDLE_TTL, tick=TICK),
        clock=clock,
        sleep=FakeSleep(clock),
        rng=random.Random(seed),
    )
    rng = random.Random(seed + 1)
    keys = [role(f"day-{i:02d}") for i in range(KEYS)]
    index = {id(key): i for i, key in enumerate(keys)}
    day = Day(issued={i: [] for i in range(KEYS)})
    # (simulated awake time, key index): the wall clock reads T0 + awake time + offset.
    events = [(rng.uniform(0, 60), i) for i in range(KEYS)]
    heapq.heapify(events)
    offset = 0.0

    def entry_of(i: int):
        return next((e for e in store.entries() if e.request is keys[i]), None)

    def record_calls(before: int) -> list[int]:
        made = [index[id(c.request)] for c in sts.calls[before:]]
        day.calls.extend((i, c.now) for i, c in zip(made, sts.calls[before:], strict=True))
        for i, credentials in zip(made, sts.issued[before:], strict=True):
            day.issued[i].append(credentials)
        return made

    async def request(i: int, min_ttl: float) -> None:
        now = clock.now
        entry = entry_of(i)
        known = entry.credentials if entry is not None else None
        needs_sts = known is None or known.expiration - now < min_ttl
        before = len(sts.calls)
        credentials: Credentials = await store.get(keys[i], min_ttl)
        made = record_calls(before)
        assert made == ([i] if needs_sts else []), (i, now - T0, made, needs_sts)
        # Every credential served has its minimum lifetime left, so it is never expired.
        assert credentials.expiration - clock.now >= min_ttl
        assert credentials.expiration > clock.now
        day.served += 1
        day.on_demand += len(made)
        day.last_request[i] = now

    async def tick() -> None:
        now = clock.now
        # The model's prediction: entries whose renewal time has come and that were asked
        # for within idle_ttl (by the model's own record of requests).
        due = sorted(
            index[id(e.request)]
            for e in store.entries()
            if e.renew_at is not None
            and e.credentials is not None
            and now >= e.renew_at
            and now - day.last_request[index[id(e.request)]] <= IDLE_TTL
        )
        before = len(sts.calls)
        started = store.tick()
        results = await asyncio.gather(*started)
        renewed = sorted(record_calls(before))
        assert renewed == due, (now - T0, renewed, due)  # one call per due key, no more
        for credentials in results:
            assert credentials.expiration - now >= 1500
        day.renewals += len(due)
        day.started_per_tick[len(started)] += 1
        if now - day.wake < TICK or not day.wake:
            present = {index[id(e.request)] for e in store.entries()}
        else:
            present = set(range(KEYS))  # only idle keys are checked below, before the wake
        for i in range(KEYS - IDLE_KEYS, KEYS):
            if i not in present and i in day.last_request and i not in day.dropped_at:
                day.dropped_at[i] = now

    step = 0
    while (awake := step * TICK) <= DAY:
        if awake == SUSPEND_AT + TICK:
            offset += SUSPEND_FOR  # the laptop slept three hours
            day.wake = T0 + awake + offset
        if awake == STEP_BACK_AT + TICK:
            offset -= STEP_BACK  # NTP stepped the clock back ten minutes
        while events and events[0][0] <= awake:
            at, i = heapq.heappop(events)
            clock.now = T0 + at + offset
            await request(i, rng.choice(MIN_TTLS))
            following = at + rng.uniform(10, MAX_GAP)
            if i < KEYS - IDLE_KEYS or following < IDLE_AFTER:
                heapq.heappush(events, (following, i))
        clock.now = T0 + awake + offset
        await tick()
        step += 1
    assert len(day.calls) == len(sts.calls) == day.on_demand + day.renewals
    day.max_running, day.max_running_per_key = sts.max_running, sts.max_running_per_key
    await store.close()
    return day


@pytest.fixture(scope="module")
def day() -> Day:
    """One simulated day, shared by the tests that examine it (it takes a second or two)."""
    return asyncio.run(simulate_day())


def test_a_simulated_day_serves_enough_life_and_calls_sts_only_when_needed(
    day: Day, record_property: RecordProperty
) -> None:
    """24 simulated hours, 50 keys, 1 h sessions, random requests, 5 s ticks, a 3 h suspend
    and a 10 min step back: every credential served had its min_ttl left and every STS call
    was one the model predicted (first use, a renewal due, expiry while suspended), so the
    total is one call per key plus the renewals its use needed, and no tick busy-loops."""
    assert day.served > 10_000
    # First use of each key, plus each key in use once after the suspend (every credential
    # expired meanwhile): nothing else was fetched on demand.
    assert day.on_demand == KEYS + (KEYS - IDLE_KEYS)
    # Renewals: a key in use renews every 1620 to 1805 s (expiry minus the 30 min margin,
    # minus up to 10 % jitter, on the next tick); 40 keys all day, 10 for 2 h and idle_ttl.
    per_key = Counter(i for i, _ in day.calls)
    for i in range(KEYS - IDLE_KEYS):
        assert 1 + (DAY - SUSPEND_FOR) // 1805 <= per_key[i] <= 2 + DAY // 1620, (i, per_key)
    for i in range(KEYS - IDLE_KEYS, KEYS):
        assert 2 <= per_key[i] <= 1 + (IDLE_AFTER + IDLE_TTL) // 1620, (i, per_key)
    # No busy loop: each tick starts at most a few renewals.
    assert max(day.started_per_tick) <= 8, day.started_per_tick
    assert day.max_running_per_key == 1
    record_property("credentials served in a simulated day", day.served)
    record_property("STS calls in a simulated day", len(day.calls))


def test_after_the_suspend_each_key_in_use_is_fetched_once_then_renews_on_schedule(
    day: Day,
) -> None:
    """Waking 3 h later with every credential expired, each key in use is fetched exactly
    once in the first 10 min (nothing expired served: checked on every request), and then
    renews on its normal schedule, never sooner."""
    woke = next(n for n, (_, now) in enumerate(day.calls) if now >= day.wake)
    after = day.calls[woke:]
    first_ten = Counter(i for i, now in after if now < day.wake + MAX_GAP)
    assert first_ten == Counter(range(KEYS - IDLE_KEYS))
    for i in range(KEYS - IDLE_KEYS):
        calls = [now for j, now in after if j == i]
        assert len(calls) >= 5  # renewals resumed
        for previous, following in itertools.pairwise(calls):
            # Renewed 1620 to 1805 s of wall-clock time after the last issue (expiry minus
            # the margin and jitter, on the next tick), never sooner or later; across the
            # step back that is 600 s more of awake time.
            assert 1620 <= following - previous <= 1805, (i, following - previous)


def test_idle_keys_stop_renewing_and_are_dropped_once_expired(day: Day) -> None:
    """Keys nobody asks for after hour 2 make no STS call later than idle_ttl after their
    last request, and leave the store within one tick of their credentials' expiry."""
    for i in range(KEYS - IDLE_KEYS, KEYS):
        last_request = day.last_request[i]
        assert last_request < T0 + IDLE_AFTER
        assert max(now for j, now in day.calls if j == i) <= last_request + IDLE_TTL
        expiration = max(c.expiration for c in day.issued[i])
        assert expiration <= day.dropped_at[i] < expiration + TICK


async def test_waking_from_suspend_renews_every_key_once_within_the_sts_cap() -> None:
    """With the default idle_ttl, a 3 h suspend leaves 40 keys expired: the first tick after
    waking renews each exactly once, never more than max_concurrent_sts at a time, nothing
    expired is served meanwhile, and the ticks after start nothing."""
    clock = FakeClock()
    sts = FakeSts()
    sts.hold = 0.001
    store = Store(sts, Settings(max_concurrent_sts=4), clock=clock, sleep=FakeSleep(clock))
    keys = [role(f"wake-{i:02d}") for i in range(40)]
    try:
        for key in keys:
            await store.get(key, 300)
        clock.advance(20 * 60)
        assert store.tick() == []
        clock.advance(3 * HOUR)  # suspended: every credential expired meanwhile
        started = store.tick()
        assert len(started) == 40
        served = await asyncio.gather(*(store.get(key, 0) for key in keys[:10]))
        for credentials in served:
            assert credentials.expiration - clock.now >= 1800  # the fresh ones, not expired
        await asyncio.gather(*started)
        assert len(sts.calls) == 80
        assert sts.max_running <= 4
        for _ in range(100):
            clock.advance(TICK)
            assert store.tick() == []  # renewals back on a 30 min schedule: no busy loop
        assert len(sts.calls) == 80
    finally:
        await store.close()


async def test_clock_stepping_back_ten_minutes_delays_renewals_by_as_much() -> None:
    """After the wall clock steps back 10 min, renewals happen at their planned wall-clock
    time (10 min later in real time), no credential is served short of its min_ttl, and no
    extra STS call is made."""
    clock = FakeClock()
    sts = FakeSts()
    store = Store(sts, Settings(), clock=clock, sleep=FakeSleep(clock), rng=random.Random(5))
    keys = [role(f"back-{i}") for i in range(10)]
    try:
        for key in keys:
            await store.get(key, 300)
        planned = {e.request: e.renew_at for e in store.entries()}
        clock.advance(10 * 60)
        clock.advance(-STEP_BACK)
        renewed_at: dict = {}
        while len(renewed_at) < len(keys):
            clock.advance(TICK)
            for key in keys:
                credentials = await store.get(key, 900)
                assert credentials.expiration - clock.now >= 900
            before = len(sts.calls)
            await asyncio.gather(*store.tick())
            for call in sts.calls[before:]:
                assert call.request not in renewed_at
                renewed_at[call.request] = call.now
            assert clock.now < T0 + 2 * HOUR
        for key, at in renewed_at.items():
            assert planned[key] <= at < planned[key] + TICK
        assert len(sts.calls) == 20
    finally:
        await store.close()
