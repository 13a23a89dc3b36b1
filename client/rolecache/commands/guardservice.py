"""The docker guard as a systemd system service: `rolecache docker setup --apply` writes the
unit (systemd/rolecache-docker-guard@.service, with the Python that runs this client) and
starts one instance per network. Standard library only."""

import os
import subprocess
import sys

from rolecache.commands.dockercli import as_root
from rolecache.commands.dockerguard import GuardError, run_root

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
    written = subprocess.run(
        as_root(["tee", UNIT_PATH]), input=unit_text(sys.executable), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    if written.returncode != 0:
        raise GuardError(f"cannot write {UNIT_PATH}: {written.stderr.strip()}")
    for command in service_commands(network):
        run_root(command, " ".join(command))
    return f"the docker guard runs as rolecache-docker-guard@{network}.service"
