"""The ebtables rules of `rolecache docker guard`, computed without touching the host: each
bridge port of the docker network may speak only with its container's MAC and IPv4 address.

The rules sit in table nat, chain PREROUTING, which sees a frame as it enters the bridge from
a port, before the bridge learns its source MAC and before the host reads it: so a container
can neither tell the host that another container's address is at its MAC (ARP) nor teach the
bridge that another container's MAC is behind its port. Each set of rules has a generation
(A or B) in its chain names, so a new set is built beside the old one and takes over with
the jumps, leaving no moment when a registered port is unguarded.

In POSTROUTING, which sees each frame as the bridge sends it out of a port, a port receives
only frames for its container's MAC, broadcast and multicast: not the unicast frames the
bridge floods to every port while it does not know where a MAC is (after a container was
silent for a while, or the guard made the bridge forget), which a container with NET_RAW
would otherwise read."""

import ipaddress
import re
import shlex
from typing import NamedTuple

from rolecache.commands.dockercli import SUBNET

TABLE = ("ebtables", "-t", "nat")
GENERATIONS = ("A", "B")
# ebtables (the legacy kernel interface) takes chain names of at most 31 characters.
MAX_CHAIN = 31
# A port's chains are RC<generation>-<ifname> (what enters the bridge from it) and
# RC<generation>+<ifname> (what the bridge sends out of it); the fail-closed chains
# RC<generation>_closed and _closedout, which no interface name can give (IFNAME has no "_").
CHAIN_PATTERN = re.compile(r"RC([AB])[-+_]")
HOOKS = ("PREROUTING", "POSTROUTING")
IFNAME = re.compile(r"[A-Za-z0-9.@-]{1,15}")
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


class Port(NamedTuple):
    """One bridge port: the host side of a container's veth, and what dockerd gave it."""

    ifname: str
    mac: str
    ip: str


def port(ifname: str, mac: str, ip: str) -> Port:
    """A Port, checked: a host interface name, a unicast MAC, an address in SUBNET; else
    ValueError naming what is wrong."""
    mac = mac.lower()
    if not IFNAME.fullmatch(ifname):
        raise ValueError(f"{ifname!r} is not an interface name")
    if not MAC.fullmatch(mac) or int(mac[:2], 16) & 1:
        raise ValueError(f"{mac!r} is not a unicast MAC address")
    if ipaddress.ip_address(ip) not in ipaddress.ip_network(SUBNET):
        raise ValueError(f"{ip} is not in {SUBNET}")
    return Port(ifname, mac, ip)


def docker_mac_prefix(subnet: str = SUBNET) -> str:
    """The source-MAC match (value/mask) of the MACs dockerd 20.10 derives from addresses of
    `subnet` (02:42 then the four bytes of the address), for a /24."""
    network = ipaddress.ip_network(subnet)
    octets = ["02", "42", *(f"{b:02x}" for b in network.network_address.packed[:3]), "00"]
    return ":".join(octets) + "/ff:ff:ff:ff:ff:00"


def port_chain(generation: str, ifname: str) -> str:
    """The name of the chain of port `ifname` in `generation`."""
    return f"RC{generation}-{ifname}"[:MAX_CHAIN]


def out_chain(generation: str, ifname: str) -> str:
    """The name of the chain of what the bridge sends out of port `ifname` in `generation`."""
    return f"RC{generation}+{ifname}"[:MAX_CHAIN]


def closed_chain(generation: str, hook: str = "PREROUTING") -> str:
    """The name of the fail-closed chain of `generation` for `hook`."""
    return f"RC{generation}_closed" + ("out" if hook == "POSTROUTING" else "")


def port_rules(chain: str, p: Port) -> list[list[str]]:
    """The rules of one port's chain: its own ARP and IPv4 pass, every other frame is dropped
    (IPv6 too)."""
    return [
        ["-A", chain, "-p", "ARP", "-s", p.mac, "--arp-mac-src", p.mac, "--arp-ip-src", p.ip,
         "-j", "ACCEPT"],
        ["-A", chain, "-p", "IPv4", "-s", p.mac, "--ip-src", p.ip, "-j", "ACCEPT"],
        ["-A", chain, "-j", "DROP"],
    ]  # fmt: skip


def out_rules(chain: str, p: Port) -> list[list[str]]:
    """The rules of what a port receives: frames for its MAC, broadcast and multicast."""
    return [
        ["-A", chain, "-d", p.mac, "-j", "ACCEPT"],
        ["-A", chain, "-d", "Multicast", "-j", "ACCEPT"],  # broadcast is multicast here
        ["-A", chain, "-j", "DROP"],
    ]


def closed_out_rules(chain: str) -> list[list[str]]:
    """What a port no chain names receives: no unicast frame for a docker MAC of SUBNET."""
    return [["-A", chain, "-d", docker_mac_prefix(), "-j", "DROP"]]


def closed_rules(chain: str) -> list[list[str]]:
    """The fail-closed chain: from a port no chain names (a container the guard has not seen
    yet), no frame may speak for an address of SUBNET or carry one of its docker MACs."""
    return [
        ["-A", chain, "-p", "ARP", "--arp-ip-src", SUBNET, "-j", "DROP"],
        ["-A", chain, "-p", "IPv4", "--ip-src", SUBNET, "-j", "DROP"],
        ["-A", chain, "-s", docker_mac_prefix(), "-j", "DROP"],
    ]


def install_commands(ports: list[Port], generation: str) -> list[list[str]]:
    """The ebtables commands that build `generation`'s chains for `ports`, then put its jumps
    first in PREROUTING and POSTROUTING (ahead of an older generation's, which then sees no
    frame)."""
    if generation not in GENERATIONS:
        raise ValueError(f"generation {generation!r} is not one of {GENERATIONS}")
    commands: list[list[str]] = []
    jumps: dict[str, list[list[str]]] = {hook: [] for hook in HOOKS}
    names = [p.ifname for p in ports]
    if len(set(names)) != len(names):
        raise ValueError(f"an interface is named twice: {sorted(names)}")
    for p in sorted(ports):
        chain, out = port_chain(generation, p.ifname), out_chain(generation, p.ifname)
        commands += [["-N", chain], *port_rules(chain, p), ["-N", out], *out_rules(out, p)]
        jumps["PREROUTING"].append(["-i", p.ifname, "-j", chain])
        jumps["POSTROUTING"].append(["-o", p.ifname, "-j", out])
    closed, closed_out = closed_chain(generation), closed_chain(generation, "POSTROUTING")
    commands += [["-N", closed], *closed_rules(closed)]
    commands += [["-N", closed_out], *closed_out_rules(closed_out)]
    jumps["PREROUTING"].append(["-j", closed])
    jumps["POSTROUTING"].append(["-j", closed_out])
    for hook in HOOKS:
        commands += [["-I", hook, str(n), *jump] for n, jump in enumerate(jumps[hook], 1)]
    return [[*TABLE, *command] for command in commands]


def chains(listing: str) -> dict[str, list[str]]:
    """Each chain of an `ebtables -t nat -L` listing -> its rules, as listed."""
    found: dict[str, list[str]] = {}
    current = None
    for line in listing.splitlines():
        if line.startswith("Bridge chain: "):
            current = line.removeprefix("Bridge chain: ").split(",")[0]
            found[current] = []
        elif current is not None and line.strip():
            found[current].append(line.strip())
        else:
            current = None if not line.strip() else current
    return found


def generation_of(chain: str) -> str | None:
    """The generation of one of the guard's chains, None for any other chain."""
    matched = CHAIN_PATTERN.match(chain)
    return matched.group(1) if matched else None


def active_generation(listing: str) -> str | None:
    """The generation whose jumps come first in PREROUTING (the one in force), if any."""
    for rule in chains(listing).get("PREROUTING", []):
        words = shlex.split(rule)
        if "-j" in words and (found := generation_of(words[words.index("-j") + 1])):
            return found
    return None


def next_generation(listing: str) -> str:
    """The generation to build next: the one not in force."""
    return "B" if active_generation(listing) == "A" else "A"


def removal_commands(listing: str, keep: str | None = None) -> list[list[str]]:
    """The ebtables commands that remove the guard's jumps and chains found in `listing`,
    except those of generation `keep`: jumps first, so no frame enters a chain being emptied."""
    found = chains(listing)
    commands = []
    for hook in HOOKS:
        for rule in found.get(hook, []):
            words = shlex.split(rule)
            target = words[words.index("-j") + 1] if "-j" in words else ""
            if generation_of(target) not in (None, keep):
                commands.append(["-D", hook, *words])
    for chain in found:
        if generation_of(chain) not in (None, keep):
            commands += [["-F", chain], ["-X", chain]]
    return [[*TABLE, *command] for command in commands]
