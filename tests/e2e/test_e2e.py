"""End to end: the real rolecached process, the real rolecache command, moto's real STS,
and the real consumers (bash, boto3, botocore's credential_process provider, the AWS CLI)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from tests.daemonkit import (
    BIN,
    Daemon,
    Moto,
    autostart_env,
    base_env,
    run_client,
    start_daemon,
    stop_autostarted_daemon,
    unique_role,
    wait_for_socket,
)
from tests.strict_sts import StsProxy

SESSION = "e2e-session"


def caller_arn(creds: dict[str, str], moto_url: str) -> str:
    """GetCallerIdentity at moto with the given credentials: proof that they work."""
    sts = boto3.client(
        "sts",
        region_name="us-east-1",
        endpoint_url=moto_url,
        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=creds["AWS_SESSION_TOKEN"],
    )
    return sts.get_caller_identity()["Arn"]


def assumed_arn(role_arn: str, session: str = SESSION) -> str:
    account, name = role_arn.split(":")[4], role_arn.split("/")[-1]
    return f"arn:aws:sts::{account}:assumed-role/{name}/{session}"


def evaluated_env(daemon: Daemon, role: str) -> dict[str, str]:
    """Run `eval "$(rolecache env ...)"` in bash and return the AWS_* variables it set."""
    script = (
        f'eval "$({BIN}/rolecache env --role-arn {role} --role-session-name {SESSION})" && '
        "env | grep ^AWS_"
    )
    result = subprocess.run(
        ["bash", "-c", script], env=daemon.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    daemon.outputs.append(result.stdout)
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def test_second_call_is_served_from_memory(daemon: Daemon, moto: Moto) -> None:
    """The first request assumes the role at STS; the second gets the same credentials from
    the daemon's memory, and moto sees exactly one AssumeRole."""
    role = unique_role()
    first = daemon.client("env", "--role-arn", role, "--role-session-name", SESSION)
    second = daemon.client("env", "--role-arn", role, "--role-session-name", SESSION)
    assert first.returncode == 0, first.stderr
    assert second.stdout == first.stdout
    assert moto.assume_role_calls(role) == 1


def test_env_output_works_in_bash_with_boto3(daemon: Daemon, moto: Moto) -> None:
    """Export lines evaluated by bash give variables that boto3 uses to call STS as the role."""
    role = unique_role()
    env = evaluated_env(daemon, role)
    assert env["AWS_CREDENTIAL_EXPIRATION"].endswith("Z")
    assert env["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    assert caller_arn(env, moto.url) == assumed_arn(role)


def test_credential_process_works_with_boto3(daemon: Daemon, moto: Moto, tmp_path: Path) -> None:
    """boto3, through a `credential_process` profile, accepts `rolecache process` output."""
    role = unique_role()
    config = tmp_path / "process-config"
    config.write_text(
        "[profile via-rolecache]\n"
        f"credential_process = {BIN}/rolecache process --role-arn {role} "
        f"--role-session-name {SESSION}\n"
    )
    script = (
        "import boto3, os\n"
        "s = boto3.Session(profile_name='via-rolecache', region_name='us-east-1')\n"
        "c = s.get_credentials().get_frozen_credentials()\n"
        "sts = s.client('sts', endpoint_url=os.environ['MOTO_URL'])\n"
        "print(sts.get_caller_identity()['Arn'])\n"
    )
    env = {
        k: v
        for k, v in daemon.env.items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    env.update(AWS_CONFIG_FILE=str(config), MOTO_URL=moto.url)
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == assumed_arn(role)


def test_credential_process_works_with_the_aws_cli(
    daemon: Daemon, moto: Moto, tmp_path: Path
) -> None:
    """The AWS CLI runs `rolecache process` as credential_process and calls STS as the role."""
    aws = BIN / "aws"
    if not aws.exists():
        pytest.skip("the AWS CLI is not installed in this environment")
    role = unique_role()
    config = tmp_path / "cli-config"
    config.write_text(
        "[profile via-rolecache]\nregion = us-east-1\n"
        f"credential_process = {BIN}/rolecache process --role-arn {role} "
        f"--role-session-name {SESSION}\n"
    )
    env = {
        k: v
        for k, v in daemon.env.items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    env["AWS_CONFIG_FILE"] = str(config)
    result = subprocess.run(
        [str(aws), "sts", "get-caller-identity", "--profile", "via-rolecache", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Arn"] == assumed_arn(role)


def test_process_output_shape(daemon: Daemon) -> None:
    """credential_process JSON has Version the number 1 and an Expiration at least 15 min out."""
    role = unique_role()
    result = daemon.client("process", "--role-arn", role, "--role-session-name", SESSION)
    doc = json.loads(result.stdout)
    assert doc["Version"] == 1
    assert set(doc) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    expires = time.mktime(time.strptime(doc["Expiration"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert expires - time.time() > 15 * 60


def test_exec_passes_credentials_and_exit_status(daemon: Daemon, moto: Moto) -> None:
    """exec runs the command with working credentials, without AWS_PROFILE, and exits with its
    status."""
    role = unique_role()
    env = dict(daemon.env, AWS_PROFILE="someone-else", AWS_SECURITY_TOKEN="stale")
    script = (
        "import os, json, sys; "
        "print(json.dumps({k: v for k, v in os.environ.items() if k.startswith('AWS_')})); "
        "sys.exit(7)"
    )
    result = daemon.client(
        "exec", "--role-arn", role, "--role-session-name", SESSION, "--",
        sys.executable, "-c", script, env=env,
    )  # fmt: skip
    assert result.returncode == 7, result.stderr
    seen = json.loads(result.stdout)
    assert "AWS_PROFILE" not in seen and "AWS_SECURITY_TOKEN" not in seen
    assert caller_arn(seen, moto.url) == assumed_arn(role)


def test_exec_of_a_missing_command_exits_127(daemon: Daemon) -> None:
    """exec of a command that does not exist fails like a shell would: status 127."""
    role = unique_role()
    result = daemon.client(
        "exec", "--role-arn", role, "--role-session-name", SESSION, "--", "no-such-command-xyz"
    )
    assert result.returncode == 127
    assert "no-such-command-xyz" in result.stderr


def test_invalid_input_exits_2_without_sts_call(daemon: Daemon, moto: Moto) -> None:
    """A bad session name is refused with exit 2 and a message naming the rule; STS is not
    called and the daemon keeps serving."""
    role = unique_role()
    bad = daemon.client("env", "--role-arn", role, "--role-session-name", "x")
    assert bad.returncode == 2
    assert "too short: 2 to 64 characters" in bad.stderr
    assert moto.assume_role_calls(role) == 0
    good = daemon.client("env", "--role-arn", role, "--role-session-name", SESSION)
    assert good.returncode == 0


def test_usage_errors_exit_2(daemon: Daemon) -> None:
    """Unknown options, a missing session name and a non-numeric duration are usage errors."""
    role = unique_role()
    for args in (
        ["env", "--role-arn", role, "--bogus"],
        ["env", "--role-arn", role],
        ["env", "--role-arn", role, "--role-session-name", SESSION, "--duration-seconds", "1h"],
        ["frobnicate"],
    ):
        result = daemon.client(*args)
        assert result.returncode == 2, args
        assert result.stderr.startswith("rolecache: "), args


def test_list_forget_and_status(daemon: Daemon) -> None:
    """list shows the cached session (no secret), forget drops it, status counts STS calls."""
    role = unique_role()
    creds = daemon.client("process", "--role-arn", role, "--role-session-name", SESSION)
    secret = json.loads(creds.stdout)["SecretAccessKey"]
    table = daemon.client("list")
    assert role in table.stdout and SESSION in table.stdout and secret not in table.stdout
    listed = json.loads(daemon.client("list", "--json").stdout)["sessions"]
    assert [s["role_arn"] for s in listed] == [role]
    status = dict(line.split(": ", 1) for line in daemon.client("status").stdout.splitlines())
    assert status["sts_calls"] == "1" and status["sessions"] == "1"
    forgot = daemon.client("forget", "--role-arn", role, "--role-session-name", SESSION)
    assert forgot.stdout.strip() == "forgot 1 session"
    assert json.loads(daemon.client("list", "--json").stdout)["sessions"] == []


def test_sigterm_exits_0_and_removes_the_socket(daemon: Daemon) -> None:
    """SIGTERM stops the daemon with status 0 and removes its socket file."""
    assert daemon.socket.exists()
    assert daemon.stop() == 0
    assert not daemon.socket.exists()


def test_sigterm_finishes_a_request_in_flight(tmp_path: Path, sts_proxy: StsProxy) -> None:
    """A request already being served when SIGTERM arrives still gets its answer."""
    sts_proxy.delay = 1.0  # a slow STS holds the request in flight
    env = base_env(tmp_path, sts_proxy.url)
    daemon = start_daemon(tmp_path, env)
    role = unique_role()
    client = subprocess.Popen(
        [str(BIN / "rolecache"), "env", "--role-arn", role, "--role-session-name", SESSION],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not sts_proxy.calls and time.monotonic() < deadline:
        time.sleep(0.01)  # wait for the call to reach STS: then it is in flight
    daemon.process.send_signal(signal.SIGTERM)
    out, err = client.communicate(timeout=30)
    assert client.returncode == 0, err
    assert "AWS_SESSION_TOKEN" in out
    assert daemon.process.wait(timeout=15) == 0


def test_unreachable_daemon_exit_code(tmp_path: Path, moto: Moto) -> None:
    """With no daemon and autostart off, the client exits 3 and says how to start one."""
    env = base_env(tmp_path, moto.url)
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    result = run_client(env, "env", "--role-arn", unique_role(), "--role-session-name", SESSION)
    assert result.returncode == 3
    assert "rolecached" in result.stderr and "ROLECACHE_NO_AUTOSTART" in result.stderr


def test_autostart_with_racing_clients_starts_one_daemon(tmp_path: Path, moto: Moto) -> None:
    """Two clients finding no daemon start it in the background; both get credentials from
    the one daemon that wins the lock, which logs to the user's state folder."""
    env = autostart_env(tmp_path, moto.url)
    role = unique_role()
    command = [str(BIN / "rolecache"), "env", "--role-arn", role, "--role-session-name", SESSION]
    try:
        clients = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        results = [c.communicate(timeout=60) for c in clients]
        assert [c.returncode for c in clients] == [0, 0], results
        assert results[0][0] == results[1][0]  # same credentials, hence one daemon's cache
        assert moto.assume_role_calls(role) == 1
        log = Path(env["XDG_STATE_HOME"]) / "rolecache" / "rolecached.log"
        assert "ready on" in log.read_text()
        assert oct(log.stat().st_mode & 0o777) == "0o600"
    finally:
        stop_autostarted_daemon(env)


def test_a_daemon_that_cannot_start_is_quoted_by_the_client(tmp_path: Path, moto: Moto) -> None:
    """An autostarted daemon that exits at once (a broken config.toml) has its own reason
    quoted by the client, which exits 3; an earlier run's lines in the log are not quoted."""
    env = autostart_env(tmp_path, moto.url)
    log = Path(env["XDG_STATE_HOME"]) / "rolecache" / "rolecached.log"
    log.parent.mkdir(parents=True)
    log.write_text("ERROR rolecached.service: an older run's reason\n")
    config = Path(env["XDG_CONFIG_HOME"]) / "rolecache" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[daemon\n")
    result = run_client(env, "env", "--role-arn", unique_role(), "--role-session-name", SESSION)
    assert result.returncode == 3
    assert f"rolecached did not start: config file {config} is not valid TOML" in result.stderr
    assert "older run" not in result.stderr and str(log) in result.stderr


def test_autostart_replaces_a_stale_socket(tmp_path: Path, moto: Moto) -> None:
    """A socket file left by a crashed daemon (connection refused) is replaced on autostart."""
    import socket

    env = autostart_env(tmp_path, moto.url)
    path = Path(env["ROLECACHE_SOCKET"])
    path.parent.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: ECONNREFUSED
    try:
        result = run_client(env, "env", "--role-arn", unique_role(), "--role-session-name", SESSION)
        assert result.returncode == 0, result.stderr
    finally:
        stop_autostarted_daemon(env)


def test_sandbox_prints_working_labelled_credentials(tmp_path: Path) -> None:
    """ROLECACHE_SANDBOX=1 autostarts the daemon against its embedded fake STS, on its own
    socket; the output works and is labelled as sandbox output."""
    env = base_env(tmp_path, "http://127.0.0.1:9")  # a real STS endpoint must not be used
    del env["ROLECACHE_SOCKET"]
    del env["AWS_DEFAULT_REGION"]  # a newcomer may have no AWS set-up at all
    env["ROLECACHE_SANDBOX"] = "1"
    role = unique_role()
    try:
        result = run_client(env, "env", "--role-arn", role, "--role-session-name", SESSION)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("# rolecache SANDBOX")
        assert "SANDBOX" in result.stderr
        sock = Path(env["XDG_RUNTIME_DIR"]) / "rolecache" / "sandbox.sock"
        wait_for_socket(sock, timeout=1)
        creds = subprocess.run(
            ["bash", "-c", "eval \"$(cat)\"; env | grep ^AWS_"],
            input=result.stdout, capture_output=True, text=True, timeout=10,
        ).stdout  # fmt: skip
        assert "AWS_SESSION_TOKEN=" in creds
    finally:
        stop_autostarted_daemon(env)


# The daemon as started where moto is not installed (pipx or uv tool without the extra).
NO_MOTO_DAEMON = """
import sys
sys.modules["moto"] = None  # as if not installed: importing it raises ImportError
from rolecached.main import main
sys.exit(main())
"""


def test_sandbox_without_moto_says_how_to_install_it(tmp_path: Path) -> None:
    """`rolecached --sandbox` where moto is missing exits with a message that gives the
    install commands that work where pip --user does not (PEP 668): pipx and uv tool."""
    env = base_env(tmp_path, "http://127.0.0.1:9")
    result = subprocess.run(
        [sys.executable, "-c", NO_MOTO_DAEMON, "--sandbox"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "pipx install --force '.[sandbox]'" in result.stderr, result.stderr
    assert "uv tool install --force '.[sandbox]'" in result.stderr, result.stderr


def test_status_without_a_daemon_says_not_running_and_starts_none(
    tmp_path: Path, moto: Moto
) -> None:
    """`rolecache status` with no daemon answers "not running" with exit 3 and starts
    nothing, where every other command would autostart one."""
    env = base_env(tmp_path, moto.url)
    result = run_client(env, "status")
    assert result.returncode == 3
    assert "rolecached is not running" in result.stderr
    assert not Path(env["ROLECACHE_SOCKET"]).exists()
    assert not (Path(env["XDG_STATE_HOME"]) / "rolecache" / "rolecached.log").exists()
