"""Cache entries and the decisions about them: when to renew, what may be served, back-off.

Pure: every function takes the time (wall-clock seconds) and randomness as arguments, so the
rules test without a clock, a network or an event loop. `store.py` and `fetch.py` do the I/O
around them.
"""

import functools
import random
from dataclasses import dataclass, field
from typing import Protocol

from rolecached.core.request import Key
from rolecached.errors import StsFailure

MAX_RENEWAL_MARGIN = 30 * 60
# Jitter as a fraction of the renewal margin: 10 % for sessions of an hour or more, widening
# linearly to two thirds of the margin for the shortest session STS issues (15 min), whose
# 10 % would be only 45 s. Jitter only ever makes a renewal earlier, so every renewal stays
# at least the margin before expiry, above the lifetime floors callers ask for.
JITTER_FRACTION = 0.10
SHORT_JITTER_FRACTION = 2 / 3
SHORTEST_SESSION = 900
JITTER_WIDENS_BELOW = 3600
GOLDEN_FRACTION = (5**0.5 - 1) / 2
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0


def mask_key_id(access_key_id: str) -> str:
    """An access key id fit for a log line: the first four and last four characters."""
    if len(access_key_id) < 12:
        return "****"
    return f"{access_key_id[:4]}...{access_key_id[-4:]}"


@dataclass(frozen=True)
class Credentials:
    """Temporary credentials from STS. The repr shows no secret, so logs and tracebacks can't."""

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: float  # wall-clock seconds since the epoch
    issued_at: float
    assumed_role_arn: str = ""
    assumed_role_id: str = ""
    packed_policy_size: int | None = None
    source_identity: str | None = None
    expiration_text: str = ""  # as STS sent it, for byte-exact `sts assume-role` output

    @functools.cached_property  # an audit line names it with every hand-out
    def masked_key_id(self) -> str:
        return mask_key_id(self.access_key_id)

    def __repr__(self) -> str:
        return (
            f"Credentials(access_key_id={self.masked_key_id!r}, expiration={self.expiration}, "
            f"assumed_role_arn={self.assumed_role_arn!r})"
        )


@dataclass
class Entry:
    """One cache entry: the newest credentials for a request and what happened to them."""

    request: Key
    created_at: float
    last_used: float
    credentials: Credentials | None = None
    renew_at: float | None = None
    hits: int = 0
    sts_calls: int = 0
    last_sts_call: float | None = None
    last_error: StsFailure | None = None
    # Until this time a request that finds no usable credentials gets `last_error` at once
    # instead of a new STS call: a flood of callers never becomes a flood of STS calls.
    error_until: float | None = None
    # The source files' stamps when `last_error` came: once they differ it is not repeated.
    error_stamp: object = None
    failures_in_a_row: int = 0
    # Entries behind a container binding are renewed whether or not anyone asks.
    keep_warm: bool = False
    last_requester: str | None = None  # who took these credentials last (audit.describe_peer)
    # `last_used` on the awake clock (one that stops while the machine is suspended), so
    # idleness counts only time someone could have asked; None where no awake clock is kept.
    last_used_awake: float | None = None


def renewal_margin(lifetime: float) -> float:
    """How long before expiry renewal starts: 30 minutes, or half of a shorter session."""
    return min(MAX_RENEWAL_MARGIN, lifetime / 2)


class Uniform(Protocol):
    """Where jitter comes from: random.Random, or EvenSpread."""

    def uniform(self, a: float, b: float) -> float: ...


class EvenSpread:
    """Jitter draws that cover their range evenly however many are drawn at once: a
    golden-ratio (Weyl) sequence from a random start. Independent random draws bunch up (500
    of them over 300 s put 29 or more into some 10 s window about half the time); this
    sequence puts 500 renewals no more than a few over the average into any window."""

    def __init__(self, rng: random.Random) -> None:
        self._at = rng.random()

    def uniform(self, a: float, b: float) -> float:
        self._at = (self._at + GOLDEN_FRACTION) % 1.0
        return a + (b - a) * self._at


def jitter_fraction(lifetime: float) -> float:
    """The most jitter, as a fraction of the margin, for a session of `lifetime` seconds."""
    widening = (JITTER_WIDENS_BELOW - lifetime) / (JITTER_WIDENS_BELOW - SHORTEST_SESSION)
    widening = min(1.0, max(0.0, widening))
    return JITTER_FRACTION + (SHORT_JITTER_FRACTION - JITTER_FRACTION) * widening


def renewal_time(issued_at: float, expiration: float, rng: Uniform) -> float:
    """When to renew: `expiration - margin`, minus jitter of up to `jitter_fraction` of the
    margin (10 % from an hour up, two thirds for 15 minutes: 300 s).

    The jitter spreads renewals of entries created in the same moment over minutes.
    """
    lifetime = expiration - issued_at
    margin = renewal_margin(lifetime)
    return expiration - margin - rng.uniform(0, jitter_fraction(lifetime) * margin)


def servable(credentials: Credentials | None, now: float, min_ttl: float) -> bool:
    """True while the credentials have at least `min_ttl` seconds of life left (and, even
    for a `min_ttl` of 0, are not yet expired)."""
    return (
        credentials is not None
        and credentials.expiration - now >= min_ttl
        and credentials.expiration > now
    )


def backoff_delay(
    attempt: int, rng: random.Random, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP
) -> float:
    """Exponential back-off with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0, min(cap, base * 2 ** min(attempt, 30)))


def is_idle(entry: Entry, now: float, idle_ttl: float, awake: float | None = None) -> bool:
    """An entry nobody asked for in `idle_ttl` seconds stops renewing (unless kept warm).

    With `awake` (the awake clock's now) the seconds are awake ones: after a night's suspend
    an entry used just before it is still in use, and is renewed, not dropped.
    """
    if entry.keep_warm:
        return False
    if awake is not None and entry.last_used_awake is not None:
        return awake - entry.last_used_awake > idle_ttl
    return now - entry.last_used > idle_ttl


def due_for_renewal(entry: Entry, now: float, idle_ttl: float, awake: float | None = None) -> bool:
    """True when the background renewer should call STS for this entry now (renewal time
    and expiry are wall-clock times; idleness is awake time, see is_idle)."""
    if entry.credentials is None or entry.renew_at is None:
        return False
    if is_idle(entry, now, idle_ttl, awake):
        return False
    return now >= entry.renew_at


def should_drop(entry: Entry, now: float, idle_ttl: float, awake: float | None = None) -> bool:
    """True when an entry holds nothing worth keeping: a failure whose window has passed, or
    credentials that expired while nobody was asking for them."""
    if entry.credentials is None:
        return entry.error_until is None or now >= entry.error_until
    return entry.credentials.expiration <= now and is_idle(entry, now, idle_ttl, awake)
