"""Serving again at start: the bindings of the config file and those added at run time before a
restart, on the ports and with the tokens they had; a port taken meanwhile is waited for."""

import logging
from collections.abc import Sequence
from typing import Any

from rolecached.core.bindings import Binding, Resolve, resolve
from rolecached.core.store import Store
from rolecached.endpoints.ports import Ports, open_container, open_imds
from rolecached.endpoints.portwaits import Waits, note, revoke
from rolecached.errors import ListenError, RolecacheError

log = logging.getLogger(__name__)


def unresolvable(_: dict[str, Any]) -> Any:
    """The resolver of a manager given none: runtime bindings cannot be served again."""
    raise RolecacheError("no resolver to serve runtime bindings again")


async def serve_again(
    ports: Ports,
    waits: Waits,
    store: Store,
    initial: Sequence[Binding],
    resolver: Resolve | None,
) -> None:
    """Serve `initial` (the config file's bindings) and the runtime bindings saved by the last
    run. A port taken meanwhile is waited for, never given up (see portwaits.retry); one
    another uid holds revokes every container token."""
    registry = ports.registry
    registry.load_saved()
    if ports.held is not None:
        ports.held.open()
    if initial or registry.saved_runtime():
        try:
            await open_container(ports)
        except ListenError as exc:
            waits.container = note(waits, exc, "the container endpoint")
            registry.container_port = exc.port or None  # saved: the URL stays
    for binding in initial:
        await restore(ports, waits, store, binding)
    for spec in registry.saved_runtime():
        if spec.name in registry.served:
            continue
        try:
            binding = resolve(spec, resolver or unresolvable)
        except RolecacheError as exc:
            log.warning("endpoint %s is not served again: %s", spec.name, exc)
            continue
        await restore(ports, waits, store, binding)
    if ports.held is not None:
        ports.held.release_unused()
    registry.forget_saved()
    if waits.revoke_when_back:
        revoke(waits, registry, "at start")
    registry.persist()


async def restore(ports: Ports, waits: Waits, store: Store, binding: Binding) -> None:
    """Serve a binding of the config file or the last run on the IMDS port it had; when
    that port is taken, it waits for it (kept, saved and listed as waiting)."""
    registry = ports.registry
    store.pin(binding.request)
    served = registry.new_served(binding)
    served.port = binding.spec.imds_port or registry.saved_imds_port(binding.name) or 0
    try:
        served.imds = await open_imds(ports, served, served.port)
        served.port = served.imds.port
    except ListenError as exc:
        served.waiting = note(waits, exc, f"endpoint {binding.name!r}")
    registry.write_token(served)
    registry.served[binding.name] = served
