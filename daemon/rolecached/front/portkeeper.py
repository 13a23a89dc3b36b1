"""The port keeper: a small process that holds a copy of each of the daemon's listening TCP
sockets, so that while the daemon restarts, or after it crashed, its ports stay this user's.
Connections made meanwhile wait in the kernel's backlog for the next daemon, which adopts the
same sockets; no other uid can listen there and read the bearer tokens programs send.

It never accepts a connection itself. It runs as its own session (a stop signal to the
daemon's process group leaves it alone), is started by the daemon as
`python -I -S portkeeper.py SOCKET LINGER` and imports the standard library only. It leaves
LINGER seconds after its daemon disconnected with no daemon back, or at once when it holds
nothing. The daemon side is held_ports.py.

Protocol, one JSON message per SOCK_SEQPACKET datagram on a Unix socket (0600, in the
daemon's private folder; a peer of another uid is refused):
  {"op": "hold", "key": K} + one descriptor   keep it (K: "ADDRESS PORT")
  {"op": "drop", "key": K}                     close it: the port is released
  {"op": "list"}                               answered by {"key": K} + descriptor for
                                               each socket held, then {"end": true, "pid": P}
  {"op": "release"}                            close them all and leave now
"""

import contextlib
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import time

MAX_MESSAGE = 4096


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process on the other end (SO_PEERCRED)."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)[1]


def serve(server: socket.socket, linger: float) -> None:
    """Hold what the daemon hands over until it has been gone `linger` seconds."""
    held: dict[str, socket.socket] = {}
    daemon: socket.socket | None = None
    gone_since = time.monotonic()
    while True:
        waiting = [server] + ([daemon] if daemon is not None else [])
        timeout = None if daemon is not None else max(0.0, gone_since + linger - time.monotonic())
        ready, _, _ = select.select(waiting, [], [], timeout)
        if not ready:
            return  # the daemon did not come back in time: release the ports
        # What the current daemon sent comes first: a new daemon may connect right after the
        # last one handed over a socket and left.
        if daemon is not None and daemon in ready:
            try:
                data, fds, _, _ = socket.recv_fds(daemon, MAX_MESSAGE, 1)
            except OSError:
                data, fds = b"", []
            if not data:
                daemon.close()
                daemon, gone_since = None, time.monotonic()
                if not held:
                    return
                continue
            try:
                message = json.loads(data)
            except ValueError:
                message = {}  # not ours: ignored, as an unknown op is
            if not handle(daemon, message, fds, held):
                return
            continue
        conn, _ = server.accept()
        if peer_uid(conn) != os.getuid():
            conn.close()
            continue
        if daemon is not None:
            daemon.close()  # a new daemon of ours: the old one is gone
        daemon = conn


def handle(
    daemon: socket.socket, message: dict, fds: list[int], held: dict[str, socket.socket]
) -> bool:
    """Carry out one request of the daemon; False when the keeper is to leave."""
    op, key = message.get("op"), str(message.get("key"))
    if op == "hold" and fds:
        old = held.pop(key, None)
        if old is not None:
            old.close()
        held[key] = socket.socket(fileno=fds.pop())
    elif op == "drop":
        sock = held.pop(key, None)
        if sock is not None:
            sock.close()
    elif op == "list":
        for name, sock in held.items():
            socket.send_fds(daemon, [json.dumps({"key": name}).encode()], [sock.fileno()])
        daemon.send(json.dumps({"end": True, "pid": os.getpid()}).encode())
    for fd in fds:
        os.close(fd)
    return op != "release"


def main(argv: list[str]) -> int:
    """Bind the keeper's socket at argv[1], say "ready" on stdout, then serve."""
    path, linger = argv[1], float(argv[2])
    os.umask(0o077)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for sig in (signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by a keeper that was killed: its daemon found nobody there
    server.bind(path)
    server.listen(4)
    sys.stdout.write("ready\n")
    sys.stdout.close()
    try:
        serve(server, linger)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
