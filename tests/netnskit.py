"""Network namespaces for the tests about who reaches 169.254.170.2: a LAN neighbour joined to
this host by a veth pair that routes 169.254.170.2 here, and a daemon alone in a namespace of
its own, where no interface has 169.254.170.2 until the test gives it one. Root only: the
helpers skip, saying why, otherwise."""

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemonkit import BIN, Daemon, wait_for_socket


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"ip {' '.join(args)}: {result.stderr}"


def need_root() -> None:
    """Skip unless this test may make namespaces and interfaces."""
    if os.getuid() != 0 or not all(shutil.which(t) for t in ("ip", "unshare", "nsenter")):
        pytest.skip("network namespaces need root, iproute2, unshare and nsenter")


@contextlib.contextmanager
def lan_neighbour() -> Iterator[str]:
    """A namespace on a veth pair with this host (198.18.N.0/30, the benchmarking range,
    never routed off this host) that routes 169.254.170.2 through this host, as a neighbour
    on the LAN can; yields its name, for `ip netns exec`."""
    need_root()
    name = f"rcn{os.getpid() % 100000}"
    near, far = f"{name}h", f"{name}n"
    net = f"198.18.{os.getpid() % 250}"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", near, "type", "veth", "peer", "name", far, "netns", name)
        _ip("addr", "add", f"{net}.1/30", "dev", near)
        _ip("link", "set", near, "up")
        _ip("-n", name, "addr", "add", f"{net}.2/30", "dev", far)
        _ip("-n", name, "link", "set", far, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "route", "add", "169.254.170.2/32", "via", f"{net}.1")
        yield name
    finally:
        subprocess.run(["ip", "link", "del", near], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def daemon_in_namespace(tmp: Path, env: dict[str, str], *args: str) -> Daemon:
    """rolecached started in a network namespace of its own (loopback up, nothing else); the
    client reaches it on its Unix socket as usual. Stop it with Daemon.stop()."""
    need_root()
    log = tmp / "daemon.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
             str(BIN / "rolecached"), "--log-level", "debug", *args],
            env=env,
            stdout=out,
            stderr=out,
        )  # fmt: skip
    sock = Path(env["ROLECACHE_SOCKET"])
    wait_for_socket(sock, process=process)
    return Daemon(process, env, sock, log, tmp)


def in_namespace_of(pid: int, *command: str) -> None:
    """Run `command` in the network namespace of process `pid`."""
    result = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", *command], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, f"{' '.join(command)}: {result.stderr}"
