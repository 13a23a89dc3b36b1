"""~/.aws/config profiles, role chaining, MFA and the drop-in `sts assume-role`, end to end:
the real daemon and client against moto (behind a fault-injecting proxy where a test needs
STS to say no), compared with the real AWS CLI v1."""

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemonkit import BIN, Daemon, Moto, base_env, outside_env, start_daemon, unique_role
from tests.kit import assumed_arn
from tests.profilekit import CREDENTIALS, on_terminal, role_profile, write_config
from tests.ssokit import ROLE_KEY_ID, ROLE_TOKEN, SsoPortal, sso_login, sso_profile
from tests.strict_sts import StsProxy, sts_error_xml

ACCOUNT = "123456789012"
MFA = f"arn:aws:iam::{ACCOUNT}:mfa/alice"


def caller_arn_of(env_lines: str, moto_url: str) -> str:
    """Evaluate export lines in bash and ask moto who those credentials are."""
    script = (
        'eval "$(cat)"; exec "$PY" -c "import boto3, os; print(boto3.client(\'sts\', '
        "region_name='us-east-1', endpoint_url=os.environ['MOTO']).get_caller_identity()['Arn'])\""
    )
    env = outside_env()
    env.update(PY=sys.executable, MOTO=moto_url)
    result = subprocess.run(
        ["bash", "-c", script], input=env_lines, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def chain(daemon: Daemon) -> dict[str, str]:
    """A 3-hop chain c -> b -> a -> base (static keys) in the client's config files."""
    roles = {name: unique_role(name) for name in "abc"}
    write_config(
        daemon.env,
        role_profile("a", roles["a"], "base")
        + role_profile("b", roles["b"], "a", role_session_name="bee")
        + role_profile("c", roles["c"], "b", duration_seconds="900"),
    )
    return roles


def test_three_hop_chain_is_assumed_hop_by_hop(daemon: Daemon, moto: Moto, chain: dict) -> None:
    """A 3-hop profile chain gives working credentials of the last role; each hop is one
    AssumeRole and its own cache entry, and a second call costs no STS call at all."""
    first = daemon.client("env", "--profile", "c")
    assert first.returncode == 0, first.stderr
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    assert caller_arn_of(first.stdout, moto.url) == assumed_arn(chain["c"], f"{user}@c")
    assert daemon.client("env", "--profile", "c").stdout == first.stdout
    assert [moto.assume_role_calls(chain[n]) for n in "abc"] == [1, 1, 1]
    sessions = json.loads(daemon.client("list", "--json").stdout)["sessions"]
    by_role = {s["role_arn"]: s for s in sessions}
    assert set(by_role) == set(chain.values())
    assert by_role[chain["b"]]["role_session_name"] == "bee"
    assert by_role[chain["c"]]["duration_seconds"] == 900


def test_profile_that_is_its_own_source_is_assumed_once(daemon: Daemon, moto: Moto) -> None:
    """A role profile whose source_profile is itself signs with its own keys: one AssumeRole
    of its role (as botocore and the CLI make), and none when it only signs the drop-in's."""
    role, other = unique_role("selfish"), unique_role("other")
    write_config(
        daemon.env,
        role_profile(
            "selfish",
            role,
            "selfish",
            aws_access_key_id="AKIASELFISHPROFILE01",
            aws_secret_access_key="selfish-profile-secret",
        ),
    )
    result = daemon.client("env", "--profile", "selfish")
    assert result.returncode == 0, result.stderr
    assert moto.assume_role_calls(role) == 1
    dropin = daemon.client(
        "sts", "assume-role", "--profile", "selfish", "--role-arn", other,
        "--role-session-name", "signed-by-keys", "--output", "text",
    )  # fmt: skip
    assert dropin.returncode == 0, dropin.stderr
    assert (moto.assume_role_calls(role), moto.assume_role_calls(other)) == (1, 1)


def test_flags_override_the_profile(daemon: Daemon, moto: Moto, chain: dict) -> None:
    """A flag next to --profile wins over the profile's own value."""
    result = daemon.client("env", "--profile", "b", "--role-session-name", "override")
    assert result.returncode == 0, result.stderr
    assert caller_arn_of(result.stdout, moto.url) == assumed_arn(chain["b"], "override")


def test_exec_and_credential_process_take_a_profile(
    daemon: Daemon, moto: Moto, chain: dict
) -> None:
    """exec --profile and a credential_process of `rolecache process --profile` both work."""
    script = (
        "import boto3, os; print(boto3.client('sts', region_name='us-east-1', "
        "endpoint_url=os.environ['AWS_ENDPOINT_URL_STS']).get_caller_identity()['Arn'])"
    )
    result = daemon.client("exec", "--profile", "a", "--", sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    assert result.stdout.strip() == assumed_arn(chain["a"], f"{user}@a")

    config = Path(daemon.env["AWS_CONFIG_FILE"])
    config.write_text(
        config.read_text() + f"[profile via]\ncredential_process = {BIN}/rolecache process "
        "--profile b\n"
    )
    env = {
        k: v
        for k, v in daemon.env.items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    env["AWS_PROFILE"] = "via"
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == assumed_arn(chain["b"], "bee")


def test_edited_config_is_read_again(daemon: Daemon, moto: Moto, chain: dict) -> None:
    """Changing a profile's role_arn in the file takes effect on the next call."""
    assert daemon.client("env", "--profile", "a").returncode == 0
    other = unique_role("moved")
    config = Path(daemon.env["AWS_CONFIG_FILE"])
    config.write_text(config.read_text().replace(chain["a"], other))
    result = daemon.client("env", "--profile", "a")
    assert result.returncode == 0, result.stderr
    assert caller_arn_of(result.stdout, moto.url).startswith(assumed_arn(other, "")[:-1])
    assert moto.assume_role_calls(other) == 1


@pytest.mark.parametrize(
    ("profile", "config", "message"),
    [
        ("nope", "", "profile 'nope' is not in the AWS config files"),
        (
            "x",
            role_profile("x", f"arn:aws:iam::{ACCOUNT}:role/x", "y")
            + role_profile("y", f"arn:aws:iam::{ACCOUNT}:role/y", "x"),
            "source_profile loop: x -> y -> x",
        ),
        (
            "z",
            role_profile("z", f"arn:aws:iam::{ACCOUNT}:role/z", "ghost"),
            "source_profile 'ghost' of profile 'z' does not exist",
        ),
        (
            "w",
            f"[profile w]\nrole_arn = arn:aws:iam::{ACCOUNT}:role/w\n"
            "credential_source = Ec2InstanceMetadata\n",
            "not supported",
        ),
    ],
)
def test_profile_errors_name_the_profile_and_exit_2(
    daemon: Daemon, profile: str, config: str, message: str
) -> None:
    """Unknown profiles, loops, missing sources and unsupported credential sources are
    refused with exit 2 and a message saying what to fix."""
    write_config(daemon.env, config)
    result = daemon.client("env", "--profile", profile)
    assert result.returncode == 2
    assert message in result.stderr


def test_source_without_credentials_is_reported(daemon: Daemon) -> None:
    """A source profile that holds no credentials fails with exit 1, naming the profile."""
    write_config(
        daemon.env,
        role_profile("r", unique_role(), "empty") + "[profile empty]\nregion = us-east-1\n",
    )
    result = daemon.client("env", "--profile", "r")
    assert result.returncode == 1
    assert "no source credentials found in profile 'empty'" in result.stderr


def test_chained_duration_over_an_hour_is_refused(daemon: Daemon, chain: dict) -> None:
    """Asking a chained hop for more than 3600 s is a clear error, not an STS call."""
    result = daemon.client("env", "--profile", "b", "--duration-seconds", "7200")
    assert result.returncode == 2
    assert "role chaining" in result.stderr and "3600" in result.stderr


def hop_chain(daemon: Daemon, length: int) -> list[str]:
    """A chain of `length` role profiles, r0 (sourced from base) to r{length-1}; its roles."""
    roles = [unique_role(f"hop{i}") for i in range(length)]
    sources = ["base", *(f"r{i}" for i in range(length - 1))]
    profiles = (role_profile(f"r{i}", role, sources[i]) for i, role in enumerate(roles))
    write_config(daemon.env, "".join(profiles))
    return roles


@pytest.mark.parametrize("length", [11, 300])
def test_a_chain_longer_than_ten_roles_is_refused_before_any_call(
    daemon: Daemon, moto: Moto, length: int
) -> None:
    """A source_profile chain of more than ten roles is refused with exit 2 and a message
    naming the profile, before a single AssumeRole (from the profile or --source-profile)."""
    roles = hop_chain(daemon, length)
    top = f"r{length - 1}"
    result = daemon.client("env", "--profile", top)
    assert result.returncode == 2, result.stderr
    assert f"profile {top!r}: its source_profile chain is longer than 10 roles" in result.stderr
    via_source = daemon.client(
        "env", "--role-arn", unique_role(), "--role-session-name", "s", "--source-profile", "r9"
    )
    assert via_source.returncode == 2, via_source.stderr
    assert "longer than 10 roles" in via_source.stderr
    assert sum(moto.assume_role_calls(r) for r in roles) == 0


def test_a_chain_of_ten_roles_is_assumed(daemon: Daemon, moto: Moto) -> None:
    """Ten roles, the most a chain may have, are assumed hop by hop, one call each."""
    roles = hop_chain(daemon, 10)
    result = daemon.client("env", "--profile", "r9")
    assert result.returncode == 0, result.stderr
    assert [moto.assume_role_calls(r) for r in roles] == [1] * 10


# -- the drop-in `sts assume-role` -------------------------------------------------------

SECRETS = [
    (re.compile(r"ASIA[A-Z0-9]{16}"), "<KEY>"),
    (re.compile(r"AROA[A-Z0-9]+"), "<ROLEID>"),
    (re.compile(r"FQoGZXIvYXdz[A-Za-z0-9+/=]+"), "<TOKEN>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"), "<EXPIRATION>"),
    (re.compile(r"(?<=[\"\t])[A-Za-z0-9+/]{40}(?=[\"\t\n])"), "<SECRET>"),
]


def normalised(text: str) -> str:
    """The output with only the per-call secret values replaced."""
    for pattern, placeholder in SECRETS:
        text = pattern.sub(placeholder, text)
    return text


@pytest.fixture
def cli_env(daemon: Daemon) -> dict[str, str]:
    """The environment where `aws` and `rolecache` both call moto as profile `base`."""
    write_config(daemon.env, "")
    return {
        k: v
        for k, v in daemon.env.items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }


def both(
    env: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """Run `aws sts assume-role ARGS` and `rolecache sts assume-role ARGS`."""
    run = lambda tool: subprocess.run(  # noqa: E731
        [str(BIN / tool), "sts", "assume-role", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return run("aws"), run("rolecache")


QUERIES = [
    [],
    ["--query", "Credentials.AccessKeyId"],
    ["--query", "AssumedRoleUser"],
    ["--query", "[Credentials.AccessKeyId, AssumedRoleUser.Arn, PackedPolicySize]"],
    ["--query", "Credentials"],
    ["--query", "NoSuchKey"],
]


@pytest.mark.parametrize("output", ["json", "text"])
def test_sts_assume_role_prints_what_the_aws_cli_prints(
    cli_env: dict[str, str], output: str
) -> None:
    """For the same request, `rolecache sts assume-role` and `aws sts assume-role` print the
    same bytes (secret values aside) for each output format and --query."""
    role = unique_role("cli")
    for query in QUERIES:
        args = ["--role-arn", role, "--role-session-name", "cli", "--profile", "base"]
        aws, ours = both(cli_env, *args, "--output", output, *query)
        assert aws.returncode == ours.returncode == 0, (aws.stderr, ours.stderr)
        assert normalised(ours.stdout) == normalised(aws.stdout), query
        assert ours.stdout != normalised(ours.stdout) or query[-1:] in (
            ["NoSuchKey"],
            ["AssumedRoleUser"],
        )


def test_export_idiom_works_through_an_aws_function(cli_env: dict[str, str], moto: Moto) -> None:
    """The classic `--output text --query join(...)` idiom, run through an `aws` shell function
    that forwards `sts assume-role` to rolecache, exports working credentials."""
    role = unique_role("idiom")
    query = ",".join(
        f"join(``,[`export {name}=`,{field}])"
        for name, field in [
            ("AWS_ACCESS_KEY_ID", "AccessKeyId"),
            ("AWS_SECRET_ACCESS_KEY", "SecretAccessKey"),
            ("AWS_SESSION_TOKEN", "SessionToken"),
        ]
    )
    script = f"""
aws() {{ if [ "$1 $2" = "sts assume-role" ]; then shift 2; {BIN}/rolecache sts assume-role "$@";
         else {BIN}/aws "$@"; fi; }}
eval "$(aws sts assume-role --role-arn {role} --role-session-name idiom --profile base \\
  --output text --query 'Credentials.[{query}]')"
unset AWS_PROFILE
aws sts get-caller-identity --query Arn --output text
"""
    result = subprocess.run(
        ["bash", "-c", script], env=cli_env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == assumed_arn(role, "idiom")
    assert moto.assume_role_calls(role) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--role-arn", "ROLE", "--role-session-name", "s1", "--bogus"],
        ["--role-arn", "ROLE"],
        ["--role-arn", "ROLE", "--role-session-name", "x"],
        ["--role-arn", "ROLE", "--role-session-name", "s1", "--query", "[["],
    ],
    ids=["unknown-option", "missing-session-name", "session-name-too-short", "bad-query"],
)
def test_sts_assume_role_exit_codes_match_the_aws_cli(
    cli_env: dict[str, str], args: list[str]
) -> None:
    """Command-line mistakes exit with the same status as the real AWS CLI v1 (2 for usage,
    255 for parameter errors), and never with success."""
    role = unique_role("codes")
    aws, ours = both(cli_env, *[role if a == "ROLE" else a for a in args], "--profile", "base")
    assert aws.returncode in (2, 255)
    assert ours.returncode == aws.returncode, (aws.stderr, ours.stderr)


# -- MFA -----------------------------------------------------------------------------------


@pytest.fixture
def mfa_daemon(tmp_path: Path, sts_proxy: StsProxy) -> Iterator[Daemon]:
    """A daemon whose STS is moto behind the proxy, with role profiles behind one MFA device;
    the code 000000 is refused the way STS refuses a wrong code."""

    def wrong_code(form: dict[str, str]) -> tuple[int, str] | None:
        if form.get("Action") == "GetSessionToken" and form.get("TokenCode") == "000000":
            return 403, sts_error_xml(
                "AccessDenied",
                "MultiFactorAuthentication failed with invalid MFA one time pass code.",
            )
        return None

    sts_proxy.rules.append(wrong_code)
    env = base_env(tmp_path, sts_proxy.url)
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    d = start_daemon(tmp_path, env)
    write_config(
        env,
        role_profile("m1", unique_role("m1"), "base", mfa_serial=MFA)
        + role_profile("m2", unique_role("m2"), "base", mfa_serial=MFA),
    )
    yield d
    d.stop()


def test_mfa_prompt_on_the_terminal_then_no_more_prompts(
    mfa_daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """A role behind an MFA device prompts once on the terminal (not stdout); the code opens
    one MFA session, and another role behind the same device then needs no code at all."""
    status, stdout, screen = on_terminal(mfa_daemon.env, ["env", "--profile", "m1"], ["123456"])
    assert status == 0, screen
    assert f"MFA code for {MFA}" in screen
    assert stdout.startswith("export AWS_ACCESS_KEY_ID=") and "MFA code" not in stdout
    get_tokens = [f for f in sts_proxy.forms if f["Action"] == "GetSessionToken"]
    assert [(f["SerialNumber"], f["TokenCode"]) for f in get_tokens] == [(MFA, "123456")]
    # No terminal now: succeeding proves no prompt was needed.
    second = mfa_daemon.client("env", "--profile", "m2")
    assert second.returncode == 0, second.stderr
    assert sts_proxy.calls.count("GetSessionToken") == 1


def test_wrong_mfa_code_gets_stss_message_and_another_prompt(
    mfa_daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """A refused code shows STS's message and asks again; the next good code works."""
    status, stdout, screen = on_terminal(
        mfa_daemon.env, ["env", "--profile", "m1"], ["000000", "123456"]
    )
    assert status == 0, screen
    assert "MultiFactorAuthentication failed" in screen
    assert screen.count("MFA code for") == 2
    assert "export AWS_SESSION_TOKEN=" in stdout
    assert sts_proxy.calls.count("GetSessionToken") == 2


def test_token_code_flag_skips_the_prompt(mfa_daemon: Daemon, sts_proxy: StsProxy) -> None:
    """--token-code is sent as the MFA code, with no terminal needed."""
    result = mfa_daemon.client("env", "--profile", "m1", "--token-code", "654321")
    assert result.returncode == 0, result.stderr
    assert [f.get("TokenCode") for f in sts_proxy.forms if f["Action"] == "GetSessionToken"] == [
        "654321"
    ]


def run_without_terminal(
    env: dict[str, str], args: list[str], stdin: str = ""
) -> subprocess.CompletedProcess:
    """Run rolecache in a session of its own (no terminal to prompt on), `stdin` as input."""
    return subprocess.run(
        [str(BIN / "rolecache"), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
    )


def token_codes(proxy: StsProxy) -> list[str]:
    """The MFA codes STS was sent, in order (GetSessionToken or AssumeRole's TokenCode)."""
    return [f["TokenCode"] for f in proxy.forms if "TokenCode" in f]


def test_token_code_dash_reads_the_code_from_stdin(mfa_daemon: Daemon, sts_proxy: StsProxy) -> None:
    """`--token-code -` sends the first line of stdin as the code, keeping it out of argv
    (which every local user can read in /proc/PID/cmdline)."""
    result = run_without_terminal(
        mfa_daemon.env, ["env", "--profile", "m1", "--token-code", "-"], "654321\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("export AWS_ACCESS_KEY_ID=")
    assert token_codes(sts_proxy) == ["654321"]


def test_token_code_environment_variable_answers_when_asked(
    mfa_daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """ROLECACHE_TOKEN_CODE is sent when the daemon asks for a code (no terminal needed),
    and not with requests that need none."""
    env = dict(mfa_daemon.env, ROLECACHE_TOKEN_CODE="246810")
    plain = run_without_terminal(
        env, ["env", "--role-arn", unique_role(), "--role-session-name", "s1"]
    )
    assert plain.returncode == 0, plain.stderr
    assert token_codes(sts_proxy) == []
    result = run_without_terminal(env, ["env", "--profile", "m1"])
    assert result.returncode == 0, result.stderr
    assert token_codes(sts_proxy) == ["246810"]


@pytest.mark.parametrize("route", ["stdin", "environment"])
def test_sts_assume_role_takes_the_code_off_the_command_line(
    route: str, mfa_daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """The `aws sts assume-role` drop-in takes `--token-code -` and ROLECACHE_TOKEN_CODE too."""
    args = ["sts", "assume-role", "--role-arn", unique_role("drop-in"),
            "--role-session-name", "s1", "--serial-number", MFA]  # fmt: skip
    if route == "stdin":
        result = run_without_terminal(mfa_daemon.env, [*args, "--token-code", "-"], "135790\n")
    else:
        env = dict(mfa_daemon.env, ROLECACHE_TOKEN_CODE="135790")
        result = run_without_terminal(env, args)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Credentials"]["AccessKeyId"].startswith("ASIA")
    assert token_codes(sts_proxy) == ["135790"]


def test_mfa_without_a_terminal_fails_clearly(mfa_daemon: Daemon, sts_proxy: StsProxy) -> None:
    """With no terminal to ask on, the client exits 1 saying how to pass a code; STS is not
    asked for an MFA session."""
    result = subprocess.run(
        [str(BIN / "rolecache"), "env", "--profile", "m1"],
        env=mfa_daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,  # no controlling terminal
    )
    assert result.returncode == 1
    assert "--token-code" in result.stderr and MFA in result.stderr
    assert "GetSessionToken" not in sts_proxy.calls


def test_sts_error_is_reported_as_the_aws_cli_does(tmp_path: Path, sts_proxy: StsProxy) -> None:
    """An AccessDenied from STS gives the same exit status and error line as the AWS CLI."""
    sts_proxy.rules.append(
        lambda form: (
            (403, sts_error_xml("AccessDenied", "User is not authorized"))
            if form.get("Action") == "AssumeRole"
            else None
        )
    )
    env = base_env(tmp_path, sts_proxy.url)
    daemon = start_daemon(tmp_path, env)
    try:
        write_config(env, "")
        cli = {
            k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        }
        role = unique_role("denied")
        aws, ours = both(cli, "--role-arn", role, "--role-session-name", "s1", "--profile", "base")
        assert aws.returncode == ours.returncode == 255
        line = "An error occurred (AccessDenied) when calling the AssumeRole operation: "
        assert line + "User is not authorized" in aws.stderr
        assert line + "User is not authorized" in ours.stderr
    finally:
        daemon.stop()


def test_a_fixed_credentials_file_is_used_at_once_after_an_error(daemon: Daemon) -> None:
    """The source profile's keys are broken (no secret), so the daemon fails and remembers
    the error; once the credentials file is fixed the very next request is served, without
    waiting out the error's window (the error was keyed by the file's stamp)."""
    role = unique_role("fixed")
    write_config(daemon.env, role_profile("p", role, "base"))
    credentials = Path(daemon.env["AWS_SHARED_CREDENTIALS_FILE"])
    credentials.write_text("[base]\naws_access_key_id = AKIABASEPROFILE00001\n")
    for _ in range(2):  # the second is the remembered error
        broken = daemon.client("env", "--profile", "p")
        assert broken.returncode == 1 and "PartialCredentials" in broken.stderr, broken.stderr
    credentials.write_text(CREDENTIALS)
    fixed = daemon.client("env", "--profile", "p")
    assert fixed.returncode == 0, fixed.stderr
    assert "export AWS_SESSION_TOKEN=" in fixed.stdout


# A credential_process whose credentials are shaped like STS's, valid for an hour from now.
HOUR_PROCESS = """import json, datetime
end = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
print(json.dumps({"Version": 1, "AccessKeyId": "ASIAPROCESSSOURCE001",
"SecretAccessKey": "cHJvY2Vzcy1zZWNyZXQ=", "SessionToken": "cHJvY2Vzcy10b2tlbg==",
"Expiration": end.strftime("%Y-%m-%dT%H:%M:%SZ")}))"""


def test_a_keys_only_profile_is_served_as_a_session_token(
    daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """`env` and `exec` for a profile with only long-term keys serve a GetSessionToken
    session (one STS call, then memory), never the long-term keys themselves; `forget`
    drops it, so the next request opens a new one."""
    write_config(daemon.env, "")
    first = daemon.client("env", "--profile", "base")
    assert first.returncode == 0, first.stderr
    assert "export AWS_SESSION_TOKEN=" in first.stdout
    assert "AKIABASEPROFILE00001" not in first.stdout
    assert "base-profile-secret" not in first.stdout
    shown = daemon.client(
        "exec", "--profile", "base", "--", "sh", "-c", 'printf %s "$AWS_ACCESS_KEY_ID"'
    )
    assert shown.returncode == 0, shown.stderr
    assert f"export AWS_ACCESS_KEY_ID={shown.stdout}" in first.stdout.replace("'", "")
    assert sts_proxy.calls == ["GetSessionToken"]
    assert "TokenCode" not in sts_proxy.forms[0] and sts_proxy.temporary == [False]
    assert daemon.client("forget", "--profile", "base").stdout == "forgot 1 session\n"
    assert daemon.client("env", "--profile", "base").returncode == 0
    assert sts_proxy.calls == ["GetSessionToken"] * 2


def test_a_credential_process_profile_is_served_its_own_credentials(
    daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """A profile with only a credential_process gets the process's temporary credentials as
    they are (STS refuses GetSessionToken for them), and STS hears nothing."""
    script = daemon.tmp / "process.py"
    script.write_text(HOUR_PROCESS)
    write_config(daemon.env, f"[profile proc]\ncredential_process = {sys.executable} {script}\n")
    result = daemon.client("env", "--profile", "proc")
    assert result.returncode == 0, result.stderr
    assert "ASIAPROCESSSOURCE001" in result.stdout
    assert "cHJvY2Vzcy10b2tlbg==" in result.stdout
    assert sts_proxy.calls == []


def test_a_profile_without_credentials_says_so(daemon: Daemon) -> None:
    """A profile with neither a role nor credentials of its own is reported by name."""
    write_config(daemon.env, "[profile plain]\nregion = us-east-1\n")
    result = daemon.client("env", "--profile", "plain")
    assert result.returncode == 1
    assert "no source credentials found in profile 'plain'" in result.stderr, result.stderr


def test_an_sso_profile_is_served_at_once_after_sso_login(tmp_path: Path, moto: Moto) -> None:
    """An SSO-only profile before `aws sso login` fails (and the error is remembered); right
    after the login writes its token, the next request is served the portal's role
    credentials, without waiting out the remembered error; STS hears nothing."""
    portal = SsoPortal()
    env = base_env(tmp_path, moto.url)
    env.update(ROLECACHE_NO_AUTOSTART="1", AWS_ENDPOINT_URL_SSO=portal.url)
    Path(env["AWS_CONFIG_FILE"]).write_text(sso_profile("dev"))
    daemon = start_daemon(tmp_path, env)
    try:
        for _ in range(2):  # the second is the remembered error
            before = daemon.client("env", "--profile", "dev")
            assert before.returncode == 2 and "sso-session 'corp'" in before.stderr, before.stderr
        portal.valid_tokens.add("fresh-login-token")
        sso_login(Path(env["HOME"]), "fresh-login-token")
        after = daemon.client("env", "--profile", "dev")
        assert after.returncode == 0, after.stderr
        assert ROLE_KEY_ID in after.stdout and ROLE_TOKEN in after.stdout
        assert portal.calls == 1
        assert moto.proxy.calls == []
        assert "fresh-login-token" not in daemon.log.read_text()
    finally:
        daemon.stop()
        portal.stop()


def test_a_credential_process_answering_shell_code_is_refused(daemon: Daemon) -> None:
    """A credential_process whose secret is shell code is refused before anything is
    rendered from it; the message names the field, never the value."""
    script = daemon.tmp / "process.py"
    script.write_text(HOUR_PROCESS.replace("cHJvY2Vzcy1zZWNyZXQ=", "$(touch pwned)"))
    write_config(daemon.env, f"[profile proc]\ncredential_process = {sys.executable} {script}\n")
    result = daemon.client("env", "--profile", "proc")
    assert result.returncode == 1
    assert "MalformedResponse" in result.stderr and "SecretAccessKey" in result.stderr
    assert "touch" not in result.stderr and result.stdout == ""
    assert "touch" not in daemon.log.read_text()
