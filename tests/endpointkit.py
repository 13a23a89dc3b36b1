"""The container endpoints in one process, for the tests that speak to them: the real store
and EndpointManager on a fake clock and the kit's fake STS, serving on loopback (the `rig`
fixture), and raw HTTP/1.1 to the container and IMDS listeners."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from rolecached.core.bindings import EndpointSettings, parse_spec, resolve
from rolecached.core.request import parse_request
from rolecached.core.store import Settings, Store
from rolecached.endpoints.apps import IMDS_TOKEN_HEADER, IMDS_TOKEN_PATH, IMDS_TTL_HEADER
from rolecached.endpoints.manager import EndpointManager
from rolecached.endpoints.registry import Served
from tests.kit import ACCOUNT, FakeClock, FakeSts, Reply, http, no_sleep

T0 = 1_800_000_000.0
ROLE = f"arn:aws:iam::{ACCOUNT}:role/app"


def settings(**changes: Any) -> EndpointSettings:
    """Listener settings for tests: any free port, short waits."""
    return replace(EndpointSettings(port=0, wait=0.5, idle_timeout=2.0), **changes)


def endpoint_manager(
    store: Store, tokens_dir: Path, clock: FakeClock, **changes: Any
) -> EndpointManager:
    """The EndpointManager every rig serves with: `settings(**changes)` on the fake clock."""
    return EndpointManager(store, settings(**changes), tokens_dir, clock=clock)


@dataclass
class Rig:
    """A store and an endpoint manager on the fake clock, serving on loopback."""

    clock: FakeClock
    sts: FakeSts
    store: Store
    manager: EndpointManager
    tokens_dir: Path
    extra: list[EndpointManager] = field(default_factory=list)

    async def add(self, name: str = "dev", replace: bool = False, **fields: Any) -> Served:
        """Bind `name` to ROLE (session `name`) on the rig's manager."""
        body = {"role_arn": ROLE, "role_session_name": name, **fields}
        binding = resolve(parse_spec(name, body), parse_request)
        return await self.manager.add(binding, replace=replace)

    @property
    def ecs_port(self) -> int:
        assert self.manager.ecs_port is not None
        return self.manager.ecs_port

    async def ecs(self, name: str = "dev", token: str | None = "", **headers: str | None) -> Reply:
        """GET the container endpoint; token "" means the binding's own token."""
        if token == "":
            token = self.manager.get(name).ring.current
        path = f"/v1/credentials/{name}"
        return await http(self.ecs_port, "GET", path, headers={"Authorization": token, **headers})

    async def imds_token(self, name: str = "dev", ttl: str = "21600") -> str:
        """A fresh IMDSv2 session token from the binding's IMDS listener."""
        port = self.manager.get(name).imds.port  # type: ignore[union-attr]
        reply = await http(port, "PUT", IMDS_TOKEN_PATH, headers={IMDS_TTL_HEADER: ttl})
        assert reply.status == 200, reply.body
        return reply.body.decode()

    async def imds(self, path: str, name: str = "dev", token: str | None = "") -> Reply:
        """GET from the binding's IMDS listener; token "" means a fresh valid one."""
        if token == "":
            token = await self.imds_token(name)
        port = self.manager.get(name).imds.port  # type: ignore[union-attr]
        return await http(port, "GET", path, headers={IMDS_TOKEN_HEADER: token})


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """A fresh store and manager; closed after the test."""
    clock, sts = FakeClock(T0), FakeSts()
    store = Store(sts, Settings(idle_ttl=600), clock=clock, sleep=no_sleep)
    tokens = tmp_path / "tokens"
    tokens.mkdir(mode=0o700)
    manager = endpoint_manager(store, tokens, clock)
    r = Rig(clock, sts, store, manager, tokens)
    yield r
    for m in [manager, *r.extra]:
        await m.close()
    if sts.gate is not None:
        sts.gate.set()
    await store.close()


async def new_manager(rig: Rig, **changes: Any) -> EndpointManager:
    """A second manager over the same store, with other settings."""
    manager = endpoint_manager(rig.store, rig.tokens_dir, rig.clock, **changes)
    rig.extra.append(manager)
    return manager
