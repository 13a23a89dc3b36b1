"""The gateway listener's arrival check, with the interfaces and the clock faked: a peer
without a host uid passes only when it came in on an interface holding 169.254.170.2, and
what an interface holds is read again once INTERFACE_TTL has passed."""

from typing import Any

from rolecached.endpoints.listeners import INTERFACE_TTL, gateway_arrival
from rolecached.host.peers import Peer

GATEWAY = "169.254.170.2"
BRIDGE, LAN = 7, 2


class Interfaces:
    """What each interface index holds, and how often it was read."""

    def __init__(self) -> None:
        self.held = {BRIDGE: ("rolecache0", GATEWAY), LAN: ("eth0", "192.0.2.10")}
        self.reads: list[int] = []

    def describe(self, index: int) -> tuple[str, str | None]:
        self.reads.append(index)
        return self.held.get(index, (f"interface {index}", None))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Transport:
    """A connection whose socket arrived on interface `index`."""

    def __init__(self, index: int | None) -> None:
        self.index = index

    def get_extra_info(self, name: str) -> Any:
        return self if name == "socket" else None


def check(interfaces: Interfaces, clock: Clock) -> Any:
    return gateway_arrival(GATEWAY, clock, interfaces.describe, lambda sock: sock.index)


CONTAINER = Peer(None, address="169.254.170.3")


def test_only_the_bridge_holding_the_gateway_lets_a_container_in() -> None:
    """A peer without a host uid passes on the bridge, is refused on another interface (the
    reason naming it) and on an unknown one; a host process passes anywhere."""
    arrival = check(Interfaces(), Clock())
    assert arrival(Transport(BRIDGE), CONTAINER) is None
    refused = arrival(Transport(LAN), CONTAINER)
    assert refused is not None and "arrived on eth0" in refused
    assert "no known interface" in arrival(Transport(None), CONTAINER)
    assert arrival(Transport(LAN), Peer(1000, address="127.0.0.1")) is None


def test_an_interface_is_read_once_per_ttl() -> None:
    """Connections within INTERFACE_TTL reuse what was read; after it the interface is read
    again, so an address taken off the bridge stops letting containers in."""
    interfaces, clock = Interfaces(), Clock()
    arrival = check(interfaces, clock)
    for _ in range(5):
        assert arrival(Transport(BRIDGE), CONTAINER) is None
    assert interfaces.reads == [BRIDGE]
    interfaces.held[BRIDGE] = ("rolecache0", None)
    clock.now += INTERFACE_TTL / 2
    assert arrival(Transport(BRIDGE), CONTAINER) is None
    clock.now += INTERFACE_TTL
    assert arrival(Transport(BRIDGE), CONTAINER) is not None
    assert interfaces.reads == [BRIDGE, BRIDGE]
