"""Test helpers for the docker network side: 169.254.170.2 on this host without docker.

The daemon listens on the docker network's gateway, 169.254.170.2. On a host where docker is
not running, a test gives that address to a bridge interface of its own (one per test process,
so parallel workers do not share one), as docker's bridge has it: packets to it
stay on this machine, like loopback's.
"""

import contextlib
import ipaddress
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest

GATEWAY = "169.254.170.2"


def has_address(address: str) -> bool:
    """True when an interface of this host has `address` (binding it needs no FREEBIND)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind((address, 0))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def gateway_address() -> Iterator[str]:
    """169.254.170.2 on a bridge interface of its own (as docker's) for the duration, removed
    afterwards; skips when this host cannot have one (not root, no `ip`)."""
    if os.getuid() != 0 or shutil.which("ip") is None:
        pytest.skip("giving 169.254.170.2 to an interface needs root and iproute2")
    link = f"rct{os.getpid() % 100000}"  # at most 15 characters, one per test process
    added = _ip("link", "add", link, "type", "bridge")
    if added.returncode != 0:
        pytest.skip(f"cannot make a bridge interface: {added.stderr.strip()}")
    try:
        network = ipaddress.ip_network(f"{GATEWAY}/32")
        for args in (
            ("addr", "add", str(network), "dev", link),
            ("link", "set", link, "up"),
        ):
            result = _ip(*args)
            assert result.returncode == 0, result.stderr
        yield GATEWAY
    finally:
        _ip("link", "del", link)


# A stand-in for the docker CLI, for `rolecache docker setup` where no dockerd runs: networks
# live in a JSON file ($FAKE_DOCKER_STATE), every call is appended to $FAKE_DOCKER_STATE.calls,
# and $FAKE_DOCKER_DOWN makes it answer as docker does when dockerd is not running.
FAKE_DOCKER = r"""#!PYTHON
import json, os, sys
state = os.environ["FAKE_DOCKER_STATE"]
args = sys.argv[1:]
with open(state + ".calls", "a") as f:
    f.write(json.dumps(args) + "\n")
if os.environ.get("FAKE_DOCKER_DOWN"):
    sys.stderr.write("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                     "Is the docker daemon running?\n")
    sys.exit(1)
nets = json.load(open(state)) if os.path.exists(state) else []
if args[0] == "version":
    print("20.10.24")
elif args[:2] == ["network", "ls"]:
    print("\n".join(n["Id"] for n in nets))
elif args[:2] == ["network", "inspect"]:
    print(json.dumps([n for n in nets if n["Id"] in args[2:]]))
elif args[:2] == ["network", "create"]:
    opts = dict(zip(args[2:-1:2], args[3:-1:2]))
    name = args[-1]
    if any(n["Name"] == name for n in nets):
        sys.stderr.write(f"Error response from daemon: network with name {name} already exists\n")
        sys.exit(1)
    nets.append({"Name": name, "Id": f"{len(nets) + 1:064x}",
                 "IPAM": {"Config": [{"Subnet": opts["--subnet"], "Gateway": opts["--gateway"]}]},
                 "Options": {k.split("=")[0]: k.split("=")[1] for k in [opts.get("--opt", "x=y")]}})
    json.dump(nets, open(state, "w"))
    print(nets[-1]["Id"])
else:
    sys.exit(f"fake docker: unexpected {args}")
"""


def fake_docker(folder: "os.PathLike[str] | str", networks: list[dict] | None = None) -> str:
    """Install the fake docker CLI in `folder` (put it first on PATH) with `networks`; returns
    the state file's path."""
    import json
    import sys
    from pathlib import Path

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    script = path / "docker"
    script.write_text(FAKE_DOCKER.replace("PYTHON", sys.executable, 1))
    script.chmod(0o755)
    state = path / "networks.json"
    state.write_text(json.dumps(networks or []))
    return str(state)
