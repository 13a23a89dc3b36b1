"""Every SDK generation on the host, through `rolecache endpoint env` and a real daemon: the
JS SDK v3 (whose releases differ on which token variable wins) and Debian's
AWS CLI v2 2.9 (which reads only the variable, and joins paths onto the IMDS URL without a
slash). Each proves its credentials with GetCallerIdentity against moto."""

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, Daemon, unique_role
from tests.e2ekit import add
from tests.kit import assumed_arn
from tests.sdkkit import debian_aws_cli, refused


def handed_env(d: Daemon, name: str, *flags: str) -> dict[str, str]:
    """The daemon's test environment with what `rolecache endpoint env NAME --env-file`
    prints applied, and the caller's own keys removed (as `exec --endpoint` does)."""
    out = d.client("endpoint", "env", name, "--env-file", *flags)
    assert out.returncode == 0, out.stderr
    env = {
        k: v for k, v in d.env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    env.update(line.split("=", 1) for line in out.stdout.splitlines())
    return env


def run_js(sdk: Path, env: dict[str, str], moto_url: str) -> subprocess.CompletedProcess:
    """Run the JS probe in `env`."""
    return subprocess.run(
        ["node", str(sdk / "probe.js")],
        env={**env, "MOTO_URL": moto_url, "NODE_PATH": str(sdk / "node_modules")},
        cwd=sdk,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("variable_only", [False, True])
def test_js_sdk_v3_with_the_token_variables_across_rotations(
    edaemon: Daemon, js_sdk: Path, variable_only: bool
) -> None:
    """The JS SDK v3's default chain, started with an environment handed out before two
    rotations that killed the token file's first token, still gets the role: with both
    variables (this release warns and reads the file; earlier ones read the variable) and
    with the variable alone (as SDKs from before late 2023 see it)."""
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    env = handed_env(edaemon, "dev")
    first_file_token = Path(env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]).read_text()
    if variable_only:
        del env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]
    moto_url = edaemon.env["AWS_ENDPOINT_URL_STS"]
    first = run_js(js_sdk, env, moto_url)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["arn"] == assumed_arn(role, "dev")
    for _ in range(2):  # the ring keeps one previous token: two rotations end the first
        assert edaemon.client("endpoint", "rotate", "dev").returncode == 0
    assert refused(env["AWS_CONTAINER_CREDENTIALS_FULL_URI"], first_file_token)
    later = run_js(js_sdk, env, moto_url)
    assert later.returncode == 0, later.stderr
    assert json.loads(later.stdout)["arn"] == assumed_arn(role, "dev")


def test_rotate_containers_cuts_off_the_variables_holders(edaemon: Daemon, js_sdk: Path) -> None:
    """After `rotate --containers`, the JS SDK v3 with the variable handed out before (and no
    file) gets nothing: the container token is revoked at once; a fresh hand-off works."""
    assert add(edaemon, "dev", unique_role()).returncode == 0
    env = handed_env(edaemon, "dev")
    del env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]
    moto_url = edaemon.env["AWS_ENDPOINT_URL_STS"]
    assert run_js(js_sdk, env, moto_url).returncode == 0
    rotated = edaemon.client("endpoint", "rotate", "dev", "--containers")
    assert rotated.returncode == 0, rotated.stderr
    assert "container token" in rotated.stdout
    assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] not in rotated.stdout
    stale = run_js(js_sdk, env, moto_url)
    assert stale.returncode != 0 and "arn" not in stale.stdout
    assert refused(
        env["AWS_CONTAINER_CREDENTIALS_FULL_URI"], env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    )
    fresh = run_js(js_sdk, handed_env(edaemon, "dev"), moto_url)
    assert fresh.returncode == 0, fresh.stderr


@pytest.mark.parametrize("imds", [False, True])
def test_aws_cli_v2_29_through_endpoint_env(edaemon: Daemon, imds: bool) -> None:
    """Debian's AWS CLI v2 2.9, which reads AWS_CONTAINER_AUTHORIZATION_TOKEN but not the
    token file and appends "latest/api/token" to the IMDS URL as it is, calls STS as the
    assumed role through `eval "$(rolecache endpoint env NAME [--imds])"`."""
    aws = debian_aws_cli()
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    flag = " --imds" if imds else ""
    script = (
        f'eval "$({BIN}/rolecache endpoint env dev{flag})" && '
        f'{aws} sts get-caller-identity --output json --endpoint-url "$MOTO_URL"'
    )
    env = {k: v for k, v in edaemon.env.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env["MOTO_URL"] = edaemon.env["AWS_ENDPOINT_URL_STS"]
    result = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Arn"] == assumed_arn(role, "dev")


def test_aws_cli_v2_29_keeps_its_environment_across_rotations(edaemon: Daemon) -> None:
    """The AWS CLI v2 2.9 run with an environment handed out before two rotations still calls
    STS: the variable it reads holds the container token."""
    aws = debian_aws_cli()
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    env = handed_env(edaemon, "dev")
    env = {k: v for k, v in env.items() if k != "AWS_ENDPOINT_URL_STS"}
    for _ in range(2):
        assert edaemon.client("endpoint", "rotate", "dev").returncode == 0
    result = subprocess.run(
        [str(aws), "sts", "get-caller-identity", "--output", "json", "--endpoint-url",
         edaemon.env["AWS_ENDPOINT_URL_STS"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Arn"] == assumed_arn(role, "dev")
