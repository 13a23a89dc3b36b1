"""Hostile neighbours: another local user (uid 65534 here, via setpriv) must get nothing from
the client, deny it nothing and run nothing in its name. Each attack is really carried out
as that user against the real client and daemon."""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.daemonkit import (
    BIN,
    Moto,
    autostart_env,
    base_env,
    run_client,
    stop_autostarted_daemon,
    unique_role,
)

NOBODY = 65534
CODE = "123456"

pytestmark = pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run the attacker as another uid",
)


def as_nobody(*command: str) -> list[str]:
    """`command` run as uid/gid 65534 with no supplementary groups."""
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]


@pytest.fixture
def shared() -> Iterator[Path]:
    """A world-writable sticky folder like /tmp, that both users can reach (pytest's own
    tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="rc-shared-"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def short_home() -> Iterator[Path]:
    """A private (0700) home folder with a short path."""
    folder = Path(tempfile.mkdtemp(prefix="rc-home-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# The attacker's server: listens at argv[1] and answers any request with shell code that
# would create argv[2] if evaluated. On a line on stdin it takes what is still queued and
# reports the connections and bytes it received, and whether the MFA code was among them.
ATTACKER = r"""
import json, select, socket, sys
path, marker, code = sys.argv[1], sys.argv[2], sys.argv[3].encode()
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
srv.listen(16)
body = f"export X=$(touch {marker}) Y=`touch {marker}`\n".encode()
answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
seen = {"connections": 0, "bytes": 0, "code": False}
def serve(conn):
    seen["connections"] += 1
    conn.settimeout(10)  # a guard against a hung test, not a measurement
    data = b""
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, rest = data.partition(b"\r\n\r\n")
            if not sep:
                continue
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) >= length:
                conn.sendall(answer + body)
                break
    except OSError:
        pass
    seen["bytes"] += len(data)
    seen["code"] = seen["code"] or code in data
    conn.close()
print("ready", flush=True)
while True:
    ready, _, _ = select.select([srv, sys.stdin], [], [])
    if srv in ready:
        serve(srv.accept()[0])
    elif sys.stdin in ready:
        srv.setblocking(False)
        while True:
            try:
                conn = srv.accept()[0]
            except BlockingIOError:
                break
            conn.setblocking(True)
            serve(conn)
        print(json.dumps(seen), flush=True)
        break
"""


@dataclass
class Attacker:
    """The attacker's listening server, running as uid 65534."""

    process: subprocess.Popen
    marker: Path

    def report(self) -> dict[str, object]:
        """Stop the server; return what it received (connections, bytes, the MFA code)."""
        out, err = self.process.communicate("stop\n", timeout=30)
        assert self.process.returncode == 0, err
        return json.loads(out.splitlines()[-1])


def start_attacker(socket_path: Path, marker: Path) -> Attacker:
    """Run the attacker's server as uid 65534 at `socket_path`; return once it listens."""
    process = subprocess.Popen(
        as_nobody(sys.executable, "-I", "-c", ATTACKER, str(socket_path), str(marker), CODE),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line == "ready\n", process.stderr.read() if process.stderr else line
    return Attacker(process, marker)


def nothing_ran(stdout: str, marker: Path, cwd: Path) -> bool:
    """Evaluate the client's output as `eval "$(rolecache env ...)"` would; True when that
    created no marker."""
    subprocess.run(["bash", "-c", stdout], cwd=cwd, capture_output=True, timeout=30)
    return not marker.exists()


@pytest.mark.parametrize("kind", ["private-folder", "open-folder", "symlink"])
def test_socket_folder_made_by_another_user_is_refused(
    kind: str, tmp_path: Path, moto: Moto, shared: Path
) -> None:
    """When another user made the socket folder first (here in a shared XDG_RUNTIME_DIR) and
    listens there, the client sends nothing (no MFA code), runs nothing it answers, starts
    no daemon, exits 3 and names the folder and its owner."""
    env = autostart_env(tmp_path, moto.url)
    del env["ROLECACHE_SOCKET"]
    env["XDG_RUNTIME_DIR"] = str(shared)
    folder = shared / "rolecache"
    theirs = shared / "theirs" if kind == "symlink" else folder
    mode = "777" if kind == "open-folder" else "700"
    subprocess.run(as_nobody("mkdir", "-m", mode, str(theirs)), check=True)
    if kind == "symlink":
        subprocess.run(as_nobody("ln", "-s", str(theirs), str(folder)), check=True)
    attacker = start_attacker(theirs / "rolecache.sock", shared / "pwned")
    result = run_client(
        env, "env", "--role-arn", unique_role(), "--role-session-name", "s1",
        "--token-code", CODE,
    )  # fmt: skip
    seen = attacker.report()
    assert seen == {"connections": 0, "bytes": 0, "code": False}
    assert result.returncode == 3, result.stderr
    assert f"the socket folder {folder} " in result.stderr
    if kind == "symlink":
        assert "is a symlink" in result.stderr
    else:
        assert f"belongs to uid {NOBODY}, not to you (uid 0)" in result.stderr
    assert "nothing was sent" in result.stderr
    assert nothing_ran(result.stdout, attacker.marker, tmp_path)
    assert not (Path(env["XDG_STATE_HOME"]) / "rolecache" / "rolecached.log").exists()


def test_server_of_another_user_in_our_own_folder_is_refused(
    tmp_path: Path, moto: Moto, shared: Path
) -> None:
    """A socket in our own private folder whose server runs as another user (bound by
    uid 65534 elsewhere and moved in) is refused once connected, before a byte is sent."""
    env = base_env(tmp_path, moto.url)
    ours = Path(env["ROLECACHE_SOCKET"])
    ours.parent.mkdir(mode=0o700)
    theirs = shared / "theirs.sock"
    attacker = start_attacker(theirs, shared / "pwned")
    os.rename(theirs, ours)  # the bound socket keeps working under its new name
    assert stat.S_IMODE(ours.parent.stat().st_mode) == 0o700 and ours.parent.stat().st_uid == 0
    result = run_client(
        env, "env", "--role-arn", unique_role(), "--role-session-name", "s1",
        "--token-code", CODE,
    )  # fmt: skip
    seen = attacker.report()
    assert seen == {"connections": 1, "bytes": 0, "code": False}
    assert result.returncode == 3, result.stderr
    assert f"the process answering on {ours}" in result.stderr
    assert f"runs as uid {NOBODY}, not as you (uid 0) or root" in result.stderr
    assert nothing_ran(result.stdout, attacker.marker, tmp_path)


def test_no_socket_folder_in_a_shared_tmp(
    tmp_path: Path, moto: Moto, shared: Path, short_home: Path
) -> None:
    """Without XDG_RUNTIME_DIR the socket is in a 0700 folder under the user's home, so a
    neighbour listening at the old /tmp location (TMPDIR/rolecache-UID) hears nothing, and
    the autostarted daemon serves from the home folder, every folder made 0700."""
    env = autostart_env(tmp_path, moto.url)
    for name in ("ROLECACHE_SOCKET", "XDG_RUNTIME_DIR", "XDG_STATE_HOME"):
        del env[name]
    # A short home: under pytest's deep tmp_path the socket path would pass 107 bytes.
    env["HOME"] = str(short_home)
    env["TMPDIR"] = str(shared)
    old = shared / f"rolecache-{os.getuid()}"
    subprocess.run(as_nobody("mkdir", "-m", "777", str(old)), check=True)
    attacker = start_attacker(old / "rolecache.sock", shared / "pwned")
    try:
        result = run_client(
            env, "env", "--role-arn", unique_role(), "--role-session-name", "s1",
            "--token-code", CODE,
        )  # fmt: skip
        assert attacker.report() == {"connections": 0, "bytes": 0, "code": False}
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("export AWS_ACCESS_KEY_ID=")
        home = Path(env["HOME"])
        run = home / ".local" / "state" / "rolecache" / "run"
        assert stat.S_ISSOCK((run / "rolecache.sock").stat().st_mode)
        for folder in (home / ".local", run.parent.parent, run.parent, run):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    finally:
        stop_autostarted_daemon(env)


def test_too_long_socket_path_is_named_by_client_and_daemon(tmp_path: Path, moto: Moto) -> None:
    """A runtime folder so deep that the socket path exceeds a Unix socket's 107 bytes gets
    a clear message from both the client (exit 3) and the daemon (exit 1)."""
    env = base_env(tmp_path, moto.url)
    del env["ROLECACHE_SOCKET"]
    deep = tmp_path / ("d" * 100)
    deep.mkdir(mode=0o700)
    env["XDG_RUNTIME_DIR"] = str(deep)
    path = deep / "rolecache" / "rolecache.sock"
    client = run_client(env, "env", "--role-arn", unique_role(), "--role-session-name", "s1")
    assert client.returncode == 3
    assert f"the socket path {path} is" in client.stderr
    assert "XDG_RUNTIME_DIR" in client.stderr and "ROLECACHE_SOCKET" in client.stderr
    daemon = subprocess.run(
        [str(BIN / "rolecached")], env=env, capture_output=True, text=True, timeout=30
    )
    assert daemon.returncode == 1
    assert f"the socket path {path} is" in daemon.stderr
    assert "ROLECACHE_SOCKET" in daemon.stderr


@pytest.mark.parametrize("via", ["working-folder", "PYTHONPATH"])
def test_autostart_runs_the_installed_daemon_not_a_planted_one(
    via: str, tmp_path: Path, moto: Moto, shared: Path
) -> None:
    """A `rolecached` package another user planted in the folder the client runs in (or on
    PYTHONPATH) is not what autostart runs: its code never runs and the real daemon serves."""
    planted = shared / "project"
    marker = shared / "planted-ran"
    code = f"open({json.dumps(str(marker))}, 'w').close()"
    main = planted / "rolecached" / "__main__.py"
    script = f"mkdir -p {planted}/rolecached && printf '%s\\n' {json.dumps(code)} > {main}"
    subprocess.run(as_nobody("sh", "-c", script), check=True)
    (planted / "rolecached" / "__init__.py").touch()  # a package in every Python's eyes
    env = autostart_env(tmp_path, moto.url)
    if via == "PYTHONPATH":
        env["PYTHONPATH"] = str(planted)
    try:
        result = subprocess.run(
            [str(BIN / "rolecache"), "env", "--role-arn", unique_role(),
             "--role-session-name", "s1"],
            env=env, cwd=planted if via == "working-folder" else tmp_path,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert not marker.exists()
        assert result.returncode == 0, result.stderr
        assert "export AWS_SESSION_TOKEN=" in result.stdout
    finally:
        stop_autostarted_daemon(env)


def test_autostarted_daemon_gets_a_clean_environment(tmp_path: Path, moto: Moto) -> None:
    """The autostarted daemon inherits where the user's AWS files are, but not the starting
    shell's keys, session token, profile or MFA code; it runs in / with -I."""
    env = autostart_env(tmp_path, moto.url)
    env.update(
        AWS_ACCESS_KEY_ID="AKIASHELLKEY00000001",
        AWS_SECRET_ACCESS_KEY="shell-secret",
        AWS_SESSION_TOKEN="shell-session-token",
        AWS_PROFILE="no-such-profile",  # would break the daemon's default chain if inherited
        ROLECACHE_TOKEN_CODE=CODE,
        PYTHONPATH="/nonexistent",
        LC_ALL="C.UTF-8",
    )
    try:
        result = run_client(env, "env", "--role-arn", unique_role(), "--role-session-name", "s1")
        assert result.returncode == 0, result.stderr
        status = run_client(env, "status").stdout
        pid = next(line[5:] for line in status.splitlines() if line.startswith("pid: "))
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        inherited = dict(item.split("=", 1) for item in raw.decode().split("\0") if item)
        for name in (
            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
            "ROLECACHE_TOKEN_CODE", "PYTHONPATH",
        ):  # fmt: skip
            assert name not in inherited, name
        for name in (
            "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL_STS",
            "AWS_DEFAULT_REGION", "HOME", "PATH", "XDG_RUNTIME_DIR", "LC_ALL",
        ):  # fmt: skip
            assert inherited.get(name) == env[name], name
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        assert "-I" in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    finally:
        stop_autostarted_daemon(env)
