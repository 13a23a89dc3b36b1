"""The API socket and what start-up claims with it: its private folder, the locks that keep
one daemon per socket (and per endpoints state file), binding it or adopting systemd's."""

import contextlib
import fcntl
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from rolecache.protocol import socket_path_problem
from rolecached.host import systemd


class StartupError(Exception):
    """rolecached cannot start; the message says why and what to do."""


def secure_folder(folder: Path) -> None:
    """Create `folder` 0700, or accept it only if it is a real folder of ours that is private."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = folder.lstat()
    if stat.S_ISLNK(info.st_mode):
        raise StartupError(f"{folder} is a symlink; refusing to put the socket there")
    if not stat.S_ISDIR(info.st_mode):
        raise StartupError(f"{folder} is not a folder")
    if info.st_uid != os.getuid():
        raise StartupError(
            f"{folder} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}); "
            "someone may be trying to intercept your credentials. Remove it or set "
            "ROLECACHE_SOCKET to a path in a private folder"
        )
    if info.st_mode & 0o077:
        raise StartupError(
            f"{folder} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run `chmod 700 {folder}` or choose another ROLECACHE_SOCKET"
        )


def hold_lock(path: Path, lines: list[str]) -> tuple[int | None, list[str]]:
    """Lock `path` (created 0600) for the daemon's lifetime and write `lines` (pid first) in
    it: (its descriptor or None when another process has it, the lines the last or current
    holder wrote, padded with "?")."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        locked = True
    except BlockingIOError:
        locked = False
    written = os.pread(fd, 4096, 0).decode(errors="replace").splitlines()
    written = [line.strip() or "?" for line in written] + ["?"] * (len(lines) + 1)
    if not locked:
        os.close(fd)
        return None, written
    os.ftruncate(fd, 0)
    os.pwrite(fd, "".join(f"{line}\n" for line in [str(os.getpid()), *lines]).encode(), 0)
    return fd, written


def take_lock(path: Path) -> int:
    """Hold an exclusive lock for the daemon's lifetime: one daemon per socket path."""
    fd, holder = hold_lock(path, [])
    if fd is None:
        raise StartupError(
            f"another rolecached (pid {holder[0]}) already serves this socket; "
            "stop it first or pass --socket for a second one"
        )
    return fd


def take_state_lock(state_file: Path, socket_file: Path) -> tuple[int, Path | None]:
    """Hold the lock of the endpoints state file for the daemon's lifetime: one daemon of a
    user writes it, whatever its socket (another XDG_RUNTIME_DIR from cron, `su -` or ssh
    names another one). The lock file says which pid and socket hold it; returned with it,
    the socket of the daemon that held it last (its port keeper is beside it)."""
    state_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, holder = hold_lock(state_file.with_name(state_file.name + ".lock"), [str(socket_file)])
    if fd is None:
        pid, where = holder[:2]
        raise StartupError(
            f"another rolecached of yours (pid {pid}) already serves the endpoints of "
            f"{state_file}, on the socket {where}; use that one (ROLECACHE_SOCKET={where}) "
            "or stop it first"
        )
    last = holder[1]
    return fd, Path(last) if last.startswith("/") else None


def keeper_path(socket_file: Path) -> Path:
    """Where the port keeper of the daemon on `socket_file` listens: beside it."""
    return socket_file.with_name(f"{socket_file.stem}.ports")


def answers(path: Path) -> bool:
    """True when something accepts connections on the Unix socket at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def bind_socket(path: Path) -> socket.socket:
    """Bind a listening socket at `path` with mode 0600, replacing only a stale socket file."""
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise StartupError(f"{path} exists and is not a socket; move it away")
        if answers(path):
            raise StartupError(f"another process already answers on {path}")
        path.unlink()  # left by a daemon that crashed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is born 0600: no window where others can connect
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


@dataclass
class Listener:
    """The API socket and how to tidy up after it."""

    sock: socket.socket
    path: Path
    owned: bool  # we bound it (and remove it at exit); systemd's stays
    lock_fd: int  # held open for the daemon's lifetime


def open_listener(path: Path) -> Listener:
    """Adopt systemd's socket or bind our own; take the lock either way."""
    inherited = systemd.activation_socket()
    if inherited is None:
        problem = socket_path_problem(str(path))
        if problem:
            raise StartupError(problem)
        # The default folder sits under ~/.local/state, which may not exist yet; under the
        # umask of 077 the missing parents are made 0700. The folder itself is checked below.
        os.makedirs(path.parent.parent, 0o700, exist_ok=True)
        secure_folder(path.parent)
    lock_fd = take_lock(path.parent / (path.name + ".lock"))
    if inherited is not None:
        return Listener(inherited, path, owned=False, lock_fd=lock_fd)
    try:
        return Listener(bind_socket(path), path, owned=True, lock_fd=lock_fd)
    except BaseException:
        os.close(lock_fd)
        raise
