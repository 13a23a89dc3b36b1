"""The warmer (warmer.py): which bindings it fetches, its back-off while fetching fails, and
its stop when a role needs an MFA code; on a fake clock, with a scripted store."""

import asyncio
import random
from pathlib import Path
from typing import Any, cast

import pytest

from rolecached.core import cache
from rolecached.core.bindings import IMDS_MIN_TTL, parse_spec, resolve
from rolecached.core.cache import Credentials
from rolecached.core.request import parse_request
from rolecached.core.store import Store
from rolecached.endpoints import warmer
from rolecached.endpoints.registry import Served
from rolecached.endpoints.tokens import TokenRing
from rolecached.errors import MfaRequired, RolecacheError
from tests.kit import ACCOUNT, FakeClock

ROLE = f"arn:aws:iam::{ACCOUNT}:role/app"


def served(tmp_path: Path, name: str = "dev") -> Served:
    """A binding's serving state, with nothing warmed yet."""
    body = {"role_arn": ROLE, "role_session_name": name}
    binding = resolve(parse_spec(name, body), parse_request)
    return Served(binding, TokenRing(0.0, 60.0), tmp_path / name / "token")


def credentials(now: float, lifetime: float = 3600.0) -> Credentials:
    """Credentials issued at `now`."""
    return Credentials("ASIAFAKE", "secret", "token", now + lifetime, issued_at=now)


class ScriptedStore:
    """What the warmer asks of the store: `get` raises the next scripted error, or returns
    credentials once none is left; `entries` holds nothing."""

    def __init__(self, clock: FakeClock, *errors: RolecacheError) -> None:
        self.clock = clock
        self.errors = list(errors)
        self.gets = 0

    async def get(self, request: Any, floor: float) -> Credentials:
        self.gets += 1
        if self.errors:
            raise self.errors.pop(0)
        return credentials(self.clock())

    def entries(self) -> list[Any]:
        return []


def test_failures_back_off_with_full_jitter_up_to_the_cap(tmp_path: Path) -> None:
    """Each failure pushes the next try out by cache.backoff_delay at base 5 s, capped at
    5 min (the same draws as a reference generator), and keeps the error for the listing."""
    binding, rng, reference = served(tmp_path), random.Random(7), random.Random(7)
    now = 1000.0
    for attempt in range(1, 10):
        warmer.failed(binding, RolecacheError("Throttling"), now, rng)
        expected = cache.backoff_delay(attempt, reference, base=5.0, cap=300.0)
        assert binding.next_warm == now + expected
        assert binding.next_warm - now <= min(300.0, 5.0 * 2**attempt)
        assert binding.warm_failures == attempt and binding.last_error == "Throttling"


def test_an_mfa_role_is_not_warmed_again(tmp_path: Path) -> None:
    """A role that needs an MFA code is never due again: only a person can type it."""
    binding = served(tmp_path)
    warmer.failed(binding, MfaRequired("arn:aws:iam::123456789012:mfa/me"), 0.0, random.Random())
    assert binding.last_error == "needs an MFA code"
    assert not warmer.due(binding, None, 10**12)


def test_success_starts_the_back_off_over(tmp_path: Path) -> None:
    """After a fetch that worked, the next failure waits as little as the first did."""
    binding = served(tmp_path)
    for _ in range(5):
        warmer.failed(binding, RolecacheError("down"), 0.0, random.Random(1))
    warmer.succeeded(binding)
    assert (binding.warm_failures, binding.next_warm, binding.last_error) == (0, 0.0, None)
    assert warmer.due(binding, None, 0.0)


def test_due_only_without_servable_credentials_and_after_the_back_off(tmp_path: Path) -> None:
    """A binding is due when its credentials are missing or under the IMDS floor and its
    back-off is over; not while it holds enough."""
    binding, now = served(tmp_path), 5000.0
    assert warmer.due(binding, None, now)
    assert not warmer.due(binding, credentials(now), now)
    assert warmer.due(binding, credentials(now, IMDS_MIN_TTL - 1), now)
    binding.next_warm = now + 1
    assert not warmer.due(binding, None, now)


async def test_tick_warms_then_backs_off_then_tries_again(tmp_path: Path) -> None:
    """A tick starts one fetch of a binding with nothing to serve; while that fetch's back-off
    runs, ticks start none; once it is over, the next tick fetches and succeeds."""
    clock = FakeClock()
    store = ScriptedStore(clock, RolecacheError("STS is down"))
    warm = warmer.Warmer(cast(Store, store), clock, random.Random(3))
    binding = served(tmp_path)
    warm.tick([binding])
    task = binding.warm_task
    assert task is not None
    assert await task is None
    assert binding.last_error == "STS is down" and binding.next_warm > clock()
    warm.tick([binding])
    assert binding.warm_task is task and store.gets == 1
    clock.now = binding.next_warm
    warm.tick([binding])
    assert binding.warm_task is not task and binding.warm_task is not None
    assert await binding.warm_task is not None
    assert store.gets == 2 and binding.last_error is None and binding.warm_failures == 0


async def test_a_running_fetch_is_not_started_twice(tmp_path: Path) -> None:
    """While a binding's warm-up fetch runs, further ticks leave it be."""
    clock, release = FakeClock(), asyncio.Event()

    class SlowStore(ScriptedStore):
        async def get(self, request: Any, floor: float) -> Credentials:
            self.gets += 1
            await release.wait()
            return credentials(self.clock())

    store = SlowStore(clock)
    warm = warmer.Warmer(cast(Store, store), clock, random.Random())
    binding = served(tmp_path)
    warm.tick([binding])
    task = binding.warm_task
    warm.tick([binding])
    assert binding.warm_task is task
    release.set()
    assert task is not None and await task is not None
    assert store.gets == 1


@pytest.mark.parametrize("error", [RolecacheError("x"), MfaRequired("arn:aws:iam::1:mfa/m")])
async def test_warm_records_each_failure_kind(tmp_path: Path, error: RolecacheError) -> None:
    """warm() returns None on failure and records it: a back-off, or for MFA no retry."""
    clock = FakeClock()
    warm = warmer.Warmer(cast(Store, ScriptedStore(clock, error)), clock, random.Random())
    binding = served(tmp_path)
    assert await warm.warm(binding) is None
    assert binding.last_error is not None
    mfa = isinstance(error, MfaRequired)
    assert (binding.next_warm == float("inf")) is mfa
