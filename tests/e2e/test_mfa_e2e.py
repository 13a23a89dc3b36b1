"""MFA and role chaining end to end, against the strict STS proxy (which refuses what real
STS refuses): the real daemon and the real client, with a pseudo-terminal for prompts."""

import json
import sys
from pathlib import Path

import pytest

from tests.daemonkit import ACCOUNT, Daemon, base_env, start_daemon, unique_role
from tests.profilekit import on_terminal, role_profile, write_config
from tests.strict_sts import StsProxy

MFA = f"arn:aws:iam::{ACCOUNT}:mfa/alice"
PROMPT = "MFA code for"


def sessions(daemon: Daemon) -> dict[str, dict]:
    """`rolecache list --json`, by role ARN."""
    listed = json.loads(daemon.client("list", "--json").stdout)["sessions"]
    return {s["role_arn"]: s for s in listed}


def sent_codes(proxy: StsProxy) -> list[tuple[str, str]]:
    """Every (Action, TokenCode) STS received, in order."""
    return [(f["Action"], f["TokenCode"]) for f in proxy.forms if "TokenCode" in f]


def test_long_mfa_roles_prompt_once_each_and_hour_roles_share_a_session(
    daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """A 12-hour MFA role gives a 12-hour session after one prompt, a second one prompts once
    more, and 1-hour MFA roles share one GetSessionToken session (the second needs no
    prompt); no code reaches STS twice and STS refuses nothing."""
    roles = {name: unique_role(name) for name in ("long1", "long2", "hour1", "hour2")}
    write_config(
        daemon.env,
        "".join(
            role_profile(name, arn, "base", mfa_serial=MFA)
            + ("duration_seconds = 43200\n" if name.startswith("long") else "")
            for name, arn in roles.items()
        ),
    )
    for name, code in (("long1", "123456"), ("long2", "234567"), ("hour1", "345678")):
        status, stdout, screen = on_terminal(daemon.env, ["env", "--profile", name], [code])
        assert status == 0, screen
        assert screen.count(PROMPT) == 1, screen
        assert "export AWS_SESSION_TOKEN=" in stdout
    # No terminal from here on: success proves no prompt was needed.
    for name in ("hour2", "long1", "long2", "hour1"):
        result = daemon.client("env", "--profile", name)
        assert result.returncode == 0, (name, result.stderr)

    assert sent_codes(sts_proxy) == [
        ("AssumeRole", "123456"),
        ("AssumeRole", "234567"),
        ("GetSessionToken", "345678"),
    ]
    long_calls = [
        f
        for f in sts_proxy.forms
        if f["Action"] == "AssumeRole" and f["DurationSeconds"] == "43200"
    ]
    assert [f["RoleArn"] for f in long_calls] == [roles["long1"], roles["long2"]]
    signed_by_session = [
        f["RoleArn"]
        for f, temporary in zip(sts_proxy.forms, sts_proxy.temporary, strict=True)
        if temporary
    ]
    assert signed_by_session == [roles["hour1"], roles["hour2"]]
    assert sts_proxy.refused == []

    listed = sessions(daemon)
    for name in ("long1", "long2"):
        assert listed[roles[name]]["expires_in"] > 43200 - 120
        assert listed[roles[name]]["needs_mfa_code"] is True
        assert listed[roles[name]]["renews_in"] is None
    assert listed[roles["hour1"]]["needs_mfa_code"] is False
    table = daemon.client("list").stdout
    long_line = next(line for line in table.splitlines() if roles["long1"] in line)
    assert "needs MFA code" in long_line
    hour_line = next(line for line in table.splitlines() if roles["hour1"] in line)
    assert "needs MFA code" not in hour_line


def test_a_code_sent_twice_is_refused_by_sts_and_reported(
    daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """The same --token-code for two 12-hour roles: STS (the proxy) refuses the reuse, and
    the client reports STS's message; the first role's credentials are unharmed."""
    first, second = unique_role("first"), unique_role("second")
    write_config(
        daemon.env,
        role_profile("first", first, "base", mfa_serial=MFA, duration_seconds="43200")
        + role_profile("second", second, "base", mfa_serial=MFA, duration_seconds="43200"),
    )
    assert daemon.client("env", "--profile", "first", "--token-code", "111111").returncode == 0
    again = daemon.client("env", "--profile", "second", "--token-code", "111111")
    assert again.returncode == 2
    assert "MultiFactorAuthentication failed" in again.stderr and "MfaCodeRejected" in again.stderr
    assert sts_proxy.refused == ["AccessDenied"]
    assert daemon.client("env", "--profile", "first").returncode == 0


def test_a_throttled_call_with_a_code_is_not_sent_again(
    daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """STS throttles the AssumeRole carrying a code: the daemon reports the throttling
    instead of sending the same code again."""
    role = unique_role("throttled")
    write_config(
        daemon.env, role_profile("t", role, "base", mfa_serial=MFA, duration_seconds="7200")
    )
    sts_proxy.inject("Throttling", times=1)
    result = daemon.client("env", "--profile", "t", "--token-code", "222222")
    assert result.returncode == 1
    assert "Throttling" in result.stderr
    assert sent_codes(sts_proxy) == [("AssumeRole", "222222")]


PROCESS = """import json; print(json.dumps({"Version": 1, "AccessKeyId": "ASIAPROCESSSOURCE001",
"SecretAccessKey": "process-secret", "SessionToken": "process-session-token",
"Expiration": "2099-01-01T00:00:00Z"}))"""

# source profile set-up -> (config text, credentials text, what the message names)
TEMPORARY_SOURCES = {
    "credential_process": (
        "[profile src]\ncredential_process = {python} {script}\n",
        "",
        "credential_process",
    ),
    "session token in the credentials file": (
        "",
        "[src]\naws_access_key_id = AKIATEMPORARYSOURCE1\naws_secret_access_key = s\n"
        "aws_session_token = file-session-token\n",
        "aws_session_token",
    ),
    "the daemon's environment": ("", "", "credential_source = Environment"),
}


@pytest.mark.parametrize("kind", list(TEMPORARY_SOURCES))
def test_long_role_from_a_temporary_source_exits_2_without_calling_sts(
    tmp_path: Path, sts_proxy: StsProxy, kind: str
) -> None:
    """`rolecache env --profile P` for a 7200 s role whose source gives temporary
    credentials exits 2, the message saying why, and STS hears nothing."""
    config, credentials, named = TEMPORARY_SOURCES[kind]
    script = tmp_path / "process.py"
    script.write_text(PROCESS)
    env = base_env(tmp_path, sts_proxy.url)
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    role = unique_role("long")
    if kind == "the daemon's environment":
        env["AWS_SESSION_TOKEN"] = "environment-session-token"
        profile = f"[profile p]\nrole_arn = {role}\ncredential_source = Environment\n"
    else:
        profile = role_profile("p", role, "src")
    Path(env["AWS_CONFIG_FILE"]).write_text(
        profile + "duration_seconds = 7200\n" + config.format(python=sys.executable, script=script)
    )
    Path(env["AWS_SHARED_CREDENTIALS_FILE"]).write_text(credentials)
    daemon = start_daemon(tmp_path, env)
    try:
        result = daemon.client("env", "--profile", "p")
        assert result.returncode == 2, result.stderr
        assert named in result.stderr
        assert "temporary" in result.stderr and "3600 s" in result.stderr
        assert "role chaining" in result.stderr
        assert result.stdout == ""
        assert sts_proxy.calls == []
        for secret in ("session-token", "process-secret"):
            assert secret not in result.stderr and secret not in daemon.log.read_text()
    finally:
        daemon.stop()


def test_long_role_from_a_role_exits_2_without_calling_sts(
    daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """A 7200 s role whose source profile is a role (classic chaining) exits 2 naming the
    source role, with no call to STS."""
    base_role, top = unique_role("base"), unique_role("top")
    write_config(
        daemon.env,
        role_profile("a", base_role, "base") + role_profile("b", top, "a", duration_seconds="7200"),
    )
    result = daemon.client("env", "--profile", "b")
    assert result.returncode == 2
    assert base_role in result.stderr and "role chaining" in result.stderr
    assert sts_proxy.calls == []


def test_mfa_from_a_temporary_source_exits_2_without_calling_sts(
    daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """A 1-hour MFA role whose source gives temporary credentials would need GetSessionToken,
    which STS refuses for them: the client exits 2 saying so, and STS hears nothing."""
    role = unique_role("mfa")
    Path(daemon.env["AWS_CONFIG_FILE"]).write_text(role_profile("m", role, "src", mfa_serial=MFA))
    Path(daemon.env["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        "[src]\naws_access_key_id = AKIATEMPORARYSOURCE1\naws_secret_access_key = s\n"
        "aws_session_token = file-session-token\n"
    )
    result = daemon.client("env", "--profile", "m", "--token-code", "123456")
    assert result.returncode == 2, result.stderr
    assert "GetSessionToken" in result.stderr and "source profile 'src'" in result.stderr
    assert sts_proxy.calls == []


@pytest.mark.parametrize("duration", ["3600", "43200"])
def test_the_code_the_client_asked_for_is_used_at_once(
    daemon: Daemon, sts_proxy: StsProxy, duration: str
) -> None:
    """With no terminal the client says to set ROLECACHE_TOKEN_CODE; doing so right away is
    served at once (no wait for the prompt nobody could answer), the code sent to STS once."""
    role = unique_role("noterm")
    write_config(
        daemon.env, role_profile("n", role, "base", mfa_serial=MFA, duration_seconds=duration)
    )
    first = daemon.client("env", "--profile", "n")
    assert first.returncode == 1 and "ROLECACHE_TOKEN_CODE" in first.stderr, first.stderr
    again = daemon.client(
        "env", "--profile", "n", env={**daemon.env, "ROLECACHE_TOKEN_CODE": "444444"}
    )
    assert again.returncode == 0, again.stderr
    action = "GetSessionToken" if duration == "3600" else "AssumeRole"
    assert sent_codes(sts_proxy) == [(action, "444444")]
    assert sts_proxy.refused == []


def test_ctrl_c_at_the_prompt_leaves_no_one_waiting(daemon: Daemon, sts_proxy: StsProxy) -> None:
    """Ctrl-C at the MFA prompt ends the prompt in the daemon too: the same command with
    ROLECACHE_TOKEN_CODE right after is served at once, not after a 20 s StsTimeout."""
    role = unique_role("interrupted")
    write_config(daemon.env, role_profile("i", role, "base", mfa_serial=MFA))
    status, stdout, screen = on_terminal(daemon.env, ["env", "--profile", "i"], ["\x03"])
    assert status != 0 and stdout == "" and screen.count(PROMPT) == 1, screen
    again = daemon.client(
        "env", "--profile", "i", env={**daemon.env, "ROLECACHE_TOKEN_CODE": "555555"}
    )
    assert again.returncode == 0, again.stderr
    assert sent_codes(sts_proxy) == [("GetSessionToken", "555555")]
