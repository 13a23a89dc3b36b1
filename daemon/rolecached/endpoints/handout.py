"""Handing out a binding's credentials to an endpoint request: from memory without waiting
(`held`), or waiting a bounded time for STS (`credentials`).

Both count each hand-out (hits and last requester in `rolecache list`) and write its audit
line themselves, so no caller (the container handler, its fast lane, IMDS) can serve
credentials without either.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from rolecached.core.bindings import Binding
from rolecached.core.cache import Credentials
from rolecached.core.store import Store
from rolecached.errors import RolecacheError, StsError, StsRefused, Unavailable
from rolecached.host.peers import Peer
from rolecached.observe import audit

CONTAINER = "container endpoint"  # how audit lines name the container listener


def _retrieve(task: "asyncio.Future[Any]") -> None:
    # An endpoint request stopped waiting; the fetch goes on for the next one. Its failure
    # is the store's to log, so only mark it retrieved.
    if not task.cancelled():
        task.exception()


class Handout:
    """Serves bindings' credentials from the store, counted and audited in one place."""

    def __init__(self, store: Store, clock: Callable[[], float], wait: float) -> None:
        self.store = store
        self.clock = clock
        self.wait = wait  # the longest an endpoint request waits on STS

    def held(
        self,
        binding: Binding,
        floor: float,
        peer: Peer | None,
        agent: str | None,
        permit: Callable[[], bool] | None = None,
        via: str = CONTAINER,
    ) -> Credentials | None:
        """`binding`'s credentials with at least `floor` seconds left if memory holds them
        (and `permit`, asked only then, allows), counted and audited; else None."""
        now = self.clock()  # one instant for the decision and the audit line's life left
        creds = self.store.peek(binding.request, floor, now)
        if creds is None or (permit is not None and not permit()):
            return None
        self.handed_out(binding, creds, peer, agent, via, now)
        return creds

    async def credentials(
        self,
        binding: Binding,
        floor: float,
        peer: Peer | None,
        agent: str | None,
        via: str = CONTAINER,
    ) -> Credentials:
        """As `held`, but waiting at most `wait` seconds for STS when memory has nothing
        (SDKs time out at 2 s, and a late answer helps nobody); raises Unavailable, or
        StsRefused when STS said no for good."""
        held = self.held(binding, floor, peer, agent, via=via)
        if held is not None:
            return held  # the common case: from memory, no task, no wait
        fetch = asyncio.ensure_future(self.store.get(binding.request, floor))
        done, _ = await asyncio.wait({fetch}, timeout=self.wait)
        if not done:
            fetch.add_done_callback(_retrieve)
            raise Unavailable(
                f"endpoint {binding.name!r}: no credentials with {floor // 60:.0f} min left yet; "
                "renewal is in progress, try again shortly"
            )
        try:
            creds = fetch.result()
        except StsError as exc:
            if not exc.failure.retryable:
                raise StsRefused(exc.message, code=exc.code) from None
            raise Unavailable(exc.message, code=exc.code) from None
        except RolecacheError as exc:
            raise Unavailable(exc.message, code=exc.code) from None
        self.handed_out(binding, creds, peer, agent, via, self.clock())
        return creds

    def handed_out(
        self,
        binding: Binding,
        creds: Credentials,
        peer: Peer | None,
        agent: str | None,
        via: str,
        now: float,
    ) -> None:
        """Count one hand-out of `binding`'s credentials, decided at `now`, and write its
        audit line."""
        who = audit.endpoint_requester(peer, f"{via} {binding.name}", agent)
        self.store.record_hit(binding.request, who)
        if audit.log.isEnabledFor(logging.INFO):  # describe() only when it is written
            audit.served(binding.request.describe(), creds, who, now)
