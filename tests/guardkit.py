"""Helpers for the docker guard's test: why it cannot run here, the guard as a process whose
output the test waits on, and the host-side attack (tests/arpkit.py's HOST_THIEF against a
victim that starts fetching when told)."""

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable

from tests.arpkit import GATED_VICTIM, HOST_THIEF
from tests.containerkit import VENV_PYTHON, docker_env
from tests.daemonkit import BIN, Daemon

# The victim's fixed address, far from those docker hands out from the bottom of the subnet.
VICTIM_IP = "169.254.170.250"
ATTEMPTS = 30


def guard_unavailable() -> str | None:
    """Why the guard cannot run here, or None."""
    if os.geteuid() != 0:
        return "the docker guard test needs root (ebtables, nsenter)"
    for tool, package in (("ebtables", "ebtables"), ("nsenter", "util-linux"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            return f"the docker guard test needs {tool} (.ci/run installs {package})"
    return None


def client(*args: str) -> subprocess.CompletedProcess:
    """`rolecache ARGS` from the test venv, as this (root) user."""
    return subprocess.run(
        [str(BIN / "python"), "-m", "rolecache", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


class Guard:
    """`rolecache docker guard --network NETWORK` as a process; its output lines are kept, and
    the test waits on them. stop() ends it and removes its rules (--undo)."""

    def __init__(self, network: str) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.process = subprocess.Popen(
            [str(BIN / "python"), "-m", "rolecache", "docker", "guard", "--network", network],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for(self, ips: list[str], after: int = 0, timeout: float = 60) -> int:
        """Wait for a line past the first `after` saying every address of `ips` is guarded;
        the number of lines then (for the next wait)."""

        def guarded(line: str) -> bool:
            return line.startswith("guarding") and all(f" {ip} (" in line for ip in ips)

        deadline = time.monotonic() + timeout
        with self.changed:
            while not any(guarded(line) for line in self.lines[after:]):
                left = deadline - time.monotonic()
                assert left > 0 and self.process.poll() is None, (ips, self.lines)
                self.changed.wait(left)
            return len(self.lines)

    def stop(self) -> None:
        """End the guard and remove every rule it added."""
        self.process.terminate()
        self.process.wait(timeout=60)
        undone = client("docker", "guard", "--undo")
        assert undone.returncode == 0, undone.stderr


def forget_victim_address() -> None:
    """Drop the host's neighbour entry for the victim's address (a thief may have poisoned
    it), so the next attack starts from what the victim itself tells the host."""
    subprocess.run(["ip", "neigh", "flush", "to", VICTIM_IP], capture_output=True, timeout=30)


def host_attack(
    d: Daemon,
    network: str,
    how: str,
    registered: Callable[[list[str]], None] = lambda ips: None,
) -> tuple[dict, dict]:
    """The victim started (waiting), then the thief (`how`: arp or mac, see HOST_THIEF);
    once `registered` returns for both addresses (the guard has their ports), the victim
    fetches dev's credentials ATTEMPTS times while the thief claims its address to the host.
    What each reported."""
    from tests.dockerkit import start_container

    env = docker_env(d)
    port = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].split(":")[2].split("/")[0]
    fetch = [VENV_PYTHON, "-c", GATED_VICTIM, str(ATTEMPTS)]
    victim = start_container(network, env, fetch, extra=("--ip", VICTIM_IP))
    assert victim.stdin is not None
    try:
        thief = start_container(network, {}, [VENV_PYTHON, "-c", HOST_THIEF, VICTIM_IP, port, how])
        assert thief.stdout is not None
        try:
            ready = thief.stdout.readline().split()
            assert ready[:1] == ["ready"], thief.stderr and thief.stderr.read()
            registered([VICTIM_IP, ready[1]])
            assert thief.stdin is not None
            thief.stdin.write("count\n")  # from now on
            thief.stdin.flush()
            victim.stdin.write("go\n")
            victim.stdin.flush()
            fetched, why = victim.communicate(timeout=120)
        finally:
            stolen, err = thief.communicate(input="", timeout=300)  # closes its stdin: it ends
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    assert thief.returncode == 0, err
    assert victim.returncode == 0, why
    return json.loads(fetched.splitlines()[-1]), json.loads(stolen.splitlines()[-1])


def guard_chains() -> list[str]:
    """The guard's chains in ebtables' nat table now."""
    from rolecache.commands.guardrules import chains, generation_of

    listed = subprocess.run(
        ["ebtables", "-t", "nat", "-L"], capture_output=True, text=True, timeout=60, check=True
    )
    return [chain for chain in chains(listed.stdout) if generation_of(chain)]
