"""The neighbour attack on the docker network, run for real: a container with docker's
default capabilities (NET_RAW) claims 169.254.170.2 over ARP while the next container fetches
its credentials (tests/arpkit.py). Without the isolation `rolecache docker setup --apply`
adds, it reads that container's token and fetches the binding's credentials with it; with it,
not one byte of the victim's reaches the thief and the victim is served every time. Needs
root (ebtables) and dockerd; skips saying why otherwise."""

import json
import os
import shlex
import shutil
import subprocess

import pytest

from rolecache.commands.docker import isolation_rules
from tests.arpkit import THIEF, VICTIM
from tests.containerkit import VENV_PYTHON, docker_env, served_key_digest
from tests.daemonkit import Daemon, unique_role
from tests.dockerkit import isolation_held, remove_isolation, run_container, start_container
from tests.e2ekit import add

# The victim's fixed address, far from those docker hands out from the bottom of the subnet.
VICTIM_IP = "169.254.170.250"
ATTEMPTS = 30


def attack(d: Daemon, network: str) -> tuple[dict, dict]:
    """The thief started first, then the victim with dev's hand-off; what each reported."""
    env = docker_env(d)
    port = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].split(":")[2].split("/")[0]
    thief = start_container(network, {}, [VENV_PYTHON, "-c", THIEF, VICTIM_IP, port])
    assert thief.stdin is not None and thief.stdout is not None
    try:
        ready = thief.stdout.readline().strip()
        victim = None
        if ready == "ready":
            victim = run_container(
                network, env, [VENV_PYTHON, "-c", VICTIM, str(ATTEMPTS)], extra=("--ip", VICTIM_IP)
            )
    finally:
        out, err = thief.communicate(input="", timeout=300)  # closes its stdin: it ends
    assert ready == "ready" and thief.returncode == 0, err
    assert victim is not None and victim.returncode == 0, victim and victim.stderr
    return json.loads(victim.stdout.splitlines()[-1]), json.loads(out.splitlines()[-1])


def test_a_container_cannot_read_the_next_ones_token(edaemon: Daemon, network: str) -> None:
    """Before isolation the thief reads the victim's token and gets the binding's credentials
    with it; after `rolecache docker setup --apply` (twice: the rules are added once) it sees
    no ARP request and no byte of the victim's, and the victim gets its credentials on every
    attempt."""
    if os.geteuid() != 0 or shutil.which("ebtables") is None:
        pytest.skip("isolating the test network needs root and ebtables (.ci/run installs it)")
    assert add(edaemon, "dev", unique_role()).returncode == 0
    key = served_key_digest(edaemon)
    with isolation_held():
        remove_isolation()
        try:
            victim, thief = attack(edaemon, network)
            assert thief["token_sha"] == victim["token_sha"], (victim, thief)
            assert thief["key_sha"] == key
            applied = edaemon.client(
                "docker", "setup", "--network", network, "--apply", "--no-guard"
            )
            assert applied.returncode == 0, applied.stderr
            assert "isolated from one another" in applied.stdout
            again = edaemon.client("docker", "setup", "--network", network, "--apply", "--no-guard")
            assert again.returncode == 0, again.stderr
            listed = subprocess.run(
                ["ebtables", "-L", "FORWARD"], capture_output=True, text=True, check=True
            ).stdout.splitlines()
            for rule in isolation_rules("-A"):  # each once: --apply adds only what is missing
                assert listed.count(shlex.join(rule[3:])) == 1, listed
            victim, thief = attack(edaemon, network)
            assert thief == {
                "arp_requests_seen": 0,
                "payload_bytes": 0,
                "token_sha": None,
                "key_sha": None,
            }
            assert (victim["ok"], victim["failed"], victim["key_sha"]) == (ATTEMPTS, 0, key)
        finally:
            remove_isolation()
