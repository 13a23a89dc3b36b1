"""Requests that wait for an MFA code another terminal gives (`rolecache mfa`).

A caller without a terminal (an IDE, CDK, credential_process) may ask to wait instead of
failing at once. The code one `rolecache mfa` gives opens one STS call, and every waiting
request of that device it can serve goes on.
"""

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from rolecached.core.cache import Credentials
from rolecached.core.prompts import code_key
from rolecached.core.request import Key, MfaSession
from rolecached.core.store import SIGNER_MIN_TTL, Store
from rolecached.errors import InvalidRequest, MfaRequired, NotFound, Stopping
from rolecached.host import peers, process

log = logging.getLogger(__name__)

# The longest a request may wait for a code (`mfa_wait`): past it the code it waits for
# would be one of many, and a forgotten IDE should not hold a connection all day.
MAX_MFA_WAIT = 900
# How often a waiting request looks whether its caller hung up (aiohttp does not cancel a
# handler whose client went away), and whether a code given elsewhere (a terminal's prompt,
# --token-code) opened what it waits for.
GONE_CHECK = 0.5


@dataclass
class Waiter:
    """One request waiting for a code; what `GET /v1/mfa` shows of it (never a secret)."""

    id: int
    request: Key
    min_ttl: int
    mfa_serial: str
    role: str
    pid: int | None
    comm: str | None
    since: float
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def uses_session(self) -> bool:
        """True when the device's GetSessionToken session serves this request (roles of an
        hour or less), False when its own AssumeRole must carry a code (over an hour)."""
        return isinstance(code_key(self.request), MfaSession)


def parse_mfa_wait(value: object) -> int:
    """`mfa_wait`: whole seconds, 0 (fail at once, the default) to MAX_MFA_WAIT."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MFA_WAIT:
        raise InvalidRequest(f"mfa_wait must be 0 to {MAX_MFA_WAIT} seconds")
    return value


class Waits:
    """The requests waiting for a code, oldest first; tells the desktop of new ones."""

    def __init__(self, clock: Callable[[], float], tell: Callable[[Waiter], None]) -> None:
        self._clock = clock
        self._tell = tell
        self._ids = itertools.count(1)
        self._waiters: dict[int, Waiter] = {}
        self._stopping = False

    def listing(self, serial: str | None = None) -> list[Waiter]:
        """The waiting requests (of one device, if `serial`), oldest first."""
        return [w for w in self._waiters.values() if serial in (None, w.mfa_serial)]

    async def wait(
        self,
        store: Store,
        request: Key,
        min_ttl: int,
        requester: str,
        peer: peers.Peer | None,
        limit: float,
        gone: Callable[[], bool],
    ) -> Credentials:
        """Wait up to `limit` s for a code given for the request's device, then serve it; give
        up (and leave no entry) as soon as `gone()` says the caller hung up."""
        key = code_key(request)
        serial = getattr(key, "mfa_serial", None) or ""
        pid = peer.pid if peer is not None else None
        stat = process.process_stat(pid) if pid is not None else None
        waiter = Waiter(
            next(self._ids),
            request,
            min_ttl,
            serial,
            request.describe(),
            pid,
            stat[0] if stat else None,
            self._clock(),
        )
        first = not self.listing(serial)
        self._waiters[waiter.id] = waiter
        log.info("%s waits for an MFA code from %s (%s)", waiter.role, serial, requester)
        if first:
            self._tell(waiter)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise MfaRequired(serial, waited=limit)
                try:
                    await asyncio.wait_for(waiter.wake.wait(), min(left, GONE_CHECK))
                except TimeoutError:
                    if gone():
                        log.info("%s stopped waiting: its caller hung up", waiter.role)
                        raise MfaRequired(serial) from None
                    if not _opened_elsewhere(store, waiter):
                        continue
                waiter.wake.clear()
                if self._stopping:
                    raise Stopping(
                        f"rolecached is stopping: {waiter.role} waits for an MFA code no more; "
                        "run the command again once it is back"
                    )
                try:
                    return await store.get(request, min_ttl, None, requester, can_prompt=False)
                except MfaRequired:
                    continue  # the code served other requests of the device: wait on
        finally:
            del self._waiters[waiter.id]

    def stop(self) -> None:
        """Let every waiting request go (the daemon stops): none holds the shutdown up."""
        self._stopping = True
        for waiter in self._waiters.values():
            waiter.wake.set()

    async def answer(self, store: Store, serial: str | None, code: str) -> dict[str, object]:
        """Use `code` for the waiting requests of `serial` (default: the oldest waiting
        request's device): one STS call, then every request it serves goes on."""
        waiting = self.listing(serial)
        if not waiting:
            device = f" from {serial}" if serial else ""
            raise NotFound(f"no request waits for an MFA code{device}")
        serial = waiting[0].mfa_serial
        # A code goes to STS once. The device's session serves every role of an hour or less
        # for 12 hours, so it takes the code whenever one of them waits; a role over an hour
        # needs a call of its own, so only the oldest such request gets it.
        sharing = [w for w in waiting if w.uses_session]
        if sharing:
            target: Key = code_key(sharing[0].request)  # type: ignore[assignment]
            await store.get(target, SIGNER_MIN_TTL, code)
            served = [w for w in waiting if w.uses_session]
        else:
            target = waiting[0].request
            await store.get(target, waiting[0].min_ttl, code)
            served = [w for w in waiting if w.request == target]
        for waiter in served:
            waiter.wake.set()
        left = [w for w in waiting if w not in served]
        message = f"the code from {serial} went to {target.describe()}: "
        message += f"{len(served)} waiting request{'s' if len(served) != 1 else ''} served"
        if left:
            message += (
                f"; {len(left)} request{'s' if len(left) != 1 else ''} for roles over an hour "
                "still wait, each for a fresh code (run `rolecache mfa` again when the "
                "device shows the next one)"
            )
        log.info("%s", message)
        return {
            "mfa_serial": serial,
            "served": len(served),
            "waiting": len(left),
            "message": message,
        }


def _opened_elsewhere(store: Store, waiter: Waiter) -> bool:
    """True when the store now holds what the waiter's code was for (someone typed a code
    at a terminal's prompt meanwhile)."""
    key = code_key(waiter.request)
    if isinstance(key, MfaSession):
        return store.peek(key, SIGNER_MIN_TTL) is not None
    return store.peek(waiter.request, waiter.min_ttl) is not None


def summary(waiter: Waiter, now: float) -> dict[str, object]:
    """What `GET /v1/mfa` shows of a waiting request."""
    return {
        "id": waiter.id,
        "mfa_serial": waiter.mfa_serial,
        "role": waiter.role,
        "pid": waiter.pid,
        "comm": waiter.comm,
        "waiting_for": round(now - waiter.since),
        "uses_session": waiter.uses_session,
    }
