"""Running the docker CLI and commands as root, for `rolecache docker setup` and `rolecache
docker guard`. Standard library only."""

import os
import shutil
import subprocess

from rolecache import ask, protocol

DEFAULT_NETWORK = "rolecache"
# The network's subnet: its gateway, 169.254.170.2, is where containers reach the daemon.
SUBNET = "169.254.170.0/24"


class DockerError(ask.Failed):
    """docker is missing, unreachable, or refused a command."""

    def __init__(self, message: str) -> None:
        super().__init__(message, protocol.EXIT_ERROR)


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; DockerError when it is missing."""
    if shutil.which("docker") is None:
        raise DockerError(
            "docker is not installed (no `docker` on PATH); install it, or run "
            "`rolecache docker setup --print` to see the commands"
        )
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)


def reachable() -> None:
    """Raise DockerError unless dockerd answers this user."""
    result = docker("version", "--format", "{{.Server.Version}}")
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or ["no answer"])[-1]
        raise DockerError(
            f"docker is installed but its daemon cannot be reached: {why}. Start dockerd, or "
            "check that you may use it (the docker group is root in effect)"
        )


def as_root(command: list[str]) -> list[str]:
    """`command` as root: itself when we are, else through sudo."""
    return command if os.geteuid() == 0 else ["sudo", *command]


def run_as_root(command: list[str], what: str) -> str:
    """Run `command` as root; its stdout, or DockerError saying `what` failed and why."""
    done = subprocess.run(as_root(command), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise DockerError(f"{what} failed: {done.stderr.strip() or done.returncode}")
    return done.stdout
