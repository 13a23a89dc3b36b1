"""The docker guard as a systemd system service: `rolecache docker setup --apply` writes the
unit (systemd/rolecache-docker-guard@.service, with the Python that runs this client) and
starts one instance per network. Standard library only."""

import os
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

from rolecache.commands.dockercli import as_root, run_as_root
from rolecache.commands.dockerguard import GuardError

UNIT_NAME = "rolecache-docker-guard@.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
# The unit shipped as systemd/rolecache-docker-guard@.service, with the interpreter that runs
# this client (isolated: -I, so no PYTHONPATH or folder of the moment is read by root).
UNIT = """\
# rolecache docker guard: ties each container of docker network %i to its own MAC and address
# (ebtables), so no container can claim another's to the host. Instance: the network's name.
# `rolecache docker setup --apply` installs it with the Python that runs rolecache.
[Unit]
Description=rolecache docker guard for network %i
After=docker.service
Wants=docker.service

[Service]
ExecStart=PYTHON -I -m rolecache docker guard --network %i
# Also when docker's event stream ends (dockerd restarted): the rules in force stay meanwhile.
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def unit_text(python: str) -> str:
    """The unit file, running the guard with the interpreter at `python`."""
    return UNIT.replace("PYTHON", python, 1)


def service_commands(network: str) -> list[list[str]]:
    """The commands that load the unit and start the guard for `network` at every boot."""
    return [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", f"rolecache-docker-guard@{network}.service"],
    ]


def code_root_runs() -> list[Path]:
    """Where the unit's root process takes its code from: this interpreter (as named and
    resolved), its site-packages (whose .pth files run at start) and this package's files."""
    package = Path(__file__).resolve().parent.parent
    executable = Path(sys.executable)
    purelib = Path(sysconfig.get_paths()["purelib"])
    return [executable, executable.resolve(), purelib, package, *sorted(package.rglob("*.py"))]


def open_to_others(paths: list[Path], uid: int) -> list[str]:
    """Each of `paths`, or a folder above one, that a user other than root and `uid` could
    change: owned by another uid, or writable by group or others (a sticky folder aside,
    where others cannot replace what is not theirs)."""
    found, seen = [], set()
    for path in paths:
        for place in (path, *path.parents):
            if place in seen:
                continue
            seen.add(place)
            try:
                info = place.lstat()
            except OSError:
                continue
            mode = info.st_mode
            sticky = stat.S_ISDIR(mode) and mode & stat.S_ISVTX
            if info.st_uid not in (0, uid):
                found.append(f"{place} (owned by uid {info.st_uid})")
            elif mode & 0o022 and not sticky and not stat.S_ISLNK(mode):
                found.append(f"{place} (mode {stat.S_IMODE(mode):04o})")
    return found


def install_service(network: str, apply: bool) -> str:
    """Install and start the guard's service for `network` (with `apply`), else say what
    would be done; without systemd, say how to run the guard."""
    manual = f"sudo {sys.executable} -I -m rolecache docker guard --network {network}"
    if not os.path.isdir("/run/systemd/system"):
        return (
            "no systemd here: keep the guard running yourself, as root (it follows docker's "
            f"events; `rolecache docker guard --undo` removes its rules):\n  {manual}"
        )
    if not apply:
        steps = "\n".join(f"  sudo {' '.join(c)}" for c in service_commands(network))
        return (
            f"guard the network's addresses: `rolecache docker setup --apply` writes {UNIT_PATH} "
            f"(running `{manual.removeprefix('sudo ')}`), then runs\n{steps}"
        )
    # The service runs this code as root at every boot: none of it may be another user's.
    others = open_to_others(code_root_runs(), int(os.environ.get("SUDO_UID", os.getuid())))
    if others:
        raise GuardError(
            "the guard's service would run as root code that other users can change: "
            f"{', '.join(others[:3])}; install rolecache where only you and root can write, "
            "or use --no-guard and run the guard yourself"
        )
    written = subprocess.run(
        as_root(["tee", UNIT_PATH]), input=unit_text(sys.executable), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    if written.returncode != 0:
        raise GuardError(f"cannot write {UNIT_PATH}: {written.stderr.strip()}")
    for command in service_commands(network):
        run_as_root(command, " ".join(command))
    return f"the docker guard runs as rolecache-docker-guard@{network}.service"
