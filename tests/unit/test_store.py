"""The async store against a fake STS, a fake clock and a fake sleep: serving, coalescing,
the STS concurrency cap, background renewal, retries, negative caching, idleness, clock
jumps, timeouts and forgetting. Nothing here sleeps for real except the timeout test."""

import asyncio
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from rolecached.core.cache import Credentials, Entry
from rolecached.core.request import RoleRequest
from rolecached.core.store import Settings, Store
from rolecached.errors import RolecacheError, StsError, StsTimeout
from tests.kit import DENIED, T0, THROTTLED, UNAVAILABLE, FakeClock, FakeSleep, FakeSts, role

HOUR = 3600.0
MIN_TTL = 300.0


@dataclass
class Rig:
    clock: FakeClock
    sleep: FakeSleep
    sts: FakeSts
    store: Store

    def entry(self, request: RoleRequest) -> Entry:
        matches = [e for e in self.store.entries() if e.request == request]
        assert len(matches) == 1, f"expected one entry for {request.role_arn}"
        return matches[0]

    async def tick(self) -> list[Credentials | BaseException]:
        """One renewer tick, awaited to the end: the results of the renewals it started."""
        return await asyncio.gather(*self.store.tick(), return_exceptions=True)


MakeRig = Callable[..., Rig]


@pytest.fixture
async def make_rig() -> AsyncIterator[MakeRig]:
    """Builds a store on fakes; closes every store (and opens every gate) afterwards."""
    rigs: list[Rig] = []

    def make(settings: Settings | None = None, seed: int = 7) -> Rig:
        clock = FakeClock()
        sleep = FakeSleep(clock)
        sts = FakeSts()
        store = Store(sts, settings, clock=clock, sleep=sleep, rng=random.Random(seed))
        rig = Rig(clock, sleep, sts, store)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        if rig.sts.gate is not None:
            rig.sts.gate.set()
        await rig.store.close()


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Yield to the loop (and its worker threads) until `condition` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.001)


# -- serving and coalescing -------------------------------------------------------------


async def test_first_get_calls_sts_then_second_is_served_from_memory(make_rig):
    """The first request assumes the role once; the next one is a memory hit, no STS call."""
    rig = make_rig()
    first = await rig.store.get(role(), MIN_TTL)
    assert len(rig.sts.calls) == 1
    assert first.expiration == T0 + HOUR
    rig.clock.advance(60)
    second = await rig.store.get(role(), MIN_TTL)
    assert second is first
    assert len(rig.sts.calls) == 1
    assert rig.store.sts_calls == 1
    entry = rig.entry(role())
    assert entry.hits == 1
    assert entry.sts_calls == 1
    assert entry.last_used == T0 + 60


async def test_different_requests_never_share_credentials(make_rig):
    """Requests differing in one field (here the duration) get separate entries and calls."""
    rig = make_rig()
    one_hour = await rig.store.get(role(duration=3600), MIN_TTL)
    two_hours = await rig.store.get(role(duration=7200), MIN_TTL)
    assert one_hour.access_key_id != two_hours.access_key_id
    assert two_hours.expiration == T0 + 7200
    assert len(rig.sts.calls) == 2
    assert len(rig.store.entries()) == 2


async def test_200_concurrent_cold_requests_make_one_sts_call(make_rig):
    """200 callers asking for a cold key at once share one STS call and its credentials."""
    rig = make_rig()
    rig.sts.gate = threading.Event()
    waiting = 0

    async def caller() -> Credentials:
        nonlocal waiting
        waiting += 1  # runs in the same loop step as get() up to its first await
        return await rig.store.get(role(), MIN_TTL)

    tasks = [asyncio.create_task(caller()) for _ in range(200)]
    await wait_until(lambda: waiting == 200 and rig.sts.entered.is_set())
    for _ in range(3):  # let every caller run to where a second STS call would start
        await asyncio.sleep(0)
    assert not any(task.done() for task in tasks)
    assert len(rig.sts.calls) == 1
    rig.sts.gate.set()
    results = await asyncio.gather(*tasks)
    assert len(rig.sts.calls) == 1
    assert all(credentials is results[0] for credentials in results)
    assert rig.entry(role()).sts_calls == 1


async def test_concurrent_sts_calls_are_capped(make_rig):
    """With max_concurrent_sts=2, ten cold keys never have more than two STS calls in flight."""
    rig = make_rig(Settings(max_concurrent_sts=2))
    rig.sts.hold = 0.03
    keys = [role(f"app{i}") for i in range(10)]
    results = await asyncio.gather(*(rig.store.get(key, MIN_TTL) for key in keys))
    assert len(rig.sts.calls) == 10
    assert len({c.access_key_id for c in results}) == 10
    assert rig.sts.max_running <= 2
    assert rig.sts.max_running == 2  # the cap allows parallelism; it is not a global lock


async def test_requests_are_served_while_a_renewal_is_in_flight(make_rig):
    """While a background renewal waits on STS, callers get the current credentials at once."""
    rig = make_rig()
    current = await rig.store.get(role(), MIN_TTL)
    rig.clock.now = rig.entry(role()).renew_at
    rig.sts.gate = threading.Event()
    rig.sts.entered.clear()
    tasks = rig.store.tick()
    assert len(tasks) == 1
    await wait_until(rig.sts.entered.is_set)
    served = await asyncio.wait_for(rig.store.get(role(), MIN_TTL), timeout=1)
    assert served is current
    assert rig.store.tick() == []  # the renewal in flight is not started twice
    rig.sts.gate.set()
    (renewed,) = await asyncio.gather(*tasks)
    assert await rig.store.get(role(), MIN_TTL) is renewed
    assert len(rig.sts.calls) == 2


# -- background renewal -----------------------------------------------------------------


async def test_tick_before_renewal_time_starts_nothing(make_rig):
    """Ticking before an entry's renewal time makes no STS call."""
    rig = make_rig()
    await rig.store.get(role(), MIN_TTL)
    renew_at = rig.entry(role()).renew_at
    assert T0 + HOUR - 1800 - 180 <= renew_at <= T0 + HOUR - 1800
    for now in (T0, T0 + 600, renew_at - 1):
        rig.clock.now = now
        assert rig.store.tick() == []
    assert len(rig.sts.calls) == 1
    assert rig.entry(role()).renew_at == renew_at


async def test_tick_after_renewal_time_renews_once_and_serves_new_credentials(make_rig):
    """At renewal time one tick renews exactly once, and callers then get the new credentials."""
    rig = make_rig()
    old = await rig.store.get(role(), MIN_TTL)
    rig.clock.now = rig.entry(role()).renew_at + 1
    tasks = rig.store.tick()
    assert len(tasks) == 1
    assert rig.store.tick() == []  # in flight: not started again
    (new,) = await asyncio.gather(*tasks)
    assert len(rig.sts.calls) == 2
    assert new.access_key_id != old.access_key_id
    assert new.expiration == rig.clock.now + HOUR
    assert await rig.store.get(role(), MIN_TTL) is new
    assert await rig.tick() == []  # the next renewal is half an hour away again
    assert len(rig.sts.calls) == 2
    assert rig.entry(role()).renew_at > rig.clock.now + 1500


async def test_throttled_renewal_keeps_serving_and_backs_off_until_sts_recovers(make_rig):
    """Throttled renewals keep serving valid credentials, back off more and more, then renew."""
    rig = make_rig()
    current = await rig.store.get(role(), MIN_TTL)
    entry = rig.entry(role())
    rig.clock.now = entry.renew_at
    rig.sts.failure = THROTTLED
    delays = []
    previous_retry = entry.renew_at
    for attempt in range(1, 9):
        failed_at = rig.clock.now
        results = await rig.tick()
        assert len(results) == 1 and isinstance(results[0], StsError)
        assert entry.failures_in_a_row == attempt
        assert entry.last_error == THROTTLED
        assert entry.credentials is current  # still held, still valid
        delay = entry.renew_at - failed_at
        assert 0 <= delay <= min(60.0, 2.0**attempt)
        assert entry.error_until == entry.renew_at
        assert entry.renew_at >= previous_retry
        delays.append(delay)
        # Callers meanwhile: the current credentials, no errors.
        for _ in range(5):
            assert await rig.store.get(role(), MIN_TTL) is current
        assert rig.store.tick() == []  # no retry before the back-off has passed
        previous_retry = entry.renew_at
        rig.clock.now = entry.renew_at + 0.001
    assert len(rig.sts.calls) == 1 + 8
    # Full jitter, but the bound doubles: later waits exceed what the first bound allowed.
    assert max(delays[3:]) > 2.0
    assert sum(delays[4:]) > sum(delays[:4])

    rig.sts.failure = None
    (renewed,) = await rig.tick()
    assert isinstance(renewed, Credentials)
    assert await rig.store.get(role(), MIN_TTL) is renewed
    assert renewed is not current
    assert entry.failures_in_a_row == 0
    assert entry.last_error is None and entry.error_until is None


async def test_sts_down_across_expiry_gives_503_once_below_min_ttl(make_rig):
    """With STS down, valid credentials are served until below min_ttl, then a 503 StsError."""
    rig = make_rig()
    current = await rig.store.get(role(), MIN_TTL)
    rig.clock.now = rig.entry(role()).renew_at
    rig.sts.failure = UNAVAILABLE
    last_served = None
    while current.expiration - rig.clock.now >= MIN_TTL + 5:
        await rig.tick()
        assert await rig.store.get(role(), MIN_TTL) is current
        last_served = rig.clock.now
        rig.clock.advance(5)
    assert last_served is not None and current.expiration - last_served < MIN_TTL + 10
    renewal_attempts = len(rig.sts.calls) - 1
    assert renewal_attempts >= 10  # it kept trying in the background

    rig.clock.now = current.expiration - MIN_TTL + 1
    for _ in range(3):
        with pytest.raises(StsError) as caught:
            await rig.store.get(role(), MIN_TTL)
        assert caught.value.status == 503
        assert caught.value.code == "ServiceUnavailable"
        assert "ServiceUnavailable" in caught.value.message
        rig.clock.advance(1)
    # A caller content with less life still gets the (not yet expired) credentials.
    assert await rig.store.get(role(), 60) is current


async def test_failed_renewals_after_expiry_still_back_off(make_rig):
    """Once credentials expired with STS still throttling, the renewer backs off, not every tick."""
    rig = make_rig()
    current = await rig.store.get(role(), MIN_TTL)
    rig.sts.failure = THROTTLED
    rig.clock.now = current.expiration + 1
    calls_before = len(rig.sts.calls)
    ticks = 0
    while rig.clock.now < current.expiration + 1 + 1200:  # 20 minutes of 5 s ticks
        await rig.tick()
        ticks += 1
        rig.clock.advance(5)
    retries = len(rig.sts.calls) - calls_before
    assert retries >= 10  # still retrying ...
    assert retries < ticks / 2  # ... but not on every tick


async def test_permanent_error_is_reported_and_negatively_cached(make_rig):
    """AccessDenied gives a 502 with STS's code and message; 1000 more requests in the window
    make no STS call, and the first request after the window makes exactly one."""
    rig = make_rig(Settings(negative_ttl=10.0))
    rig.sts.failure = DENIED
    with pytest.raises(StsError) as caught:
        await rig.store.get(role(), MIN_TTL)
    error = caught.value
    assert error.status == 502
    assert error.code == "AccessDenied"
    assert DENIED.message in error.message
    assert error.failure == DENIED
    assert len(rig.sts.calls) == 1  # permanent: no retries
    assert rig.sleep.delays == []

    for _ in range(1000):
        rig.clock.advance(0.009)  # 9 s in all, inside the 10 s window
        with pytest.raises(StsError) as again:
            await rig.store.get(role(), MIN_TTL)
        assert again.value.status == 502 and again.value.code == "AccessDenied"
    assert len(rig.sts.calls) == 1

    rig.clock.now = T0 + 10.0
    with pytest.raises(StsError):
        await rig.store.get(role(), MIN_TTL)
    assert len(rig.sts.calls) == 2


async def test_a_remembered_error_ends_when_its_source_changes_or_a_code_is_given():
    """A permanent error is remembered while the source's stamp holds; once the stamp
    changes (a fixed credentials file, a new SSO token) the next request calls STS at once,
    the sources reloaded, and a request with an MFA code always does. No clock moves."""
    clock = FakeClock()
    stamp = ["before"]
    reloads: list[int] = []
    sts = FakeSts(failure=DENIED)
    store = Store(
        sts,
        Settings(negative_ttl=10.0),
        clock=clock,
        sleep=FakeSleep(clock),
        source_stamp=lambda key: stamp[0],
        reload_sources=lambda: reloads.append(1),
    )
    try:
        for _ in range(2):
            with pytest.raises(StsError):
                await store.get(role(), MIN_TTL)
        assert len(sts.calls) == 1 and reloads == []
        stamp[0] = "after"
        sts.failure = None
        assert isinstance(await store.get(role(), MIN_TTL), Credentials)
        assert len(sts.calls) == 2 and reloads == [1]

        sts.failure = DENIED
        with pytest.raises(StsError):
            await store.get(role("other"), MIN_TTL)
        with pytest.raises(StsError):
            await store.get(role("other"), MIN_TTL, token_code="123456")
        assert len(sts.calls) == 4  # the code was an explicit retry
    finally:
        await store.close()


async def test_permanent_error_during_renewal_evicts_the_credentials(make_rig):
    """A renewal answered with AccessDenied drops the held credentials instead of serving them."""
    rig = make_rig()
    await rig.store.get(role(), MIN_TTL)
    entry = rig.entry(role())
    rig.clock.now = entry.renew_at
    rig.sts.failure = DENIED
    (result,) = await rig.tick()
    assert isinstance(result, StsError) and result.status == 502
    assert entry.credentials is None
    with pytest.raises(StsError) as caught:
        await rig.store.get(role(), MIN_TTL)
    assert caught.value.code == "AccessDenied"
    assert len(rig.sts.calls) == 2


async def test_cold_start_retries_cold_attempts_times_with_injected_sleep(make_rig):
    """A cold request with a retryable error tries cold_attempts times, sleeping via the fake."""
    rig = make_rig(Settings(cold_attempts=4))
    rig.sts.failure = THROTTLED
    with pytest.raises(StsError) as caught:
        await rig.store.get(role(), MIN_TTL)
    assert len(rig.sleep.delays) == 3  # between the four tries, on the fake sleep
    assert caught.value.status == 503
    assert caught.value.code == "Throttling"
    assert len(rig.sts.calls) == 4
    assert len(rig.sleep.delays) == 3
    for attempt, delay in enumerate(rig.sleep.delays):
        assert 0 <= delay <= min(2.0, 0.25 * 2**attempt)
    assert rig.clock.now == pytest.approx(T0 + sum(rig.sleep.delays))
    assert rig.store.sts_errors == 4


async def test_cold_start_recovers_when_a_retry_succeeds(make_rig):
    """A cold request whose first STS call is throttled gets credentials from the retry."""
    rig = make_rig()
    rig.sts.script.extend([THROTTLED, None])
    credentials = await rig.store.get(role(), MIN_TTL)
    assert len(rig.sts.calls) == 2
    assert len(rig.sleep.delays) == 1
    assert credentials.expiration - rig.clock.now >= MIN_TTL
    assert rig.entry(role()).last_error is None


async def test_sts_issuing_too_short_a_lifetime_is_reported(make_rig):
    """If STS's credentials cannot satisfy min_ttl, the caller is told so, not handed them."""
    rig = make_rig()
    with pytest.raises(RolecacheError) as caught:
        await rig.store.get(role(duration=900), 1000)
    assert caught.value.code == "LifetimeTooShort"
    assert len(rig.sts.calls) == 1


# -- idleness ---------------------------------------------------------------------------


async def test_idle_entries_stop_renewing_and_are_dropped_while_warm_ones_renew(make_rig):
    """Entries nobody asks for stop renewing and vanish at expiry; kept-warm entries renew on."""
    rig = make_rig(Settings(idle_ttl=1200))
    idle_key, warm_key = role("idle"), role("warm")
    idle_credentials = await rig.store.get(idle_key, MIN_TTL)
    await rig.store.get(warm_key, MIN_TTL)
    rig.entry(warm_key).keep_warm = True

    dropped_at = None
    while rig.clock.now < T0 + 3 * HOUR:
        rig.clock.advance(5)
        await rig.tick()
        present = {e.request for e in rig.store.entries()}
        if idle_key not in present and dropped_at is None:
            dropped_at = rig.clock.now
        assert warm_key in present
        warm = rig.entry(warm_key)
        assert warm.credentials.expiration - rig.clock.now > 1500  # always fresh
    assert rig.sts.per_key[idle_key] == 1  # never renewed
    assert dropped_at is not None
    assert idle_credentials.expiration <= dropped_at < idle_credentials.expiration + 5
    assert rig.sts.per_key[warm_key] >= 6  # every ~30 minutes for 3 hours


async def test_idle_entry_is_kept_until_expiry(make_rig):
    """An idle entry is not renewed, but still serves its valid credentials when asked again."""
    rig = make_rig(Settings(idle_ttl=600))
    credentials = await rig.store.get(role(), MIN_TTL)
    rig.clock.now = rig.entry(role()).renew_at + 1
    assert rig.store.tick() == []
    assert await rig.store.get(role(), MIN_TTL) is credentials  # asked again: not idle now
    assert len(rig.store.tick()) == 1  # and renewal resumes


# -- clock jumps ------------------------------------------------------------------------


async def test_clock_jumping_past_expiry_never_serves_expired_credentials(make_rig):
    """After the wall clock jumps 3 h past expiry (suspend), get() fetches fresh credentials."""
    rig = make_rig()
    old = await rig.store.get(role(), MIN_TTL)
    rig.clock.now = old.expiration + 3 * HOUR
    fresh = await rig.store.get(role(), MIN_TTL)
    assert fresh is not old
    assert fresh.expiration - rig.clock.now >= MIN_TTL
    assert len(rig.sts.calls) == 2
    assert await rig.store.get(role(), 0) is fresh


async def test_clock_jumping_past_expiry_then_tick_renews_at_once(make_rig):
    """The first tick after waking renews the expired entry, and requests join that renewal."""
    rig = make_rig()
    old = await rig.store.get(role(), MIN_TTL)
    rig.clock.now = old.expiration + 3 * HOUR
    tasks = rig.store.tick()
    assert len(tasks) == 1
    served = await rig.store.get(role(), MIN_TTL)
    assert served is not old
    assert served.expiration > rig.clock.now
    assert len(rig.sts.calls) == 2


async def test_clock_jumping_backward_breaks_nothing(make_rig):
    """A 10-minute backward clock jump keeps serving the same credentials with no STS call."""
    rig = make_rig()
    credentials = await rig.store.get(role(), MIN_TTL)
    renew_at = rig.entry(role()).renew_at
    rig.clock.advance(-600)
    assert await rig.store.get(role(), MIN_TTL) is credentials
    assert await rig.tick() == []
    assert rig.store.entries() != []
    assert len(rig.sts.calls) == 1
    # Time then runs forward as usual: exactly one renewal at the planned time.
    rig.clock.now = renew_at - 1
    assert await rig.tick() == []
    rig.clock.now = renew_at
    assert len(await rig.tick()) == 1
    assert len(rig.sts.calls) == 2


# -- min_ttl, timeouts, forgetting ------------------------------------------------------


async def test_min_ttl_larger_than_remaining_life_triggers_a_fetch(make_rig):
    """A request needing more life than the cached credentials have gets fresh ones."""
    rig = make_rig()
    old = await rig.store.get(role(), MIN_TTL)
    rig.clock.advance(3000)  # 600 s left
    assert await rig.store.get(role(), MIN_TTL) is old
    assert len(rig.sts.calls) == 1
    fresh = await rig.store.get(role(), 900)
    assert fresh is not old
    assert fresh.expiration - rig.clock.now >= 900
    assert len(rig.sts.calls) == 2
    assert await rig.store.get(role(), MIN_TTL) is fresh


async def test_request_timeout_gives_504_and_the_late_answer_is_kept(make_rig):
    """A request whose STS call outlasts request_timeout gets StsTimeout (504); the late
    answer is still stored for the next request."""
    rig = make_rig(Settings(request_timeout=0.05))
    rig.sts.gate = threading.Event()
    with pytest.raises(StsTimeout) as caught:
        await rig.store.get(role(), MIN_TTL)
    assert caught.value.status == 504
    assert caught.value.code == "StsTimeout"
    rig.sts.gate.set()
    await wait_until(lambda: rig.entry(role()).credentials is not None)
    assert await rig.store.get(role(), MIN_TTL) is rig.sts.issued[0]
    assert len(rig.sts.calls) == 1


async def test_forget_one_key_drops_only_that_entry(make_rig):
    """forget(key) drops that entry (the next request calls STS) and leaves the others."""
    rig = make_rig()
    first = await rig.store.get(role("a"), MIN_TTL)
    other = await rig.store.get(role("b"), MIN_TTL)
    assert rig.store.forget(role("a")) == 1
    assert rig.store.forget(role("a")) == 0
    assert rig.store.forget(role("never-asked")) == 0
    assert [e.request for e in rig.store.entries()] == [role("b")]
    assert await rig.store.get(role("b"), MIN_TTL) is other
    assert await rig.store.get(role("a"), MIN_TTL) is not first
    assert len(rig.sts.calls) == 3


async def test_forget_all_drops_every_entry(make_rig):
    """forget() with no key drops every entry and returns how many it dropped."""
    rig = make_rig()
    for name in ("a", "b", "c"):
        await rig.store.get(role(name), MIN_TTL)
    assert rig.store.forget() == 3
    assert rig.store.entries() == []
    assert rig.store.forget() == 0
    await rig.store.get(role("a"), MIN_TTL)
    assert len(rig.sts.calls) == 4


async def test_forget_during_a_fetch_answers_waiters_but_keeps_nothing(make_rig):
    """A call in flight when its key is forgotten still answers its waiter, but is not cached
    and not shared with requests made after the forget."""
    rig = make_rig()
    rig.sts.gate = threading.Event()
    before = asyncio.create_task(rig.store.get(role(), MIN_TTL))
    await wait_until(lambda: len(rig.sts.calls) == 1)
    assert rig.store.forget(role()) == 1
    after = asyncio.create_task(rig.store.get(role(), MIN_TTL))
    await wait_until(lambda: len(rig.sts.calls) == 2)  # a call of its own, not the forgotten one
    rig.sts.gate.set()
    forgotten, fresh = await asyncio.gather(before, after)
    assert fresh is not forgotten
    assert rig.entry(role()).credentials is fresh
    assert await rig.store.get(role(), MIN_TTL) is fresh
    assert len(rig.sts.calls) == 2


# -- secrets ----------------------------------------------------------------------------


async def test_failed_renewal_logs_and_errors_carry_no_secrets(make_rig, caplog):
    """A retryable renewal failure is logged, but no log record or error shows a secret."""
    caplog.set_level(logging.DEBUG)
    rig = make_rig()
    served = await rig.store.get(role(), MIN_TTL)
    rig.sts.failure = THROTTLED
    rig.clock.now = rig.entry(role()).renew_at
    (failure,) = await rig.tick()
    assert isinstance(failure, StsError)
    # A caller needing more life than is left goes through the cold path and fails too.
    rig.clock.now = served.expiration - 100
    with pytest.raises(StsError) as caught:
        await rig.store.get(role(), MIN_TTL)

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("Throttling" in r.getMessage() for r in warnings)
    assert any(served.masked_key_id in r.getMessage() for r in caplog.records)
    texts = [r.getMessage() for r in caplog.records]
    texts += [str(failure), repr(failure), str(caught.value), repr(caught.value)]
    texts += [repr(e) for e in rig.store.entries()]
    for text in texts:
        assert served.secret_access_key not in text
        assert served.session_token not in text
        assert served.access_key_id not in text
