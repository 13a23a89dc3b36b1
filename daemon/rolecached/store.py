"""The in-memory credential store: serves, coalesces, renews and retries.

All decisions come from `cache.py`; this module adds the event loop around them. Time, sleep,
randomness and the STS call are injected, so tests drive a simulated day in milliseconds.
"""

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields

from rolecached import cache
from rolecached.cache import Credentials, Entry
from rolecached.errors import (
    MfaCodeRejected,
    MfaRequired,
    RolecacheError,
    StsError,
    StsFailure,
    StsTimeout,
    TemporarySource,
)
from rolecached.request import MfaSession, RoleRequest, SourceSession
from rolecached.sts import StsCallFailed

log = logging.getLogger(__name__)

Key = RoleRequest | MfaSession | SourceSession
# (request, now, signing credentials or None, MFA code or None) -> credentials
CallSts = Callable[[Key, float, Credentials | None, str | None], Credentials]
Sleep = Callable[[float], Awaitable[None]]

# STS errors that mean the source credentials themselves were refused (expired or rotated).
SOURCE_REFUSED = frozenset({"ExpiredToken", "InvalidClientTokenId"})
# Credentials that only sign the next hop's AssumeRole call need just a little life left.
SIGNER_MIN_TTL = 60.0
# How long other callers wait, by default, for the one caller who was asked for an MFA code.
MFA_PROMPT_WAIT = 25.0
# True inside renewals the renewer starts (no caller behind them to type an MFA code).
_BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar("background", default=False)
# True inside a request whose caller said it cannot type a code (no terminal).
_CANNOT_PROMPT: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "cannot_prompt", default=False
)


@dataclass(frozen=True)
class Settings:
    """Tunables of the store; `config.py` reads them from the TOML config."""

    idle_ttl: float = 8 * 3600  # stop renewing what nobody asked for in a working day
    negative_ttl: float = 10.0  # how long a permanent STS error is remembered
    max_concurrent_sts: int = 8
    request_timeout: float = 20.0  # how long a request waits for STS before a 504
    cold_attempts: int = 3  # tries for a request that has nothing to fall back on
    tick: float = 5.0  # how often the renewer looks at the clock
    max_sessions: int = 20000  # beyond this the least recently used entry is dropped
    # Which AWS CLI generation `rolecache sts assume-role` reproduces (bytes, exit codes):
    # 1 or 2. Not the store's, but [daemon] is where settings live.
    cli_version: int = 1


def describe(request: Key) -> str:
    """How log lines and error messages name a cache entry (no secrets in a request)."""
    return request.describe()


def needs_code(key: Key) -> bool:
    """True when the key's own STS call carries an MFA code (an MFA session, or a role with
    MFA over an hour): renewing it needs a new code, so only a caller can."""
    return isinstance(key, MfaSession) or (isinstance(key, RoleRequest) and key.direct_mfa)


def code_key(key: Key) -> Key | None:
    """The key behind `key` whose STS call an MFA code is for: itself, or the MFA session at
    the root of its chain; None when no code is involved."""
    if needs_code(key):
        return key
    root = key
    while isinstance(root, RoleRequest) and root.source_role is not None:
        root = root.source_role
    if isinstance(root, RoleRequest) and root.mfa_session is not None:
        return root.mfa_session
    return None


class Store:
    """Holds entries in memory; one STS call in flight per key, at most N in all."""

    def __init__(
        self,
        call_sts: CallSts,
        settings: Settings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        reload_sources: Callable[[], None] = lambda: None,
        awake_clock: Callable[[], float] | None = None,
        mfa_prompt_wait: float = MFA_PROMPT_WAIT,
        source_stamp: Callable[[Key], object] = lambda key: None,
    ) -> None:
        self.settings = settings or Settings()
        # What the key's source credentials are read from, as it is now: a remembered
        # error whose stamp no longer matches has lost its cause and is not repeated.
        self._source_stamp = source_stamp
        self._mfa_prompt_wait = mfa_prompt_wait
        # Idleness is measured in awake seconds: time.monotonic is CLOCK_MONOTONIC on Linux,
        # which stops while the machine is suspended (CLOCK_BOOTTIME would not). A test that
        # fakes only the wall clock gets its fake clock for both.
        if awake_clock is None:
            awake_clock = time.monotonic if clock is time.time else clock
        self._awake = awake_clock
        self._call = call_sts
        self._reload_sources = reload_sources
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        # Renewal jitter from an evenly spreading sequence: keys assumed in the same moment
        # renew spread out, not in random clumps.
        self._spread = cache.EvenSpread(self._rng)
        self._entries: dict[Key, Entry] = {}
        # Told of every entry dropped (forgotten, evicted, expired): whoever keeps a
        # rendered copy of its credentials lets it go too.
        self._drop_listeners: list[Callable[[Key], None]] = []
        self._inflight: dict[Key, asyncio.Task[Credentials]] = {}
        # Keys whose MFA code one caller is typing now: others wait instead of prompting.
        self._prompts: dict[Key, tuple[float, asyncio.Event]] = {}
        self._sts_slots = asyncio.Semaphore(self.settings.max_concurrent_sts)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.settings.max_concurrent_sts, thread_name_prefix="sts"
        )
        self.sts_calls = 0
        self.sts_errors = 0
        # Keys behind container bindings: their entries are renewed whether or not anyone
        # asks, also when they are created again after a forget or a failure.
        self._pinned: set[Key] = set()

    # -- serving ------------------------------------------------------------------------

    async def get(
        self,
        request: Key,
        min_ttl: float,
        token_code: str | None = None,
        requester: str | None = None,
        can_prompt: bool = True,
    ) -> Credentials:
        """Credentials with at least `min_ttl` seconds left, from memory or from STS.

        `token_code` is an MFA code for the MFA session behind the request, if it needs one;
        `requester` says who asked, for the audit trail. A caller that cannot type a code
        (`can_prompt` false) gets MfaRequired at once and ends any prompt others wait for.
        """
        if can_prompt:
            return await self._get(request, min_ttl, token_code, requester)
        pending = code_key(request)
        if pending is not None:
            # The caller who was asked for a code said it has no terminal: nobody is typing
            # one, so those waiting for it are asked themselves, now.
            self._end_prompt(pending)
        marked = _CANNOT_PROMPT.set(True)  # seen by the fetches this request starts, too
        try:
            return await self._get(request, min_ttl, token_code, requester)
        finally:
            _CANNOT_PROMPT.reset(marked)

    async def _get(
        self, request: Key, min_ttl: float, token_code: str | None, requester: str | None
    ) -> Credentials:
        held = self.peek(request, min_ttl)
        if held is not None:
            self.record_hit(request, requester)
            return held
        now = self._clock()
        entry = self._entries.get(request)
        if entry is None:
            if len(self._entries) >= self.settings.max_sessions:
                self._evict_least_recently_used()
            entry = self._entries[request] = Entry(
                request, created_at=now, last_used=now, keep_warm=request in self._pinned
            )
        entry.last_used = now
        entry.last_used_awake = self._awake()
        if requester is not None:
            entry.last_requester = requester
        if self._remembered(entry, now, token_code):
            raise StsError(entry.last_error, describe(request))  # type: ignore[arg-type]
        if needs_code(request) and token_code is None and request not in self._inflight:
            return await self._await_mfa(entry, min_ttl)
        if token_code is not None and request in self._inflight:
            # The fetch in flight may have started without a code and be waiting for the MFA
            # session this code opens: open it first instead of joining with the code unused.
            session = code_key(request)
            if isinstance(session, MfaSession) and session != request:
                await self.get(session, SIGNER_MIN_TTL, token_code)

        task = self._inflight.get(request) or self._start_fetch(
            entry, self.settings.cold_attempts, token_code
        )
        try:
            credentials = await asyncio.wait_for(
                asyncio.shield(task), self.settings.request_timeout
            )
        except TimeoutError:
            last = f" (last error: {entry.last_error})" if entry.last_error else ""
            raise StsTimeout(
                f"{describe(request)}: STS did not answer within "
                f"{self.settings.request_timeout:.0f} s{last}"
            ) from None
        left = credentials.expiration - self._clock()
        if left < min_ttl:
            raise RolecacheError(
                f"{describe(request)}: STS issued credentials with {left:.0f} s left, less "
                f"than the {min_ttl:.0f} s asked for; lower --min-ttl or check the role's "
                "maximum session duration",
                code="LifetimeTooShort",
            )
        return credentials

    # -- STS calls ----------------------------------------------------------------------

    def _evict_least_recently_used(self) -> None:
        """Make room for one entry: drop the one asked for longest ago (never one in flight
        or behind a container binding). A scan, but only ever at the cap."""
        candidates = [
            e for k, e in self._entries.items() if k not in self._inflight and not e.keep_warm
        ]
        if not candidates:
            return
        victim = min(candidates, key=lambda e: e.last_used)
        self._drop(victim.request)
        log.warning(
            "session cap (%d) reached: dropped %s, unused for %.0f s",
            self.settings.max_sessions,
            describe(victim.request),
            self._clock() - victim.last_used,
        )

    def peek(self, request: Key, min_ttl: float, now: float | None = None) -> Credentials | None:
        """The held credentials if they have `min_ttl` left at `now` (default: the store's
        clock), else None; never calls STS."""
        now = self._clock() if now is None else now
        entry = self._entries.get(request)
        if entry is None or not cache.servable(entry.credentials, now, min_ttl):
            return None
        return entry.credentials

    def record_hit(self, request: Key, requester: str | None = None) -> None:
        """Count a request served from memory, and note who asked (the audit trail)."""
        entry = self._entries.get(request)
        if entry is not None:
            entry.hits += 1
            entry.last_used = self._clock()
            entry.last_used_awake = self._awake()
            if requester is not None:
                entry.last_requester = requester

    def now(self) -> float:
        """The store's clock."""
        return self._clock()

    def _remembered(self, entry: Entry, now: float, token_code: str | None) -> bool:
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
            "source of %s changed since %s: trying again", describe(entry.request), entry.last_error
        )
        self._reload_sources()
        return False

    async def _await_mfa(self, entry: Entry, min_ttl: float) -> Credentials:
        """No valid credentials for a key that needs a code, and no code: the first caller is
        asked for one (MfaRequired); callers arriving while it is being typed wait instead."""
        key = entry.request
        serial = key.mfa_serial or ""
        if _BACKGROUND.get() or _CANNOT_PROMPT.get():
            # A renewal nobody asked for, or a caller without a terminal: no one will type a
            # code, so claim no prompt (a caller's request in the next seconds would wait
            # for it in vain).
            raise MfaRequired(serial)
        pending = self._prompts.get(key)
        if pending is None or self._clock() >= pending[0]:
            self._prompts[key] = (self._clock() + self._mfa_prompt_wait, asyncio.Event())
            raise MfaRequired(serial)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pending[1].wait(), max(0.0, pending[0] - self._clock()))
        if cache.servable(entry.credentials, self._clock(), min_ttl):
            entry.hits += 1
            return entry.credentials  # type: ignore[return-value]
        raise MfaRequired(serial)

    def _end_prompt(self, key: Key) -> None:
        """Nobody types a code for `key` any more: wake those waiting for one."""
        prompt = self._prompts.pop(key, None)
        if prompt is not None:
            prompt[1].set()

    def _start_fetch(
        self, entry: Entry, attempts: int, token_code: str | None = None, background: bool = False
    ) -> asyncio.Task[Credentials]:
        key = entry.request
        context = contextvars.copy_context()
        if background:
            context.run(_BACKGROUND.set, True)  # seen by the hops this fetch signs with, too
        task = asyncio.get_running_loop().create_task(
            self._fetch(entry, attempts, token_code), context=context
        )
        self._inflight[key] = task

        def done(finished: asyncio.Task[Credentials]) -> None:
            if self._inflight.get(key) is finished:
                del self._inflight[key]
            if not finished.cancelled():
                finished.exception()  # retrieved here: a failed renewal nobody awaits is fine

        task.add_done_callback(done)
        return task

    async def _signer(self, request: Key, token_code: str | None) -> Credentials | None:
        """The credentials that sign this request's call: the previous hop of a role chain,
        or the MFA session behind the role; None when the source's own keys sign it."""
        if not isinstance(request, RoleRequest):
            return None
        if request.source_role is not None:
            return await self.get(request.source_role, SIGNER_MIN_TTL, token_code)
        if request.mfa_session is not None:
            return await self.get(request.mfa_session, SIGNER_MIN_TTL, token_code)
        return None

    async def _call_sts(
        self, entry: Entry, signer: Credentials | None, token_code: str | None
    ) -> Credentials | StsFailure:
        async with self._sts_slots:
            started = self._clock()
            entry.last_sts_call = started
            entry.sts_calls += 1
            self.sts_calls += 1
            loop = asyncio.get_running_loop()
            # Only a call that needs the code gets it: it must travel to STS once, no more.
            code = token_code if needs_code(entry.request) else None
            try:
                return await loop.run_in_executor(
                    self._executor, self._call, entry.request, started, signer, code
                )
            except StsCallFailed as exc:
                return exc.failure
            except TemporarySource:
                # Refused before anything was sent: not an STS call after all.
                entry.sts_calls -= 1
                self.sts_calls -= 1
                raise

    async def _fetch(self, entry: Entry, attempts: int, token_code: str | None) -> Credentials:
        request = entry.request
        renewing = entry.credentials is not None
        try:
            signer = await self._signer(request, token_code)
        except MfaRequired:
            if renewing:
                # Renewal waits for the next caller who can type a code; the held
                # credentials keep being served until then.
                entry.renew_at = None
                log.info("renewal of %s waits for an MFA code", describe(request))
            raise
        except RolecacheError:
            if renewing:  # the previous hop failed: back off like a failed renewal
                entry.renew_at = self._clock() + cache.backoff_delay(
                    entry.failures_in_a_row, self._rng
                )
            raise
        # A call that carries an MFA code is made once: STS takes a code once, and a code sent
        # again (after throttling, say) would be refused or, worse, count as a replay.
        carries_code = token_code is not None and needs_code(request)
        reloaded = False
        attempt = 0
        while True:
            try:
                result = await self._call_sts(entry, signer, token_code)
            except TemporarySource as exc:
                if renewing:  # the source became temporary since: renewing cannot succeed
                    entry.renew_at = None
                    log.warning("stopped renewing %s: %s", describe(request), exc.message)
                raise
            if isinstance(result, Credentials):
                self._store(entry, result, renewing)
                return result
            self.sts_errors += 1
            if result.code in SOURCE_REFUSED and signer is None and not reloaded:
                # The long-term keys may have been rotated, or an SSO or profile session
                # refreshed, since they were loaded: load them again once before giving up
                # (a call with a code is not repeated: the reload serves the next code).
                log.warning(
                    "STS refused the source credentials of %s (%s): reloading them from "
                    "their chain%s",
                    describe(request),
                    result,
                    "" if carries_code else " and trying again",
                )
                self._reload_sources()
                reloaded = True
                if not carries_code:
                    continue
            attempt += 1
            if not result.retryable or attempt == attempts or carries_code:
                break
            delay = cache.backoff_delay(attempt - 1, self._rng, base=0.25, cap=2.0)
            log.warning("retrying %s in %.2f s after %s", describe(request), delay, result)
            await self._sleep(delay)
        if carries_code and (
            (isinstance(request, MfaSession) and not result.retryable)
            or "MultiFactorAuthentication" in result.message
        ):
            # A wrong or reused code: say so and let the caller try another; nothing of the
            # failure is remembered, so the next code is tried at once.
            entry.last_error = result
            log.warning("MFA code for %s refused (%s)", request.mfa_serial, result)
            raise MfaCodeRejected(f"{request.mfa_serial}: STS {result}")
        self._record_failure(entry, result)
        raise StsError(result, describe(request))

    def _store(self, entry: Entry, credentials: Credentials, renewing: bool) -> None:
        now = self._clock()
        entry.credentials = credentials
        entry.renew_at = cache.renewal_time(
            credentials.issued_at, credentials.expiration, self._spread
        )
        entry.last_error = None
        entry.error_until = None
        entry.failures_in_a_row = 0
        if needs_code(entry.request):
            entry.renew_at = None  # renewing needs a new code: done on demand, not on a timer
            self._end_prompt(entry.request)  # callers waiting for this code's credentials go on
        if isinstance(entry.request, MfaSession):
            log.info(
                "opened %s: expires in %.0f s",
                describe(entry.request),
                credentials.expiration - now,
            )
            return
        log.info(
            "%s %s: key %s, expires in %.0f s, %s",
            "renewed" if renewing else "assumed",
            describe(entry.request),
            credentials.masked_key_id,
            credentials.expiration - now,
            "renewing needs a new MFA code"
            if entry.renew_at is None
            else f"renewal in {entry.renew_at - now:.0f} s",
        )

    def _record_failure(self, entry: Entry, failure: StsFailure) -> None:
        now = self._clock()
        entry.last_error = failure
        entry.error_stamp = self._source_stamp(entry.request)
        entry.failures_in_a_row += 1
        if failure.retryable:
            delay = cache.backoff_delay(entry.failures_in_a_row, self._rng)
            entry.error_until = now + delay
            if entry.credentials is not None:
                # Back off even once the held credentials expired: otherwise renew_at stays
                # in the past and every tick calls STS again, feeding the throttling.
                entry.renew_at = now + delay
            if cache.servable(entry.credentials, now, 0):
                log.warning(
                    "renewal of %s failed (%s); still serving the current credentials "
                    "(%.0f s left), retrying in %.1f s",
                    describe(entry.request),
                    failure,
                    entry.credentials.expiration - now,  # type: ignore[union-attr]
                    delay,
                )
            else:
                log.error("assuming %s failed (%s)", describe(entry.request), failure)
        else:
            # STS said no for good: drop what we had and remember the answer briefly.
            entry.credentials = None
            entry.renew_at = None
            entry.error_until = now + self.settings.negative_ttl
            log.error("assuming %s failed permanently (%s)", describe(entry.request), failure)

    # -- background renewal -------------------------------------------------------------

    def tick(self) -> list[asyncio.Task[Credentials]]:
        """Start the renewals that are due and drop dead entries; return the started tasks."""
        now = self._clock()
        awake = self._awake()
        idle_ttl = self.settings.idle_ttl
        started = []
        for key, entry in list(self._entries.items()):
            if key in self._inflight:
                continue
            if cache.should_drop(entry, now, idle_ttl, awake):
                self._drop(key)
                log.debug("dropped entry %s", describe(key))
            elif cache.due_for_renewal(entry, now, idle_ttl, awake):
                started.append(self._start_fetch(entry, attempts=1, background=True))
        return started

    async def run_renewer(self) -> None:
        """Tick forever. The tick is short and compares wall-clock times, so a machine that
        wakes from suspend renews within one tick instead of serving what expired meanwhile."""
        while True:
            await asyncio.sleep(self.settings.tick)
            self.tick()

    # -- settings -------------------------------------------------------------------------

    def apply_settings(self, settings: Settings) -> list[str]:
        """Use `settings` from now on (SIGHUP); return the names of those that changed.

        Every setting applies at once: the others are read where they are used, and a new
        STS cap brings a new semaphore and thread pool (calls already holding a slot of the
        old ones finish there, so the old cap and the new may briefly overlap)."""
        changed = [
            f.name
            for f in fields(Settings)
            if getattr(settings, f.name) != getattr(self.settings, f.name)
        ]
        if settings.max_concurrent_sts != self.settings.max_concurrent_sts:
            old = self._executor
            self._sts_slots = asyncio.Semaphore(settings.max_concurrent_sts)
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=settings.max_concurrent_sts, thread_name_prefix="sts"
            )
            old.shutdown(wait=False)  # finishes what it runs, takes nothing new
        self.settings = settings
        return changed

    # -- inspection and forgetting ------------------------------------------------------

    def pin(self, key: RoleRequest, pinned: bool = True) -> None:
        """Keep `key`'s entry warm (renewed on schedule with nobody asking), or stop."""
        if pinned:
            self._pinned.add(key)
        else:
            self._pinned.discard(key)
        entry = self._entries.get(key)
        if entry is not None:
            entry.keep_warm = pinned

    def entries(self) -> list[Entry]:
        """Every role entry, oldest first (MFA sessions are kept out of listings)."""
        return [e for e in self._entries.values() if isinstance(e.request, RoleRequest)]

    def forget(self, key: RoleRequest | None = None) -> int:
        """Drop one entry (or all when key is None); return how many were dropped.

        An STS call in flight finishes for its waiters, but its result is not kept.
        """
        keys = list(self._entries) if key is None else [key] if key in self._entries else []
        for k in keys:
            self._drop(k)
            self._inflight.pop(k, None)
        return sum(not isinstance(k, MfaSession) for k in keys)

    def on_drop(self, listener: Callable[[Key], None]) -> None:
        """Call `listener(key)` whenever an entry is dropped, for whatever reason."""
        self._drop_listeners.append(listener)

    def _drop(self, key: Key) -> None:
        del self._entries[key]
        for listener in self._drop_listeners:
            listener(key)

    async def close(self) -> None:
        """Cancel STS calls in flight and stop the worker threads."""
        for task in list(self._inflight.values()):
            task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
