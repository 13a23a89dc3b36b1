"""`EndpointManager`, the container endpoints' coordinator: it starts and stops the listeners,
adds, replaces, removes and rotates bindings, and ticks (rotate, warm, retry ports)."""

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rolecached.core.bindings import (
    DOCKER_GATEWAY,
    IMDS_MIN_TTL,
    Binding,
    EndpointSettings,
    Resolve,
    check_addresses,
)
from rolecached.core.store import Store
from rolecached.endpoints import listing, portwaits, restart
from rolecached.endpoints.handout import Handout
from rolecached.endpoints.listeners import Listener
from rolecached.endpoints.ports import (
    Ports,
    close_container,
    container_port,
    open_container,
    open_imds,
)
from rolecached.endpoints.portwaits import Waits
from rolecached.endpoints.registry import Registry, Served
from rolecached.endpoints.warmer import Warmer
from rolecached.errors import BindingExists, ListenError
from rolecached.front.gate import Gate, default_gate
from rolecached.front.held_ports import HeldPorts

log = logging.getLogger(__name__)


class EndpointManager:
    """Serves the bindings: one ECS listener, one IMDS listener per binding."""

    def __init__(
        self,
        store: Store,
        settings: EndpointSettings,
        tokens_dir: Path,
        *,
        sandbox: bool = False,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        bindings: list[Binding] | tuple[Binding, ...] = (),
        gate: Gate | None = None,
        state_file: Path | None = None,
        resolver: Resolve | None = None,
        skipped: list[str] | tuple[str, ...] = (),
        held: HeldPorts | None = None,
    ) -> None:
        self.store = store
        # Why bindings of config.toml were not served, for `status` and `endpoint list`.
        self.skipped = list(skipped)
        self._initial = list(bindings)
        self.settings = settings
        self.clock = clock
        self.registry = Registry(tokens_dir, settings, clock, state_file)
        self.handout = Handout(store, clock, settings.wait)
        self.warmer = Warmer(store, clock, rng or random.Random())
        self.ports = Ports(
            settings=settings,
            registry=self.registry,
            handout=self.handout,
            gate=gate or default_gate(os.getuid()),
            clock=clock,
            sandbox=sandbox,
            held=held,
        )
        self.waits = Waits()
        self._lock = asyncio.Lock()  # adds and removes happen one at a time
        store.on_drop(self.registry.forget_rendered)
        self.resolver = resolver  # how runtime bindings are resolved again at start
        for address in check_addresses(settings.bind, settings.allow_non_loopback):
            log.warning(
                "container endpoints will listen on %s, which is not loopback: anyone who "
                "reaches it and holds a token gets credentials",
                address,
            )

    @property
    def tokens_dir(self) -> Path:
        """The folder of the bindings' token folders."""
        return self.registry.tokens_dir

    @property
    def state_file(self) -> Path | None:
        """Where bindings outlive the process (None: they do not)."""
        return self.registry.state_file

    @state_file.setter
    def state_file(self, path: Path | None) -> None:
        self.registry.state_file = path

    @property
    def port_80(self) -> bool:
        """Whether port 80 of 169.254.170.2 is redirected to the container port."""
        return self.registry.port_80

    @property
    def ecs_port(self) -> int | None:
        """The container listener's port, once it listens."""
        return None if self.ports.container is None else self.ports.container.port

    @property
    def container_port(self) -> int:
        """The container listener's port: bound, else the one it will bind (0: any free)."""
        return container_port(self.ports)

    @property
    def ecs_listener(self) -> Listener | None:
        """The container listener, once it listens."""
        return self.ports.container

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve the bindings from the config file and those added at run time before a
        restart, with the ports, token files and container tokens they had; their credentials
        are fetched by the first tick, in the background (start-up never waits for STS)."""
        await restart.serve_again(self.ports, self.waits, self.store, self._initial, self.resolver)
        self.tick()

    async def close(self) -> None:
        """Stop every listener; token files stay, for the next start to serve again, and the
        port keeper holds the ports until then."""
        for served in self.all():
            await self._drop(served, keep_files=True)
        self.registry.served.clear()
        await close_container(self.ports)
        if self.ports.held is not None:
            self.ports.held.close()

    async def run(self) -> None:
        """Tick forever: rotate tokens when due, warm bindings that have nothing to serve,
        take back the ports waited for."""
        while True:
            await asyncio.sleep(self.settings.tick)
            self.tick()
            await self.retry_waiting()

    async def retry_waiting(self) -> None:
        """Listen on the ports taken at start, where they are free now (portwaits.retry)."""
        if not portwaits.waiting_names(self.waits, self.registry):
            return
        async with self._lock:
            await portwaits.retry(self.waits, self.ports)

    def tick(self) -> None:
        """One round of token rotation and warm-up, at the injected clock's time."""
        self.registry.rotate_due()
        self.warmer.tick(self.all())

    def status(self) -> dict[str, Any]:
        """What `rolecache status` says of the endpoints: counts, and alerts when there are."""
        return listing.status(self.ports, self.waits, self.skipped)

    def summary(self, served: Served) -> dict[str, Any]:
        """What `rolecache endpoint list` and `env` need: never a token or a secret."""
        return listing.summary(served, self.ports, self.waits, self.store)

    # -- bindings -------------------------------------------------------------------------

    def get(self, name: str) -> Served:
        """The served binding called `name`."""
        return self.registry.get(name)

    def all(self) -> list[Served]:
        """Every served binding, in the order they were added."""
        return list(self.registry.served.values())

    async def add(
        self,
        binding: Binding,
        *,
        replace: bool = False,
        warm: bool = True,
        token_code: str | None = None,
    ) -> Served:
        """Serve `binding`. With `warm`, its credentials are fetched first, so a failure
        (AccessDenied, an MFA code needed) is reported here and nothing is created."""
        async with self._lock:
            old = self.registry.served.get(binding.name)
            if old is not None and not replace:
                raise BindingExists(
                    f"an endpoint called {binding.name!r} exists; pass --replace to replace it"
                )
            await open_container(self.ports)
            self.store.pin(binding.request)
            if warm:
                try:
                    await self.store.get(binding.request, IMDS_MIN_TTL, token_code)
                except BaseException:
                    self._unpin_unless_used(binding.request)
                    raise
            imds_port = binding.spec.imds_port
            if old is None:
                served = self.registry.new_served(binding)
            else:
                # Replacing keeps the token, so programs holding the token file go on.
                served = old
                previous = old.binding
                served.binding = binding
                served.rendered = None
                self._unpin_unless_used(previous.request)
                if binding.spec.imds_port and old.imds and old.imds.port != binding.spec.imds_port:
                    await old.imds.close()
                    served.imds = None
            if served.imds is None:
                try:
                    served.imds = await open_imds(self.ports, served, imds_port)
                except ListenError:
                    if old is None:
                        self._unpin_unless_used(binding.request)
                    raise
                served.port, served.waiting = served.imds.port, None
            self.registry.write_token(served)
            self.registry.served[binding.name] = served
            self.registry.persist()
            log.info(
                "endpoint %s serves %s (IMDS on port %d)",
                binding.name,
                binding.request.describe(),
                served.imds.port,
            )
            return served

    async def remove(self, name: str) -> None:
        """Stop serving `name`: its IMDS listener closes and its token files go."""
        async with self._lock:
            served = self.get(name)
            del self.registry.served[name]
            await self._drop(served)
            self._unpin_unless_used(served.binding.request)
            self.registry.persist()
            log.info("endpoint %s removed", name)

    def rotate(self, name: str, containers: bool = False) -> Served:
        """Give `name` a new token now; the previous one stays valid for the grace period.
        With `containers`, the container token is replaced too, and the old one stops
        working at once: that is how a leaked one is revoked."""
        return self.registry.rotate(name, containers)

    def set_port_80(self, on: bool) -> None:
        """Record whether port 80 of 169.254.170.2 is redirected to the container port (the
        user ran `rolecache docker setup --port-80`): the docker hand-off is then a
        RELATIVE_URI, which SDKs of every generation accept. The host cannot check it: its
        own packets skip PREROUTING."""
        self.registry.port_80 = on
        self.registry.persist()
        log.info("port 80 of %s %s redirected here", DOCKER_GATEWAY, "is" if on else "is no longer")

    async def _drop(self, served: Served, keep_files: bool = False) -> None:
        if served.warm_task is not None:
            served.warm_task.cancel()
        if served.imds is not None:
            await served.imds.close(release=not keep_files)
            served.imds = None
        if not keep_files:
            self.registry.remove_files(served)

    def _unpin_unless_used(self, request: Any) -> None:
        # Two bindings may share one entry: it stays warm while either serves it.
        if not self.registry.serves(request):
            self.store.pin(request, False)
