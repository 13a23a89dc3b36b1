"""The port keeper as a real process: it holds the sockets the daemon hands it, a next daemon
adopts the same sockets (and the connections queued on them meanwhile), and a port given up
is free again."""

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from rolecached.endpoints.listeners import open_tcp
from rolecached.front.held_ports import HeldPorts
from tests.daemonkit import release_held_ports


@pytest.fixture
def keeper_path(tmp_path: Path) -> Iterator[Path]:
    """Where the keeper listens; it is told to leave at the end."""
    path = tmp_path / "k.ports"
    yield path
    release_held_ports(path)


def bindable(port: int) -> bool:
    """True when a new socket can listen on 127.0.0.1:`port`."""
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", port))
        probe.listen()
        return True
    except OSError:
        return False
    finally:
        probe.close()


def test_the_port_stays_taken_and_the_next_daemon_adopts_it(keeper_path: Path) -> None:
    """After the first daemon closed its socket and disconnected, nobody can listen on the
    port; the next one adopts the very socket, with the connection queued meanwhile."""
    first = HeldPorts(keeper_path, linger=600)
    sock = open_tcp("127.0.0.1", 0)
    port = sock.getsockname()[1]
    first.hold("127.0.0.1", sock)
    sock.close()
    first.close()
    assert not bindable(port)
    waiting = socket.create_connection(("127.0.0.1", port), timeout=30)
    waiting.sendall(b"queued")
    second = HeldPorts(keeper_path, linger=600)
    second.open()
    adopted = second.take("127.0.0.1", port)
    assert adopted is not None and adopted.getsockname()[1] == port
    assert second.take("127.0.0.1", port) is None  # once
    adopted.setblocking(True)
    conn, _ = adopted.accept()
    with conn, waiting:
        assert conn.recv(16) == b"queued"
    adopted.close()
    second.close()


def test_a_dropped_or_unused_port_is_free_again(keeper_path: Path) -> None:
    """A port dropped (binding removed) or adopted but not taken (binding gone) is released."""
    held = HeldPorts(keeper_path, linger=600)
    socks = [open_tcp("127.0.0.1", 0) for _ in range(2)]
    ports = [s.getsockname()[1] for s in socks]
    for sock in socks:
        held.hold("127.0.0.1", sock)
        sock.close()
    held.drop("127.0.0.1", ports[0])
    held.close()
    again = HeldPorts(keeper_path, linger=600)
    again.open()  # answers after the drop: the keeper handles requests in order
    assert bindable(ports[0]) and not bindable(ports[1])
    again.release_unused()
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
        # A round trip: the keeper reads what its current daemon sent before it answers a
        # new connection, so the drop is done once this answers.
        conn.connect(str(keeper_path))
        conn.send(json.dumps({"op": "list"}).encode())
        assert json.loads(conn.recv(4096))["end"] is True
    again.close()
    assert bindable(ports[1])


def test_another_uids_connection_is_refused(keeper_path: Path) -> None:
    """The keeper hands its sockets only to its own uid: the check is SO_PEERCRED's uid,
    and its socket is 0600 (a second uid cannot even connect)."""
    held = HeldPorts(keeper_path, linger=600)
    sock = open_tcp("127.0.0.1", 0)
    held.hold("127.0.0.1", sock)
    sock.close()
    assert keeper_path.stat().st_mode & 0o077 == 0
    held.close()


def test_the_keeper_gets_no_environment(keeper_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Source keys the daemon was started with do not reach the keeper's environment, which
    other processes of the user can read (/proc/PID/environ of a dumpable process)."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-the-keeper")
    held = HeldPorts(keeper_path, linger=600)
    sock = open_tcp("127.0.0.1", 0)
    held.hold("127.0.0.1", sock)
    sock.close()
    assert held.keeper_pid is not None
    environ = Path(f"/proc/{held.keeper_pid}/environ").read_bytes()
    assert b"not-for-the-keeper" not in environ and b"AWS_" not in environ
    held.close()
