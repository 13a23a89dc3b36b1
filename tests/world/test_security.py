"""The daemon's safety rules, proven on the real process: private folder and socket, no
takeover of another daemon's socket, hardened process, and no secret in any log line."""

import json
import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from tests.daemonkit import BIN, Daemon, Moto, base_env, start_daemon, unique_role
from tests.strict_sts import StsProxy, sts_error_xml


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
        "from rolecached.host.process import harden_process\n"
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
    listings = [daemon.client(*command).stdout for command in (["list"], ["list", "--json"])]
    listings.append(daemon.client("status").stdout)
    daemon.client("forget", "--all")
    daemon.client("env", "--role-arn", role, "--role-session-name", "leak-check")  # re-assume
    assert daemon.stop() == 0
    log = daemon.log.read_text()
    assert "assumed " in log  # the log is real and says what happened
    secrets = ["source-secret-not-for-logs"]
    for doc in issued:
        secrets += [doc["AccessKeyId"], doc["SecretAccessKey"], doc["SessionToken"]]
    assert all(listings) and any("leak-check" in out for out in listings)  # real listings
    for secret in secrets:
        assert secret not in log
        assert all(secret not in out for out in listings)


def test_no_secret_anywhere_after_every_path(tmp_path: Path, sts_proxy: StsProxy) -> None:
    """Every command and error path at debug level (credentials in all formats, the drop-in,
    exec, a container endpoint and its token, STS refusing and throttling, bad input) leaves
    no issued secret, session token, full key id or endpoint token in the daemon's log, in
    any listing, or in any file under the user's home and state folders."""
    sts_proxy.rules.append(
        lambda form: (
            (403, sts_error_xml("AccessDenied", "not for you"))
            if "denied" in form.get("RoleArn", "")
            else (400, sts_error_xml("Throttling", "Rate exceeded"))
            if "throttled" in form.get("RoleArn", "")
            else None
        )
    )
    env = base_env(tmp_path, sts_proxy.url)
    config = tmp_path / "rolecached.toml"
    config.write_text("[endpoints]\nport = 0\n")
    daemon = start_daemon(tmp_path, env, "--config", str(config))
    role = unique_role("leak")
    sel = ["--role-arn", role, "--role-session-name", "leak"]
    issued = [json.loads(daemon.client("process", *sel).stdout)]
    for args in (
        ["env", *sel],
        ["exec", *sel, "--", "true"],
        ["sts", "assume-role", *sel, "--output", "text"],
        ["sts", "assume-role", *sel, "--query", "Credentials"],
        ["env", "--role-arn", unique_role("denied"), "--role-session-name", "leak"],
        ["env", "--role-arn", unique_role("throttled"), "--role-session-name", "leak"],
        ["env", *sel, "--duration-seconds", "60"],
        ["endpoint", "add", "leaky", *sel],
    ):
        daemon.client(*args)
    listings = [
        daemon.client(*args).stdout
        for args in (["endpoint", "list"], ["list"], ["list", "--json"], ["status"])
    ]
    assert "leaky" in listings[0] and role in listings[1]
    handoff = daemon.client("endpoint", "env", "leaky", "--env-file").stdout
    variables = dict(line.split("=", 1) for line in handoff.splitlines() if "=" in line)
    token_file = Path(variables["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"])
    token = token_file.read_text()
    import urllib.request

    fetch = urllib.request.Request(
        variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"], headers={"Authorization": token}
    )
    with urllib.request.urlopen(fetch, timeout=10) as reply:
        served = json.loads(reply.read())
    issued.append({**served, "SessionToken": served["Token"]})
    daemon.client("forget", "--all")
    assert daemon.stop() == 0

    secrets = ["source-secret-not-for-logs", token]
    for doc in issued:
        secrets += [doc["AccessKeyId"], doc["SecretAccessKey"], doc["SessionToken"]]
    log = daemon.log.read_text()
    assert "AccessDenied" in log and "Throttling" in log and "served " in log  # paths ran
    files = [
        p
        for root in (Path(env["HOME"]), Path(env["XDG_RUNTIME_DIR"]))
        for p in root.rglob("*")
        if p.is_file() and p != token_file
    ]
    for secret in secrets:
        assert secret not in log, secret[:4]
        assert all(secret not in out for out in listings), secret[:4]
        assert all(secret.encode() not in p.read_bytes() for p in files), secret[:4]


@pytest.mark.parametrize(
    ("field", "payload"),
    [
        ("SessionToken", "IQoJ'; Remove-Item -Recurse -Force ~ #"),
        ("SessionToken", "IQoJ\u2019; Remove-Item -Recurse -Force ~ #"),
        ("SecretAccessKey", "wJalr$(touch PWNED)"),
        ("AccessKeyId", "ASIA`touch PWNED`"),
    ],
)
def test_credentials_not_shaped_like_stss_never_reach_output(
    tmp_path: Path, sts_proxy: StsProxy, field: str, payload: str
) -> None:
    """An AssumeRole answer whose credential holds shell or PowerShell code is an STS
    failure: every output format gets an error, the code appears in no output or log line,
    and evaluating what was printed runs nothing."""
    from xml.sax.saxutils import escape

    values = {
        "AccessKeyId": "ASIAHOSTILE000000001",
        "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "SessionToken": "IQoJb3JpZ2luX2VjEOr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+/=",
        field: payload,
    }
    answer = (
        '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
        "<Credentials>"
        + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in values.items())
        + "<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials><AssumedRoleUser>"
        "<AssumedRoleId>AROAHOSTILE:s1</AssumedRoleId>"
        "<Arn>arn:aws:sts::123456789012:assumed-role/hostile/s1</Arn></AssumedRoleUser>"
        "</AssumeRoleResult><ResponseMetadata><RequestId>h</RequestId></ResponseMetadata>"
        "</AssumeRoleResponse>"
    )
    sts_proxy.rules.append(
        lambda form: (200, answer) if form.get("Action") == "AssumeRole" else None
    )
    daemon = start_daemon(tmp_path, base_env(tmp_path, sts_proxy.url))
    sel = ["--role-arn", unique_role("hostile"), "--role-session-name", "s1"]
    try:
        results = [
            daemon.client(*args)
            for args in (
                ["env", *sel],
                ["env", *sel, "--shell", "powershell"],
                ["env", *sel, "--shell", "fish"],
                ["process", *sel],
                ["exec", *sel, "--", "env"],
                ["sts", "assume-role", *sel],
            )
        ]
    finally:
        daemon.stop()
    assert "AssumeRole" in sts_proxy.calls  # the hostile answer really was given
    for result in results:
        assert result.returncode != 0, result.stdout
        assert "MalformedResponse" in result.stderr
        assert payload not in result.stdout + result.stderr
        assert values["AccessKeyId"] not in result.stdout
    subprocess.run(["bash", "-c", results[0].stdout], cwd=tmp_path, timeout=30)
    assert not (tmp_path / "PWNED").exists()
    assert payload not in daemon.log.read_text()
