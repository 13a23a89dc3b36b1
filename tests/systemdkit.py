"""Test helpers for the shipped systemd units: their settings as systemd reads them,
`systemd-analyze security`'s overall exposure score, and a container with systemd as PID 1
to run them under a real user manager."""

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.dockerkit import docker_unavailable, python_mounts

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
# systemd-analyze's verdict is 0.0 (best) to 10.0; this is the most the shipped service may
# score as a user unit.
MOST_EXPOSURE = 5.0
_OVERALL = re.compile(r"Overall exposure level for (\S+): (\d+\.\d+) ")


def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """Each section's settings, every value of a key in order (systemd allows repeats)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def exposure(output: str, unit: str = "rolecached.service") -> float:
    """The overall exposure level that `systemd-analyze security UNIT` printed for `unit`."""
    for name, level in _OVERALL.findall(output):
        if name == unit:
            return float(level)
    raise AssertionError(f"no overall exposure level for {unit} in:\n{output[-2000:]}")


def offline_security_unavailable() -> str | None:
    """Why `systemd-analyze security --offline=yes` cannot run here, or None when it can."""
    if shutil.which("systemd-analyze") is None:
        return "no systemd-analyze on this host (Debian's systemd package has it)"
    probe = subprocess.run(
        ["systemd-analyze", "security", "--help"], capture_output=True, text=True, timeout=60
    )
    if "--offline" not in probe.stdout:
        return "this systemd-analyze has no --offline (systemd 250 and later do)"
    return None


def offline_security(unit: Path, runtime_dir: Path) -> subprocess.CompletedProcess:
    """`systemd-analyze security --offline=yes --user UNIT`, as a user manager would load it
    (it wants an XDG_RUNTIME_DIR, which `runtime_dir` stands in for)."""
    runtime_dir.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--user", "--no-pager", str(unit)],
        env={"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(runtime_dir), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- systemd as PID 1 in a container ------------------------------------------------------------

# Built by .ci/systemd-image (debootstrap: systemd, dbus, user `dev`); the host's Python and
# this worktree are mounted read-only, as in the other docker tests.
SYSTEMD_IMAGE = "rolecache-test-systemd:1"
DEV_UID = 1000
# What systemd as PID 1 needs of docker here, short of --privileged (which asks for every
# capability, and fails where dockerd itself lacks one): CAP_SYS_ADMIN for its mounts and
# namespaces, no seccomp or AppArmor profile in its way, a writable cgroup tree, and tmpfs on
# /run, /run/lock and /tmp as on a booted machine.
SYSTEMD_RUN = (
    "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined", "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp", "--env", "container=docker",
)  # fmt: skip


def systemd_machine_unavailable() -> str | None:
    """Why the systemd container cannot run here (no dockerd, no image, a cgroup tree it
    must not be given), or None."""
    reason = docker_unavailable()
    if reason:
        return reason
    # SYSTEMD_RUN hands the container this host's cgroup tree, where docker keeps each
    # container in a subtree of its own (cgroup v1). Under cgroup v2 the container's systemd
    # would see the host's root as its own: not done.
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return "systemd container test skipped: this host has cgroup v2 (only v1 is set up)"
    found = subprocess.run(
        ["docker", "image", "inspect", SYSTEMD_IMAGE], capture_output=True, timeout=60
    )
    if found.returncode != 0:
        return f"no {SYSTEMD_IMAGE} image: `.ci/systemd-image` (as root) builds it"
    return None


@dataclass
class Machine:
    """A running container with systemd as PID 1."""

    name: str

    def root(self, script: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """`bash -c script` as root in the container."""
        return subprocess.run(
            ["docker", "exec", self.name, "bash", "-c", script],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def dev(self, script: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """`bash -c script` as user dev, in the environment its login session would have."""
        return self.root(
            f"cd ~dev && runuser -u dev -- env -i HOME=/home/dev USER=dev LOGNAME=dev "
            f"PATH=/usr/bin:/bin XDG_RUNTIME_DIR=/run/user/{DEV_UID} LANG=C.UTF-8 "
            f"bash -c {shlex.quote(script)}",
            timeout,
        )

    def journal(self) -> str:
        """The last lines of the container's journal (what a failed start says)."""
        return self.root("journalctl --no-pager --lines 40").stdout

    def wait_until(self, script: str, timeout: float = 60) -> None:
        """Block until `script` (as dev) succeeds."""
        self._wait(self.dev, script, timeout)

    def wait_until_root(self, script: str, timeout: float = 60) -> None:
        """Block until `script` (as root) succeeds."""
        self._wait(self.root, script, timeout)

    @staticmethod
    def _wait(
        run: Callable[[str], subprocess.CompletedProcess], script: str, timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            result = run(script)
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{script!r} still fails: {result.stdout}{result.stderr}")
            time.sleep(0.2)


@contextlib.contextmanager
def systemd_machine() -> Iterator[Machine]:
    """A container of SYSTEMD_IMAGE booted to its default target, with no network (only
    loopback), removed afterwards."""
    name = f"rolecache-systemd-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    # The image's own /usr holds systemd (and Debian's Python, for a venv made from it).
    mounts = python_mounts(host_usr=False)
    started = subprocess.run(
        [
            "docker", "run", "--detach", "--name", name, "--network", "none", *SYSTEMD_RUN,
            *mounts, SYSTEMD_IMAGE, "/sbin/init",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    machine = Machine(name)
    try:
        # Until PID 1 has its bus socket, systemctl cannot even ask.
        machine.wait_until_root("test -S /run/systemd/private")
        booted = machine.root("systemctl is-system-running --wait", timeout=180)
        assert booted.stdout.strip() in ("running", "degraded"), (
            booted.stdout + booted.stderr + machine.root("systemctl --failed").stdout
        )
        yield machine
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, timeout=120)
