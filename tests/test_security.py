"""The daemon's safety rules, proven on the real process: private folder and socket, no
takeover of another daemon's socket, hardened process, and no secret in any log line."""

import json
import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, Daemon, Moto, base_env, unique_role


def run_daemon_once(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run rolecached expecting it to refuse to start (it would otherwise serve forever)."""
    return subprocess.run(
        [str(BIN / "rolecached"), *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_folder_is_0700_and_socket_0600(daemon: Daemon) -> None:
    """The runtime folder is created 0700 and the socket 0600, both owned by the user."""
    folder = daemon.socket.parent.stat()
    sock = daemon.socket.stat()
    assert stat.S_IMODE(folder.st_mode) == 0o700
    assert stat.S_ISSOCK(sock.st_mode) and stat.S_IMODE(sock.st_mode) == 0o600
    assert folder.st_uid == sock.st_uid == os.getuid()


def test_symlinked_runtime_folder_is_refused(tmp_path: Path, moto: Moto) -> None:
    """A runtime folder that is a symlink (someone else's redirect) makes the daemon refuse."""
    env = base_env(tmp_path, moto.url)
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    link = Path(env["ROLECACHE_SOCKET"]).parent
    link.symlink_to(real)
    result = run_daemon_once(env)
    assert result.returncode == 1
    assert "is a symlink" in result.stderr
    assert not (real / "rolecache.sock").exists()


def test_foreign_runtime_folder_is_refused(tmp_path: Path, moto: Moto) -> None:
    """A runtime folder owned by another uid makes the daemon refuse, naming the owner."""
    if os.getuid() != 0:
        pytest.skip("needs root to create a folder owned by someone else")
    env = base_env(tmp_path, moto.url)
    folder = Path(env["ROLECACHE_SOCKET"]).parent
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    result = run_daemon_once(env)
    assert result.returncode == 1
    assert "belongs to uid 65534" in result.stderr


def test_runtime_folder_open_to_others_is_refused(tmp_path: Path, moto: Moto) -> None:
    """A runtime folder other users can enter is refused with the chmod that fixes it."""
    env = base_env(tmp_path, moto.url)
    folder = Path(env["ROLECACHE_SOCKET"]).parent
    folder.mkdir()
    folder.chmod(0o755)
    result = run_daemon_once(env)
    assert result.returncode == 1
    assert "chmod 700" in result.stderr


def test_second_daemon_is_refused(daemon: Daemon) -> None:
    """A second rolecached on the same socket path exits non-zero and leaves the first serving."""
    result = run_daemon_once(daemon.env)
    assert result.returncode == 1
    assert f"pid {daemon.process.pid}" in result.stderr
    assert daemon.client("status").returncode == 0


def test_live_socket_without_lock_is_not_taken_over(tmp_path: Path, moto: Moto) -> None:
    """A socket path where some other process answers is never replaced."""
    env = base_env(tmp_path, moto.url)
    path = Path(env["ROLECACHE_SOCKET"])
    path.parent.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(str(path))
        other.listen()
        result = run_daemon_once(env)
    assert result.returncode == 1
    assert "already answers" in result.stderr


def test_a_file_at_the_socket_path_is_refused(tmp_path: Path, moto: Moto) -> None:
    """A regular file where the socket should be is left alone and the daemon refuses."""
    env = base_env(tmp_path, moto.url)
    path = Path(env["ROLECACHE_SOCKET"])
    path.parent.mkdir(mode=0o700)
    path.write_text("not a socket")
    result = run_daemon_once(env)
    assert result.returncode == 1
    assert "not a socket" in result.stderr
    assert path.read_text() == "not a socket"


def test_process_has_core_dumps_off(daemon: Daemon) -> None:
    """The running daemon has a core-file limit of zero."""
    limits = Path(f"/proc/{daemon.process.pid}/limits").read_text()
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"]


def test_hardening_makes_the_process_undumpable() -> None:
    """harden_process() clears the dumpable flag (no ptrace by the user's other processes)
    and sets umask 077, checked from inside a fresh process."""
    script = (
        "import ctypes, os\n"
        "from rolecached.service import harden_process\n"
        "harden_process()\n"
        "libc = ctypes.CDLL(None)\n"
        "print(libc.prctl(3, 0, 0, 0, 0), oct(os.umask(0)))\n"  # 3 = PR_GET_DUMPABLE
    )
    result = subprocess.run(
        [str(BIN / "python"), "-c", script], capture_output=True, text=True, timeout=30
    )
    assert result.stdout.split() == ["0", "0o77"], result.stderr


def test_no_secret_in_logs_or_listings(daemon: Daemon, moto: Moto) -> None:
    """A full run at debug level, with errors, leaves no issued secret, token or full key id
    in the daemon's log or in list/status output."""
    role = unique_role()
    issued = []
    for command in ("process", "env"):
        result = daemon.client(command, "--role-arn", role, "--role-session-name", "leak-check")
        assert result.returncode == 0, result.stderr
        if command == "process":
            issued.append(json.loads(result.stdout))
    daemon.client("env", "--role-arn", role, "--role-session-name", "x")  # validation error
    daemon.client("list")
    daemon.client("list", "--json")
    daemon.client("status")
    daemon.client("forget", "--all")
    daemon.client("env", "--role-arn", role, "--role-session-name", "leak-check")  # re-assume
    assert daemon.stop() == 0
    log = daemon.log.read_text()
    assert "assumed " in log  # the log is real and says what happened
    secrets = ["source-secret-not-for-logs"]
    for doc in issued:
        secrets += [doc["AccessKeyId"], doc["SecretAccessKey"], doc["SessionToken"]]
    listings = [out for out in daemon.outputs if "role_arn" in out or "ROLE" in out]
    for secret in secrets:
        assert secret not in log
        assert all(secret not in out for out in listings)
