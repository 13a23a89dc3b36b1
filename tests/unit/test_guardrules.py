"""The docker guard's ebtables rules, computed without a host: each port's chain, the
fail-closed chain, the order of the swap, and the removal read back from a listing."""

import shlex
from pathlib import Path

import pytest

from rolecache.commands import guardrules
from rolecache.commands.guardrules import Port, port
from rolecache.commands.guardservice import unit_text

ROOT = Path(__file__).resolve().parent.parent.parent
VICTIM = Port("veth1a2b3c4", "02:42:a9:fe:aa:fa", "169.254.170.250")
THIEF = Port("veth5d6e7f8", "02:42:a9:fe:aa:03", "169.254.170.3")


def listing(commands: list[list[str]]) -> str:
    """What `ebtables -t nat -L` lists after `commands` ran on an empty nat table (enough of
    its format for the guard: chains, their rules in order, inserts by position)."""
    table: dict[str, list[str]] = {"PREROUTING": [], "OUTPUT": [], "POSTROUTING": []}
    for command in commands:
        action, chain, rest = command[3], command[4], command[5:]
        if action == "-N":
            table[chain] = []
        elif action == "-A":
            table[chain].append(shlex.join(rest))
        elif action == "-I":
            table[chain].insert(int(rest[0]) - 1, shlex.join(rest[1:]))
        elif action == "-D":
            table[chain].remove(shlex.join(rest))
        elif action == "-F":
            table[chain] = []
        elif action == "-X":
            assert not table[chain], f"{chain} deleted while it holds rules"
            assert not any(f"-j {chain}" in r for rules in table.values() for r in rules)
            del table[chain]
    return "Bridge table: nat\n\n" + "\n".join(
        f"Bridge chain: {name}, entries: {len(rules)}, policy: ACCEPT\n"
        + "".join(f"{r}\n" for r in rules)
        for name, rules in table.items()
    )


def test_a_port_receives_only_frames_for_its_mac() -> None:
    """What the bridge sends out of a port passes when it is for the port's MAC, broadcast or
    multicast; unicast flooded for another MAC is dropped."""
    chain = guardrules.out_chain("A", VICTIM.ifname)
    assert chain == "RCA+veth1a2b3c4"
    assert guardrules.out_rules(chain, VICTIM) == [
        ["-A", chain, "-d", VICTIM.mac, "-j", "ACCEPT"],
        ["-A", chain, "-d", "Multicast", "-j", "ACCEPT"],
        ["-A", chain, "-j", "DROP"],
    ]


def test_a_port_speaks_only_with_its_own_mac_and_address() -> None:
    """A port's chain accepts ARP whose frame MAC, sender MAC and sender address are its own,
    IPv4 from its MAC and address, and drops everything else."""
    chain = guardrules.port_chain("A", VICTIM.ifname)
    assert guardrules.port_rules(chain, VICTIM) == [
        ["-A", chain, "-p", "ARP", "-s", VICTIM.mac, "--arp-mac-src", VICTIM.mac,
         "--arp-ip-src", VICTIM.ip, "-j", "ACCEPT"],
        ["-A", chain, "-p", "IPv4", "-s", VICTIM.mac, "--ip-src", VICTIM.ip, "-j", "ACCEPT"],
        ["-A", chain, "-j", "DROP"],
    ]  # fmt: skip


def test_unregistered_ports_cannot_speak_for_the_subnet() -> None:
    """After the ports' jumps, frames with an ARP sender or IPv4 source in the subnet, or a
    source MAC dockerd derives from it, are dropped; and no unregistered port receives a
    unicast frame for such a MAC."""
    commands = guardrules.install_commands([VICTIM], "A")
    prerouting = [c[5:] for c in commands if c[3:5] == ["-I", "PREROUTING"]]
    assert prerouting == [
        ["1", "-i", VICTIM.ifname, "-j", "RCA-veth1a2b3c4"],
        ["2", "-j", "RCA_closed"],
    ]
    postrouting = [c[5:] for c in commands if c[3:5] == ["-I", "POSTROUTING"]]
    assert postrouting == [
        ["1", "-o", VICTIM.ifname, "-j", "RCA+veth1a2b3c4"],
        ["2", "-j", "RCA_closedout"],
    ]
    closed_out = [c[5:] for c in commands if c[3:5] == ["-A", "RCA_closedout"]]
    assert closed_out == [["-d", "02:42:a9:fe:aa:00/ff:ff:ff:ff:ff:00", "-j", "DROP"]]
    closed = [c[5:] for c in commands if c[3:5] == ["-A", "RCA_closed"]]
    assert closed == [
        ["-p", "ARP", "--arp-ip-src", "169.254.170.0/24", "-j", "DROP"],
        ["-p", "IPv4", "--ip-src", "169.254.170.0/24", "-j", "DROP"],
        ["-s", "02:42:a9:fe:aa:00/ff:ff:ff:ff:ff:00", "-j", "DROP"],
    ]
    assert all(c[:3] == ["ebtables", "-t", "nat"] for c in commands)


def test_chains_are_built_before_any_jump_to_them() -> None:
    """Every chain is created and filled before PREROUTING jumps to it."""
    commands = guardrules.install_commands([VICTIM, THIEF], "B")
    first_jump = next(i for i, c in enumerate(commands) if c[3] == "-I")
    assert all(c[3] in ("-N", "-A") for c in commands[:first_jump])
    assert all(c[3] == "-I" for c in commands[first_jump:])
    assert len(commands) - first_jump == 6


def test_a_swap_never_leaves_a_port_unguarded() -> None:
    """The new generation goes first in PREROUTING while the old one is still there, and the
    removal that follows leaves exactly the new one."""
    old = guardrules.install_commands([VICTIM], "A")
    before = listing(old)
    assert guardrules.active_generation(before) == "A"
    new = guardrules.next_generation(before)
    assert new == "B"
    both = listing(old + guardrules.install_commands([VICTIM, THIEF], new))
    assert guardrules.active_generation(both) == "B"
    first = guardrules.chains(both)["PREROUTING"][:3]
    assert first == [
        "-i veth1a2b3c4 -j RCB-veth1a2b3c4",
        "-i veth5d6e7f8 -j RCB-veth5d6e7f8",
        "-j RCB_closed",
    ]
    removal = guardrules.removal_commands(both, keep="B")
    after = guardrules.chains(
        listing(old + guardrules.install_commands([VICTIM, THIEF], "B") + removal)
    )
    guard = [f"RCB{s}{n}" for s in "-+" for n in ("veth1a2b3c4", "veth5d6e7f8")]
    expected = ["PREROUTING", "OUTPUT", "POSTROUTING", *guard, "RCB_closed", "RCB_closedout"]
    assert sorted(after) == sorted(expected)
    assert after["PREROUTING"] == first
    assert guardrules.next_generation(listing(guardrules.install_commands([], "B"))) == "A"


def test_undo_removes_only_the_guards_rules() -> None:
    """Removal with no generation kept deletes the guard's jumps and chains and leaves other
    rules of the table alone."""
    mine = guardrules.install_commands([VICTIM], "A")
    other = [["ebtables", "-t", "nat", "-A", "PREROUTING", "-p", "IPv6", "-j", "DROP"]]
    commands = other + mine
    table = listing(commands + guardrules.removal_commands(listing(commands)))
    assert guardrules.chains(table) == {
        "PREROUTING": ["-p IPv6 -j DROP"],
        "OUTPUT": [],
        "POSTROUTING": [],
    }
    assert guardrules.removal_commands(table) == []
    assert guardrules.active_generation(table) is None


@pytest.mark.parametrize(
    ("ifname", "mac", "ip", "wrong"),
    [
        ("veth 1", VICTIM.mac, VICTIM.ip, "interface"),
        ("veth1_closed", VICTIM.mac, VICTIM.ip, "interface"),
        ("a" * 16, VICTIM.mac, VICTIM.ip, "interface"),
        (VICTIM.ifname, "03:42:a9:fe:aa:fa", VICTIM.ip, "unicast"),
        (VICTIM.ifname, "02:42:a9:fe:aa", VICTIM.ip, "unicast"),
        (VICTIM.ifname, VICTIM.mac, "10.0.0.1", "not in"),
    ],
)
def test_ports_are_checked(ifname: str, mac: str, ip: str, wrong: str) -> None:
    """An interface name, MAC or address the rules could not hold safely is refused."""
    with pytest.raises(ValueError, match=wrong):
        port(ifname, mac, ip)
    assert port(VICTIM.ifname, VICTIM.mac.upper(), VICTIM.ip) == VICTIM


def test_an_interface_named_twice_is_refused() -> None:
    """Two ports with one interface name would share a chain: refused."""
    with pytest.raises(ValueError, match="twice"):
        guardrules.install_commands([VICTIM, VICTIM._replace(ip="169.254.170.9")], "A")


def test_docker_mac_prefix_follows_the_subnet() -> None:
    """dockerd's MACs for a /24 are 02:42 and the address's bytes: the last one is masked."""
    assert guardrules.docker_mac_prefix("10.1.2.0/24") == "02:42:0a:01:02:00/ff:ff:ff:ff:ff:00"


def test_the_shipped_unit_is_the_one_setup_installs() -> None:
    """systemd/rolecache-docker-guard@.service is what `docker setup --apply` writes, with
    the interpreter that runs rolecache, restarted always."""
    shipped = (ROOT / "systemd" / "rolecache-docker-guard@.service").read_text()
    assert unit_text("/usr/bin/python3") == shipped
    assert "Restart=always" in shipped
    assert "ExecStart=/usr/bin/python3 -I -m rolecache docker guard --network %i" in shipped
