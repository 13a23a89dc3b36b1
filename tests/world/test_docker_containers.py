"""Real containers on a docker bridge network (--internal, 169.254.170.0/24, gateway
169.254.170.2 on this host's bridge) against the real daemon: unmodified SDKs inside them get
the role through what `rolecache endpoint env NAME --docker --env-file` prints, and prove it
with GetCallerIdentity against moto, which listens on 169.254.170.2 for them. Nothing is sent
anywhere but loopback and that network. Skipped, saying why, when dockerd cannot be reached."""

import json
import subprocess
from pathlib import Path

import pytest

from tests.containerkit import (
    VENV_PYTHON,
    doc_block,
    docker_env,
    js_sdk_in_container,
    sts_env,
)
from tests.daemonkit import Daemon, unique_role
from tests.dockerkit import run_container
from tests.e2ekit import add
from tests.kit import assumed_arn
from tests.sdkkit import debian_aws_cli

# botocore's default chain, as an application in a container has it; STS from the environment.
PROBE = """
import boto3, json
session = boto3.Session()
arn = session.client("sts").get_caller_identity()["Arn"]
print(json.dumps({"arn": arn, "method": session.get_credentials().method}))
"""


def test_botocore_in_a_container(edaemon: Daemon, network: str, moto_at_gateway: str) -> None:
    """botocore's default chain in a container on the bridge network gets the role from the
    container endpoint at 169.254.170.2 and calls STS as it."""
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    env = {**docker_env(edaemon), **sts_env(moto_at_gateway)}
    result = run_container(network, env, [VENV_PYTHON, "-c", PROBE])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report == {"arn": assumed_arn(role, "dev"), "method": "container-role"}


def test_js_sdk_v3_in_a_container(
    edaemon: Daemon, network: str, moto_at_gateway: str, js_sdk: Path
) -> None:
    """The JS SDK v3's default chain in a container does the same."""
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    result = js_sdk_in_container(network, docker_env(edaemon), moto_at_gateway, js_sdk)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["arn"] == assumed_arn(role, "dev")


# Raw requests from a container: (case, status, whether credentials came back) per line.
NEGATIVES = """
import json, os, socket, sys
url = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
port = int(url.split(":")[2].split("/")[0])
good, other, revoked = sys.argv[1], sys.argv[2], sys.argv[3]
def ask(path, headers):
    s = socket.create_connection(("169.254.170.2", port), timeout=10)
    head = "".join(f"{k}: {v}\\r\\n" for k, v in headers.items())
    s.sendall(f"GET {path} HTTP/1.1\\r\\n{head}Connection: close\\r\\n\\r\\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return int(data.split()[1]), b"AccessKeyId" in data
host = {"Host": f"169.254.170.2:{port}"}
cases = {
    "good": ("/v1/credentials/dev", {**host, "Authorization": good}),
    "no token": ("/v1/credentials/dev", host),
    "wrong token": ("/v1/credentials/dev", {**host, "Authorization": good[::-1]}),
    "another binding's token": ("/v1/credentials/dev", {**host, "Authorization": other}),
    "revoked token": ("/v1/credentials/dev", {**host, "Authorization": revoked}),
    "Origin": ("/v1/credentials/dev", {**host, "Authorization": good, "Origin": "http://x"}),
    "bad Host": ("/v1/credentials/dev", {"Host": "evil.example", "Authorization": good}),
    "unknown binding": ("/v1/credentials/nope", {**host, "Authorization": good}),
}
print(json.dumps({case: ask(*args) for case, args in cases.items()}))
"""


def test_refusals_from_a_container(edaemon: Daemon, network: str) -> None:
    """From a container on the network: no token 401; a wrong token, another binding's, one
    revoked by `rotate --containers`, an Origin, a bad Host and an unknown binding 403; none
    gets credentials, while the binding's own token does."""
    assert add(edaemon, "dev", unique_role()).returncode == 0
    assert add(edaemon, "other", unique_role()).returncode == 0
    revoked = docker_env(edaemon)["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    assert edaemon.client("endpoint", "rotate", "dev", "--containers").returncode == 0
    env = docker_env(edaemon)
    other = docker_env(edaemon, "other")["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    good = env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    command = [VENV_PYTHON, "-c", NEGATIVES, good, other, revoked]
    result = run_container(network, env, command)
    assert result.returncode == 0, result.stderr
    outcomes = json.loads(result.stdout.splitlines()[-1])
    assert outcomes.pop("good") == [200, True]
    assert outcomes == {
        "no token": [401, False],
        "wrong token": [403, False],
        "another binding's token": [403, False],
        "revoked token": [403, False],
        "Origin": [403, False],
        "bad Host": [403, False],
        "unknown binding": [403, False],
    }


def test_docs_docker_run_line(edaemon: Daemon, network: str, moto_at_gateway: str) -> None:
    """The docs' `docker run --network rolecache --env-file dev.env IMAGE ...` line, with
    the test network, image and a botocore program in place of the AWS CLI image, runs with
    the env file `endpoint env --docker --env-file` wrote, and gets the role."""
    import shlex

    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    block = doc_block("docs/endpoints.md", "sh", "docker run")
    setup_line = next(line for line in block.splitlines() if "--docker --env-file" in line)
    words = shlex.split(setup_line, comments=True)
    assert words == ["rolecache", "endpoint", "env", "dev", "--docker", "--env-file", "dev.env"]
    env_file = edaemon.tmp / "dev.env"
    wrote = edaemon.client(*words[1:-1], str(env_file))  # the docs' line, at this path
    assert wrote.returncode == 0, wrote.stderr
    words = shlex.split(next(line for line in block.splitlines() if "docker run" in line))
    image = words.index("amazon/aws-cli")
    run, (command, image_args) = words[:image], (words[image], words[image + 1 :])
    assert run == [
        "docker", "run", "--rm", "--network", "rolecache", "--cap-drop", "NET_RAW",
        "--env-file", "dev.env",
    ]  # fmt: skip
    assert (command, image_args) == ("amazon/aws-cli", ["sts", "get-caller-identity"])
    flags = ["--cap-drop", "NET_RAW", "--env-file", str(env_file)]  # the docs', this path
    result = run_container(
        network, sts_env(moto_at_gateway), [VENV_PYTHON, "-c", PROBE], extra=tuple(flags)
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["arn"] == assumed_arn(role, "dev")


def test_docs_host_network_recipe(edaemon: Daemon, network: str) -> None:
    """The docs' `--network host` recipe, run as written (a botocore program in place of
    the AWS CLI image): the env file `endpoint env dev --env-file` writes and the binding's
    token folder mounted read-only at its own path get the role from the loopback listener."""
    import shlex

    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    block = doc_block("docs/endpoints.md", "sh", "--network host")
    lines = [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    words = shlex.split(lines[1], comments=True)
    assert words == ["rolecache", "endpoint", "env", "dev", "--env-file", "dev.env"]
    env_file = edaemon.tmp / "dev.env"
    env_out = edaemon.client(*words[1:-1], str(env_file))
    assert env_out.returncode == 0, env_out.stderr
    script = "\n".join([lines[2], 'printf %s "$tokens"'])
    tokens = subprocess.run(
        ["sh", "-c", script], cwd=edaemon.tmp, capture_output=True, text=True, check=True
    ).stdout
    assert Path(tokens).name == "dev"  # the binding's own folder, holding its token alone
    words = shlex.split(lines[3].replace('"$tokens:$tokens:ro"', f"{tokens}:{tokens}:ro"))
    image = words.index("amazon/aws-cli")
    assert words[:image] == [
        "docker", "run", "--rm", "--network", "host", "--cap-drop", "NET_RAW",
        "--env-file", "dev.env", "-v", f"{tokens}:{tokens}:ro",
    ]  # fmt: skip
    sts = sts_env(edaemon.env["AWS_ENDPOINT_URL_STS"])
    flags = ("--cap-drop", "NET_RAW", "--env-file", str(env_file), "-v", f"{tokens}:{tokens}:ro")
    result = run_container("host", sts, [VENV_PYTHON, "-c", PROBE], extra=flags)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "arn": assumed_arn(role, "dev"),
        "method": "container-role",
    }


def test_docs_compose_snippet(edaemon: Daemon, network: str, moto_at_gateway: str) -> None:
    """The docs' compose.yaml (external network, env_file) under docker-compose 1.29 with
    `-f compose.yaml`, the test network and image swapped in, gets the role in its service."""
    import shutil

    import yaml

    from tests.dockerkit import base_image, python_mounts

    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (.ci/run installs it)")
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    compose = yaml.safe_load(doc_block("docs/endpoints.md", "yaml", "services:"))
    app = compose["services"]["app"]
    assert app["env_file"] == "dev.env" and app["networks"] == ["rolecache"]
    assert app["cap_drop"] == ["NET_RAW"]
    assert compose["networks"] == {"rolecache": {"external": True}}
    folder = edaemon.tmp / "compose"
    folder.mkdir()
    (folder / "dev.env").write_text("".join(f"{k}={v}\n" for k, v in docker_env(edaemon).items()))
    mounts = python_mounts()
    app.update(
        image=base_image(),
        command=[VENV_PYTHON, "-c", PROBE],
        environment={**sts_env(moto_at_gateway), "AWS_EC2_METADATA_DISABLED": "true"},
        volumes=[mounts[i + 1] for i in range(0, len(mounts), 2)],
    )
    compose["networks"]["rolecache"]["name"] = network  # the docs' network is the test's
    (folder / "compose.yaml").write_text(yaml.safe_dump(compose))
    project = f"rctest{edaemon.process.pid}"
    base = ["docker-compose", "-p", project, "-f", "compose.yaml"]
    try:
        result = subprocess.run(
            [*base, "up", "--no-color", "--exit-code-from", "app"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        subprocess.run([*base, "down"], cwd=folder, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if '"arn"' in line)
    assert json.loads(line.split("|", 1)[1])["arn"] == assumed_arn(role, "dev")


# Fetches every second, printing each outcome with the key id served, until stopped (120 max).
FETCH_LOOP = """
import json, os, time, urllib.request, urllib.error
url = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
token = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
for _ in range(120):
    try:
        request = urllib.request.Request(url, headers={"Authorization": token})
        with urllib.request.urlopen(request, timeout=5) as reply:
            print(json.dumps({"status": reply.status, "key": json.load(reply)["AccessKeyId"]}))
    except urllib.error.HTTPError as exc:
        print(json.dumps({"status": exc.code}))
    except OSError as exc:
        print(json.dumps({"status": 0, "error": type(exc).__name__}))
    time.sleep(1)
"""


def test_container_keeps_fetching_across_a_sigkill(edaemon: Daemon, network: str) -> None:
    """A container fetching every second, with the environment it was started with, gets
    credentials again once the daemon, killed with SIGKILL, is started again: the restarted
    daemon's first credentials (a new key id, its cache died with it) reach the container."""
    import signal

    from tests.daemonkit import start_daemon
    from tests.dockerkit import base_image, python_mounts

    assert add(edaemon, "dev", unique_role()).returncode == 0
    env = {**docker_env(edaemon), "AWS_EC2_METADATA_DISABLED": "true"}
    name = f"rctest-loop-{edaemon.process.pid}"
    args = ["docker", "run", "--rm", "--name", name, "--network", network, *python_mounts()]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    loop = subprocess.Popen(
        [*args, base_image(), VENV_PYTHON, "-u", "-c", FETCH_LOOP],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    daemon = edaemon
    try:
        assert loop.stdout is not None
        first = json.loads(loop.stdout.readline())
        assert first["status"] == 200, first
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(timeout=15)
        config = str(edaemon.tmp / "config.toml")  # edaemon's
        daemon = start_daemon(edaemon.tmp, edaemon.env, "--config", config)
        seen = []
        for line in loop.stdout:
            outcome = json.loads(line)
            seen.append(outcome["status"])
            if outcome["status"] == 200 and outcome["key"] != first["key"]:
                break
        else:
            raise AssertionError(f"no credentials after the restart: {seen}, {loop.stderr}")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
        loop.wait(timeout=60)
        daemon.stop()


def test_aws_cli_v2_29_in_a_container(edaemon: Daemon, network: str, moto_at_gateway: str) -> None:
    """Debian's AWS CLI v2 2.9 (from before late 2023: it reads only the token variable) in a
    container gets the role with what `endpoint env --docker` prints: its botocore accepts
    169.254.170.2 with a port in FULL_URI."""

    aws = debian_aws_cli()
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    env = {**docker_env(edaemon), "AWS_DEFAULT_REGION": "us-east-1", "HOME": "/tmp"}
    command = [str(aws), "sts", "get-caller-identity", "--output", "json"]
    result = run_container(network, env, [*command, "--endpoint-url", moto_at_gateway])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Arn"] == assumed_arn(role, "dev")


# Through the redirect, as old SDKs ask: port 80, Host without a port. (case: status, creds)
PORT_80 = """
import json, os, socket, sys
path, token = os.environ["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"], sys.argv[1]
def ask(path, headers):
    s = socket.create_connection(("169.254.170.2", 80), timeout=10)
    head = "".join(f"{k}: {v}\\r\\n" for k, v in headers.items())
    head = f"Host: 169.254.170.2\\r\\n{head}Connection: close\\r\\n"
    s.sendall(f"GET {path} HTTP/1.1\\r\\n{head}\\r\\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return int(data.split()[1]), b"AccessKeyId" in data
base = path.rsplit("/", 1)[0]
print(json.dumps({
    "good": ask(path, {"Authorization": token}),
    "no token": ask(path, {}),
    "wrong capability": ask(base + "/" + "A" * 32, {"Authorization": token}),
}))
"""


def test_relative_uri_through_the_port_80_redirect(
    edaemon: Daemon, network: str, moto_at_gateway: str, js_sdk: Path
) -> None:
    """`rolecache docker setup --port-80 --apply` adds the ECS agent's REDIRECT rule on the
    network's bridge and tells the daemon; `endpoint env --docker` then hands out a
    RELATIVE_URI with a capability of 128+ bits, which botocore, the JS SDK v3 and the AWS
    CLI v2 2.9 in a container follow to port 80 (Host without a port); a wrong capability or
    no token gets nothing; the capability is in no log; `--remove --apply` takes the rule
    out."""
    from tests.dockerkit import port_80_held

    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    setup = ["docker", "setup", "--network", network]
    with port_80_held():
        applied = edaemon.client(*setup, "--port-80", "--apply")
        assert applied.returncode == 0, applied.stderr
        assert "iptables -t nat -A PREROUTING -i br-" in applied.stdout
        assert "--dport 80 -j REDIRECT --to-ports" in applied.stdout
        try:
            env = docker_env(edaemon)
            assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" not in env
            path = env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
            capability = path.rsplit("/", 1)[1]
            assert path == f"/v1/credentials/dev/{capability}" and len(capability) >= 22
            probe = run_container(
                network, {**env, **sts_env(moto_at_gateway)}, [VENV_PYTHON, "-c", PROBE]
            )
            assert probe.returncode == 0, probe.stderr
            assert json.loads(probe.stdout.splitlines()[-1])["arn"] == assumed_arn(role, "dev")
            js = js_sdk_in_container(network, env, moto_at_gateway, js_sdk)
            assert js.returncode == 0, js.stderr
            assert json.loads(js.stdout.splitlines()[-1])["arn"] == assumed_arn(role, "dev")
            cli_env = {**env, "AWS_DEFAULT_REGION": "us-east-1", "HOME": "/tmp"}
            command = [str(debian_aws_cli()), "sts", "get-caller-identity", "--output", "json"]
            cli = run_container(network, cli_env, [*command, "--endpoint-url", moto_at_gateway])
            assert cli.returncode == 0, cli.stderr
            assert json.loads(cli.stdout)["Arn"] == assumed_arn(role, "dev")
            token = env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
            raw = run_container(network, env, [VENV_PYTHON, "-c", PORT_80, token])
            assert raw.returncode == 0, raw.stderr
            assert json.loads(raw.stdout) == {
                "good": [200, True],
                "no token": [401, False],
                "wrong capability": [403, False],
            }
        finally:
            removed = edaemon.client(*setup, "--remove", "--apply")
        assert removed.returncode == 0, removed.stderr
        rules = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True)
        assert "REDIRECT" not in rules.stdout  # port 80 is held: no other test's rule either
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in docker_env(edaemon)
    assert capability not in edaemon.log.read_text()
