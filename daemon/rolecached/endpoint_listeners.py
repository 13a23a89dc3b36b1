"""The container endpoints' TCP listeners: one aiohttp app on one port over every configured
address (and the docker gateway, bound before the network exists), behind the front guard."""

import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from rolecached import host
from rolecached.bindings import EndpointSettings
from rolecached.endpoint_guard import GUARD
from rolecached.errors import ListenError
from rolecached.front import Door, FrontSite
from rolecached.host import Peer

# aiohttp's limits on a request head; SDK requests are a few hundred bytes.
HEAD_LIMITS = {"max_line_size": 4096, "max_field_size": 4096, "max_headers": 32}
# Linux's IP_FREEBIND (not in Python 3.11's socket module): bind an address no interface has
# yet, so the daemon can listen on the docker network's gateway before the network exists.
IP_FREEBIND = 15


def open_tcp(address: str, port: int, freebind: bool = False) -> socket.socket:
    """A listening TCP socket on `address`:`port` (IPv6 sockets serve IPv6 only); with
    `freebind`, also while no interface has `address` (it serves once one has), and each
    connection knows the interface it arrived on (gateway_arrival)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if freebind:
            sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
            sock.setsockopt(socket.IPPROTO_IP, host.IP_PKTINFO, 1)
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

    def addresses(self) -> list[tuple[str, int]]:
        """Where it listens, as the kernel reports it."""
        return [s.getsockname()[:2] for s in self.sockets]

    async def close(self) -> None:
        """Stop accepting and finish requests in flight."""
        await self.runner.cleanup()


async def listen(
    app: web.Application,
    settings: EndpointSettings,
    port: int,
    what: str,
    door: Callable[[str], Door],
    gateway: str | None = None,
) -> Listener:
    """Serve `app` on each address of `settings.bind`, all on one port (the first address
    picks it when `port` is 0), and on `gateway` too when given (bound with IP_FREEBIND);
    `door(address)` is the front policy of each address (peer check, caps, the container
    listener's fast lane)."""
    runner = web.AppRunner(
        app, access_log=None, keepalive_timeout=settings.idle_timeout, **HEAD_LIMITS
    )
    await runner.setup()
    sockets: list[socket.socket] = []
    try:
        for address in (*settings.bind, *([gateway] if gateway else [])):
            try:
                sock = open_tcp(address, port, freebind=address == gateway)
            except OSError as exc:
                raise ListenError(
                    f"the {what} cannot listen on {address} port {port}: "
                    f"{exc.strerror or exc}{holder(port, address)}; choose another port in "
                    "[endpoints] of config.toml"
                ) from None
            sockets.append(sock)
            port = sock.getsockname()[1]
            await FrontSite(runner, sock, door(address)).start()
    except BaseException:
        for sock in sockets:
            sock.close()
        await runner.cleanup()
        raise
    app[GUARD].listening_on(port, (gateway,) if gateway else ())
    return Listener(runner, port, sockets)


def gateway_arrival(gateway: str) -> Callable[[Any, Peer], str | None]:
    """A Door's `arrival` check for the listener on `gateway` (169.254.170.2): a peer that is
    no process of this host must have come in on an interface that has `gateway`, a docker
    network's bridge. Any host routes packets for a local address to it whatever interface
    they arrive on, so a LAN neighbour routing 169.254.170.2 here would reach the listener;
    the interface is checked per connection rather than with SO_BINDTODEVICE, since the
    bridge does not exist when the daemon binds (IP_FREEBIND) and is made anew, with a new
    index, whenever its network is, and host processes (arriving on loopback) must pass."""

    def arrival(transport: Any, peer: Peer) -> str | None:
        if peer.uid is not None:
            return None  # a process of this host: its uid decides, as on loopback
        index = host.arrival_interface(transport.get_extra_info("socket"))
        name, address = host.interface_address(index) if index else ("no known interface", None)
        if address == gateway:
            return None
        return (
            f"to {gateway} that did not come from a docker network (they arrived on {name}, "
            f"which does not have {gateway})"
        )

    return arrival


def holder(port: int, address: str) -> str:
    """Who holds `port`, as a clause for an error message, when the kernel says."""
    if port == 0:
        return ""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    uid = host.listener_uid(port, family)
    if uid is None:
        return "; another program may hold it"
    if uid == os.getuid():
        return f"; a program of yours (uid {uid}) holds it"
    return f"; uid {uid} holds it (another user's program)"


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8 and ::1."""
    return ipaddress.ip_address(address).is_loopback
