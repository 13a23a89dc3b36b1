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
