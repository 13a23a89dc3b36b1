"""Fetching a key's credentials: one task per key, its signer first, then STS with retries.

A remembered error is repeated instead of a call while its window lasts and the source is
unchanged; refused source keys are reloaded once; an MFA code travels to STS once, no more.
"""

import asyncio
import contextvars
import logging
import random
from collections.abc import Awaitable, Callable

from rolecached.core import cache
from rolecached.core.cache import Credentials, Entry
from rolecached.core.prompts import BACKGROUND, Prompts, needs_code
from rolecached.core.renewal import record_failure, record_success
from rolecached.core.request import Key, MfaSession
from rolecached.core.stslane import StsLane
from rolecached.errors import (
    MfaCodeRejected,
    MfaRequired,
    RolecacheError,
    StsError,
    StsFailure,
    TemporarySource,
)

log = logging.getLogger(__name__)

# STS errors that mean the source credentials themselves were refused (expired or rotated).
SOURCE_REFUSED = frozenset({"ExpiredToken", "InvalidClientTokenId"})
# (key, MFA code or None) -> the credentials that sign its call, None for the source's own
Signer = Callable[[Key, str | None], Awaitable[Credentials | None]]
Sleep = Callable[[float], Awaitable[None]]


def code_refused(request: Key, failure: StsFailure) -> bool:
    """True when a call that carried an MFA code failed for the code (wrong or reused)."""
    return (
        isinstance(request, MfaSession) and not failure.retryable
    ) or "MultiFactorAuthentication" in failure.message


class Fetcher:
    """Starts and tracks the STS fetches in flight (`inflight`), one per key."""

    def __init__(
        self,
        lane: StsLane,
        prompts: Prompts,
        signer: Signer,
        *,
        clock: Callable[[], float],
        sleep: Sleep,
        rng: random.Random,
        reload_sources: Callable[[], None],
        source_stamp: Callable[[Key], object],
        negative_ttl: Callable[[], float],
    ) -> None:
        self.lane = lane
        self.inflight: dict[Key, asyncio.Task[Credentials]] = {}
        self._prompts = prompts
        self._signer = signer
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        # Renewal jitter from an evenly spreading sequence: keys assumed in the same moment
        # renew spread out, not in random clumps.
        self._spread = cache.EvenSpread(rng)
        self._reload_sources = reload_sources
        # What the key's source credentials are read from, as it is now: a remembered
        # error whose stamp no longer matches has lost its cause and is not repeated.
        self._source_stamp = source_stamp
        self._negative_ttl = negative_ttl

    def remembered(self, entry: Entry, now: float, token_code: str | None) -> bool:
        """True when a request must get the entry's last error again, without an STS call:
        within its window, the source files unchanged since, and no MFA code given (a new
        code is an explicit retry)."""
        if not entry.last_error or entry.error_until is None or now >= entry.error_until:
            return False
        if token_code is not None:
            return False
        if self._source_stamp(entry.request) == entry.error_stamp:
            return True
        # The source changed (credentials file edited, a new SSO token): the error is
        # forgotten, once, and the source read afresh by the call this request makes.
        entry.error_until = None
        log.info(
            "source of %s changed since %s: trying again",
            entry.request.describe(),
            entry.last_error,
        )
        self._reload_sources()
        return False

    def start(
        self, entry: Entry, attempts: int, token_code: str | None = None, background: bool = False
    ) -> asyncio.Task[Credentials]:
        """Start fetching the entry's credentials as a task others can join."""
        key = entry.request
        context = contextvars.copy_context()
        if background:
            context.run(BACKGROUND.set, True)  # seen by the hops this fetch signs with, too
        task = asyncio.get_running_loop().create_task(
            self._fetch(entry, attempts, token_code), context=context
        )
        self.inflight[key] = task

        def done(finished: asyncio.Task[Credentials]) -> None:
            if self.inflight.get(key) is finished:
                del self.inflight[key]
            if not finished.cancelled():
                finished.exception()  # retrieved here: a failed renewal nobody awaits is fine

        task.add_done_callback(done)
        return task

    def cancel_all(self) -> None:
        """Cancel every fetch in flight."""
        for task in list(self.inflight.values()):
            task.cancel()

    async def _fetch(self, entry: Entry, attempts: int, token_code: str | None) -> Credentials:
        request = entry.request
        renewing = entry.credentials is not None
        signer = await self._sign(entry, token_code, renewing)
        # A call that carries an MFA code is made once: STS takes a code once, and a code sent
        # again (after throttling, say) would be refused or, worse, count as a replay.
        carries_code = token_code is not None and needs_code(request)
        result = await self._attempts(entry, signer, token_code, attempts, renewing)
        if isinstance(result, Credentials):
            return result
        if carries_code and code_refused(request, result):
            # A wrong or reused code: say so and let the caller try another; nothing of the
            # failure is remembered, so the next code is tried at once.
            entry.last_error = result
            log.warning("MFA code for %s refused (%s)", request.mfa_serial, result)
            raise MfaCodeRejected(f"{request.mfa_serial}: STS {result}")
        now = self._clock()
        stamp = self._source_stamp(request)
        record_failure(entry, result, now, self._rng, self._negative_ttl(), stamp)
        raise StsError(result, request.describe())

    async def _sign(
        self, entry: Entry, token_code: str | None, renewing: bool
    ) -> Credentials | None:
        """The signer of the entry's call; a renewal whose signer fails waits or backs off."""
        try:
            return await self._signer(entry.request, token_code)
        except MfaRequired:
            if renewing:
                # Renewal waits for the next caller who can type a code; the held
                # credentials keep being served until then.
                entry.renew_at = None
                log.info("renewal of %s waits for an MFA code", entry.request.describe())
            raise
        except RolecacheError:
            if renewing:  # the previous hop failed: back off like a failed renewal
                entry.renew_at = self._clock() + cache.backoff_delay(
                    entry.failures_in_a_row, self._rng
                )
            raise

    async def _attempts(
        self,
        entry: Entry,
        signer: Credentials | None,
        token_code: str | None,
        attempts: int,
        renewing: bool,
    ) -> Credentials | StsFailure:
        """Call STS up to `attempts` times; the credentials, or the last failure."""
        request = entry.request
        # Only a call that needs the code gets it: it must travel to STS once, no more.
        code = token_code if needs_code(request) else None
        carries_code = code is not None
        reloaded = False
        attempt = 0
        while True:
            try:
                result = await self.lane.call(entry, signer, code)
            except TemporarySource as exc:
                if renewing:  # the source became temporary since: renewing cannot succeed
                    entry.renew_at = None
                    log.warning("stopped renewing %s: %s", request.describe(), exc.message)
                raise
            if isinstance(result, Credentials):
                self._hold(entry, result, renewing)
                return result
            self.lane.errors += 1
            if result.code in SOURCE_REFUSED and signer is None and not reloaded:
                # The long-term keys may have been rotated, or an SSO or profile session
                # refreshed, since they were loaded: load them again once before giving up
                # (a call with a code is not repeated: the reload serves the next code).
                log.warning(
                    "STS refused the source credentials of %s (%s): reloading them from "
                    "their chain%s",
                    request.describe(),
                    result,
                    "" if carries_code else " and trying again",
                )
                self._reload_sources()
                reloaded = True
                if not carries_code:
                    continue
            attempt += 1
            if not result.retryable or attempt == attempts or carries_code:
                return result
            delay = cache.backoff_delay(attempt - 1, self._rng, base=0.25, cap=2.0)
            log.warning("retrying %s in %.2f s after %s", request.describe(), delay, result)
            await self._sleep(delay)

    def _hold(self, entry: Entry, credentials: Credentials, renewing: bool) -> None:
        on_demand = needs_code(entry.request)
        record_success(
            entry, credentials, renewing, self._clock(), self._spread, on_demand=on_demand
        )
        if on_demand:
            self._prompts.end(entry.request)  # callers waiting for this code's credentials go on
