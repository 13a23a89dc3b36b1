"""`rolecache login`: the sign-ins in progress, each polled until the user confirms its code
(the OIDC calls themselves are in `deviceflow.py`, run in worker threads).

The client only shows the user the verification URL and code: the client secret, the device
code and the tokens never leave the daemon and the token cache file.
"""

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from rolecached.errors import LoginExpired, NotFound
from rolecached.sources.deviceflow import (
    SLOW_DOWN_STEP,
    DeviceFlow,
    Pending,
    expired_message,
)
from rolecached.sources.sso import SsoSession

# How long one wait request is held before it answers "still pending" (under the client's
# 30 s response timeout), and how long a finished login's outcome is kept for its client.
WAIT_LIMIT = 20.0
KEEP_FINISHED = 600.0
# How long a credentials request whose SSO sign-in has ended waits for a `rolecache login` of
# that session in progress (as callers wait for another's MFA prompt), under the client's 30 s.
SIGN_IN_WAIT = 25.0


async def poll(
    flow: DeviceFlow,
    pending: Pending,
    sleep: Callable[[float], Awaitable[None]],
    now: Callable[[], float] = time.time,
) -> str:
    """Ask for the token every `interval` (5 s longer after each slow_down) until the user
    confirms; the token's expiry. LoginExpired once the code has expired."""
    interval = pending.interval
    while True:
        await sleep(interval)
        if now() >= pending.expires_at:
            raise LoginExpired(expired_message(pending.session))
        result = await asyncio.to_thread(flow.attempt, pending)
        if result == "slow_down":
            interval += SLOW_DOWN_STEP
        elif isinstance(result, dict):
            return str(result["expiresAt"])


@dataclass
class _Login:
    pending: Pending
    task: "asyncio.Task[str]"
    finished_at: float | None = None


class Logins:
    """The sign-ins in progress, each polled by a task of its own, by id for their client."""

    def __init__(
        self,
        flow: DeviceFlow | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wait_limit: float = WAIT_LIMIT,
    ) -> None:
        self._flow = flow or DeviceFlow()
        self._sleep = sleep
        self._wait_limit = wait_limit
        self._logins: dict[str, _Login] = {}

    async def start(self, session: SsoSession) -> tuple[str, Pending]:
        """Start a sign-in; its id and what the user must be shown."""
        self._sweep()
        pending = await asyncio.to_thread(self._flow.start, session)
        login_id = secrets.token_urlsafe(12)
        task = asyncio.get_running_loop().create_task(poll(self._flow, pending, self._sleep))
        login = self._logins[login_id] = _Login(pending, task)

        def done(finished: "asyncio.Task[str]") -> None:
            login.finished_at = time.monotonic()
            if not finished.cancelled():
                finished.exception()  # kept for its client, not logged as never retrieved

        task.add_done_callback(done)
        return login_id, pending

    async def wait(self, login_id: str) -> str | None:
        """The token's expiry once signed in, None while still pending after the wait limit;
        raises what the sign-in failed with."""
        login = self._logins.get(login_id)
        if login is None:
            raise NotFound(f"no sign-in in progress has id {login_id!r}; start one again")
        done, _ = await asyncio.wait({login.task}, timeout=self._wait_limit)
        if not done:
            return None
        del self._logins[login_id]
        return login.task.result()

    async def settled(self, token_file: str, limit: float) -> None:
        """Wait (at most `limit` seconds) for the sign-ins in progress that write
        `token_file`; at once when there is none."""
        tasks = {
            login.task
            for login in self._logins.values()
            if not login.task.done() and login.pending.session.token_file() == token_file
        }
        if tasks:
            await asyncio.wait(tasks, timeout=limit)

    def _sweep(self) -> None:
        """Forget sign-ins that ended long ago and whose client never came back."""
        now = time.monotonic()
        for login_id, login in list(self._logins.items()):
            if login.finished_at is not None and now - login.finished_at > KEEP_FINISHED:
                del self._logins[login_id]

    def close(self) -> None:
        """Stop every sign-in in progress."""
        for login in self._logins.values():
            login.task.cancel()
