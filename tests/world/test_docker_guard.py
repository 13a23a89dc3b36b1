"""The host-side neighbour attack on the docker network, run for real: a container with
docker's default capabilities (NET_RAW) tells the host that the next container's address is
at its own MAC, and sends frames with that container's MAC as source, while that container
fetches its credentials (tests/arpkit.py's HOST_THIEF). Without `rolecache docker guard` the
daemon's answer, the binding's access key in it, reaches the thief; with it, not one byte
does and the victim is served on every attempt, for containers there before the guard
started and for those started after. Needs root, ebtables, nsenter and dockerd; skips saying
why otherwise."""

import pytest

from tests.containerkit import served_key_digest
from tests.daemonkit import Daemon, unique_role
from tests.dockerkit import isolation_held
from tests.e2ekit import add
from tests.guardkit import (
    ATTEMPTS,
    Guard,
    client,
    forget_victim_address,
    guard_chains,
    guard_unavailable,
    host_attack,
)

# The thief's two ways (tests/arpkit.py): a false ARP claim to the host, a spoofed source MAC.
HOW = ("arp", "mac")
UNGUARDED_RUNS = 3


def test_the_guard_stops_a_container_claiming_anothers_address_to_the_host(
    edaemon: Daemon, network: str
) -> None:
    """Before the guard the thief receives the daemon's answer to the victim, with the
    binding's key; with the guard (started after the two containers, then running before two
    new ones start) it receives 0 bytes and the victim gets its credentials every time;
    --undo leaves no rule of the guard behind."""
    reason = guard_unavailable()
    if reason:
        pytest.skip(reason)
    assert add(edaemon, "dev", unique_role()).returncode == 0
    key = served_key_digest(edaemon)
    # Held: the isolation test's thief (claiming 169.254.170.2) would be stopped by the guard,
    # and both use the victim's fixed address.
    with isolation_held():
        client("docker", "guard", "--undo")
        forget_victim_address()
        for how in HOW:
            # The attack races the victim's connections, so a busy machine may need a second
            # run to show it; the guarded runs below get one run each.
            for _ in range(UNGUARDED_RUNS):
                victim, thief = host_attack(edaemon, network, how)
                forget_victim_address()
                # The keys dev was served around the attack (the daemon may renew meanwhile).
                served = {key, victim["key_sha"], served_key_digest(edaemon)}
                if served & set(thief["key_shas"]):
                    break
            assert thief["payload_bytes"] > 0, (how, victim, thief)
            assert served & set(thief["key_shas"]), (how, victim, thief)
        guards: list[Guard] = []
        seen = 0

        def registered(ips: list[str]) -> None:
            """Start the guard the first time (the containers are there already); wait until
            it has both containers' ports."""
            nonlocal seen
            if not guards:
                guards.append(Guard(network))
            seen = guards[0].wait_for(ips, after=seen)

        try:
            for how in HOW:
                victim, thief = host_attack(edaemon, network, how, registered)
                assert thief["claims_sent"] > 0
                assert (thief["frames"], thief["payload_bytes"], thief["key_shas"]) == (0, 0, []), (
                    how,
                    guards[0].lines,
                    victim,
                )
                assert (victim["ok"], victim["failed"]) == (ATTEMPTS, 0), (how, victim)
                assert victim["key_sha"] in {key, served_key_digest(edaemon)}
        finally:
            for guard in guards:
                guard.stop()
        assert guard_chains() == []
