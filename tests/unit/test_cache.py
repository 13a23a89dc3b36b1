"""The pure cache rules: renewal timing and jitter, what may be served, back-off, idleness,
dropping, and that credentials never show their secrets in a repr."""

import bisect
import random

import pytest

from rolecached.core import cache
from rolecached.core.cache import Credentials, Entry
from rolecached.core.request import RoleRequest

T0 = 1_700_000_000.0
HOUR = 3600.0
REQUEST = RoleRequest(
    role_arn="arn:aws:iam::123456789012:role/app", role_session_name="rolecache-test"
)

KEY_ID = "ASIAEXAMPLEKEYID7Q2Z"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLETOKENqwertyuiopasdfghjklzxcvbnm1234567890"


def make_credentials(issued_at: float = T0, lifetime: float = HOUR) -> Credentials:
    return Credentials(
        access_key_id=KEY_ID,
        secret_access_key=SECRET,
        session_token=TOKEN,
        expiration=issued_at + lifetime,
        issued_at=issued_at,
        assumed_role_arn="arn:aws:sts::123456789012:assumed-role/app/rolecache-test",
    )


def make_entry(
    *,
    last_used: float = T0,
    credentials: Credentials | None = None,
    renew_at: float | None = None,
    error_until: float | None = None,
    keep_warm: bool = False,
) -> Entry:
    return Entry(
        REQUEST,
        created_at=T0,
        last_used=last_used,
        credentials=credentials,
        renew_at=renew_at,
        error_until=error_until,
        keep_warm=keep_warm,
    )


# -- renewal timing ---------------------------------------------------------------------


def test_renewal_time_for_one_hour_session_is_30_minutes_before_expiry_minus_jitter():
    """A 1 h session renews between 33 and 30 minutes before expiry (30 min margin, 10 % jitter)."""
    rng = random.Random(1)
    expiration = T0 + HOUR
    times = [cache.renewal_time(T0, expiration, rng) for _ in range(2000)]
    assert all(expiration - 1800 - 180 <= t <= expiration - 1800 for t in times)
    # The whole jitter range is used, not just one end of it.
    assert min(times) < expiration - 1800 - 170
    assert max(times) > expiration - 1800 - 10


def test_renewal_margin_for_short_session_is_half_its_lifetime():
    """A 15 min session has a 7.5 min margin (half its life) and 300 s of jitter, so it
    renews 2.5 to 7.5 min after it was issued."""
    assert cache.renewal_margin(900) == 450
    assert cache.renewal_margin(2 * HOUR) == cache.MAX_RENEWAL_MARGIN
    rng = random.Random(2)
    expiration = T0 + 900
    times = [cache.renewal_time(T0, expiration, rng) for _ in range(1000)]
    assert all(expiration - 450 - 300 <= t <= expiration - 450 for t in times)
    assert min(times) < expiration - 450 - 290


@pytest.mark.parametrize("lifetime", [900, 1200, 1800, 2700, 3599, 3600, 7200, 43200])
def test_jitter_only_moves_renewal_earlier_and_never_before_issue(lifetime):
    """For every session length, renewal falls between well after issue and the margin
    before expiry (so above every lifetime floor a caller can ask of such a session), and
    the jitter widens smoothly from 10 % of the margin at an hour to 300 s at 15 minutes."""
    margin = cache.renewal_margin(lifetime)
    widest = cache.jitter_fraction(lifetime) * margin
    rng = random.Random(lifetime)
    times = [cache.renewal_time(T0, T0 + lifetime, rng) for _ in range(500)]
    assert all(T0 + lifetime - margin - widest <= t <= T0 + lifetime - margin for t in times)
    assert min(times) - T0 >= lifetime / 6  # never a renewal right after the issue
    assert widest >= max(0.10 * margin, min(300.0, widest))
    if lifetime >= HOUR:
        assert widest == pytest.approx(0.10 * margin)
    if lifetime == 900:
        assert widest == pytest.approx(300.0)


def test_even_spread_covers_its_range_evenly_from_a_random_start():
    """EvenSpread's draws stay in range, never repeat, fill any stretch of 500 draws with no
    tenth of the range holding more than 11 % of them, and differ between seeds."""
    spread = cache.EvenSpread(random.Random(5))
    draws = [spread.uniform(0, 300) for _ in range(500)]
    assert all(0 <= d < 300 for d in draws) and len(set(draws)) == 500
    tenths = [sum(1 for d in draws if 30 * k <= d < 30 * (k + 1)) for k in range(10)]
    assert max(tenths) <= 55, tenths
    starts = {cache.EvenSpread(random.Random(seed)).uniform(0, 1) for seed in range(20)}
    assert len(starts) == 20


def test_renewal_jitter_varies_between_rng_draws():
    """Two entries issued at the same instant get different renewal times."""
    rng = random.Random(3)
    times = [cache.renewal_time(T0, T0 + HOUR, rng) for _ in range(100)]
    assert len(set(times)) == 100
    seeded = {cache.renewal_time(T0, T0 + HOUR, random.Random(seed)) for seed in range(20)}
    assert len(seeded) == 20


def test_renewal_jitter_spreads_500_keys_so_no_10_second_window_holds_over_10_percent():
    """500 entries created in one moment renew spread out: no 10 s window holds more than 50."""
    rng = random.Random(4)
    times = sorted(cache.renewal_time(T0, T0 + HOUR, rng) for _ in range(500))
    busiest = max(bisect.bisect_left(times, t + 10.0) - i for i, t in enumerate(times))
    assert busiest <= 50
    # The spread covers most of the 3-minute jitter range.
    assert times[-1] - times[0] > 150


# -- what may be served -----------------------------------------------------------------


def test_servable_respects_min_ttl_at_the_boundary():
    """Credentials with exactly min_ttl left are served; a hair less is not; none never are."""
    credentials = make_credentials()
    min_ttl = 300.0
    boundary = credentials.expiration - min_ttl
    assert cache.servable(credentials, boundary, min_ttl)
    assert not cache.servable(credentials, boundary + 0.001, min_ttl)
    assert cache.servable(credentials, T0, HOUR)
    assert not cache.servable(credentials, T0, HOUR + 1)
    assert not cache.servable(credentials, credentials.expiration + 1, 0)
    assert not cache.servable(None, T0, 0)


# -- back-off ---------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 5, 6, 10, 40, 1000])
def test_backoff_delay_stays_within_full_jitter_bounds(attempt):
    """Every back-off delay lies in [0, min(cap, base * 2**attempt)] and reaches near the top."""
    rng = random.Random(attempt)
    base, cap = 1.0, 60.0
    bound = min(cap, base * 2.0 ** min(attempt, 64))
    delays = [cache.backoff_delay(attempt, rng, base=base, cap=cap) for _ in range(500)]
    assert all(0 <= d <= bound for d in delays)
    assert max(delays) > 0.9 * bound
    assert min(delays) < 0.1 * bound


def test_backoff_delay_is_capped():
    """Past the cap the delay stops growing: attempt 20 with cap 60 never exceeds 60 s."""
    rng = random.Random(5)
    delays = [cache.backoff_delay(20, rng) for _ in range(500)]
    assert max(delays) <= cache.BACKOFF_CAP
    assert max(delays) > 50  # the cap is the bound, not something far below it
    small_cap = [cache.backoff_delay(8, rng, base=0.25, cap=2.0) for _ in range(500)]
    assert max(small_cap) <= 2.0


def test_backoff_delay_grows_with_attempts():
    """The back-off bound doubles per attempt: later attempts wait longer on average."""
    rng = random.Random(6)

    def mean(attempt: int) -> float:
        return sum(cache.backoff_delay(attempt, rng) for _ in range(2000)) / 2000

    assert mean(0) < mean(2) < mean(4)
    assert mean(4) == pytest.approx(8.0, rel=0.1)


# -- idleness, renewal and dropping -----------------------------------------------------


def test_is_idle_after_idle_ttl_without_requests():
    """An entry becomes idle only once more than idle_ttl passed since its last request."""
    entry = make_entry(last_used=T0)
    assert not cache.is_idle(entry, T0 + 100, idle_ttl=100)
    assert cache.is_idle(entry, T0 + 100.5, idle_ttl=100)


def test_keep_warm_entries_are_never_idle():
    """An entry behind a container binding is never idle, however long nobody asks."""
    entry = make_entry(last_used=T0, keep_warm=True)
    assert not cache.is_idle(entry, T0 + 365 * 24 * HOUR, idle_ttl=100)


def test_due_for_renewal_only_at_renew_at_with_credentials_and_not_idle():
    """Renewal is due at renew_at for an entry with credentials that someone still uses."""
    credentials = make_credentials()
    renew_at = T0 + 1800
    entry = make_entry(credentials=credentials, renew_at=renew_at)
    idle_ttl = 8 * HOUR
    assert not cache.due_for_renewal(entry, renew_at - 0.1, idle_ttl)
    assert cache.due_for_renewal(entry, renew_at, idle_ttl)
    assert cache.due_for_renewal(entry, renew_at + 60, idle_ttl)
    # Nothing to renew without credentials or a renewal time.
    assert not cache.due_for_renewal(make_entry(renew_at=renew_at), renew_at, idle_ttl)
    assert not cache.due_for_renewal(make_entry(credentials=credentials), renew_at, idle_ttl)


def test_idle_entries_are_not_due_for_renewal_unless_kept_warm():
    """An idle entry is not renewed; the same entry kept warm is."""
    credentials = make_credentials()
    renew_at = T0 + 1800
    idle = make_entry(last_used=T0, credentials=credentials, renew_at=renew_at)
    warm = make_entry(last_used=T0, credentials=credentials, renew_at=renew_at, keep_warm=True)
    assert not cache.due_for_renewal(idle, renew_at, idle_ttl=600)
    assert cache.due_for_renewal(warm, renew_at, idle_ttl=600)


def test_should_drop_failure_only_after_its_window():
    """An entry holding only a failure is kept during its negative-cache window, then dropped."""
    assert cache.should_drop(make_entry(), T0, idle_ttl=600)
    failed = make_entry(error_until=T0 + 10)
    assert not cache.should_drop(failed, T0 + 9.9, idle_ttl=600)
    assert cache.should_drop(failed, T0 + 10, idle_ttl=600)


def test_should_drop_credentials_only_when_expired_and_idle():
    """Credentials are dropped only once expired and idle; used or warm ones stay."""
    credentials = make_credentials()
    expiry = credentials.expiration
    idle_ttl = 600
    assert not cache.should_drop(make_entry(credentials=credentials), expiry - 1, idle_ttl)
    used_recently = make_entry(last_used=expiry - 60, credentials=credentials)
    assert not cache.should_drop(used_recently, expiry, idle_ttl)
    idle = make_entry(last_used=T0, credentials=credentials)
    assert not cache.should_drop(idle, expiry - 1, idle_ttl)
    assert cache.should_drop(idle, expiry, idle_ttl)
    warm = make_entry(last_used=T0, credentials=credentials, keep_warm=True)
    assert not cache.should_drop(warm, expiry + HOUR, idle_ttl)


# -- secrets ----------------------------------------------------------------------------


def test_mask_key_id_shows_only_first_and_last_four():
    """A masked key id keeps the first and last four characters and hides the middle."""
    assert cache.mask_key_id(KEY_ID) == "ASIA...7Q2Z"
    assert cache.mask_key_id("ABCDEFGHIJKL") == "ABCD...IJKL"
    assert cache.mask_key_id("ABCDEFGHIJK") == "****"
    assert cache.mask_key_id("") == "****"


def test_credentials_repr_hides_secret_token_and_full_key_id():
    """repr/str of credentials (alone or inside containers) show no secret, token or key id."""
    credentials = make_credentials()
    for text in (repr(credentials), str(credentials), repr([credentials]), f"{credentials!r}"):
        assert SECRET not in text
        assert TOKEN not in text
        assert KEY_ID not in text
        assert "ASIA...7Q2Z" in text
    assert credentials.masked_key_id == "ASIA...7Q2Z"
