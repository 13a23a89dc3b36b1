"""STS in trouble: throttling, outages, hangs, refusals and garbage, end to end (the real
daemon behind a fault-injecting STS proxy) and at store level (fake clock and STS) where the
behaviour takes simulated time: back-off, expiry, and renewals of many keys at once."""

import asyncio
import math
import random
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rolecached.core import cache
from rolecached.core.store import Settings, Store
from rolecached.errors import StsError
from tests.daemonkit import Daemon, base_env, start_daemon, unique_role
from tests.kit import (
    DENIED,
    SECRET_MARK,
    T0,
    THROTTLED,
    UNAVAILABLE,
    FakeClock,
    FakeSleep,
    FakeSts,
    RecordProperty,
    async_exchange,
    exchange,
    http_request,
    parse_reply,
    role,
)
from tests.strict_sts import StsProxy, sts_error_xml

SESSION = "faults"
MIN_TTL = 300.0
TICK = 5.0
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
RATE_EXCEEDED = (400, sts_error_xml("Throttling", "Rate exceeded"))
STS_503 = (503, sts_error_xml("ServiceUnavailable", "Service is unavailable, try later"))


# -- the real daemon behind the fault-injecting proxy ------------------------------------


def start(tmp_path: Path, proxy: StsProxy, config: str | None = None) -> Daemon:
    """rolecached against `proxy`, autostart off, with an optional TOML config."""
    env = base_env(tmp_path, proxy.url)
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    args = []
    if config is not None:
        path = tmp_path / "rolecached.toml"
        path.write_text(config)
        args = ["--config", str(path)]
    return start_daemon(tmp_path, env, *args)


@pytest.fixture
def faulty(tmp_path: Path, sts_proxy: StsProxy) -> Iterator[Daemon]:
    """The real daemon with the default settings, behind the fault-injecting proxy."""
    daemon = start(tmp_path, sts_proxy)
    yield daemon
    daemon.stop()


def ask(daemon: Daemon, role_arn: str, fmt: str = "json", **fields: object):
    """One raw HTTP credentials request to the daemon's socket; the parsed reply."""
    body = {"role_arn": role_arn, "role_session_name": SESSION, **fields}
    return parse_reply(
        exchange(daemon.socket, http_request("POST", f"/v1/credentials?format={fmt}", body))
    )


def calls_for(proxy: StsProxy, role_arn: str) -> int:
    """AssumeRole calls that reached the proxy for `role_arn`."""
    return sum(1 for f in list(proxy.forms) if f.get("RoleArn") == role_arn)


def for_role(role_arn: str, answer: tuple[int, str]):
    """A proxy rule answering `answer` to AssumeRole calls for `role_arn` only."""
    return lambda form: answer if form.get("RoleArn") == role_arn else None


def assume_role_xml(role_arn: str, expires_in: float, n: int = 1) -> str:
    """A well-formed AssumeRole answer whose credentials expire `expires_in` s from now."""
    expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + expires_in))
    name = role_arn.rsplit("/", 1)[1]
    return (
        f'<AssumeRoleResponse xmlns="{STS_NS}"><AssumeRoleResult><Credentials>'
        f"<AccessKeyId>ASIACRAFTED{n:09d}</AccessKeyId>"
        f"<SecretAccessKey>{SECRET_MARK}craftedsecret{n:020d}</SecretAccessKey>"
        f"<SessionToken>{SECRET_MARK}craftedtoken{n:040d}</SessionToken>"
        f"<Expiration>{expiration}</Expiration></Credentials><AssumedRoleUser>"
        f"<AssumedRoleId>AROACRAFTED:{SESSION}</AssumedRoleId>"
        f"<Arn>arn:aws:sts::123456789012:assumed-role/{name}/{SESSION}</Arn>"
        "</AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>crafted"
        "</RequestId></ResponseMetadata></AssumeRoleResponse>"
    )


def assert_no_credentials(reply) -> None:
    """An error answer carries nothing secret (no credential of any kind)."""
    for marker in (b"SecretAccessKey", b"SessionToken", b"export AWS_", SECRET_MARK.encode()):
        assert marker not in reply.body, reply.body


@pytest.mark.parametrize("fault", [RATE_EXCEEDED, STS_503], ids=["throttling", "503"])
def test_sts_trouble_never_reaches_clients_holding_valid_credentials(
    faulty: Daemon, sts_proxy: StsProxy, fault: tuple[int, str]
) -> None:
    """With STS throttling (400 "Rate exceeded") or answering 503, every request for a cached
    role is served without an STS call, while 20 concurrent requests for a cold role share one
    bounded retry loop and each get a 503 naming STS's error, promptly."""
    warm, cold = unique_role("warm"), unique_role("cold")
    first = ask(faulty, warm)
    assert first.status == 200, first.body
    sts_proxy.rules.append(lambda form: fault)
    calls_before = len(sts_proxy.calls)
    for fmt in ("json", "env", "process") * 30:
        reply = ask(faulty, warm, fmt)
        assert reply.status == 200, reply.body
    assert ask(faulty, warm).json() == first.json()
    assert len(sts_proxy.calls) == calls_before  # no request woke STS

    code = "Throttling" if fault is RATE_EXCEEDED else "ServiceUnavailable"
    results: list = [None] * 20

    def one(i: int) -> None:
        results[i] = ask(faulty, cold)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for reply in results:
        assert reply.status == 503, reply.body
        assert reply.error["code"] == code
        assert code in reply.error["message"]
        assert_no_credentials(reply)
    # One retry loop (cold_attempts = 3 calls), not one per caller; a caller arriving right
    # after a failed loop may start one more, never twenty.
    assert 3 <= calls_for(sts_proxy, cold) <= 6


def test_sts_down_across_an_expiry_gives_503_with_the_last_error_never_short_credentials(
    faulty: Daemon, sts_proxy: StsProxy
) -> None:
    """With STS down, credentials near expiry are served only to callers content with what is
    left; a caller needing more gets a 503 naming STS's error; credentials STS issues already
    expired or too short-lived are never handed out."""
    near, stale, expired = unique_role("near"), unique_role("stale"), unique_role("expired")
    sts_proxy.rules.append(for_role(near, (200, assume_role_xml(near, 600))))
    held = ask(faulty, near, min_ttl=300)
    assert held.status == 200, held.body
    sts_proxy.rules.insert(0, lambda form: STS_503)  # STS goes down
    assert ask(faulty, near, min_ttl=300).json() == held.json()  # 600 s left: still fine
    for _ in range(3):
        reply = ask(faulty, near, min_ttl=700)  # more than is left: needs STS, which is down
        assert reply.status == 503, reply.body
        assert reply.error["code"] == "ServiceUnavailable"
        assert "Service is unavailable, try later" in reply.error["message"]
        assert_no_credentials(reply)

    sts_proxy.rules.clear()
    sts_proxy.rules.append(for_role(stale, (200, assume_role_xml(stale, 120))))
    sts_proxy.rules.append(for_role(expired, (200, assume_role_xml(expired, -60))))
    short = ask(faulty, stale, min_ttl=300)
    assert short.status >= 400 and short.error["code"] == "LifetimeTooShort"
    assert_no_credentials(short)
    for min_ttl in (0, 300):
        dead = ask(faulty, expired, min_ttl=min_ttl)
        assert dead.status >= 400, dead.body
        assert_no_credentials(dead)


def test_cold_start_with_sts_answering_503_errors_within_the_client_timeout(
    faulty: Daemon, sts_proxy: StsProxy
) -> None:
    """A first request while STS answers 503 (a load balancer's HTML page) ends with exit 1
    and a message naming the 503 within seconds: the client never hangs."""
    sts_proxy.rules.append(lambda form: (503, "<html><body>503 Service Unavailable</body></html>"))
    # run_client's own timeout is the bound: a client that hung would fail the test there.
    result = faulty.client("env", "--role-arn", unique_role(), "--role-session-name", SESSION)
    assert result.returncode == 1, result
    assert "503" in result.stderr
    assert result.stdout == ""
    assert len(sts_proxy.calls) == 3  # cold_attempts, then the error


def test_cold_start_with_sts_never_answering_gives_504_within_request_timeout(
    tmp_path: Path, sts_proxy: StsProxy
) -> None:
    """A first request while STS accepts but never answers gets a 504 after the configured
    request_timeout (1 s here), as does a second caller, with one STS call between them; when
    STS finally answers, its late credentials serve the next request without a new call."""
    release = threading.Event()
    sts_proxy.rules.append(lambda form: release.wait(30) and None)  # hangs, then forwards
    daemon = start(tmp_path, sts_proxy, "[daemon]\nrequest_timeout = 1.0\n")
    target = unique_role("hang")
    try:
        for _ in range(2):
            result = daemon.client("env", "--role-arn", target, "--role-session-name", SESSION)
            assert result.returncode == 1, result
            assert "StsTimeout" in result.stderr or "did not answer within 1 s" in result.stderr
        assert len(sts_proxy.calls) == 1  # the second caller joined the call in flight
        release.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            result = daemon.client("env", "--role-arn", target, "--role-session-name", SESSION)
            if result.returncode == 0:
                break
            time.sleep(0.05)
        assert result.returncode == 0, result
        assert "AWS_SESSION_TOKEN" in result.stdout
        assert len(sts_proxy.calls) == 1
    finally:
        release.set()
        daemon.stop()


def test_access_denied_flood_costs_one_sts_call_per_negative_window(
    faulty: Daemon, sts_proxy: StsProxy, record_property: RecordProperty
) -> None:
    """1,000 requests in a burst for a denied role make at most one STS call per 10 s
    negative-cache window, and every caller gets the 502 AccessDenied with STS's message."""
    denied = unique_role("denied")
    message = f"User: arn:aws:iam::123456789012:user/me is not authorized to assume {denied}"
    sts_proxy.rules.append(for_role(denied, (403, sts_error_xml("AccessDenied", message))))
    request = http_request(
        "POST", "/v1/credentials", {"role_arn": denied, "role_session_name": SESSION}
    )

    async def flood() -> list[bytes]:
        gate = asyncio.Semaphore(100)

        async def one() -> bytes:
            async with gate:
                return await async_exchange(faulty.socket, request)

        return await asyncio.gather(*(one() for _ in range(1000)))

    started = time.monotonic()
    answers = asyncio.run(flood())
    elapsed = time.monotonic() - started
    assert len(answers) == 1000
    for raw in answers:
        reply = parse_reply(raw)
        assert reply.status == 502, reply.body
        assert reply.error["code"] == "AccessDenied"
        assert message in reply.error["message"]
        assert_no_credentials(reply)
    windows = 1 + int(elapsed // 10)
    assert 1 <= calls_for(sts_proxy, denied) <= windows, (calls_for(sts_proxy, denied), elapsed)
    record_property("STS calls for 1000 denied requests", calls_for(sts_proxy, denied))


def test_malformed_and_refusing_sts_answers_give_clear_errors(
    faulty: Daemon, sts_proxy: StsProxy
) -> None:
    """Truncated XML, a well-formed answer without credentials, a garbled expiration and
    RegionDisabledException each give a JSON error that names the problem (never a bare
    internal error), and the daemon keeps serving other roles."""
    cases = {
        "truncated": (200, f'<AssumeRoleResponse xmlns="{STS_NS}"><AssumeRoleResult><Cred'),
        "empty": (
            200,
            f'<AssumeRoleResponse xmlns="{STS_NS}"><AssumeRoleResult></AssumeRoleResult>'
            "</AssumeRoleResponse>",
        ),
        "garbled-expiration": (
            200,
            assume_role_xml("arn:aws:iam::123456789012:role/x", 3600).replace(
                time.strftime("%Y-", time.gmtime()), "tomorrow-"
            ),
        ),
        "region": (
            403,
            sts_error_xml(
                "RegionDisabledException",
                "STS is not activated in this region for account:123456789012",
            ),
        ),
    }
    roles = {name: unique_role(name) for name in cases}
    for name, answer in cases.items():
        sts_proxy.rules.append(for_role(roles[name], answer))
    for name in cases:
        reply = ask(faulty, roles[name])
        assert 500 <= reply.status < 600 and reply.status != 500, (name, reply.body)
        error = reply.error
        assert error["code"] != "InternalError", (name, error)
        assert "internal error" not in error["message"], (name, error)
        assert_no_credentials(reply)
        if name == "region":
            assert reply.status == 502
            assert error["code"] == "RegionDisabledException"
            assert "not activated in this region" in error["message"]
        else:
            assert "STS" in error["message"], (name, error)
    assert ask(faulty, unique_role("fine")).status == 200


# -- store level: simulated time ---------------------------------------------------------


def rig(settings: Settings | None = None, seed: int = 11) -> tuple[FakeClock, FakeSts, Store]:
    clock = FakeClock()
    sts = FakeSts()
    store = Store(sts, settings, clock=clock, sleep=FakeSleep(clock), rng=random.Random(seed))
    return clock, sts, store


def entry_of(store: Store, key):
    (entry,) = [e for e in store.entries() if e.request == key]
    return entry


async def test_long_throttling_is_invisible_to_clients_and_backs_off_to_the_cap(
    record_property: RecordProperty,
) -> None:
    """STS throttling from the renewal time until the credentials fall under min_ttl (about
    25 simulated minutes of 5 s ticks): every request gets the held credentials, each failed
    renewal waits a full-jitter exponential back-off bounded by min(60 s, 2**n), the waits
    grow to the cap, and STS sees one call per back-off, never one per tick."""
    clock, sts, store = rig()
    key = role()
    try:
        held = await store.get(key, MIN_TTL)
        entry = entry_of(store, key)
        sts.fail = lambda r, now: THROTTLED
        clock.now = entry.renew_at
        outage_start = clock.now
        waits: list[tuple[int, float]] = []
        ticks = errors = served = 0
        while held.expiration - clock.now >= MIN_TTL:
            started = store.tick()
            ticks += 1
            for result in await asyncio.gather(*started, return_exceptions=True):
                assert isinstance(result, StsError) and result.code == "Throttling"
                waits.append((entry.failures_in_a_row, entry.renew_at - clock.now))
            for _ in range(3):
                try:
                    assert await store.get(key, MIN_TTL) is held
                    served += 1
                except StsError:
                    errors += 1
            clock.advance(TICK)
        outage = clock.now - outage_start
        assert errors == 0 and served == 3 * ticks
        assert outage > 20 * 60
        calls = len(sts.calls) - 1
        assert calls == len(waits)
        assert calls <= ticks / 4  # backing off, not calling every tick
        for attempt, wait in waits:
            assert 0 <= wait <= min(cache.BACKOFF_CAP, 2.0**attempt), (attempt, wait)
        late = [w for n, w in waits if n >= 6]
        early = [w for n, w in waits if n <= 3]
        assert statistics.mean(late) > 2 * statistics.mean(early)  # exponential growth
        assert max(late) > cache.BACKOFF_CAP / 2  # reaches the cap's range ...
        assert len({round(w, 6) for _, w in waits}) == len(waits)  # ... with jitter
        assert sts.max_running_per_key == 1
        record_property("STS calls while throttled", calls)
        record_property("requests served while throttled", served)
    finally:
        await store.close()


async def test_one_sts_call_in_flight_per_key_while_throttled() -> None:
    """While a throttled renewal hangs at STS, 100 callers (half needing more life than is
    held) and 20 more ticks start no second call for that key."""
    clock, sts, store = rig()
    key = role()
    try:
        held = await store.get(key, MIN_TTL)
        clock.now = entry_of(store, key).renew_at
        sts.fail = lambda r, now: THROTTLED
        sts.gate = threading.Event()
        sts.entered.clear()
        (renewal,) = store.tick()
        while not sts.entered.is_set():
            await asyncio.sleep(0.001)
        callers = [
            asyncio.create_task(store.get(key, MIN_TTL if i % 2 else 3000)) for i in range(100)
        ]
        for _ in range(20):
            assert store.tick() == []
            await asyncio.sleep(0)
        assert len(sts.calls) == 2
        sts.gate.set()
        results = await asyncio.gather(renewal, *callers, return_exceptions=True)
        assert all(r is held for r in results[2::2])  # content with what is held
        assert all(isinstance(r, StsError) for r in results[1::2])  # needed more: the error
        assert sts.max_running_per_key == 1
        assert len(sts.calls) == 2
    finally:
        sts.gate and sts.gate.set()
        await store.close()


async def test_sts_down_across_expiry_reports_the_last_error_and_never_serves_expired() -> None:
    """With STS failing from the renewal time on, requests get the held credentials while they
    have min_ttl left, then a 503 naming STS's last error, and no request ever gets
    credentials past their expiry, whatever min_ttl it asks for."""
    clock, sts, store = rig()
    key = role()
    try:
        held = await store.get(key, MIN_TTL)
        clock.now = entry_of(store, key).renew_at
        sts.fail = lambda r, now: UNAVAILABLE
        errors_seen = 0
        while clock.now < held.expiration + 600:
            await asyncio.gather(*store.tick(), return_exceptions=True)
            for min_ttl in (MIN_TTL, 60.0, 0.0):
                try:
                    got = await store.get(key, min_ttl)
                except StsError as exc:
                    assert exc.status == 503 and exc.code == "ServiceUnavailable"
                    assert "Service is unavailable" in exc.message
                    assert held.expiration - clock.now < min_ttl or clock.now >= held.expiration
                    errors_seen += 1
                else:
                    assert got is held
                    assert got.expiration - clock.now >= min_ttl
                    assert got.expiration > clock.now  # never expired
            clock.advance(TICK)
        assert errors_seen > 0
    finally:
        await store.close()


async def test_credentials_at_their_expiry_instant_are_not_served_even_for_min_ttl_0() -> None:
    """At the very instant credentials expire, a request content with any lifetime
    (min_ttl 0) gets fresh ones, not the expired ones, whether STS answers or not."""
    clock, sts, store = rig()
    key = role()
    try:
        held = await store.get(key, MIN_TTL)
        clock.now = held.expiration
        fresh = await store.get(key, 0)
        assert fresh is not held and fresh.expiration > clock.now
        clock.now = fresh.expiration
        sts.fail = lambda r, now: UNAVAILABLE
        with pytest.raises(StsError) as caught:
            await store.get(key, 0)
        assert caught.value.status == 503
    finally:
        await store.close()


async def test_access_denied_flood_at_store_level_costs_one_call_per_window() -> None:
    """1,000 concurrent and then 1,000 spread-out requests for a denied role over 30 simulated
    seconds cost one STS call per 10 s negative-cache window, and each caller gets the error."""
    clock, sts, store = rig(Settings(negative_ttl=10.0))
    key = role("denied")
    sts.fail = lambda r, now: DENIED
    try:
        burst = await asyncio.gather(
            *(store.get(key, MIN_TTL) for _ in range(1000)), return_exceptions=True
        )
        assert all(isinstance(r, StsError) and r.code == "AccessDenied" for r in burst)
        assert len(sts.calls) == 1
        for _ in range(1000):
            clock.advance(0.03)
            with pytest.raises(StsError):
                await store.get(key, MIN_TTL)
            if _ % 50 == 0:
                store.tick()
        assert len(sts.calls) == 3  # windows starting at 0, 10 and 20 s
        assert [round(c.now - T0) for c in sts.calls] == [0, 10, 20]
    finally:
        await store.close()


async def test_500_roles_created_at_once_spread_renewals_and_respect_the_sts_cap(
    record_property: RecordProperty,
) -> None:
    """500 roles assumed in the same instant: their renewals over three simulated hours never
    put more than 10 % of them in one 10 s window, and concurrent STS calls never exceed
    max_concurrent_sts (nor one per key)."""
    clock, sts, store = rig(Settings(max_concurrent_sts=8, idle_ttl=24 * 3600))
    sts.hold = 0.0005  # real time per call, so the calls overlap in the worker threads
    keys = [role(f"fleet-{i:03d}") for i in range(500)]
    try:
        await asyncio.gather(*(store.get(key, MIN_TTL) for key in keys))
        assert len(sts.calls) == 500
        renewals: list[float] = []
        end = T0 + 3 * 3600
        while clock.now < end:
            # Ticks every 5 s; those before the earliest renewal time would start nothing,
            # so the clock skips to the first tick at or after it.
            due = min(e.renew_at for e in store.entries())
            clock.now = max(clock.now + TICK, T0 + math.ceil((due - T0) / TICK) * TICK)
            started = store.tick()
            renewals.extend(clock.now for _ in started)
            await asyncio.gather(*started)
        assert len(renewals) >= 500 * 5  # each renewed at least five times
        renewals.sort()
        busiest, j = 0, 0
        for i, at in enumerate(renewals):
            while renewals[j] <= at - 10:
                j += 1
            busiest = max(busiest, i - j + 1)
        assert busiest <= 50, busiest
        assert sts.max_running <= 8
        assert sts.max_running_per_key == 1
        record_property("renewals of 500 roles in 3 h", len(renewals))
        record_property("busiest 10 s window of renewals", busiest)
    finally:
        await store.close()


def test_backoff_delay_is_full_jitter_exponential_up_to_the_cap() -> None:
    """backoff_delay draws from [0, min(cap, base * 2**n)]: its spread doubles per attempt
    until the cap, and a huge attempt number neither overflows nor exceeds the cap."""
    rng = random.Random(3)
    for attempt in range(12):
        bound = min(cache.BACKOFF_CAP, cache.BACKOFF_BASE * 2**attempt)
        draws = [cache.backoff_delay(attempt, rng) for _ in range(400)]
        assert min(draws) >= 0 and max(draws) <= bound
        assert max(draws) > 0.9 * bound  # the whole range is used: full jitter
        assert min(draws) < 0.1 * bound
    assert 0 <= cache.backoff_delay(10**6, rng) <= cache.BACKOFF_CAP
