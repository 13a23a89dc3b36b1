"""The in-memory credential store: serves, coalesces, renews and retries.

All decisions come from `cache.py` and `renewal.py`; this module adds the event loop around
them, with the entry table, the fetches, the STS lane and the MFA prompts each in their own
module. Time, sleep, randomness and the STS call are injected, so tests drive a simulated
day in milliseconds.
"""

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

from rolecached.core.cache import Credentials, Entry, servable
from rolecached.core.entrytable import EntryTable
from rolecached.core.fetch import Fetcher, Sleep
from rolecached.core.prompts import CANNOT_PROMPT, MFA_PROMPT_WAIT, Prompts, code_key, needs_code
from rolecached.core.renewal import sweep
from rolecached.core.request import Key, MfaSession, RoleRequest
from rolecached.core.stslane import CallSts, StsLane
from rolecached.errors import RolecacheError, StsError, StsTimeout

log = logging.getLogger(__name__)

# Credentials that only sign the next hop's AssumeRole call need just a little life left.
SIGNER_MIN_TTL = 60.0


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
        # Idleness is measured in awake seconds: time.monotonic is CLOCK_MONOTONIC on Linux,
        # which stops while the machine is suspended (CLOCK_BOOTTIME would not). A test that
        # fakes only the wall clock gets its fake clock for both.
        if awake_clock is None:
            awake_clock = time.monotonic if clock is time.time else clock
        self._awake = awake_clock
        self._clock = clock
        self._entries = EntryTable(clock)
        self._prompts = Prompts(clock, mfa_prompt_wait)
        self._fetcher = Fetcher(
            StsLane(call_sts, clock, self.settings.max_concurrent_sts),
            self._prompts,
            self._signer,
            clock=clock,
            sleep=sleep,
            rng=rng or random.Random(),
            reload_sources=reload_sources,
            source_stamp=source_stamp,
            negative_ttl=lambda: self.settings.negative_ttl,
        )

    @property
    def sts_calls(self) -> int:
        """STS calls made since the start."""
        return self._fetcher.lane.calls

    @property
    def sts_errors(self) -> int:
        """STS calls that failed since the start."""
        return self._fetcher.lane.errors

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
            self._prompts.end(pending)
        marked = CANNOT_PROMPT.set(True)  # seen by the fetches this request starts, too
        try:
            return await self._get(request, min_ttl, token_code, requester)
        finally:
            CANNOT_PROMPT.reset(marked)

    async def _get(
        self, request: Key, min_ttl: float, token_code: str | None, requester: str | None
    ) -> Credentials:
        held = self.peek(request, min_ttl)
        if held is not None:
            self.record_hit(request, requester)
            return held
        now = self._clock()
        inflight = self._fetcher.inflight
        entry = self._entries.open(request, now, self.settings.max_sessions, inflight)
        entry.last_used = now
        entry.last_used_awake = self._awake()
        if requester is not None:
            entry.last_requester = requester
        if self._fetcher.remembered(entry, now, token_code):
            raise StsError(entry.last_error, request.describe())  # type: ignore[arg-type]
        if needs_code(request) and token_code is None and request not in inflight:
            return await self._prompts.await_code(entry, min_ttl)
        if token_code is not None and request in inflight:
            # The fetch in flight may have started without a code and be waiting for the MFA
            # session this code opens: open it first instead of joining with the code unused.
            session = code_key(request)
            if isinstance(session, MfaSession) and session != request:
                await self.get(session, SIGNER_MIN_TTL, token_code)
        task = inflight.get(request) or self._fetcher.start(
            entry, self.settings.cold_attempts, token_code
        )
        return await self._outcome(entry, task, min_ttl)

    async def _outcome(
        self, entry: Entry, task: "asyncio.Task[Credentials]", min_ttl: float
    ) -> Credentials:
        """The fetch's credentials, within the request timeout and with `min_ttl` left."""
        request = entry.request
        try:
            credentials = await asyncio.wait_for(
                asyncio.shield(task), self.settings.request_timeout
            )
        except TimeoutError:
            last = f" (last error: {entry.last_error})" if entry.last_error else ""
            raise StsTimeout(
                f"{request.describe()}: STS did not answer within "
                f"{self.settings.request_timeout:.0f} s{last}"
            ) from None
        left = credentials.expiration - self._clock()
        if left < min_ttl:
            raise RolecacheError(
                f"{request.describe()}: STS issued credentials with {left:.0f} s left, less "
                f"than the {min_ttl:.0f} s asked for; lower --min-ttl or check the role's "
                "maximum session duration",
                code="LifetimeTooShort",
            )
        return credentials

    def peek(self, request: Key, min_ttl: float, now: float | None = None) -> Credentials | None:
        """The held credentials if they have `min_ttl` left at `now` (default: the store's
        clock), else None; never calls STS."""
        now = self._clock() if now is None else now
        entry = self._entries.get(request)
        if entry is None or not servable(entry.credentials, now, min_ttl):
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

    # -- background renewal -------------------------------------------------------------

    def tick(self) -> list[asyncio.Task[Credentials]]:
        """Start the renewals that are due and drop dead entries; return the started tasks."""
        drop, renew = sweep(
            self._entries.items(),
            self._fetcher.inflight,
            self._clock(),
            self.settings.idle_ttl,
            self._awake(),
        )
        for key in drop:
            self._entries.drop(key)
            log.debug("dropped entry %s", key.describe())
        return [self._fetcher.start(entry, attempts=1, background=True) for entry in renew]

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
        self._fetcher.lane.resize(settings.max_concurrent_sts)
        self.settings = settings
        return changed

    # -- inspection and forgetting ------------------------------------------------------

    def pin(self, key: RoleRequest, pinned: bool = True) -> None:
        """Keep `key`'s entry warm (renewed on schedule with nobody asking), or stop."""
        self._entries.pin(key, pinned)

    def entries(self) -> list[Entry]:
        """Every role entry, oldest first (MFA sessions are kept out of listings)."""
        return self._entries.roles()

    def forget(self, key: RoleRequest | None = None) -> int:
        """Drop one entry (or all when key is None); return how many were dropped.

        An STS call in flight finishes for its waiters, but its result is not kept.
        """
        keys = list(self._entries.keys()) if key is None else [key] if key in self._entries else []
        for k in keys:
            self._entries.drop(k)
            self._fetcher.inflight.pop(k, None)
        return sum(not isinstance(k, MfaSession) for k in keys)

    def on_drop(self, listener: Callable[[Key], None]) -> None:
        """Call `listener(key)` whenever an entry is dropped, for whatever reason."""
        self._entries.on_drop(listener)

    async def close(self) -> None:
        """Cancel STS calls in flight and stop the worker threads."""
        self._fetcher.cancel_all()
        self._fetcher.lane.close()
