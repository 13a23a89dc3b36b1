"""HTTP/1.1 over the daemon's Unix socket, and starting the daemon when nobody answers.

Speaks HTTP by hand on `_socket` (the C module: `import socket` costs more than a cache hit
should): one request per connection, `Connection: close`, and the daemon always sends
`Content-Length`.
"""

import _socket
import os
import stat  # loaded by `os` already: free
import sys

from rolecache import protocol

CONNECT_TIMEOUT = 2.0
RESPONSE_TIMEOUT = 30.0  # above the daemon's own wait for STS, so its error arrives first


class Unreachable(Exception):
    """No daemon answers on the socket and none could be started."""


class Response:
    """Status, lower-cased headers and the raw body of a daemon answer."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def check_folder(folder: str) -> None:
    """Refuse a socket folder another user could have made or can write into.

    Whoever controls the folder controls what answers on the socket, and would be sent the
    request (an MFA code, say) and could answer with shell code for `eval`. A folder that
    does not exist yet is fine: the daemon creates it, and every connection checks again.
    """
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise Unreachable(f"cannot check the socket folder {folder}: {exc.strerror}") from None
    me = os.getuid()
    fix = "remove it, or set ROLECACHE_SOCKET to a path in a private folder of yours"
    if stat.S_ISLNK(info.st_mode):
        raise Unreachable(f"the socket folder {folder} is a symlink; nothing was sent ({fix})")
    if not stat.S_ISDIR(info.st_mode):
        raise Unreachable(f"the socket folder {folder} is not a folder; nothing was sent ({fix})")
    if info.st_uid != me:
        raise Unreachable(
            f"the socket folder {folder} belongs to uid {info.st_uid}, not to you (uid {me}); "
            f"someone may be trying to intercept your credentials, so nothing was sent ({fix})"
        )
    if info.st_mode & 0o077:
        raise Unreachable(
            f"the socket folder {folder} is open to other users (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); nothing was sent (run `chmod 700 {folder}`, "
            "or remove it and let rolecached create it)"
        )


def check_peer(sock: "_socket.socket", path: str) -> None:
    """Refuse a server that runs as another user: only we, or root, may answer us."""
    option = getattr(_socket, "SO_PEERCRED", None)
    if option is None:  # not Linux: the folder check is what protects the socket there
        return
    raw = sock.getsockopt(_socket.SOL_SOCKET, option, 12)  # struct ucred: pid, uid, gid
    pid = int.from_bytes(raw[0:4], sys.byteorder)
    uid = int.from_bytes(raw[4:8], sys.byteorder)
    if uid not in (os.getuid(), 0):
        raise Unreachable(
            f"the process answering on {path} (pid {pid}) runs as uid {uid}, not as you "
            f"(uid {os.getuid()}) or root; someone may be trying to intercept your "
            "credentials, so nothing was sent"
        )


def _connect(path: str) -> "_socket.socket":
    """A connection to the daemon at `path`, checked before a byte is sent: the folder is
    ours and private, and the process that answers runs as us or as root."""
    check_folder(os.path.dirname(path) or ".")
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect(path)
        check_peer(sock, path)
    except BaseException:
        sock.close()
        raise
    return sock


def _parse(raw: bytes) -> Response:
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = protocol.whole_number(parts[1]) if len(parts) >= 2 else None
    if not sep or status is None:
        raise Unreachable("the daemon sent a malformed answer")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    expected = protocol.whole_number(length) if length is not None else None
    if expected is not None and len(body) < expected:
        raise Unreachable("the daemon's answer was cut short")
    return Response(status, headers, body)


def _exchange(path: str, request: bytes, timeout: float = RESPONSE_TIMEOUT) -> Response:
    sock = _connect(path)
    try:
        sock.settimeout(timeout)
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    return _parse(b"".join(chunks))


def _answers(path: str) -> bool:
    """True when the daemon accepts a connection on `path`."""
    try:
        _connect(path).close()
    except OSError:
        return False
    return True


def start_daemon(path: str, sandbox: bool) -> None:
    """Start rolecached and wait until it answers (see autostart.launch)."""
    # A folder someone else made is refused before anything runs: the daemon would refuse it
    # too, and waiting for it would only hide the reason.
    check_folder(os.path.dirname(path) or ".")
    from rolecache import autostart  # only on this rare path

    failure = autostart.launch(path, sandbox, lambda: _answers(path))
    if failure is not None:
        raise Unreachable(failure)


def request(
    method: str,
    target: str,
    body: str | None = None,
    *,
    sandbox: bool = False,
    autostart: bool = True,
    wait: float = 0,
) -> Response:
    """Send one request to the daemon, starting it first if needed and `autostart` and
    ROLECACHE_NO_AUTOSTART allow; `wait` is how much longer than usual its answer may take."""
    path = protocol.socket_path(sandbox)
    problem = protocol.socket_path_problem(path)
    if problem:
        raise Unreachable(problem)
    payload = (body or "").encode()
    raw = (
        f"{method} {target} HTTP/1.1\r\nHost: rolecache\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    timeout = RESPONSE_TIMEOUT + wait
    try:
        return _exchange(path, raw, timeout)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        # No socket, or a stale one left by a daemon that died: start one if we may.
        if not autostart:
            raise Unreachable(f"rolecached is not running (nothing answers on {path})") from None
        if protocol.env_flag("ROLECACHE_NO_AUTOSTART"):
            raise Unreachable(
                f"no rolecached answers on {path} ({exc.strerror}) and ROLECACHE_NO_AUTOSTART "
                "is set; start it with `rolecached` or `systemctl --user start rolecached.socket`"
            ) from None
    except OSError as exc:
        raise Unreachable(f"cannot talk to rolecached on {path}: {exc.strerror or exc}") from None
    start_daemon(path, sandbox)
    try:
        return _exchange(path, raw, timeout)
    except OSError as exc:
        raise Unreachable(f"cannot talk to rolecached on {path}: {exc.strerror or exc}") from None
