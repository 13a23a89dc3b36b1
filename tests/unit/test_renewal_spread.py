"""Renewals of many keys assumed in the same moment spread out: a store on a fake clock and a
fake STS (nothing sleeps) assumes 500 keys of 15-minute sessions at once and lets the
renewer tick through their first round of renewals."""

import asyncio
import bisect
import random

from rolecached.core import cache
from rolecached.core.store import Settings, Store
from tests.kit import T0, FakeClock, FakeSleep, FakeSts, RecordProperty, role

KEYS = 500
LIFETIME = 900
TICK = 5.0
WINDOW = 10.0


async def first_round(seed: int) -> list[float]:
    """When each of KEYS 900 s keys, assumed together at T0, first went back to STS."""
    clock = FakeClock()
    sts = FakeSts()
    store = Store(
        sts, Settings(tick=TICK), clock=clock, sleep=FakeSleep(clock), rng=random.Random(seed)
    )
    try:
        keys = [role(f"spread-{i}", duration=LIFETIME) for i in range(KEYS)]
        await asyncio.gather(*(store.get(key, 300.0) for key in keys))
        assert len(sts.calls) == KEYS
        first: dict[int, float] = {}
        seen = KEYS
        while len(first) < KEYS and clock.now < T0 + LIFETIME:
            clock.advance(TICK)
            for key in keys:  # in use: idle keys would not be renewed
                store.record_hit(key)
            started = store.tick()
            await asyncio.gather(*started)
            for call in sts.calls[seen:]:
                first.setdefault(keys.index(call.request), call.now)  # not a second-round renewal
            seen = len(sts.calls)
        return sorted(first.values())
    finally:
        await store.close()


def busiest_window(times: list[float]) -> int:
    """The most renewals in any WINDOW seconds."""
    return max(bisect.bisect_left(times, t + WINDOW) - i for i, t in enumerate(times))


async def test_500_short_sessions_renew_spread_over_minutes(
    record_property: RecordProperty,
) -> None:
    """500 keys of 900 s assumed at the same moment: every key renews once in the first
    round, between 150 s after issue and the 450 s margin before expiry; the round spreads
    over at least 200 s and no 10 s window holds more than 5 % of it (for several seeds)."""
    for seed in (1, 2, 3, 4, 5):
        times = await first_round(seed)
        assert len(times) == KEYS
        assert (
            times[0] >= T0 + 150
            and times[-1] <= T0 + LIFETIME - cache.renewal_margin(LIFETIME) + TICK
        )
        assert times[-1] - times[0] >= 200
        busiest = busiest_window(times)
        assert busiest <= 0.05 * KEYS, (seed, busiest)
        record_property(f"busiest 10 s window of {KEYS} renewals, seed {seed}", busiest)
