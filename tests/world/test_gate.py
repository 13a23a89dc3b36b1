"""The gate's rules without a network: who is admitted, the caps, the refusal log, and the
kernel lookups it relies on (a real socket pair, the peer run as another uid)."""

import logging
import os
import socket
import subprocess
import sys

import pytest

from rolecached.front.gate import FD_RESERVE, Caps, Gate, RefusalLog
from rolecached.host import peers, process
from rolecached.host.peers import Peer
from tests.kit import FakeClock

OWNER = 1000
CAPS = Caps(unix=4, tcp_total=6, per_listener=4, per_peer=2)


def test_other_uids_and_unknown_peers_are_refused_on_loopback() -> None:
    """Our uid and root are admitted; another uid, a failed lookup and an address-only peer
    are not, unless the listener lets the token decide for address-only peers."""
    gate = Gate(OWNER, CAPS)
    assert gate.admit(object(), "ecs", Peer(OWNER))
    assert gate.admit(object(), "ecs", Peer(0))
    assert not gate.admit(object(), "ecs", Peer(OWNER + 1))
    assert not gate.admit(object(), "ecs", None)
    assert not gate.admit(object(), "ecs", Peer(None, address="169.254.170.3"))
    assert gate.admit(object(), "ecs", Peer(None, address="169.254.170.3"), token_only=True)
    assert not gate.admit(object(), "ecs", Peer(OWNER + 1), token_only=True)
    assert not gate.admit(object(), "socket", Peer(0, pid=1), allow_root=False)


def test_caps_per_peer_and_listener_leave_room_for_others() -> None:
    """One peer fills its own share and no more; another peer still gets in, up to the
    listener's cap; releasing a connection frees its slot."""
    gate = Gate(OWNER, CAPS)
    mine = [object() for _ in range(3)]
    assert [gate.admit(t, "ecs", Peer(OWNER)) for t in mine] == [True, True, False]
    roots = [object() for _ in range(3)]
    assert [gate.admit(t, "ecs", Peer(0)) for t in roots] == [True, True, False]
    assert not gate.admit(object(), "ecs", Peer(None, address="a"), token_only=True)
    gate.release(mine[0])
    gate.release(mine[0])  # a second release changes nothing
    assert gate.open_connections == 3
    assert gate.admit(mine[2], "ecs", Peer(OWNER))
    assert gate.peer_of(mine[2]) == Peer(OWNER)


def test_tcp_total_and_socket_caps_are_separate() -> None:
    """TCP listeners together stop at tcp_total, and the Unix socket keeps its own cap."""
    gate = Gate(OWNER, CAPS)
    admitted = [gate.admit(object(), f"imds {i}", Peer(OWNER)) for i in range(4) for _ in range(2)]
    assert admitted.count(True) == CAPS.tcp_total
    sockets = [gate.admit(object(), "socket", Peer(OWNER, pid=1)) for _ in range(5)]
    assert sockets == [True] * CAPS.unix + [False]


def test_caps_stay_below_the_descriptor_limit() -> None:
    """For the 1024 descriptors a systemd user unit gets, the caps add up to less, keeping
    the reserve for STS and files; one listener and one peer get less than the whole."""
    caps = Caps.for_fd_limit(1024)
    assert caps.unix + caps.tcp_total == 1024 - FD_RESERVE
    assert caps.per_peer < caps.per_listener < caps.tcp_total


def test_refusals_are_one_line_then_a_count_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A thousand refusals of one kind log one line at once and one count after the
    interval, not a thousand lines."""
    clock = FakeClock(0.0)
    refusals = RefusalLog(logging.getLogger("test.refusals"), interval=60, clock=clock)
    with caplog.at_level(logging.WARNING, "test.refusals"):
        for _ in range(1000):
            refusals.refused("connections from uid 65534")
        assert [r.getMessage() for r in caplog.records] == ["refused connections from uid 65534"]
        clock.now = 61
        refusals.flush()
    assert caplog.records[-1].getMessage() == (
        "refused 999 more: connections from uid 65534 (in the last 61 s)"
    )
    assert len(caplog.records) == 2


@pytest.mark.skipif(os.getuid() != 0, reason="runs the peer as uid 65534 through setpriv")
def test_tcp_peer_uid_names_the_uid_that_owns_the_client_end() -> None:
    """The netlink lookup gives 65534 for a connection nobody made, ours for our own, and
    None for a connection that does not exist."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = subprocess.Popen(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
             "-I", "-c", f"import socket,sys; s=socket.create_connection(('127.0.0.1',{port}));"
             " sys.stdin.read()"],
            stdin=subprocess.PIPE,
        )  # fmt: skip
        try:
            theirs, _ = server.accept()
            with theirs, socket.create_connection(("127.0.0.1", port)):
                ours, _ = server.accept()
                with ours:
                    assert (
                        peers.tcp_peer_uid(
                            theirs.getsockname(), theirs.getpeername(), socket.AF_INET
                        )
                        == 65534
                    )
                    assert (
                        peers.tcp_peer_uid(ours.getsockname(), ours.getpeername(), socket.AF_INET)
                        == os.getuid()
                    )
            assert peers.tcp_peer_uid(("127.0.0.1", port), ("127.0.0.1", 1), socket.AF_INET) is None
            assert peers.listener_uid(port) == os.getuid()
        finally:
            client.communicate(b"", timeout=30)


def test_process_stat_reads_names_with_parentheses_and_the_parent() -> None:
    """A command name holding spaces and parentheses is read whole, with the right parent
    pid and a start time; a pid that is gone gives None."""
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; open('/proc/self/comm', 'w').write('a) b (c'); print(1, flush=True);"
         " sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline() == b"1\n"
        stat = process.process_stat(child.pid)
        assert stat is not None
        name, ppid, started = stat
        assert (name, ppid) == ("a) b (c", os.getpid()) and started > 0
    finally:
        child.communicate(b"", timeout=30)
    assert process.process_stat(child.pid) is None
