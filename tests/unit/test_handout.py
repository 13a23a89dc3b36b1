"""Handing out a binding's credentials (handout.py): what `held` and `credentials` return, and
that each hand-out, and only a hand-out, is counted and audited; on a fake clock and STS."""

import logging
import threading
from collections.abc import AsyncIterator

import pytest

from rolecached.core.bindings import ECS_MIN_TTL, Binding, parse_spec, resolve
from rolecached.core.request import parse_request
from rolecached.core.store import Settings, Store
from rolecached.endpoints.handout import Handout
from rolecached.errors import StsRefused, Unavailable
from rolecached.host.peers import Peer
from tests.kit import ACCOUNT, DENIED, FakeClock, FakeSleep, FakeSts

ROLE = f"arn:aws:iam::{ACCOUNT}:role/app"
PEER = Peer(uid=1000, pid=None, address="127.0.0.1")
AGENT = "Boto3/1.34 md/Botocore#1.34"


@pytest.fixture
async def parts() -> AsyncIterator[tuple[Store, FakeSts, Handout, Binding]]:
    """A store on a fake clock and STS, a Handout over it, and a binding called dev."""
    clock, sts = FakeClock(), FakeSts()
    store = Store(sts, Settings(), clock=clock, sleep=FakeSleep(clock))
    spec = parse_spec("dev", {"role_arn": ROLE, "role_session_name": "dev"})
    binding = resolve(spec, parse_request)
    yield store, sts, Handout(store, clock, wait=5.0), binding
    if sts.gate is not None:
        sts.gate.set()
    await store.close()


async def test_held_counts_and_audits_what_it_hands_out(
    parts: tuple[Store, FakeSts, Handout, Binding], caplog: pytest.LogCaptureFixture
) -> None:
    """Credentials held in memory come back from `held`, with one hit and one audit line that
    name the peer, the listener and binding, and the User-Agent, never a secret."""
    store, _, handout, binding = parts
    fetched = await store.get(binding.request, ECS_MIN_TTL)
    hits = store.entries()[0].hits
    with caplog.at_level(logging.INFO, logger="rolecached.audit"):
        assert handout.held(binding, ECS_MIN_TTL, PEER, AGENT) is fetched
    entry = store.entries()[0]
    assert entry.hits == hits + 1
    assert entry.last_requester is not None and "via container endpoint dev" in entry.last_requester
    lines = [r.getMessage() for r in caplog.records if r.name == "rolecached.audit"]
    assert len(lines) == 1 and "via container endpoint dev (Boto3/1.34" in lines[0]
    assert fetched.secret_access_key not in lines[0] and fetched.session_token not in lines[0]


async def test_nothing_held_or_not_permitted_is_neither_counted_nor_audited(
    parts: tuple[Store, FakeSts, Handout, Binding], caplog: pytest.LogCaptureFixture
) -> None:
    """Without credentials held, or when the permit says no (the lane's rate limit), `held`
    returns None and nothing is counted; the permit is asked only when credentials are held."""
    store, _, handout, binding = parts
    asked: list[bool] = []

    def permit() -> bool:
        asked.append(True)
        return False

    with caplog.at_level(logging.INFO, logger="rolecached.audit"):
        assert handout.held(binding, ECS_MIN_TTL, PEER, AGENT, permit) is None
        assert asked == []
        await store.get(binding.request, ECS_MIN_TTL)
        hits = store.entries()[0].hits
        assert handout.held(binding, ECS_MIN_TTL, PEER, AGENT, permit) is None
    assert asked == [True] and store.entries()[0].hits == hits
    assert not [r for r in caplog.records if r.name == "rolecached.audit"]


async def test_credentials_fetches_what_is_not_held_and_counts_it_once(
    parts: tuple[Store, FakeSts, Handout, Binding],
) -> None:
    """With nothing held, `credentials` fetches from STS and hands the result out, counted
    once under the listener it names."""
    store, sts, handout, binding = parts
    creds = await handout.credentials(binding, ECS_MIN_TTL, PEER, None, via="IMDS")
    assert creds.expiration - store.now() >= ECS_MIN_TTL and len(sts.calls) == 1
    entry = store.entries()[0]
    assert entry.hits == 1 and entry.last_requester is not None
    assert "via IMDS dev (no User-Agent)" in entry.last_requester


async def test_a_refused_role_is_a_502_with_stss_code(
    parts: tuple[Store, FakeSts, Handout, Binding],
) -> None:
    """STS refusing the role for good becomes StsRefused (502) carrying STS's error code."""
    _, sts, handout, binding = parts
    sts.failure = DENIED
    with pytest.raises(StsRefused) as refused:
        await handout.credentials(binding, ECS_MIN_TTL, PEER, AGENT)
    assert refused.value.status == 502 and refused.value.code == "AccessDenied"


async def test_a_fetch_slower_than_the_wait_is_a_503_and_goes_on(
    parts: tuple[Store, FakeSts, Handout, Binding],
) -> None:
    """When STS does not answer within `wait`, the request gets Unavailable (503) while the
    fetch goes on, and the credentials it brings are held for the next request."""
    store, sts, _, binding = parts
    sts.gate = threading.Event()
    hasty = Handout(store, store.now, wait=0.01)
    with pytest.raises(Unavailable) as unavailable:
        await hasty.credentials(binding, ECS_MIN_TTL, PEER, AGENT)
    assert unavailable.value.status == 503 and "renewal is in progress" in unavailable.value.message
    sts.gate.set()
    await store.get(binding.request, ECS_MIN_TTL)
    assert len(sts.calls) == 1
    assert hasty.held(binding, ECS_MIN_TTL, PEER, AGENT) is not None
