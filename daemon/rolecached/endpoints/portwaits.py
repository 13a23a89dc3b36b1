"""Ports taken when the endpoints start: why a listener waits, the alert when another uid held
one, the container tokens that replaces, and taking the ports back once they are free."""

import logging
import os
from dataclasses import dataclass, field

from rolecached.endpoints.ports import Ports, open_container, open_imds
from rolecached.endpoints.registry import Registry
from rolecached.errors import ListenError

log = logging.getLogger(__name__)


@dataclass
class Waits:
    """What waits for a port, and what was done about ports another uid held."""

    # The container port it waits for, and why ("waiting for port N, held by uid U").
    container: str | None = None
    # Ports another uid held: what was done about it, for `status` and `endpoint list`.
    alerts: list[str] = field(default_factory=list)
    # Set while a port another uid held is not back: its return revokes the tokens again.
    revoke_when_back: bool = False


def waiting_names(waits: Waits, registry: Registry) -> set[str | None]:
    """What waits for a port: binding names, and None for the container endpoint."""
    names: set[str | None] = {s.binding.name for s in registry.served.values() if s.waiting}
    return names | ({None} if waits.container else set())


def note(waits: Waits, exc: ListenError, what: str, again: bool = False) -> str:
    """Why `what` waits for its port, as listings say; another uid's hold is an alert."""
    who = "another program" if exc.holder is None else f"uid {exc.holder}"
    waiting = f"waiting for port {exc.port}, held by {who}"
    foreign = exc.holder is not None and exc.holder != os.getuid()
    if foreign and not again:
        waits.revoke_when_back = True
        waits.alerts.append(
            f"port {exc.port} was held by uid {exc.holder} (another user) at start: it "
            "may have read tokens sent there, so every container token was replaced"
        )
        log.error(
            "%s: port %d is held by uid %d, another user, who may have read the tokens "
            "programs sent there while rolecached was not running: every container token "
            "is replaced, and the port is taken back once it is free",
            what,
            exc.port,
            exc.holder,
        )
    elif not again:
        log.warning("%s is %s; it is kept and takes the port once it is free", what, waiting)
    return waiting


def revoke(waits: Waits, registry: Registry, when: str) -> None:
    """Replace every container token now, with no grace period."""
    # Every token another uid may have seen stops working now: the container token and
    # capability (environments handed out) and the token file's.
    waits.revoke_when_back = bool(waiting_names(waits, registry))
    for name in list(registry.served):
        registry.rotate(name, containers=True, grace=False)
    log.error(
        "replaced the container tokens of every endpoint %s: hand them out again "
        "(`rolecache endpoint env`, or restart the containers)",
        when,
    )


async def retry(waits: Waits, ports: Ports) -> None:
    """Listen on the ports waited for, where they are free now. Once every port another uid
    held is back, the container tokens are revoked again: programs may have sent the ones
    written meanwhile to it."""
    registry = ports.registry
    before = waiting_names(waits, registry)
    if waits.container is not None:
        try:
            await open_container(ports)
            waits.container = None
        except ListenError as exc:
            waits.container = note(waits, exc, "the container endpoint", again=True)
    for served in list(registry.served.values()):
        if served.waiting is None:
            continue
        try:
            served.imds = await open_imds(ports, served, served.port)
            served.waiting = None
            log.info("endpoint %s listens on its port %d again", served.binding.name, served.port)
        except ListenError as exc:
            served.waiting = note(waits, exc, f"endpoint {served.binding.name!r}", again=True)
    if waits.revoke_when_back and not waiting_names(waits, registry):
        revoke(waits, registry, "now that its ports are back")
    if before != waiting_names(waits, registry):
        registry.persist()
