"""The endpoints' listeners as the manager opens them: the container one, bound on first use on
the port it had, and each binding's IMDS one, each with a guard and doors of its own."""

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rolecached.core.bindings import DOCKER_GATEWAY, EndpointSettings
from rolecached.endpoints.answers import bad_request
from rolecached.endpoints.apps import make_ecs_app, make_imds_app
from rolecached.endpoints.ecslane import EcsLane
from rolecached.endpoints.guard import Guard
from rolecached.endpoints.handout import Handout
from rolecached.endpoints.listeners import Listener, gateway_arrival, is_loopback, listen
from rolecached.endpoints.registry import Registry, Served
from rolecached.front.gate import Gate
from rolecached.front.held_ports import HeldPorts
from rolecached.front.site import Door, Lane, no_answers
from rolecached.host import interfaces, peers

log = logging.getLogger(__name__)

DOCKER_OFF = "the daemon does not serve the docker network (docker = false in [endpoints])"
# The listener binds 169.254.170.2 with IP_FREEBIND, before any interface has it; until one
# does, a program's request to it is routed like any other, out of the default route.
NO_GATEWAY = (
    f"no interface of this host has {DOCKER_GATEWAY} (the docker network's gateway): a "
    "request to it would leave this host by the default route, token included. Create the "
    "network first (`rolecache docker setup`)"
)


@dataclass
class Ports:
    """What the endpoints' listeners are built from, and the container listener once bound."""

    settings: EndpointSettings
    registry: Registry
    handout: Handout
    # Shared with the socket's listener in the daemon, so the caps hold over all of them.
    gate: Gate
    clock: Callable[[], float]
    sandbox: bool = False
    # The port keeper's sockets: the ports stay ours across restarts.
    held: HeldPorts | None = None
    container: Listener | None = None
    # The container port it binds: once "any free port" got one, the same again.
    wanted: int = 0
    gateway_held: bool | None = None  # as last seen, so a change is logged once


def container_port(ports: Ports) -> int:
    """The container listener's port: bound, else the one it will bind (0: any free)."""
    if ports.container is not None:
        return ports.container.port
    return ports.wanted or ports.settings.ecs_port(ports.sandbox, os.getuid())


async def open_container(ports: Ports) -> None:
    """Bind the container listener unless it listens: on first use, so a user without
    bindings never holds the fixed port. ListenError when its port is taken."""
    if ports.container is not None:
        return
    port = ports.settings.ecs_port(ports.sandbox, os.getuid())
    if port == 0:  # "any free port" once: the same again
        port = ports.wanted or ports.registry.saved_container_port() or 0
    ports.wanted = port
    guard = new_guard(ports)
    app = make_ecs_app(ports.registry.served, ports.handout, guard)
    lane = EcsLane(ports.registry.served, guard, ports.handout)
    ports.container = await listen(
        app,
        ports.settings,
        port,
        "container endpoint",
        # Off loopback, a peer that is no process of this host (a container) may connect:
        # its token alone decides.
        lambda address: door(
            ports,
            "container endpoint",
            token_only=not is_loopback(address),
            answer=lane.answer,
            arrival=gateway_arrival(DOCKER_GATEWAY) if address == DOCKER_GATEWAY else None,
        ),
        DOCKER_GATEWAY if ports.settings.docker else None,
        ports.held,
    )
    log.info("container endpoint listening on %s", ports.container.addresses())
    docker_refusal(ports)
    ports.registry.container_port = ports.container.port
    ports.registry.persist()


async def close_container(ports: Ports) -> None:
    """Stop the container listener; the port keeper holds its port for the next start."""
    if ports.container is not None:
        await ports.container.close(release=False)
        ports.container = None
        ports.registry.container_port = None


async def open_imds(ports: Ports, served: Served, port: int) -> Listener:
    """The binding's IMDS listener on `port` (0: any free one)."""
    name = served.binding.name
    return await listen(
        make_imds_app(served, ports.handout, new_guard(ports)),
        ports.settings,
        port,
        f"IMDS listener of endpoint {name!r}",
        # IMDS is for host processes: a peer must have our uid (or root's).
        lambda _address: door(ports, f"IMDS of {name}"),
        held=ports.held,
    )


def new_guard(ports: Ports) -> Guard:
    """A listener's own guard: its Host allow-list and rate limiter are its alone."""
    return Guard(ports.settings, ports.clock, ports.sandbox, ports.gate)


def door(
    ports: Ports, name: str, token_only: bool = False, answer: Any = no_answers, arrival: Any = None
) -> Door:
    """The door of one address of a listener: the gate's caps, the peer check and the lane."""
    # Every endpoint listener answers a head that is not HTTP with its own JSON 400.
    lane = Lane(answer, lambda reason: bad_request(reason, ports.sandbox))
    timeout = ports.settings.idle_timeout
    return Door(
        name, ports.gate, peers.tcp_peer, token_only, timeout=timeout, lane=lane, arrival=arrival
    )


def docker_refusal(ports: Ports) -> str | None:
    """Why containers may not be handed a URL at 169.254.170.2 now (docker serving is
    off, or no interface has the address), or None when they may; a change is logged."""
    if not ports.settings.docker:
        return DOCKER_OFF
    held = interfaces.holds_address(DOCKER_GATEWAY)
    if held != ports.gateway_held:
        ports.gateway_held = held
        if held:
            log.info("%s is on an interface: containers are handed it", DOCKER_GATEWAY)
        else:
            log.warning("%s; until then `endpoint env --docker` is refused", NO_GATEWAY)
    return None if held else NO_GATEWAY
