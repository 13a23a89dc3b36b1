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
START_TIMEOUT = 20.0


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


def make_private_folders(folder: str) -> None:
    """Create `folder` and any missing parents, each 0700 (os.makedirs gives parents the
    umask's mode, typically readable by everyone)."""
    parent = os.path.dirname(folder)
    if parent and parent != folder and not os.path.isdir(parent):
        make_private_folders(parent)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        return  # made by someone else meanwhile: check_folder judges it


def _daemon_log(sandbox: bool) -> str:
    folder = protocol.state_dir()
    make_private_folders(folder)
    return os.path.join(folder, "rolecached-sandbox.log" if sandbox else "rolecached.log")


# What an autostarted daemon may inherit from the shell that happens to start it: where the
# user's files and settings are, how to reach STS, and rolecache's own settings. Nothing
# else: the daemon outlives that shell and serves every later one, so it must not keep one
# shell's keys (AWS_ACCESS_KEY_ID...) or profile (AWS_PROFILE) as its source for all of them,
# and variables such as PYTHONPATH or LD_PRELOAD must not decide what code it runs.
DAEMON_ENV_NAMES = frozenset(
    {
        "HOME",
        "USER",
        "LOGNAME",
        "PATH",
        "LANG",
        "TMPDIR",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_STS_REGIONAL_ENDPOINTS",
        "AWS_CA_BUNDLE",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        # The desktop session, for the notification that a request waits for an MFA code.
        "DBUS_SESSION_BUS_ADDRESS",
        "DISPLAY",
        "WAYLAND_DISPLAY",
    }
)
DAEMON_ENV_PREFIXES = ("XDG_", "LC_", "ROLECACHE_", "AWS_ENDPOINT_URL", "AWS_EC2_METADATA_")
# A one-time MFA code is for this command only; the daemon is told it in the request.
DAEMON_ENV_NEVER = frozenset({"ROLECACHE_TOKEN_CODE"})


def daemon_environment(environ: "os._Environ[str] | dict[str, str]") -> dict[str, str]:
    """The part of `environ` an autostarted daemon gets (see DAEMON_ENV_NAMES)."""
    return {
        name: value
        for name, value in environ.items()
        if (name in DAEMON_ENV_NAMES or name.startswith(DAEMON_ENV_PREFIXES))
        and name not in DAEMON_ENV_NEVER
    }


def start_daemon(path: str, sandbox: bool) -> None:
    """Start rolecached detached (own session, log in the state folder); wait until it answers.

    Two clients racing here start two processes, but the daemon's lock lets one of them
    serve and the other exit, so both clients end up talking to the same daemon.
    """
    # A folder someone else made is refused before anything runs: the daemon would refuse it
    # too, and waiting for it would only hide the reason.
    check_folder(os.path.dirname(path) or ".")
    import subprocess  # only on this rare path
    import time

    log_path = _daemon_log(sandbox)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    log_start = os.fstat(log_fd).st_size  # what this daemon writes comes after
    # -I: the current folder, PYTHONPATH and the user's site folder must not decide which
    # `rolecached` runs (a folder holding rolecached/__main__.py would otherwise be it);
    # site-packages and its .pth files, which editable installs use, still count.
    command = [sys.executable, "-I", "-m", "rolecached", "--socket", os.path.abspath(path)]
    if sandbox:
        command.append("--sandbox")
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            cwd="/",  # holds no folder busy, and no relative path means the caller's folder
            env=daemon_environment(os.environ),
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(log_fd)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            _connect(path).close()
            return
        except OSError:
            pass
        if process.poll() not in (None, 0):
            # It may have lost the race to another daemon; give that one a moment.
            deadline = min(deadline, time.monotonic() + 3)
        time.sleep(0.02)
    reason = start_failure(log_path, log_start)
    raise Unreachable(
        f"rolecached did not start{': ' + reason if reason else ''}; its log is {log_path}"
    )


# How much of the end of the log is searched for the reason: a failed start writes a few lines.
_REASON_WINDOW = 16384


def start_failure(log_path: str, start: int) -> str | None:
    """Why the daemon did not start, in its own words: the last ERROR (or CRITICAL) line it
    wrote to its log after offset `start`, else its last line (a traceback's ends with the
    exception); None when it wrote nothing."""
    try:
        with open(log_path, "rb") as log:
            log.seek(max(start, os.fstat(log.fileno()).st_size - _REASON_WINDOW))
            text = log.read(_REASON_WINDOW).decode("utf-8", "replace")
    except OSError:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        for level in ("ERROR ", "CRITICAL "):
            at = line.find(level)
            # The level is the first word, after the time a stamped line starts with.
            if at != -1 and " " not in line[:at].strip():
                _, named, message = line[at + len(level) :].partition(": ")
                return message if named else line[at + len(level) :]
    return lines[-1] if lines else None


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
