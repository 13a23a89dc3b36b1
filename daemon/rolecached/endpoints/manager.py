"""Container endpoints: the ECS-style listener and one IMDSv2-style listener per binding.

`EndpointManager` orchestrates them: it starts and stops the listeners (only on loopback
unless told otherwise) and adds, replaces, removes and rotates bindings. What it drives has a
home each: registry.py the served bindings, token files and lasting state; endpoints/apps.py
the aiohttp apps and documents; handout.py serving credentials, counted and audited;
warmer.py keeping bindings' credentials ready; endpoints/listeners.py the TCP listeners;
held_ports.py keeping their ports through restarts; endpoints/guard.py the hardening every
request passes; endpoints/policy.py the rules it and the fast lane (ecslane.py) ask.
"""

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
    ECS_PATH,
    IMDS_MIN_TTL,
    Binding,
    EndpointSettings,
    Resolve,
    check_addresses,
    resolve,
)
from rolecached.core.store import Store
from rolecached.endpoints.answers import bad_request
from rolecached.endpoints.apps import (
    IMDS_ROLES,
    IMDS_ROLES_EXTENDED,
    IMDS_TOKEN_HEADER,
    IMDS_TOKEN_PATH,
    IMDS_TTL_HEADER,
    make_ecs_app,
    make_imds_app,
)
from rolecached.endpoints.ecslane import EcsLane
from rolecached.endpoints.guard import Guard
from rolecached.endpoints.handout import Handout
from rolecached.endpoints.listeners import Listener, gateway_arrival, is_loopback, listen
from rolecached.endpoints.registry import Registry, Served
from rolecached.endpoints.warmer import Warmer
from rolecached.errors import BindingExists, ListenError, RolecacheError
from rolecached.front.gate import Gate, default_gate
from rolecached.front.held_ports import HeldPorts
from rolecached.front.site import Door, Lane, no_answers
from rolecached.host import interfaces, peers

# Re-exported: the names callers of the container endpoints use, from this one module.
__all__ = [
    "IMDS_ROLES",
    "IMDS_ROLES_EXTENDED",
    "IMDS_TOKEN_HEADER",
    "IMDS_TOKEN_PATH",
    "IMDS_TTL_HEADER",
    "EndpointManager",
    "ListenError",
    "Served",
]

log = logging.getLogger(__name__)

DOCKER_OFF = "the daemon does not serve the docker network (docker = false in [endpoints])"
# The listener binds 169.254.170.2 with IP_FREEBIND, before any interface has it; until one
# does, a program's request to it is routed like any other, out of the default route.
NO_GATEWAY = (
    f"no interface of this host has {DOCKER_GATEWAY} (the docker network's gateway): a "
    "request to it would leave this host by the default route, token included. Create the "
    "network first (`rolecache docker setup`)"
)


def url_host(settings: EndpointSettings) -> str:
    """The host part of URLs handed to programs: the first bound address."""
    address = settings.bind[0]
    return f"[{address}]" if ":" in address else address


def _unresolvable(_: dict[str, Any]) -> Any:
    raise RolecacheError("no resolver to serve runtime bindings again")


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
        # Shared with the socket's listener in the daemon, so the caps hold over all of them.
        self.gate = gate or default_gate(os.getuid())
        self._initial = list(bindings)
        self.settings = settings
        self.sandbox = sandbox
        self.clock = clock
        self.registry = Registry(tokens_dir, settings, clock, state_file)
        self.handout = Handout(store, clock, settings.wait)
        self.warmer = Warmer(store, clock, rng or random.Random())
        self._ecs: Listener | None = None
        self._gateway_held: bool | None = None  # as last seen, so a change is logged once
        self._lock = asyncio.Lock()  # adds and removes happen one at a time
        store.on_drop(self.registry.forget_rendered)
        self._resolver = resolver  # how runtime bindings are resolved again at start
        self.held = held  # the port keeper's sockets: the ports stay ours across restarts
        # The container port it waits for, and why ("waiting for port N, held by uid U").
        self._ecs_wanted = 0
        self.ecs_waiting: str | None = None
        # Ports another uid held: what was done about it, for `status` and `endpoint list`.
        self.alerts: list[str] = []
        self._revoke_when_back = False
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

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve the bindings from the config file and those added at run time before a
        restart, with the ports, token files and container tokens they had; their credentials
        are fetched by the first tick, in the background (start-up never waits for STS).
        A port taken meanwhile is waited for, never given up (see retry_waiting); one another
        uid holds revokes every container token."""
        self.registry.load_saved()
        if self.held is not None:
            self.held.open()
        if self._initial or self.registry.saved_runtime():
            try:
                await self._ensure_ecs()
            except ListenError as exc:
                self.ecs_waiting = self._waits(exc, "the container endpoint")
                self.registry.container_port = exc.port or None  # saved: the URL stays
        for binding in self._initial:
            await self._restore(binding)
        for spec in self.registry.saved_runtime():
            if spec.name in self.registry.served:
                continue
            try:
                binding = resolve(spec, self._resolver or _unresolvable)
            except RolecacheError as exc:
                log.warning("endpoint %s is not served again: %s", spec.name, exc)
                continue
            await self._restore(binding)
        if self.held is not None:
            self.held.release_unused()
        self.registry.forget_saved()
        if self._revoke_when_back:
            self._revoke("at start")
        self.registry.persist()
        self.tick()

    async def close(self) -> None:
        """Stop every listener; token files stay, for the next start to serve again, and the
        port keeper holds the ports until then."""
        for served in self.all():
            await self._drop(served, keep_files=True)
        self.registry.served.clear()
        if self._ecs is not None:
            await self._ecs.close(release=False)
            self._ecs = None
            self.registry.container_port = None
        if self.held is not None:
            self.held.close()

    async def run(self) -> None:
        """Tick forever: rotate tokens when due, warm bindings that have nothing to serve,
        take back the ports waited for."""
        while True:
            await asyncio.sleep(self.settings.tick)
            self.tick()
            await self.retry_waiting()

    async def retry_waiting(self) -> None:
        """Listen on the ports taken at start, where they are free now. Once every port
        another uid held is back, the container tokens are revoked again: programs may
        have sent the ones written meanwhile to it."""
        if not self._waiting_names():
            return
        async with self._lock:
            before = self._waiting_names()
            if self.ecs_waiting is not None:
                try:
                    await self._ensure_ecs()
                    self.ecs_waiting = None
                except ListenError as exc:
                    self.ecs_waiting = self._waits(exc, "the container endpoint", again=True)
            for served in self.all():
                if served.waiting is None:
                    continue
                try:
                    served.imds = await self._listen_imds(served, served.port)
                    served.waiting = None
                    log.info(
                        "endpoint %s listens on its port %d again", served.binding.name, served.port
                    )
                except ListenError as exc:
                    served.waiting = self._waits(
                        exc, f"endpoint {served.binding.name!r}", again=True
                    )
            if self._revoke_when_back and not self._waiting_names():
                self._revoke("now that its ports are back")
            if before != self._waiting_names():
                self.registry.persist()

    def _waiting_names(self) -> set[str | None]:
        # What waits for a port: binding names, and None for the container endpoint.
        names: set[str | None] = {s.binding.name for s in self.all() if s.waiting}
        return names | ({None} if self.ecs_waiting else set())

    async def _restore(self, binding: Binding) -> None:
        """Serve a binding of the config file or the last run on the IMDS port it had; when
        that port is taken, it waits for it (kept, saved and listed as waiting)."""
        self.store.pin(binding.request)
        served = self.registry.new_served(binding)
        served.port = binding.spec.imds_port or self.registry.saved_imds_port(binding.name) or 0
        try:
            served.imds = await self._listen_imds(served, served.port)
            served.port = served.imds.port
        except ListenError as exc:
            served.waiting = self._waits(exc, f"endpoint {binding.name!r}")
        self.registry.write_token(served)
        self.registry.served[binding.name] = served

    def _waits(self, exc: ListenError, what: str, again: bool = False) -> str:
        """Why `what` waits for its port, as listings say; another uid's hold is an alert."""
        who = "another program" if exc.holder is None else f"uid {exc.holder}"
        waiting = f"waiting for port {exc.port}, held by {who}"
        foreign = exc.holder is not None and exc.holder != os.getuid()
        if foreign and not again:
            self._revoke_when_back = True
            self.alerts.append(
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

    def _revoke(self, when: str) -> None:
        # Every token another uid may have seen stops working now: the container token and
        # capability (environments handed out) and the token file's, with no grace period.
        self._revoke_when_back = bool(self._waiting_names())
        for name in list(self.registry.served):
            self.registry.rotate(name, containers=True, grace=False)
        log.error(
            "replaced the container tokens of every endpoint %s: hand them out again "
            "(`rolecache endpoint env`, or restart the containers)",
            when,
        )

    def status(self) -> dict[str, Any]:
        """What `rolecache status` says of the endpoints: counts, and alerts when there are."""
        waiting = [s.binding.name for s in self.all() if s.waiting]
        info: dict[str, Any] = {
            "endpoints": len(self.registry.served),
            "endpoints_waiting": ", ".join(
                [
                    *(["container endpoint: " + self.ecs_waiting] if self.ecs_waiting else []),
                    *(f"{n}: {self.get(n).waiting}" for n in waiting),
                ]
            )
            or "none",
            # config.toml bindings skipped at start, and why.
            "config_errors": self.skipped,
        }
        if self.held is not None:
            info["port_keeper"] = self.held.keeper_pid or "none"
        if self.alerts:
            info["endpoint_alerts"] = "; ".join(self.alerts)
        return info

    def tick(self) -> None:
        """One round of token rotation and warm-up, at the injected clock's time."""
        self.registry.rotate_due()
        self.warmer.tick(self.all())

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
            await self._ensure_ecs()
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
                    served.imds = await self._listen_imds(served, imds_port)
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

    # -- listeners ------------------------------------------------------------------------

    async def _ensure_ecs(self) -> None:
        # Bound on first use, so a user without bindings never holds the fixed port.
        if self._ecs is None:
            port = self.settings.ecs_port(self.sandbox, os.getuid())
            if port == 0:  # "any free port" once: the same again
                port = self._ecs_wanted or self.registry.saved_container_port() or 0
            self._ecs_wanted = port
            guard = self._guard()
            app = make_ecs_app(self.registry.served, self.handout, guard)
            lane = EcsLane(self.registry.served, guard, self.handout)
            self._ecs = await listen(
                app,
                self.settings,
                port,
                "container endpoint",
                # Off loopback, a peer that is no process of this host (a container) may
                # connect: its token alone decides.
                lambda address: self._door(
                    "container endpoint",
                    token_only=not is_loopback(address),
                    answer=lane.answer,
                    arrival=gateway_arrival(DOCKER_GATEWAY) if address == DOCKER_GATEWAY else None,
                ),
                DOCKER_GATEWAY if self.settings.docker else None,
                self.held,
            )
            log.info("container endpoint listening on %s", self._ecs.addresses())
            self.docker_refusal()
            self.registry.container_port = self._ecs.port
            self.registry.persist()

    async def _listen_imds(self, served: Served, port: int) -> Listener:
        """The binding's IMDS listener on `port` (0: any free one)."""
        name = served.binding.name
        return await listen(
            make_imds_app(served, self.handout, self._guard()),
            self.settings,
            port,
            f"IMDS listener of endpoint {name!r}",
            # IMDS is for host processes: a peer must have our uid (or root's).
            lambda _address: self._door(f"IMDS of {name}"),
            held=self.held,
        )

    def _guard(self) -> Guard:
        # A listener's own: its Host allow-list and rate limiter are its alone.
        return Guard(self.settings, self.clock, self.sandbox, self.gate)

    def _door(
        self, name: str, token_only: bool = False, answer: Any = no_answers, arrival: Any = None
    ) -> Door:
        # Every endpoint listener answers a head that is not HTTP with its own JSON 400.
        lane = Lane(answer, lambda reason: bad_request(reason, self.sandbox))
        timeout = self.settings.idle_timeout
        return Door(
            name, self.gate, peers.tcp_peer, token_only, timeout=timeout, lane=lane, arrival=arrival
        )

    @property
    def ecs_port(self) -> int | None:
        """The container listener's port, once it listens."""
        return None if self._ecs is None else self._ecs.port

    @property
    def container_port(self) -> int:
        """The container listener's port: bound, else the one it will bind (0: any free)."""
        if self._ecs is not None:
            return self._ecs.port
        return self._ecs_wanted or self.settings.ecs_port(self.sandbox, os.getuid())

    @property
    def ecs_listener(self) -> Listener | None:
        """The container listener, once it listens."""
        return self._ecs

    def docker_refusal(self) -> str | None:
        """Why containers may not be handed a URL at 169.254.170.2 now (docker serving is
        off, or no interface has the address), or None when they may; a change is logged."""
        if not self.settings.docker:
            return DOCKER_OFF
        held = interfaces.holds_address(DOCKER_GATEWAY)
        if held != self._gateway_held:
            self._gateway_held = held
            if held:
                log.info("%s is on an interface: containers are handed it", DOCKER_GATEWAY)
            else:
                log.warning("%s; until then `endpoint env --docker` is refused", NO_GATEWAY)
        return None if held else NO_GATEWAY

    # -- listing --------------------------------------------------------------------------

    def summary(self, served: Served) -> dict[str, Any]:
        """What `rolecache endpoint list` and `env` need: never a token or a secret."""
        binding = served.binding
        host = url_host(self.settings)
        path = ECS_PATH.format(name=binding.name)
        entry = next((e for e in self.store.entries() if e.request == binding.request), None)
        creds = entry.credentials if entry else None
        refusal = self.docker_refusal()
        return {
            "name": binding.name,
            "origin": binding.spec.origin,
            "profile": binding.spec.selector.get("profile"),
            "role_arn": binding.request.role_arn,
            "role_session_name": binding.request.role_session_name,
            "duration_seconds": binding.request.duration_seconds,
            "ecs_url": f"http://{host}:{self.container_port}{path}",
            # A RELATIVE_URI is this path, "/", and the secret in capability_file.
            "ecs_path": path,
            # What a container on the docker network is handed (`endpoint env --docker`),
            # only while an interface has the address; else why not.
            "docker_url": None
            if refusal
            else f"http://{DOCKER_GATEWAY}:{self.container_port}{path}",
            "docker_refusal": refusal,
            "token_file": str(served.token_file),
            "container_token_file": str(served.container_file),
            "capability_file": str(served.capability_file),
            "port_80": self.port_80,
            # Ending in "/": older botocore appends "latest/api/token" without a slash.
            "imds_url": f"http://{host}:{served.imds.port if served.imds else served.port}/"
            if served.imds or served.port
            else None,
            # Why it does not answer yet ("waiting for port N, held by uid U"), else None.
            "waiting": self.ecs_waiting or served.waiting,
            "imds_v1": binding.spec.imds_v1,
            "expires_in": None if creds is None else round(creds.expiration - self.clock()),
            "last_error": served.last_error
            or (str(entry.last_error) if entry and entry.last_error else None),
        }
