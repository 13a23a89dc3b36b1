"""What an STS answer does to an entry, and which entries the renewer renews or drops.

No event loop and no STS call: the time, randomness and source stamp come as arguments;
the only side effect besides the entry is a log line.
"""

import logging
import random
from collections.abc import Container, Iterable

from rolecached.core import cache
from rolecached.core.cache import Credentials, Entry
from rolecached.core.request import Key, MfaSession
from rolecached.errors import StsFailure

log = logging.getLogger(__name__)


def record_success(
    entry: Entry,
    credentials: Credentials,
    renewing: bool,
    now: float,
    spread: cache.Uniform,
    *,
    on_demand: bool,
) -> None:
    """Hold new credentials and schedule their renewal; `on_demand` (renewing needs a new MFA
    code) schedules none."""
    entry.credentials = credentials
    entry.renew_at = cache.renewal_time(credentials.issued_at, credentials.expiration, spread)
    entry.last_error = None
    entry.error_until = None
    entry.failures_in_a_row = 0
    if on_demand:
        entry.renew_at = None  # renewing needs a new code: done on demand, not on a timer
    if isinstance(entry.request, MfaSession):
        log.info(
            "opened %s: expires in %.0f s",
            entry.request.describe(),
            credentials.expiration - now,
        )
        return
    log.info(
        "%s %s: key %s, expires in %.0f s, %s",
        "renewed" if renewing else "assumed",
        entry.request.describe(),
        credentials.masked_key_id,
        credentials.expiration - now,
        "renewing needs a new MFA code"
        if entry.renew_at is None
        else f"renewal in {entry.renew_at - now:.0f} s",
    )


def record_failure(
    entry: Entry,
    failure: StsFailure,
    now: float,
    rng: random.Random,
    negative_ttl: float,
    stamp: object,
) -> None:
    """Remember a failed STS call: back off after a temporary one (still serving what is
    held), drop the credentials after a permanent one and repeat it for `negative_ttl`."""
    entry.last_error = failure
    entry.error_stamp = stamp
    entry.failures_in_a_row += 1
    if not failure.retryable:
        # STS said no for good: drop what we had and remember the answer briefly.
        entry.credentials = None
        entry.renew_at = None
        entry.error_until = now + negative_ttl
        log.error("assuming %s failed permanently (%s)", entry.request.describe(), failure)
        return
    delay = cache.backoff_delay(entry.failures_in_a_row, rng)
    entry.error_until = now + delay
    if entry.credentials is not None:
        # Back off even once the held credentials expired: otherwise renew_at stays
        # in the past and every tick calls STS again, feeding the throttling.
        entry.renew_at = now + delay
    if cache.servable(entry.credentials, now, 0):
        log.warning(
            "renewal of %s failed (%s); still serving the current credentials "
            "(%.0f s left), retrying in %.1f s",
            entry.request.describe(),
            failure,
            entry.credentials.expiration - now,  # type: ignore[union-attr]
            delay,
        )
    else:
        log.error("assuming %s failed (%s)", entry.request.describe(), failure)


def sweep(
    entries: Iterable[tuple[Key, Entry]],
    busy: Container[Key],
    now: float,
    idle_ttl: float,
    awake: float,
) -> tuple[list[Key], list[Entry]]:
    """The keys to drop and the entries due for renewal now, skipping those in flight."""
    drop: list[Key] = []
    renew: list[Entry] = []
    for key, entry in entries:
        if key in busy:
            continue
        if cache.should_drop(entry, now, idle_ttl, awake):
            drop.append(key)
        elif cache.due_for_renewal(entry, now, idle_ttl, awake):
            renew.append(entry)
    return drop, renew
