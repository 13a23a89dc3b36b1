"""The lane to STS: at most N calls at once, each in a worker thread, all of them counted."""

import asyncio
import concurrent.futures
from collections.abc import Callable

from rolecached.core.cache import Credentials, Entry
from rolecached.core.request import Key
from rolecached.errors import StsFailure, TemporarySource
from rolecached.stserrors import StsCallFailed

# (request, now, signing credentials or None, MFA code or None) -> credentials
CallSts = Callable[[Key, float, Credentials | None, str | None], Credentials]


class StsLane:
    """A semaphore and a thread pool of one size, around the blocking STS call."""

    def __init__(self, call_sts: CallSts, clock: Callable[[], float], size: int) -> None:
        self._call = call_sts
        self._clock = clock
        self.size = size
        self._slots = asyncio.Semaphore(size)
        self._executor = self._pool(size)
        self.calls = 0
        self.errors = 0

    @staticmethod
    def _pool(size: int) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(max_workers=size, thread_name_prefix="sts")

    async def call(
        self, entry: Entry, signer: Credentials | None, code: str | None
    ) -> Credentials | StsFailure:
        """Make the entry's STS call once, counted on the entry and here; a refusal comes
        back as its StsFailure, a TemporarySource (nothing sent) is raised uncounted."""
        async with self._slots:
            started = self._clock()
            entry.last_sts_call = started
            entry.sts_calls += 1
            self.calls += 1
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(
                    self._executor, self._call, entry.request, started, signer, code
                )
            except StsCallFailed as exc:
                return exc.failure
            except TemporarySource:
                # Refused before anything was sent: not an STS call after all.
                entry.sts_calls -= 1
                self.calls -= 1
                raise

    def resize(self, size: int) -> None:
        """A new cap: a new semaphore and pool (calls holding a slot of the old ones finish
        there, so the old cap and the new may briefly overlap)."""
        if size == self.size:
            return
        old = self._executor
        self.size = size
        self._slots = asyncio.Semaphore(size)
        self._executor = self._pool(size)
        old.shutdown(wait=False)  # finishes what it runs, takes nothing new

    def close(self) -> None:
        """Stop the worker threads; calls not yet started are cancelled."""
        self._executor.shutdown(wait=False, cancel_futures=True)
