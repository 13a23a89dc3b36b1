"""The daemon's side of the port keeper (portkeeper.py): at start, adopt the listening sockets
the keeper kept through the restart; then hand it a copy of each new listening socket, and
tell it when a port is given up for good. The keeper is started on first need.

Talking to the keeper never stops the daemon from serving: a failure is logged, and the
ports are then held only while the daemon runs.
"""

import contextlib
import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

KEEPER = Path(__file__).with_name("portkeeper.py")
MAX_MESSAGE = 4096


def key(address: str, port: int) -> str:
    """How the keeper names a listening socket."""
    return f"{address} {port}"


class HeldPorts:
    """The listening sockets the keeper at `path` holds for this daemon."""

    def __init__(self, path: Path, linger: float, earlier: Path | None = None) -> None:
        self.path = path
        self.linger = linger
        # The keeper of the last daemon, when it listened elsewhere (another runtime folder).
        self.earlier = earlier
        self._conn: socket.socket | None = None
        self._adopted: dict[str, socket.socket] = {}
        self.keeper_pid: int | None = None

    def open(self) -> None:
        """Adopt the sockets a keeper left running by the last daemon holds, if there is one:
        ours, or the one beside the last daemon's socket."""
        conn = self._connect(self.path)
        if conn is None and self.earlier is not None and self.earlier != self.path:
            conn = self._connect(self.earlier)
        if conn is None:
            return
        try:
            self._adopted = self._list(conn)
        except (OSError, ValueError) as exc:
            log.warning(
                "the port keeper at %s did not answer (%s); starting without", self.path, exc
            )
            conn.close()
            return
        self._conn = conn
        if self._adopted:
            log.info(
                "adopted %d listening sockets the port keeper (pid %s) held through the restart",
                len(self._adopted),
                self.keeper_pid,
            )

    def take(self, address: str, port: int) -> socket.socket | None:
        """The adopted listening socket on `address`:`port`, once; None when there is none."""
        return self._adopted.pop(key(address, port), None)

    def hold(self, address: str, sock: socket.socket) -> None:
        """Have the keeper hold a copy of `sock`, starting the keeper if it is not running."""
        port = sock.getsockname()[1]
        try:
            conn = self._conn or self._spawn()
            message = json.dumps({"op": "hold", "key": key(address, port)}).encode()
            socket.send_fds(conn, [message], [sock.fileno()])
        except OSError as exc:
            self._lost(exc)

    def drop(self, address: str, port: int) -> None:
        """Have the keeper close its copy: the port is given up."""
        if self._conn is None:
            return
        try:
            self._conn.send(json.dumps({"op": "drop", "key": key(address, port)}).encode())
        except OSError as exc:
            self._lost(exc)

    def release_unused(self) -> None:
        """Give up the adopted sockets no listener took (their bindings are gone)."""
        for name, sock in list(self._adopted.items()):
            address, _, port = name.rpartition(" ")
            sock.close()
            self.drop(address, int(port))
        self._adopted.clear()

    def close(self) -> None:
        """Disconnect: the keeper holds on for its linger time, for the next daemon."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- the keeper process -----------------------------------------------------------------

    def _connect(self, path: Path) -> socket.socket | None:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        conn.settimeout(5)
        try:
            conn.connect(str(path))
        except OSError:
            conn.close()
            return None
        return conn

    def _list(self, conn: socket.socket) -> dict[str, socket.socket]:
        conn.send(json.dumps({"op": "list"}).encode())
        adopted: dict[str, socket.socket] = {}
        while True:
            data, fds, _, _ = socket.recv_fds(conn, MAX_MESSAGE, 1)
            if not data:
                raise ValueError("it closed the connection")
            message = json.loads(data)
            if message.get("end"):
                self.keeper_pid = message.get("pid")
                return adopted
            if fds:
                sock = socket.socket(fileno=fds[0])
                sock.setblocking(False)
                adopted[str(message["key"])] = sock

    def _spawn(self) -> socket.socket:
        # Its own session, so a signal to the daemon's process group does not reach it; no
        # stdio of ours, so nobody waiting for the daemon's output waits for the keeper too;
        # an empty environment, so source keys the daemon was started with are not in its
        # /proc/PID/environ (the daemon's own is not readable: it is not dumpable).
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", str(KEEPER), str(self.path), str(self.linger)],
            env={},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert process.stdout is not None
        with process.stdout:
            ready = process.stdout.readline()
        conn = self._connect(self.path) if ready == b"ready\n" else None
        if conn is None:
            raise OSError(f"the port keeper did not start (exit {process.poll()})")
        self._conn, self.keeper_pid = conn, process.pid
        log.info(
            "port keeper started (pid %d): it holds the endpoint ports across restarts", process.pid
        )
        return conn

    def _lost(self, exc: OSError) -> None:
        log.warning(
            "the port keeper is unreachable (%s): the endpoint ports are held only while "
            "rolecached runs",
            exc.strerror or exc,
        )
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
        self._conn = None
