"""MFA prompts: which keys need a code, and who is asked for it while others wait.

One caller at a time is asked for a code (MfaRequired); callers arriving while it is being
typed wait for the credentials it opens instead of prompting a second time.
"""

import asyncio
import contextlib
import contextvars
from collections.abc import Callable

from rolecached.core import cache
from rolecached.core.cache import Credentials, Entry
from rolecached.core.request import Key, MfaSession, RoleRequest
from rolecached.errors import MfaRequired

# How long other callers wait, by default, for the one caller who was asked for an MFA code.
MFA_PROMPT_WAIT = 25.0
# True inside renewals the renewer starts (no caller behind them to type an MFA code).
BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar("background", default=False)
# True inside a request whose caller said it cannot type a code (no terminal).
CANNOT_PROMPT: contextvars.ContextVar[bool] = contextvars.ContextVar("cannot_prompt", default=False)


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


class Prompts:
    """The keys whose MFA code one caller is typing now, each with when the wait ends."""

    def __init__(self, clock: Callable[[], float], wait: float = MFA_PROMPT_WAIT) -> None:
        self._clock = clock
        self._wait = wait
        self._pending: dict[Key, tuple[float, asyncio.Event]] = {}

    async def await_code(self, entry: Entry, min_ttl: float) -> Credentials:
        """No valid credentials for a key that needs a code, and no code: the first caller is
        asked for one (MfaRequired); callers arriving while it is being typed wait instead."""
        key = entry.request
        serial = key.mfa_serial or ""
        if BACKGROUND.get() or CANNOT_PROMPT.get():
            # A renewal nobody asked for, or a caller without a terminal: no one will type a
            # code, so claim no prompt (a caller's request in the next seconds would wait
            # for it in vain).
            raise MfaRequired(serial)
        pending = self._pending.get(key)
        if pending is None or self._clock() >= pending[0]:
            self._pending[key] = (self._clock() + self._wait, asyncio.Event())
            raise MfaRequired(serial)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pending[1].wait(), max(0.0, pending[0] - self._clock()))
        if cache.servable(entry.credentials, self._clock(), min_ttl):
            entry.hits += 1
            return entry.credentials  # type: ignore[return-value]
        raise MfaRequired(serial)

    def end(self, key: Key) -> None:
        """Nobody types a code for `key` any more: wake those waiting for one."""
        prompt = self._pending.pop(key, None)
        if prompt is not None:
            prompt[1].set()
