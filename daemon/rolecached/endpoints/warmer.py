"""Keeping the bindings' credentials ready with nobody asking.

A binding whose entry holds nothing servable at the IMDS floor (after a forget, a failed
start, a renewal that gave up) is fetched in the background by the manager's tick. While
fetching fails it backs off, 5 s doubling to 5 min with jitter, and it stops trying once the
role needs an MFA code, which only a person can type.
"""

import asyncio
import logging
import random
from collections.abc import Callable, Iterable

from rolecached.core import cache
from rolecached.core.bindings import IMDS_MIN_TTL
from rolecached.core.cache import Credentials
from rolecached.core.store import Store
from rolecached.endpoints.registry import Served
from rolecached.errors import MfaRequired, RolecacheError

log = logging.getLogger(__name__)

BACKOFF_BASE, BACKOFF_CAP = 5.0, 300.0


def due(served: Served, held: Credentials | None, now: float) -> bool:
    """True when `served` is to be warmed at `now`: its entry's credentials `held` are not
    servable at the IMDS floor, no fetch of its runs, and its back-off is over."""
    busy = served.warm_task is not None and not served.warm_task.done()
    return not cache.servable(held, now, IMDS_MIN_TTL) and not busy and now >= served.next_warm


def failed(served: Served, error: RolecacheError, now: float, rng: random.Random) -> None:
    """Record a failed warm-up of `served` at `now`: the next try waits out the back-off, or
    never comes when the role needs an MFA code, which only a person can type."""
    if isinstance(error, MfaRequired):
        served.next_warm = float("inf")
        served.last_error = "needs an MFA code"
        return
    served.warm_failures += 1
    delay = cache.backoff_delay(served.warm_failures, rng, base=BACKOFF_BASE, cap=BACKOFF_CAP)
    served.next_warm = now + delay
    served.last_error = error.message


def succeeded(served: Served) -> None:
    """Record a warm-up that fetched credentials: the back-off starts over."""
    served.warm_failures = 0
    served.next_warm = 0.0
    served.last_error = None


class Warmer:
    """Starts the background fetches of bindings that have nothing to serve."""

    def __init__(self, store: Store, clock: Callable[[], float], rng: random.Random) -> None:
        self.store = store
        self.clock = clock
        self.rng = rng

    def tick(self, bindings: Iterable[Served]) -> None:
        """Start warming each of `bindings` that is `due` now (a task on the running loop)."""
        now = self.clock()
        held = {e.request: e.credentials for e in self.store.entries()}
        for served in bindings:
            if due(served, held.get(served.binding.request), now):
                served.warm_task = asyncio.get_running_loop().create_task(self.warm(served))

    async def warm(self, served: Served) -> Credentials | None:
        """Fetch a binding's credentials with nobody asking; back off while it fails."""
        name = served.binding.name
        try:
            creds = await self.store.get(served.binding.request, IMDS_MIN_TTL)
        except RolecacheError as exc:
            now = self.clock()
            failed(served, exc, now, self.rng)
            if isinstance(exc, MfaRequired):
                log.warning(
                    "endpoint %s needs an MFA code: run `rolecache endpoint add %s ... "
                    "--replace` in a terminal",
                    name,
                    name,
                )
            else:
                delay = served.next_warm - now
                log.warning(
                    "endpoint %s has no credentials (%s); next try in %.0f s", name, exc, delay
                )
            return None
        succeeded(served)
        return creds
