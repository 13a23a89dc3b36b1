"""Every SDK generation on the host, through `rolecache endpoint env` and a real daemon: the
JS SDK v3 (whose releases differ on which token variable wins) and Debian's
AWS CLI v2 2.9 (which reads only the variable, and joins paths onto the IMDS URL without a
slash). Each proves its credentials with GetCallerIdentity against moto."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemonkit import BIN, Daemon, unique_role
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


# -- a [default] profile in ~/.aws/credentials ----------------------------------------------

# The base user's keys where docs/operations.md says the daemon's default source lives: every SDK's
# chain reads this file before the container and IMDS providers.
DEFAULT_PROFILE = (
    "[default]\naws_access_key_id = AKIADEFAULTPROFILE01\n"
    "aws_secret_access_key = default-profile-secret\n"
)
BOTOCORE_PROBE = (
    "import boto3, json, os; print(json.dumps({'arn': boto3.client('sts', endpoint_url="
    "os.environ['MOTO_URL']).get_caller_identity()['Arn']}))"
)


def consumer(request: pytest.FixtureRequest, name: str, moto_url: str) -> list[str]:
    """The command that makes `name` call GetCallerIdentity at `moto_url` with its own
    default chain; skips when that consumer is not installed."""
    if name == "botocore":
        return [sys.executable, "-c", BOTOCORE_PROBE]
    if name == "js":
        sdk = request.getfixturevalue("js_sdk")
        return ["env", f"NODE_PATH={sdk / 'node_modules'}", "node", str(sdk / "probe.js")]
    aws = str(BIN / "aws") if name == "aws-cli-v1" else str(debian_aws_cli())
    return [aws, "sts", "get-caller-identity", "--output", "json", "--endpoint-url", moto_url]


def after_eval(env: dict[str, str], *args: str) -> dict[str, str]:
    """`env` after `eval "$(rolecache ARGS)"` in bash, as a program started there has it."""
    script = f'eval "$({BIN}/rolecache {shlex.join(args)})" && env -0'
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return dict(item.split("=", 1) for item in result.stdout.split("\0") if item)


@pytest.mark.parametrize("how", ["exec", "env", "env --imds"])
@pytest.mark.parametrize("name", ["botocore", "aws-cli-v1", "aws-cli-v2", "js"])
def test_a_default_profile_in_the_credentials_file_does_not_win(
    edaemon: Daemon, request: pytest.FixtureRequest, name: str, how: str
) -> None:
    """With the base user's keys as [default] in ~/.aws/credentials, a program started by
    `exec --endpoint` or after `eval "$(rolecache endpoint env NAME [--imds])"` calls STS as
    the binding's role, not as that user, in every SDK on the host."""
    moto_url = edaemon.env["AWS_ENDPOINT_URL_STS"]
    command = consumer(request, name, moto_url)
    Path(edaemon.env["AWS_SHARED_CREDENTIALS_FILE"]).write_text(DEFAULT_PROFILE)
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    env = {k: v for k, v in edaemon.env.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env["MOTO_URL"] = moto_url
    if how == "exec":
        command = [str(BIN / "rolecache"), "exec", "--endpoint", "dev", "--", *command]
    else:
        env = after_eval(env, "endpoint", *how.replace("env", "env dev").split())
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer.get("Arn", answer.get("arn")) == assumed_arn(role, "dev")


@pytest.mark.parametrize(
    "settings",
    [
        "aws_access_key_id = AKIADEFAULTPROFILE01\naws_secret_access_key = default-secret\n",
        "credential_process = /bin/false\n",
        "role_arn = arn:aws:iam::123456789012:role/default\nsource_profile = base\n",
    ],
    ids=["keys", "credential_process", "role_arn"],
)
def test_credentials_in_the_config_files_default_profile_are_refused(
    edaemon: Daemon, settings: str
) -> None:
    """When ~/.aws/config's [default] profile has credentials of its own (which every SDK
    takes before the endpoint), `exec --endpoint` runs nothing and `endpoint env` prints
    nothing: both exit 2 naming the file and the settings; a [default] with only a region
    is used as it is."""
    config = Path(edaemon.env["AWS_CONFIG_FILE"])
    config.write_text("[default]\nregion = us-east-1\n" + settings)
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    env = {**edaemon.env, "MOTO_URL": edaemon.env["AWS_ENDPOINT_URL_STS"]}
    probe = ("exec", "--endpoint", "dev", "--", sys.executable, "-c", BOTOCORE_PROBE)
    ran = edaemon.client(*probe, env=env)
    printed = edaemon.client("endpoint", "env", "dev")
    for result in (ran, printed):
        assert result.returncode == 2 and result.stdout == ""
        assert f"[default] profile of {config} sets {settings.split()[0]}" in result.stderr
    config.write_text("[default]\nregion = us-east-1\n")
    fine = edaemon.client(*probe, env=env)
    assert fine.returncode == 0, fine.stderr
    assert json.loads(fine.stdout)["arn"] == assumed_arn(role, "dev")
