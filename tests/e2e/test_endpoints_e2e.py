"""Container endpoints end to end: the real rolecached process, the real `rolecache endpoint`
and `exec --endpoint` commands, moto's STS, and real consumers (boto3 in a fresh process with
only environment variables, the AWS CLI v1, bash)."""

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemonkit import BIN, Daemon, Moto, base_env, run_client, unique_role, wait_for_socket
from tests.e2ekit import CONFIG, CONFIG_ROLE, PROBE, add, loaded_modules, start_configured
from tests.kit import assumed_arn

ROOT = Path(__file__).resolve().parent.parent.parent


def info(d: Daemon, name: str) -> dict:
    """The binding as `rolecache endpoint list --json` shows it."""
    listed = json.loads(d.client("endpoint", "list", "--json").stdout)["endpoints"]
    return next(e for e in listed if e["name"] == name)


def run_probe(d: Daemon, *prefix: str) -> dict:
    """Run PROBE under `prefix` (e.g. rolecache exec --endpoint NAME --); its report."""
    result = subprocess.run(
        [*prefix, sys.executable, "-c", PROBE],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_endpoint_lifecycle_from_the_client(edaemon: Daemon) -> None:
    """add, a refused duplicate, --replace, a refused short session, list, remove: each with
    its exit status and message, and no token in any output."""
    role = unique_role()
    first = add(edaemon, "dev", role)
    assert first.returncode == 0, first.stderr
    assert "/v1/credentials/dev" in first.stdout
    again = add(edaemon, "dev", role)
    assert again.returncode == 2 and "--replace" in again.stderr
    assert add(edaemon, "dev", role, "--replace").returncode == 0
    short = add(edaemon, "short", role, "--duration-seconds", "900")
    assert short.returncode == 2 and "at least 3600 s" in short.stderr
    listing = edaemon.client("endpoint", "list")
    assert listing.returncode == 0
    assert "dev" in listing.stdout and "cfg" in listing.stdout and "config" in listing.stdout
    token = Path(info(edaemon, "dev")["token_file"]).read_text()
    assert all(token not in out for out in edaemon.outputs)
    assert edaemon.client("endpoint", "remove", "dev").returncode == 0
    gone = edaemon.client("endpoint", "remove", "dev")
    assert gone.returncode == 2 and "no endpoint is called 'dev'" in gone.stderr
    assert edaemon.client("endpoint", "env", "nope").returncode == 2


def test_exec_endpoint_container_with_boto3(edaemon: Daemon) -> None:
    """A program run by `exec --endpoint` gets the assumed role through botocore's container
    provider, with the static keys and profile of the caller's environment removed."""
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    edaemon.env["AWS_PROFILE"] = "someone-else"  # would win over the endpoint if kept
    report = run_probe(edaemon, str(BIN / "rolecache"), "exec", "--endpoint", "dev", "--")
    assert report["arn"] == assumed_arn(role, "dev")
    assert report["method"] == "container-role"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        assert name not in report["env"]
    assert "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE" in report["env"]


def test_endpoint_hand_outs_show_in_rolecache_list(edaemon: Daemon) -> None:
    """A botocore fetch from the container endpoint and one from IMDS each count a hit in
    `rolecache list --json`, whose last requester names the listener, the binding and the
    SDK's User-Agent, and each writes an audit line in the daemon's log."""
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    prefix = [str(BIN / "rolecache"), "exec", "--endpoint", "dev"]
    requesters = []
    for extra in ([], ["--imds"]):
        run_probe(edaemon, *prefix, *extra, "--")
        sessions = json.loads(edaemon.client("list", "--json").stdout)["sessions"]
        entry = next(s for s in sessions if s["role_arn"] == role)
        requesters.append((entry["hits"], entry["last_requester"]))
    (hits_ecs, ecs_by), (hits_imds, imds_by) = requesters
    assert hits_ecs >= 1 and hits_imds > hits_ecs
    assert ecs_by.startswith(f"127.0.0.1 uid {os.getuid()} via container endpoint dev (")
    assert "(python-urllib3/" in ecs_by  # botocore's container fetcher sends urllib3's
    assert imds_by.startswith(f"127.0.0.1 uid {os.getuid()} via IMDS dev (Boto3/")
    log = edaemon.log.read_text()
    assert "via container endpoint dev" in log and "via IMDS dev" in log


def test_exec_endpoint_imds_with_boto3(edaemon: Daemon) -> None:
    """The same over the IMDSv2 look-alike: botocore's instance-metadata provider."""
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    report = run_probe(edaemon, str(BIN / "rolecache"), "exec", "--endpoint", "dev", "--imds", "--")
    assert report["arn"] == assumed_arn(role, "dev")
    assert report["method"] == "iam-role"
    assert "AWS_EC2_METADATA_SERVICE_ENDPOINT" in report["env"]


def test_config_file_binding_serves(edaemon: Daemon) -> None:
    """A binding from [endpoints.cfg] in config.toml serves its role from start-up."""
    report = run_probe(edaemon, str(BIN / "rolecache"), "exec", "--endpoint", "cfg", "--")
    assert report["arn"] == assumed_arn(CONFIG_ROLE, "cfg-session")


def test_a_binding_gone_bad_is_skipped_and_the_rest_serves(tmp_path: Path, moto: Moto) -> None:
    """[endpoints.old] names a profile since renamed: the daemon still starts and serves
    [endpoints.cfg]; the log, `rolecache status` and `endpoint list` say why old is skipped."""
    config = tmp_path / "config.toml"
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "aws-config").write_text(f"[profile renamed]\nrole_arn = {CONFIG_ROLE}\n")
    d = start_configured(tmp_path, moto, CONFIG + '\n[endpoints.old]\nprofile = "renamed-since"\n')
    try:
        report = run_probe(d, str(BIN / "rolecache"), "exec", "--endpoint", "cfg", "--")
        assert report["arn"] == assumed_arn(CONFIG_ROLE, "cfg-session")
        why = "profile 'renamed-since' is not in the AWS config files"
        errors = [line for line in d.log.read_text().splitlines() if " ERROR " in f" {line}"]
        assert len(errors) == 1 and why in errors[0] and "'old'" in errors[0], errors
        status = d.client("status")
        assert status.returncode == 0
        assert f"config_errors: {config}: endpoint 'old': {why}" in status.stdout
        listing = d.client("endpoint", "list")
        assert f"skipped: {config}: endpoint 'old': {why}" in listing.stdout
        assert [
            e["name"]
            for e in json.loads(d.client("endpoint", "list", "--json").stdout)["endpoints"]
        ] == ["cfg"]
    finally:
        d.stop()


@pytest.mark.parametrize("imds", [False, True])
def test_aws_cli_through_endpoint_env(edaemon: Daemon, imds: bool) -> None:
    """`eval "$(rolecache endpoint env NAME)"` in bash, then the AWS CLI v1 calls STS as the
    assumed role (container endpoint, or IMDS with --imds)."""
    aws = BIN / "aws"
    if not aws.exists():
        pytest.skip("the AWS CLI is not installed in this environment")
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    flag = " --imds" if imds else ""
    script = (
        f'eval "$({BIN}/rolecache endpoint env dev{flag})" && '
        f"{aws} sts get-caller-identity --output json"
    )
    result = subprocess.run(
        ["bash", "-c", script], env=edaemon.env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Arn"] == assumed_arn(role, "dev")


def test_env_file_and_token_file(edaemon: Daemon) -> None:
    """--env-file prints Docker KEY=VALUE lines; the token file they name is 0600 in a 0700
    folder, without a trailing newline, and the endpoint accepts it and the container token
    they carry."""
    import urllib.request

    assert add(edaemon, "dev", unique_role()).returncode == 0
    out = edaemon.client("endpoint", "env", "dev", "--env-file").stdout
    variables = dict(line.split("=", 1) for line in out.splitlines())
    assert set(variables) == {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_SHARED_CREDENTIALS_FILE",
    }
    assert variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.1:")
    token_file = Path(variables["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"])
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    token = token_file.read_text()
    assert token and not token.endswith("\n")
    assert variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"] != token
    for presented in (token, variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"]):
        request = urllib.request.Request(
            variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"], headers={"Authorization": presented}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200 and "AccessKeyId" in json.load(reply)
    imds = edaemon.client("endpoint", "env", "dev", "--imds", "--env-file").stdout
    assert imds.splitlines()[0].startswith("AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:")


def test_rotate_from_the_client(edaemon: Daemon) -> None:
    """`rolecache endpoint rotate` writes a new token to the same file."""
    assert add(edaemon, "dev", unique_role()).returncode == 0
    path = Path(info(edaemon, "dev")["token_file"])
    before = path.read_text()
    assert edaemon.client("endpoint", "rotate", "dev").returncode == 0
    assert path.read_text() != before


def _listening(pid: int) -> list[str]:
    """The local addresses of every listening TCP socket the process holds, from /proc."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except PermissionError:
        pytest.skip("the daemon is not dumpable: only root may list its sockets in /proc/PID/fd")
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    addresses = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        with open(f"/proc/{pid}/net/{table}") as f:
            rows = f.read().splitlines()[1:]
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(local.split(":")[0])
            # /proc prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            addresses.append(socket.inet_ntop(family, raw))
    return addresses


def test_daemon_listens_on_loopback_only(edaemon: Daemon) -> None:
    """Every TCP socket the daemon listens on (container and IMDS listeners) is on loopback,
    127.0.0.1 and ::1 (where localhost may resolve) on the same port, but one: the container
    listener on the docker network's gateway, 169.254.170.2."""
    assert add(edaemon, "dev", unique_role()).returncode == 0
    addresses = _listening(edaemon.process.pid)
    assert len(addresses) >= 7  # the container listener (three times), two IMDS listeners (twice)
    assert sorted(set(addresses)) == ["127.0.0.1", "169.254.170.2", "::1"]
    assert addresses.count("169.254.170.2") == 1
    assert addresses.count("::1") == addresses.count("127.0.0.1")


# A network namespace whose loopback has no IPv6 (a host booted with IPv6 off), then the
# command given: the daemon in it, reachable through its Unix socket only.
NO_IPV6 = 'ip link set lo up && sysctl -q -w net.ipv6.conf.lo.disable_ipv6=1 && exec "$0" "$@"'


@pytest.mark.skipif(
    os.getuid() != 0 or not all(shutil.which(t) for t in ("unshare", "ip", "sysctl")),
    reason="a network namespace without IPv6 needs root, unshare, ip and sysctl",
)
def test_a_host_without_ipv6_serves_on_127_0_0_1(tmp_path: Path) -> None:
    """Where the loopback has no ::1, the daemon still starts and serves its bindings on
    127.0.0.1 (and the docker gateway): the [::1] listener is left out, since nobody can
    listen there either."""
    config = tmp_path / "config.toml"
    config.write_text(
        "[endpoints]\nport = 0\n\n[endpoints.cfg]\n"
        f'role_arn = "{CONFIG_ROLE}"\nrole_session_name = "cfg-session"\n'
    )
    # No STS is reachable in the namespace; this address refuses at once.
    env = base_env(tmp_path, "http://127.0.0.1:9")
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    command = [str(BIN / "rolecached"), "--config", str(config)]
    with open(tmp_path / "daemon.log", "wb") as log:
        process = subprocess.Popen(
            ["unshare", "-n", "sh", "-c", NO_IPV6, *command], env=env, stdout=log, stderr=log
        )
    try:
        wait_for_socket(Path(env["ROLECACHE_SOCKET"]), process=process)
        listed = run_client(env, "endpoint", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [e["name"] for e in json.loads(listed.stdout)["endpoints"]] == ["cfg"]
        assert sorted(set(_listening(process.pid))) == ["127.0.0.1", "169.254.170.2"]
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_endpoint_commands_use_only_the_standard_library(edaemon: Daemon) -> None:
    """`endpoint env` and `exec --endpoint` import nothing outside the standard library."""
    allowed = set(sys.stdlib_module_names) | {"rolecache"}
    for args in (["endpoint", "env", "cfg"], ["exec", "--endpoint", "cfg", "--", "true"]):
        status, modules = loaded_modules(edaemon, *args)
        assert status == 0, args
        assert {m for m in modules if m.split(".")[0] not in allowed} == set(), args


def test_bench_quick_runs_end_to_end() -> None:
    """bench/ecs_endpoint.py --quick starts a sandbox daemon, loads the endpoint and prints
    requests per second and p99 (no speed is asserted)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROLECACHE_"))}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ecs_endpoint.py"), "--quick"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "req/s" in result.stdout and "p99" in result.stdout
    assert " 0 errors" in result.stdout


def test_profile_binding(edaemon: Daemon) -> None:
    """`endpoint add NAME --profile P` binds a role profile from ~/.aws/config; a profile
    whose duration_seconds is under an hour is refused with the profile named."""
    role = unique_role()
    Path(edaemon.env["AWS_CONFIG_FILE"]).write_text(
        f"[profile app]\nrole_arn = {role}\nsource_profile = base\n\n"
        f"[profile brief]\nrole_arn = {role}\nsource_profile = base\nduration_seconds = 900\n"
    )
    Path(edaemon.env["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        "[base]\naws_access_key_id = AKIABASEPROFILE00001\naws_secret_access_key = base\n"
    )
    added = edaemon.client("endpoint", "add", "prof", "--profile", "app")
    assert added.returncode == 0, added.stderr
    assert info(edaemon, "prof")["profile"] == "app"
    report = run_probe(edaemon, str(BIN / "rolecache"), "exec", "--endpoint", "prof", "--")
    assert report["arn"].startswith(assumed_arn(role, ""))
    brief = edaemon.client("endpoint", "add", "brief", "--profile", "brief")
    assert brief.returncode == 2 and "from profile 'brief'" in brief.stderr
