"""MFA sessions and role chains in the store, against a fake STS and a fake clock: one code
opens a GetSessionToken session that signs every role behind the device and their renewals;
wrong codes; callers waiting for one prompt; chained hops signed hop by hop, each renewed on
its own schedule. Nothing sleeps: the clock moves when a test says so."""

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from rolecached.core import store as store_module
from rolecached.core.cache import Credentials, Entry
from rolecached.core.request import MfaSession, RoleRequest
from rolecached.core.store import Settings, Store
from rolecached.errors import (
    InvalidRequest,
    MfaCodeRejected,
    MfaRequired,
    StsError,
    TemporarySource,
)
from tests.kit import (
    ACCOUNT,
    MFA_REJECTED,
    T0,
    THROTTLED,
    FakeClock,
    FakeSleep,
    FakeSts,
    assumed_arn,
)

MIN_TTL = 300.0
MFA = f"arn:aws:iam::{ACCOUNT}:mfa/alice"
OTHER_MFA = f"arn:aws:iam::{ACCOUNT}:mfa/alice-backup"
GUARD = 5.0  # real seconds a test waits for something that should take milliseconds

Key = RoleRequest | MfaSession
T = TypeVar("T")


def arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


def mfa_role(
    name: str = "admin", serial: str = MFA, source: str = "base", duration: int = 3600
) -> RoleRequest:
    """A role profile with mfa_serial: up to an hour its AssumeRole is signed by the device's
    MFA session; longer, it carries the code itself, signed by the long-term keys."""
    return RoleRequest(
        role_arn=arn(name),
        role_session_name="alice@mfa",
        duration_seconds=duration,
        source_profile=source,
        config_file="/home/alice/.aws/config",
        credentials_file="/home/alice/.aws/credentials",
        mfa_serial=serial,
    )


def hop(name: str, duration: int, source_role: RoleRequest | None = None, **extra) -> RoleRequest:
    """One hop of a chain: the first has a source_profile, later ones the previous hop."""
    return RoleRequest(
        role_arn=arn(name),
        role_session_name=f"alice@{name}",
        duration_seconds=duration,
        source_profile=None if source_role else "base",
        source_role=source_role,
        **extra,
    )


@dataclass
class Rig:
    clock: FakeClock
    sts: FakeSts
    store: Store

    def entry(self, request: RoleRequest) -> Entry:
        matches = [e for e in self.store.entries() if e.request == request]
        assert len(matches) == 1, f"expected one entry for {request.role_arn}"
        return matches[0]

    async def get(self, request: Key, token_code: str | None = None) -> Credentials:
        """store.get with a real-time guard, so a caller stuck waiting fails the test."""
        return await guarded(self.store.get(request, MIN_TTL, token_code))

    async def tick(self) -> list[Credentials | BaseException]:
        """One renewer tick, awaited to the end: the results of the renewals it started."""
        tasks = self.store.tick()
        results = await guarded(asyncio.gather(*tasks, return_exceptions=True))
        for result in results:
            if isinstance(result, AssertionError):
                raise result  # the fake STS saw a wrongly signed call
        return results


async def guarded(awaitable: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(awaitable, GUARD)
    except TimeoutError:
        raise AssertionError(f"still waiting after {GUARD} s") from None


@pytest.fixture
async def make_rig() -> AsyncIterator[Callable[..., Rig]]:
    """Builds a store on the fakes; closes every store afterwards."""
    rigs: list[Rig] = []

    def make(mfa_prompt_wait: float = store_module.MFA_PROMPT_WAIT) -> Rig:
        clock = FakeClock()
        sts = FakeSts()
        store = Store(
            sts,
            Settings(),
            clock=clock,
            sleep=FakeSleep(clock),
            rng=random.Random(7),
            mfa_prompt_wait=mfa_prompt_wait,
        )
        rig = Rig(clock, sts, store)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        await rig.store.close()


async def settle() -> None:
    """Let every task that can run without STS or the clock reach its next wait."""
    for _ in range(50):
        await asyncio.sleep(0)


# -- asking for a code --------------------------------------------------------------------


async def test_role_with_mfa_serial_and_no_code_is_mfa_required(make_rig):
    """Without an open MFA session and without a code, the answer is MfaRequired naming the
    device, and STS is not called."""
    rig = make_rig()
    with pytest.raises(MfaRequired) as caught:
        await rig.get(mfa_role())
    error = caught.value
    assert error.details["mfa_serial"] == MFA
    assert error.code == "MfaRequired" and error.status == 401
    assert MFA in error.message
    assert rig.sts.calls == []
    assert rig.entry(mfa_role()).credentials is None


async def test_code_opens_one_session_that_signs_the_assume_role(make_rig):
    """With a code: one GetSessionToken with that code, then AssumeRole signed by the
    session's credentials; the caller gets the role's credentials."""
    rig = make_rig()
    credentials = await rig.get(mfa_role(), "123456")
    session_call, role_call = rig.sts.calls
    assert session_call.action == "GetSessionToken"
    assert session_call.token_code == "123456"
    assert session_call.request == mfa_role().mfa_session
    assert session_call.request.duration_seconds == 12 * 3600
    assert role_call.action == "AssumeRole"
    assert role_call.signer is session_call.issued
    assert credentials is role_call.issued
    # The session is not a role entry; the role is, and is served from memory now.
    assert [e.request for e in rig.store.entries()] == [mfa_role()]
    assert await rig.get(mfa_role()) is credentials
    assert len(rig.sts.calls) == 2


async def test_second_role_behind_the_same_device_needs_no_code(make_rig):
    """Another role behind the same device (and source) is assumed with the open session:
    no code, no second GetSessionToken."""
    rig = make_rig()
    await rig.get(mfa_role("admin"), "123456")
    session = rig.sts.calls[0].issued
    other = await rig.get(mfa_role("billing"))
    assert rig.sts.actions() == ["GetSessionToken", "AssumeRole", "AssumeRole"]
    assert rig.sts.calls[-1].signer is session
    assert other.assumed_role_arn == assumed_arn(arn("billing"), "alice@mfa")
    # A code sent although the session is open is not spent on a new session.
    await rig.get(mfa_role("ops"), "234567")
    assert rig.sts.count("GetSessionToken") == 1


@pytest.mark.parametrize(
    "other",
    [mfa_role("billing", serial=OTHER_MFA), mfa_role("billing", source="other-keys")],
    ids=["other device", "other source profile"],
)
async def test_session_is_per_device_and_source(make_rig, other):
    """The open session serves only its own device and source credentials: a role behind
    another device, or the same device with other source keys, needs its own code."""
    rig = make_rig()
    await rig.get(mfa_role("admin"), "123456")
    with pytest.raises(MfaRequired) as caught:
        await rig.get(other)
    assert caught.value.details["mfa_serial"] == other.mfa_serial
    assert rig.sts.count("GetSessionToken") == 1
    await rig.get(other, "234567")
    assert rig.sts.count("GetSessionToken") == 2


# -- renewal ------------------------------------------------------------------------------


async def test_renewals_need_no_code_while_the_mfa_session_lives(make_rig):
    """Background renewals during the 12 h session are AssumeRole calls signed by that one
    session, without a code and without another GetSessionToken."""
    rig = make_rig()
    first = await rig.get(mfa_role(), "123456")
    session = rig.sts.calls[0].issued
    entry = rig.entry(mfa_role())
    renewals = 0
    while entry.renew_at is not None and entry.renew_at < T0 + 10 * 3600:
        rig.clock.now = entry.renew_at
        (renewed,) = await rig.tick()
        assert isinstance(renewed, Credentials)
        assert entry.credentials is renewed
        assert await rig.get(mfa_role()) is renewed  # in use, so it is kept renewed
        renewals += 1
    assert renewals >= 15  # about every half hour for ten hours
    role_calls = [c for c in rig.sts.calls if c.action == "AssumeRole"]
    assert len(role_calls) == renewals + 1
    assert all(c.signer is session and c.token_code is None for c in role_calls[1:])
    assert rig.sts.count("GetSessionToken") == 1
    assert entry.credentials is not first


async def test_after_the_mfa_session_ends_renewal_waits_for_a_code(make_rig):
    """Once the MFA session has expired, the renewer makes no STS call, keeps serving the
    held role credentials while they last, and a request needing fresher ones gets
    MfaRequired; a new code then opens a new session."""
    rig = make_rig()
    await rig.get(mfa_role(), "123456")
    session = rig.sts.calls[0].issued
    entry = rig.entry(mfa_role())
    while True:
        assert entry.renew_at is not None
        rig.clock.now = entry.renew_at
        calls_before = len(rig.sts.calls)
        (result,) = await rig.tick()
        if isinstance(result, MfaRequired):
            break
        assert isinstance(result, Credentials)
        assert await rig.get(mfa_role()) is result  # in use, so it is kept renewed
    # The renewal that found the session (nearly) over called nothing and gave up quietly.
    assert rig.clock.now > session.expiration - 60
    assert len(rig.sts.calls) == calls_before
    assert entry.renew_at is None
    held = entry.credentials
    assert held is not None and held.expiration - rig.clock.now > MIN_TTL
    rig.clock.advance(60)
    assert rig.store.tick() == []  # nothing more is attempted in the background

    # Still valid: served as is, no prompt.
    assert await rig.get(mfa_role()) is held
    # Below the minimum lifetime: the caller is asked for a code.
    rig.clock.now = held.expiration - MIN_TTL + 1
    with pytest.raises(MfaRequired):
        await rig.get(mfa_role())
    assert len(rig.sts.calls) == calls_before
    fresh = await rig.get(mfa_role(), "234567")
    assert rig.sts.count("GetSessionToken") == 2
    assert rig.sts.calls[-1].signer is rig.sts.calls[-2].issued
    assert fresh.expiration == rig.clock.now + 3600
    assert entry.renew_at is not None  # renewing again on its schedule


# -- wrong codes --------------------------------------------------------------------------


async def test_wrong_code_is_rejected_with_stss_message_and_nothing_is_cached(make_rig):
    """A wrong code gives MfaCodeRejected with STS's message after one GetSessionToken and
    no AssumeRole; nothing is kept, so an immediate retry with the right code calls STS
    again and succeeds."""
    rig = make_rig()
    with pytest.raises(MfaRequired):
        await rig.get(mfa_role())
    with pytest.raises(MfaCodeRejected) as caught:
        await rig.get(mfa_role(), "999999")
    error = caught.value
    assert error.code == "MfaCodeRejected" and error.status == 403
    assert MFA_REJECTED.strip() in error.message
    assert MFA in error.message
    assert rig.sts.actions() == ["GetSessionToken"]  # not retried, no role call
    assert rig.entry(mfa_role()).credentials is None

    credentials = await rig.get(mfa_role(), "123456")  # same instant: no negative cache
    assert rig.sts.actions() == ["GetSessionToken", "GetSessionToken", "AssumeRole"]
    assert [c.token_code for c in rig.sts.calls[:2]] == ["999999", "123456"]
    assert rig.sts.calls[2].signer is rig.sts.calls[1].issued
    assert credentials is rig.sts.calls[-1].issued


async def test_reused_code_is_rejected(make_rig):
    """A code STS already took once is refused the second time (here for a second device)."""
    rig = make_rig()
    await rig.get(mfa_role("admin"), "123456")
    with pytest.raises(MfaCodeRejected):
        await rig.get(mfa_role("billing", serial=OTHER_MFA), "123456")
    assert rig.sts.count("GetSessionToken") == 2
    assert rig.sts.count("AssumeRole") == 1


# -- one prompt for concurrent callers ----------------------------------------------------


CONCURRENT = {
    "same role": lambda: [mfa_role("admin")] * 3,
    "three roles": lambda: [mfa_role("admin"), mfa_role("billing"), mfa_role("ops")],
    "same chain": lambda: [hop("top", 900, hop("base-role", 3600, mfa_serial=MFA))] * 3,
}


@pytest.mark.parametrize("scenario", list(CONCURRENT), ids=list(CONCURRENT))
async def test_concurrent_callers_wait_for_the_one_prompt(make_rig, scenario):
    """Caller A is asked for the code; B and C, arriving while A types it, wait instead of
    being asked too, and all three get credentials from one GetSessionToken."""
    rig = make_rig()
    first, second, third = CONCURRENT[scenario]()
    with pytest.raises(MfaRequired):
        await rig.get(first)
    waiters = [asyncio.create_task(rig.get(r)) for r in (second, third)]
    await settle()
    assert not any(task.done() for task in waiters), "B or C did not wait"
    assert rig.sts.calls == []

    a = await rig.get(first, "123456")
    b, c = await guarded(asyncio.gather(*waiters))
    assert all(isinstance(x, Credentials) for x in (a, b, c))
    assert rig.sts.count("GetSessionToken") == 1
    if scenario == "three roles":
        assert rig.sts.count("AssumeRole") == 3
    else:  # the same key: the three callers share the calls
        assert a is b is c
        assert rig.sts.count("AssumeRole") == (1 if scenario == "same role" else 2)


async def test_waiters_are_asked_themselves_when_the_prompt_is_abandoned(make_rig):
    """If the caller who was asked never sends a code, a waiter gets MfaRequired once the
    prompt wait is over, and STS is not called."""
    rig = make_rig(mfa_prompt_wait=0.05)
    with pytest.raises(MfaRequired):
        await rig.get(mfa_role())
    with pytest.raises(MfaRequired):
        await guarded(rig.get(mfa_role()))  # the prompt wait ends it, not the guard
    assert rig.sts.calls == []


@pytest.mark.parametrize("duration", [3600, 43200])
async def test_a_caller_without_a_terminal_ends_the_prompt_others_wait_for(make_rig, duration):
    """The caller asked for a code says it has no terminal: the caller waiting for that code
    is asked itself at once (no clock moves), and its code is used at once."""
    rig = make_rig()
    role = mfa_role(duration=duration)
    with pytest.raises(MfaRequired):
        await rig.get(role)
    waiter = asyncio.create_task(rig.get(role))
    await settle()
    assert not waiter.done()
    with pytest.raises(MfaRequired):
        await guarded(rig.store.get(role, MIN_TTL, can_prompt=False))
    await settle()
    assert waiter.done()
    with pytest.raises(MfaRequired):
        waiter.result()
    with pytest.raises(MfaRequired):  # this caller is asked, and claims the prompt again
        await rig.get(role)
    assert isinstance(await rig.get(role, "123456"), Credentials)
    assert rig.sts.count("GetSessionToken" if duration == 3600 else "AssumeRole") == 1


async def test_caller_after_the_prompt_window_is_asked_at_once(make_rig):
    """A caller arriving after the prompt window has passed on the clock is asked for a code
    itself instead of waiting for the first caller."""
    rig = make_rig()
    with pytest.raises(MfaRequired):
        await rig.get(mfa_role())
    rig.clock.advance(store_module.MFA_PROMPT_WAIT + 1)
    task = asyncio.create_task(rig.get(mfa_role()))
    await settle()
    assert task.done()
    with pytest.raises(MfaRequired):
        task.result()


# -- role chaining ------------------------------------------------------------------------


async def test_two_hop_chain_assumes_each_hop_once_signed_by_the_previous(make_rig):
    """A two-hop chain costs one AssumeRole per hop; the second is signed with the first's
    credentials, and each hop is a cache entry of its own."""
    rig = make_rig()
    first = hop("first", 900)
    second = hop("second", 3600, first)
    credentials = await rig.get(second)
    call1, call2 = rig.sts.calls
    assert (call1.request, call1.signer) == (first, None)
    assert call2.request == second
    assert call2.signer is call1.issued
    assert credentials is call2.issued
    assert {e.request for e in rig.store.entries()} == {first, second}
    assert rig.entry(first).credentials is call1.issued
    assert await rig.get(second) is credentials
    assert len(rig.sts.calls) == 2


async def test_each_hop_is_renewed_on_its_own_schedule(make_rig):
    """A tick at the first hop's renewal time renews that hop only; the second hop is renewed
    at its own time, signed by the first hop's newest credentials."""
    rig = make_rig()
    first = hop("first", 900)
    second = hop("second", 3600, first)
    await rig.get(second)
    one, two = rig.entry(first), rig.entry(second)
    held_second = two.credentials
    assert one.renew_at < two.renew_at

    rig.clock.now = one.renew_at
    (renewed,) = await rig.tick()
    assert renewed is one.credentials
    assert rig.sts.calls[-1].request == first
    assert two.credentials is held_second
    assert rig.sts.count("AssumeRole", second) == 1

    # Keep ticking whenever something is due until the second hop has renewed once.
    while rig.sts.count("AssumeRole", second) == 1:
        rig.clock.now = min(one.renew_at, two.renew_at)
        await rig.tick()
    last = rig.sts.calls[-1]
    assert last.request == second
    assert last.signer is one.credentials
    assert last.signer is not held_second
    assert two.credentials is last.issued
    assert rig.sts.count("AssumeRole", first) >= 3  # the 15-minute hop renews more often


async def test_chain_with_mfa_on_its_first_hop(make_rig):
    """mfa_serial on the first hop: the code opens the session that signs hop one, hop two is
    signed by hop one, and hop one's renewal needs no code."""
    rig = make_rig()
    first = hop("first", 3600, mfa_serial=MFA)
    second = hop("second", 3600, first)
    with pytest.raises(MfaRequired):
        await rig.get(second)
    await rig.get(second, "123456")
    assert rig.sts.actions() == ["GetSessionToken", "AssumeRole", "AssumeRole"]
    session, call1, call2 = rig.sts.calls
    assert call1.signer is session.issued
    assert call2.signer is call1.issued

    one = rig.entry(first)
    rig.clock.now = one.renew_at
    results = await rig.tick()
    assert all(isinstance(r, Credentials) for r in results) and results
    assert rig.sts.count("GetSessionToken") == 1
    assert rig.sts.count("AssumeRole", first) == 2


async def test_background_renewal_claims_no_prompt(make_rig):
    """A renewal that finds the MFA session over asks nobody for a code, so a caller of
    another role behind the device right after it is asked at once instead of waiting for a
    prompt nobody is answering."""
    rig = make_rig()
    await rig.get(mfa_role(), "123456")
    entry = rig.entry(mfa_role())
    session = rig.sts.calls[0].issued
    while True:  # renew until the renewal runs into the end of the MFA session
        rig.clock.now = entry.renew_at
        (result,) = await rig.tick()
        if isinstance(result, MfaRequired):
            break
        await rig.get(mfa_role())
    assert rig.clock.now > session.expiration - 60
    with pytest.raises(MfaRequired):  # guarded: waiting for a prompt would fail the test
        await rig.get(mfa_role("other"))


# -- MFA roles over an hour: the code goes in AssumeRole itself -------------------------

LONG = 43200


async def test_long_mfa_role_is_assumed_directly_with_its_code(make_rig):
    """A 12-hour role behind an MFA device: one prompt, then one AssumeRole signed by the
    long-term keys carrying the code, for the full 12 hours; no GetSessionToken."""
    rig = make_rig()
    role = mfa_role("long", duration=LONG)
    with pytest.raises(MfaRequired) as caught:
        await rig.get(role)
    assert caught.value.details["mfa_serial"] == MFA
    assert rig.sts.calls == []
    credentials = await rig.get(role, "123456")
    (call,) = rig.sts.calls
    assert (call.action, call.signer, call.token_code) == ("AssumeRole", None, "123456")
    assert credentials.expiration - credentials.issued_at == LONG
    assert await rig.get(role) is credentials  # served from memory: no second prompt


async def test_each_long_role_prompts_once_and_hour_roles_share_one_session(make_rig):
    """Two 12-hour MFA roles need one code each; 1-hour roles behind the same device share
    one GetSessionToken session, so after its code no 1-hour role prompts again."""
    rig = make_rig()
    await rig.get(mfa_role("hour-a"), "123456")  # opens the shared 12 h session
    await rig.get(mfa_role("long-a", duration=LONG), "234567")
    with pytest.raises(MfaRequired):
        await rig.get(mfa_role("long-b", duration=LONG))
    await rig.get(mfa_role("long-b", duration=LONG), "345678")
    await rig.get(mfa_role("hour-b"))  # no code: the session signs it
    assert rig.sts.actions() == [
        "GetSessionToken",
        "AssumeRole",
        "AssumeRole",
        "AssumeRole",
        "AssumeRole",
    ]
    assert [c.token_code for c in rig.sts.calls] == ["123456", None, "234567", "345678", None]
    assert rig.sts.calls[-1].signer is rig.sts.calls[0].issued


async def test_long_mfa_role_is_not_renewed_and_prompts_under_its_min_ttl(make_rig):
    """A long MFA role is never renewed in the background (renewing needs a code); a request
    that finds it under its minimum lifetime is asked for a code, and that code assumes it
    again for the full duration."""
    rig = make_rig()
    role = mfa_role("long", duration=LONG)
    held = await rig.get(role, "123456")
    entry = rig.entry(role)
    assert entry.renew_at is None
    for hours in (6, 11, 11.9):
        rig.clock.now = T0 + hours * 3600
        assert rig.store.tick() == []
        assert await rig.get(role) is held
    rig.clock.now = held.expiration - MIN_TTL + 1
    with pytest.raises(MfaRequired):
        await rig.get(role)
    assert len(rig.sts.calls) == 1
    fresh = await rig.get(role, "234567")
    assert fresh.expiration == rig.clock.now + LONG
    assert [c.token_code for c in rig.sts.calls] == ["123456", "234567"]


@pytest.mark.parametrize(
    "request_",
    [mfa_role("long", duration=LONG), mfa_role("hour")],
    ids=["long role", "MFA session"],
)
async def test_a_call_carrying_a_code_is_never_repeated(make_rig, request_):
    """A throttled call that carried an MFA code is not retried with the same code: the
    caller hears of the throttling, and the next code is tried afresh."""
    rig = make_rig()
    rig.sts.script.append(THROTTLED)
    with pytest.raises(StsError) as caught:
        await rig.get(request_, "123456")
    assert caught.value.code == "Throttling"
    assert [(c.token_code, c.refused) for c in rig.sts.calls] == [("123456", THROTTLED)]
    rig.clock.advance(120)  # past the back-off window
    await rig.get(request_, "234567")
    codes = [c.token_code for c in rig.sts.calls if c.token_code is not None]
    assert codes == ["123456", "234567"]


async def test_a_refused_code_for_a_long_role_asks_for_another(make_rig):
    """A code STS refuses for a long MFA role gives MfaCodeRejected (the client asks again)
    and is not remembered: the next code works at once."""
    rig = make_rig()
    role = mfa_role("long", duration=LONG)
    with pytest.raises(MfaCodeRejected) as caught:
        await rig.get(role, "999999")
    assert MFA_REJECTED.strip() in caught.value.message
    assert await rig.get(role, "123456")
    assert [c.token_code for c in rig.sts.calls] == ["999999", "123456"]


async def test_concurrent_callers_of_a_long_role_wait_for_one_prompt(make_rig):
    """Caller A of a long MFA role is asked for the code; B and C arriving meanwhile wait and
    get the credentials A's code brings, from one AssumeRole."""
    rig = make_rig()
    role = mfa_role("long", duration=LONG)
    with pytest.raises(MfaRequired):
        await rig.get(role)
    waiters = [asyncio.create_task(rig.get(role)) for _ in range(2)]
    await settle()
    assert not any(task.done() for task in waiters)
    a = await rig.get(role, "123456")
    b, c = await guarded(asyncio.gather(*waiters))
    assert a is b is c
    assert rig.sts.actions() == ["AssumeRole"]


async def test_long_role_as_first_hop_of_a_chain(make_rig):
    """A chain whose first hop is a long MFA role: one code assumes the first hop directly,
    the second hop is signed by it, and the second hop's renewals need no code while the
    first hop lives."""
    rig = make_rig()
    first = hop("first", LONG, mfa_serial=MFA)
    second = hop("second", 3600, first)
    with pytest.raises(MfaRequired):
        await rig.get(second)
    await rig.get(second, "123456")
    call1, call2 = rig.sts.calls
    assert (call1.request, call1.signer, call1.token_code) == (first, None, "123456")
    assert call2.signer is call1.issued
    two = rig.entry(second)
    rig.clock.now = two.renew_at
    (renewed,) = await rig.tick()
    assert isinstance(renewed, Credentials)
    assert rig.sts.calls[-1].signer is call1.issued
    assert rig.sts.actions() == ["AssumeRole"] * 3


async def test_refusal_before_the_call_is_a_400_and_no_sts_call():
    """When the STS caller finds the source temporary (TemporarySource), the request fails
    with a 400 InvalidRequest and the store counts no STS call."""

    def refuse(request, now, signer=None, token_code=None):
        raise TemporarySource("its source gives temporary credentials (SSO)")

    store = Store(refuse, Settings(), clock=FakeClock(), sleep=FakeSleep(FakeClock()))
    try:
        with pytest.raises(InvalidRequest) as caught:
            await guarded(store.get(hop("long", LONG), MIN_TTL))
        assert caught.value.status == 400 and caught.value.code == "InvalidRequest"
        assert "SSO" in caught.value.message
        assert store.sts_calls == 0
        assert store.entries()[0].sts_calls == 0
    finally:
        await store.close()
