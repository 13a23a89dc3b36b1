"""The container endpoints' TCP listeners: one aiohttp app on one port over every configured
address (and the docker gateway, bound before the network exists), behind the front guard."""

import errno
import ipaddress
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from rolecached.core.bindings import EndpointSettings
from rolecached.endpoints.guard import GUARD
from rolecached.errors import ListenError
from rolecached.front.held_ports import HeldPorts
from rolecached.front.site import Door, FrontSite
from rolecached.host import interfaces, peers
from rolecached.host.peers import Peer

# aiohttp's limits on a request head; SDK requests are a few hundred bytes.
HEAD_LIMITS = {"max_line_size": 4096, "max_field_size": 4096, "max_headers": 32}
# Debian's /etc/hosts (and others) map localhost to ::1 as well as 127.0.0.1, and clients try
# ::1 first: a listener on 127.0.0.1 also holds [::1] on its port, so that no other user can
# listen there and receive what is sent to localhost:PORT.
LOCALHOST_TWINS = {"127.0.0.1": "::1"}
# Errors that mean this host has no ::1 at all (IPv6 off): nobody can listen there either.
NO_IPV6 = (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)
# A port the kernel picked for 127.0.0.1 can be in use on ::1: pick again, this many times.
PICKS = 3


def open_tcp(address: str, port: int, freebind: bool = False) -> socket.socket:
    """A listening TCP socket on `address`:`port` (IPv6 sockets serve IPv6 only); with
    `freebind`, also while no interface has `address` (it serves once one has), and each
    connection knows the interface it arrived on (gateway_arrival)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if freebind:
            interfaces.bind_before_address(sock)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class Listener:
    """One aiohttp app served on one port over every configured address."""

    runner: web.AppRunner
    port: int
    sockets: list[socket.socket]
    held: HeldPorts | None = None
    bound: tuple[str, ...] = ()  # the addresses, as configured

    def addresses(self) -> list[tuple[str, int]]:
        """Where it listens, as the kernel reports it."""
        return [s.getsockname()[:2] for s in self.sockets]

    async def close(self, release: bool = True) -> None:
        """Stop accepting and finish requests in flight; with `release`, the port keeper
        lets the port go too (else it holds it for the next daemon)."""
        await self.runner.cleanup()
        if release and self.held is not None:
            for address in self.bound:
                self.held.drop(address, self.port)


async def listen(
    app: web.Application,
    settings: EndpointSettings,
    port: int,
    what: str,
    door: Callable[[str], Door],
    gateway: str | None = None,
    held: HeldPorts | None = None,
) -> Listener:
    """Serve `app` on each address of `settings.bind`, all on one port (the first address
    picks it when `port` is 0), and on `gateway` too when given (bound with IP_FREEBIND);
    `door(address)` is the front policy of each address (peer check, caps, the container
    listener's fast lane). With `held`, a socket the port keeper kept through a restart is
    adopted, and each new one is handed to it."""
    runner = web.AppRunner(
        app, access_log=None, keepalive_timeout=settings.idle_timeout, **HEAD_LIMITS
    )
    await runner.setup()
    wanted = addresses(settings.bind, gateway)
    try:
        for pick in range(PICKS):
            try:
                sockets = bound(wanted, port, what, held)
                break
            except ListenError:
                if port != 0 or pick == PICKS - 1:
                    raise
        port = sockets[0][1].getsockname()[1]
        try:
            for address, sock in sockets:
                await FrontSite(runner, sock, door(address)).start()
        except BaseException:
            give_up(sockets, held)
            raise
    except BaseException:
        await runner.cleanup()
        raise
    app[GUARD].listening_on(port, (gateway,) if gateway else ())
    return Listener(runner, port, [sock for _, sock in sockets], held, tuple(a for a, _ in sockets))


def addresses(bind: tuple[str, ...], gateway: str | None) -> list[tuple[str, str]]:
    """(address, kind) for each socket a listener opens: "bind" for the configured ones,
    "twin" for ::1 beside 127.0.0.1, "gateway" for the docker gateway."""
    found = [(address, "bind") for address in bind]
    for address in bind:
        twin = LOCALHOST_TWINS.get(address)
        if twin and twin not in bind:
            found.append((twin, "twin"))
    return found + ([(gateway, "gateway")] if gateway else [])


def bound(
    wanted: list[tuple[str, str]], port: int, what: str, held: HeldPorts | None = None
) -> list[tuple[str, socket.socket]]:
    """Listening sockets on every wanted address, all on one port (the first address picks
    it when `port` is 0): adopted from the port keeper where it kept one, else bound and
    handed to it; a ListenError naming who holds the port when one cannot be had. A twin is
    left out only when this host has no IPv6 loopback."""
    sockets: list[tuple[str, socket.socket]] = []
    try:
        for address, kind in wanted:
            sock = held.take(address, port) if held is not None and port else None
            if sock is None:
                try:
                    sock = open_tcp(address, port, freebind=kind == "gateway")
                except OSError as exc:
                    if kind == "twin" and exc.errno in NO_IPV6:
                        continue
                    raise explain(exc, address, port, what) from None
                if held is not None:
                    held.hold(address, sock)
            sockets.append((address, sock))
            port = sock.getsockname()[1]
    except BaseException:
        give_up(sockets, held)
        raise
    return sockets


def give_up(sockets: list[tuple[str, socket.socket]], held: HeldPorts | None) -> None:
    """Close `sockets`, and have the port keeper let their ports go too."""
    for address, sock in sockets:
        port = sock.getsockname()[1]
        sock.close()
        if held is not None:
            held.drop(address, port)


def explain(exc: OSError, address: str, port: int, what: str) -> ListenError:
    """The ListenError for a failed bind of `address`:`port`, naming who holds the port."""
    uid = holder_uid(port, address)
    return ListenError(
        f"the {what} cannot listen on {address} port {port}: "
        f"{exc.strerror or exc}{holder(uid)}; choose another port in "
        "[endpoints] of config.toml",
        port,
        uid,
    )


# How long what an interface holds is trusted once read. Reading it takes two ioctls, a cost
# on every container connection; an index is not reused soon, so a stale answer can only let a
# bridge's own containers in (their token still decides) for this long after the address
# left it, or keep a new holder waiting as long.
INTERFACE_TTL = 1.0


def gateway_arrival(
    gateway: str,
    clock: Callable[[], float] = time.monotonic,
    describe: Callable[[int], tuple[str, str | None]] = interfaces.interface_address,
    index_of: Callable[[Any], int | None] = interfaces.arrival_interface,
) -> Callable[[Any, Peer], str | None]:
    """A Door's `arrival` check for the listener on `gateway` (169.254.170.2): a peer that is
    no process of this host must have come in on an interface that has `gateway`, a docker
    network's bridge. Any host routes packets for a local address to it whatever interface
    they arrive on, so a LAN neighbour routing 169.254.170.2 here would reach the listener;
    the interface is checked per connection rather than with SO_BINDTODEVICE, since the
    bridge does not exist when the daemon binds (IP_FREEBIND) and is made anew, with a new
    index, whenever its network is, and host processes (arriving on loopback) must pass."""
    known: dict[int, tuple[float, str, str | None]] = {}

    def described(index: int) -> tuple[str, str | None]:
        now = clock()
        hit = known.get(index)
        if hit is None or hit[0] <= now:
            if len(known) >= 64:  # interfaces come and go: forget the old ones
                known.clear()
            hit = known[index] = (now + INTERFACE_TTL, *describe(index))
        return hit[1], hit[2]

    def arrival(transport: Any, peer: Peer) -> str | None:
        if peer.uid is not None:
            return None  # a process of this host: its uid decides, as on loopback
        index = index_of(transport.get_extra_info("socket"))
        name, address = described(index) if index else ("no known interface", None)
        if address == gateway:
            return None
        return (
            f"to {gateway} that did not come from a docker network (they arrived on {name}, "
            f"which does not have {gateway})"
        )

    return arrival


def holder_uid(port: int, address: str) -> int | None:
    """The uid listening on `port` (of `address`'s family), when the kernel says."""
    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return peers.listener_uid(port, family)


def holder(uid: int | None) -> str:
    """Who holds a port, as a clause for an error message."""
    if uid is None:
        return "; another program may hold it"
    if uid == os.getuid():
        return f"; a program of yours (uid {uid}) holds it"
    return f"; uid {uid} holds it (another user's program)"


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8 and ::1."""
    return ipaddress.ip_address(address).is_loopback
