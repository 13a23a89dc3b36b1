"""SSO sign-ins end to end: the real daemon and client against the SSO stand-in (portal and
OIDC service): a token renewed with its refresh token as botocore renews it, one clear
message once the sign-in has ended, and `rolecache login`'s device flow writing the token
cache botocore and the AWS CLI read."""

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from hashlib import sha1
from pathlib import Path

import pytest
from botocore.utils import SSOTokenLoader

from rolecached.errors import LoginExpired
from rolecached.sources.deviceflow import DeviceFlow
from rolecached.sources.sso import SsoSession
from rolecached.sources.ssologin import poll
from tests.daemonkit import BIN, Moto, base_env, start_daemon, unique_role
from tests.profilekit import role_profile
from tests.ssokit import (
    DEVICE_GRANT,
    ROLE_KEY_ID,
    START_URL,
    SsoPortal,
    expired_login_with_refresh,
    sso_env,
    sso_login,
    sso_profile,
    token_cache,
)

SESSION = SsoSession(name="corp", start_url=START_URL, region="us-east-1")
CLI_V2_TOKEN_FIELDS = {
    "startUrl",
    "region",
    "accessToken",
    "expiresAt",
    "clientId",
    "clientSecret",
    "registrationExpiresAt",
    "refreshToken",
}
UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture
def portal() -> "SsoPortal":
    """The SSO stand-in, stopped after the test."""
    stand_in = SsoPortal()
    yield stand_in
    stand_in.stop()


def _env(tmp_path: Path, moto: Moto, portal: SsoPortal) -> dict[str, str]:
    env = sso_env(base_env(tmp_path, moto.url), portal)
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    for display in ("DISPLAY", "WAYLAND_DISPLAY"):  # no browser is ever opened by a test
        env.pop(display, None)
    Path(env["AWS_CONFIG_FILE"]).write_text(sso_profile("dev"))
    return env


def _cached_token(home: Path) -> dict:
    return SSOTokenLoader(token_cache(home))(START_URL, session_name="corp")


def test_an_expired_token_is_renewed_with_its_refresh_token(
    tmp_path: Path, moto: Moto, portal: SsoPortal
) -> None:
    """An SSO token that expired but holds a valid refresh token is renewed by the daemon
    (botocore's CreateToken refresh_token grant) without the user: the profile is served
    and the token cache file holds the new token, as botocore writes it."""
    env = _env(tmp_path, moto, portal)
    home = Path(env["HOME"])
    old_refresh = expired_login_with_refresh(portal, home)
    daemon = start_daemon(tmp_path, env)
    try:
        result = daemon.client("env", "--profile", "dev")
        assert result.returncode == 0, result.stderr
        assert ROLE_KEY_ID in result.stdout
    finally:
        daemon.stop()
    assert "CreateToken:refresh_token" in portal.oidc_calls
    token = _cached_token(home)
    assert token["accessToken"] in portal.valid_tokens
    assert token["refreshToken"] != old_refresh and token["refreshToken"] in portal.refresh_tokens
    assert UTC.fullmatch(token["expiresAt"]) and token["expiresAt"] > time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()
    )
    assert moto.proxy.calls == []
    log = daemon.log.read_text()
    assert token["accessToken"] not in log and token["refreshToken"] not in log


def test_an_ended_sign_in_names_the_session_and_the_command(
    tmp_path: Path, moto: Moto, portal: SsoPortal
) -> None:
    """When the token expired and its refresh token is refused, every caller gets exit 2 and
    one message naming the sso-session and the login commands (the second without a call to
    the OIDC service); the first request after a new login is served."""
    env = _env(tmp_path, moto, portal)
    home = Path(env["HOME"])
    expired_login_with_refresh(portal, home)
    portal.refresh_tokens.clear()  # the session was ended (signed out, or timed out)
    daemon = start_daemon(tmp_path, env)
    try:
        for _ in range(2):
            result = daemon.client("env", "--profile", "dev")
            assert result.returncode == 2, result.stderr
            assert "sso-session 'corp'" in result.stderr
            assert "`aws sso login --sso-session corp`" in result.stderr
            assert "`rolecache login --sso-session corp`" in result.stderr
            assert result.stdout == ""
        assert portal.oidc_calls.count("CreateToken:refresh_token") == 1
        portal.valid_tokens.add("fresh-login-token")
        sso_login(home, "fresh-login-token")
        after = daemon.client("env", "--profile", "dev")
        assert after.returncode == 0, after.stderr
        assert ROLE_KEY_ID in after.stdout
    finally:
        daemon.stop()


def test_no_sign_in_yet_names_the_command(tmp_path: Path, moto: Moto, portal: SsoPortal) -> None:
    """A profile whose session never signed in (no token file) gets the same message."""
    env = _env(tmp_path, moto, portal)
    daemon = start_daemon(tmp_path, env)
    try:
        result = daemon.client("process", "--profile", "dev")
        assert result.returncode == 2, result.stderr
        assert "rolecache login --sso-session corp" in result.stderr
    finally:
        daemon.stop()
    assert portal.calls == 0


def test_the_poll_waits_its_interval_and_slows_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, portal: SsoPortal
) -> None:
    """The device flow asks for the token every `interval`, 5 s more after SlowDown, through
    pending answers, until the user confirms; the token goes to the cache."""
    for name, value in sso_env({}, portal).items():
        monkeypatch.setenv(name, value)
    cache = token_cache(tmp_path)
    flow = DeviceFlow(cache=cache)
    pending = flow.start(SESSION)
    device = portal.device(pending.user_code)
    device.script = [
        "AuthorizationPendingException",
        "SlowDownException",
        "AuthorizationPendingException",
    ]
    device.approved = True
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    expires = asyncio.run(poll(flow, pending, sleep))
    assert slept == [1.0, 1.0, 6.0, 6.0]
    token = SSOTokenLoader(cache)(START_URL, session_name="corp")
    assert token["expiresAt"] == expires and token["accessToken"] in portal.valid_tokens
    assert portal.oidc_calls.count(f"CreateToken:{DEVICE_GRANT}") == 4


def test_an_unconfirmed_code_expires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, portal: SsoPortal
) -> None:
    """ExpiredTokenException from CreateToken ends the flow with LoginExpired; no token is
    written; a second login reuses the cached client registration."""
    for name, value in sso_env({}, portal).items():
        monkeypatch.setenv(name, value)
    cache = token_cache(tmp_path)
    flow = DeviceFlow(cache=cache)
    pending = flow.start(SESSION)
    portal.device(pending.user_code).expired = True

    async def sleep(seconds: float) -> None:
        pass

    with pytest.raises(LoginExpired, match="sso-session 'corp'"):
        asyncio.run(poll(flow, pending, sleep))
    assert sha1(b"corp").hexdigest() not in cache
    flow.start(SESSION)
    assert portal.oidc_calls.count("RegisterClient") == 1


def test_rolecache_login_writes_the_cache_botocore_and_the_cli_read(
    tmp_path: Path, moto: Moto, portal: SsoPortal
) -> None:
    """`rolecache login --sso-session corp` shows the URL and code, waits through a pending
    answer until the user confirms, and writes the token (the fields the AWS CLI v2 writes)
    and the client registration where the CLI keeps them; the daemon, botocore's SSO
    provider and the AWS CLI v1 then sign in with it, and no secret is printed or logged."""
    env = _env(tmp_path, moto, portal)
    home = Path(env["HOME"])
    portal.approve_after = 1  # the user confirms the code after one pending answer
    daemon = start_daemon(tmp_path, env)
    try:
        unknown = daemon.client("login", "--sso-session", "other")
        assert unknown.returncode == 2 and "[sso-session other]" in unknown.stderr
        assert daemon.client("login").returncode == 2  # neither a profile nor a session
        login = daemon.client("login", "--sso-session", "corp")
        assert login.returncode == 0, login.stderr
        served = daemon.client("env", "--profile", "dev")
        assert served.returncode == 0 and ROLE_KEY_ID in served.stdout, served.stderr
    finally:
        daemon.stop()
    (code,) = re.findall(r"confirm the code (\S+)", login.stdout)
    assert f"user_code={code}" in login.stdout and "sso-session 'corp'" in login.stdout
    assert portal.oidc_calls.count(f"CreateToken:{DEVICE_GRANT}") == 2
    cache = home / ".aws" / "sso" / "cache"
    token = json.loads((cache / f"{sha1(b'corp').hexdigest()}.json").read_text())
    assert set(token) == CLI_V2_TOKEN_FIELDS
    assert token["startUrl"] == START_URL and token["region"] == "us-east-1"
    assert UTC.fullmatch(token["expiresAt"]) and UTC.fullmatch(token["registrationExpiresAt"])
    assert token == _cached_token(home)  # botocore's own reader
    registration_key = json.dumps(
        {
            "region": "us-east-1",
            "scopes": None,
            "session_name": "corp",
            "startUrl": START_URL,
            "tool": "botocore",
        },
        sort_keys=True,
    )
    registration = json.loads(
        (cache / f"{sha1(registration_key.encode()).hexdigest()}.json").read_text()
    )
    assert registration["clientId"] == token["clientId"]
    assert registration["expiresAt"] == token["registrationExpiresAt"]
    assert (cache / f"{sha1(b'corp').hexdigest()}.json").stat().st_mode & 0o077 == 0
    secrets = (token["accessToken"], token["refreshToken"], token["clientSecret"])
    shown = login.stdout + login.stderr + daemon.log.read_text()
    assert not [s for s in secrets if s in shown]
    # botocore's SSO credential provider and the AWS CLI v1 (botocore) read the file.
    outside = {
        k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    reader = subprocess.run(
        [
            sys.executable,
            "-c",
            "import botocore.session; s = botocore.session.Session(profile='dev'); "
            "print(s.get_credentials().get_frozen_credentials().access_key)",
        ],
        env=outside,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reader.stdout.strip() == ROLE_KEY_ID, reader.stderr
    calls = portal.calls
    cli = subprocess.run(
        [str(BIN / "aws"), "sts", "get-caller-identity", "--profile", "dev"],
        env=outside,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert portal.calls == calls + 1


def test_the_drop_in_says_what_the_cli_says_when_the_session_ended(
    tmp_path: Path, moto: Moto, portal: SsoPortal
) -> None:
    """`rolecache sts assume-role --profile dev` with an ended SSO session exits and ends
    its message as the AWS CLI v1 does (botocore's words, exit 255), and neither calls STS."""
    env = _env(tmp_path, moto, portal)
    expired_login_with_refresh(portal, Path(env["HOME"]))
    portal.refresh_tokens.clear()
    args = ["sts", "assume-role", "--role-arn", "arn:aws:iam::123456789012:role/app"]
    args += ["--role-session-name", "me", "--profile", "dev"]
    daemon = start_daemon(tmp_path, env)
    try:
        mine = daemon.client(*args)
    finally:
        daemon.stop()
    outside = {k: v for k, v in env.items() if not k.startswith("AWS_ACCESS_KEY_ID")}
    theirs = subprocess.run(
        [str(BIN / "aws"), *args], env=outside, capture_output=True, text=True, timeout=60
    )
    assert mine.returncode == theirs.returncode == 255, (mine.stderr, theirs.stderr)
    assert mine.stderr.strip().splitlines()[-1] == theirs.stderr.strip().splitlines()[-1]
    assert "refresh failed" in mine.stderr
    assert moto.proxy.calls == []


AWS_CLI_V2 = Path("/usr/bin/aws")


@pytest.mark.skipif(not AWS_CLI_V2.exists(), reason="Debian's AWS CLI v2 (awscli) is not installed")
def test_the_aws_cli_v2_reads_the_token_login_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, portal: SsoPortal
) -> None:
    """Debian's AWS CLI v2 2.9 takes the token file the device flow writes: it asks the
    portal for role credentials with that access token. (2.9 predates AWS_ENDPOINT_URL_SSO,
    so it cannot be pointed at the stand-in: its call goes to a proxy that refuses it, and
    its debug log shows the request it would have made.)"""
    for name, value in sso_env({}, portal).items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "home"
    flow = DeviceFlow(cache=token_cache(home))
    pending = flow.start(SESSION)
    portal.device(pending.user_code).approved = True

    async def sleep(seconds: float) -> None:
        pass

    asyncio.run(poll(flow, pending, sleep))
    token = _cached_token(home)
    config = tmp_path / "config"
    config.write_text(sso_profile("dev"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        sso_env({}, portal),
        HOME=str(home),
        AWS_CONFIG_FILE=str(config),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_MAX_ATTEMPTS="1",
    )
    cli = subprocess.run(
        [str(AWS_CLI_V2), "configure", "export-credentials", "--profile", "dev", "--debug"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "aws-cli/2." in cli.stderr and cli.returncode != 0
    assert "OperationModel(name=GetRoleCredentials)" in cli.stderr
    assert f"'x-amz-sso_bearer_token': '{token['accessToken']}'" in cli.stderr
    assert "Token has expired" not in cli.stderr and "Error loading SSO Token" not in cli.stderr


def test_a_role_behind_an_sso_profile_tells_and_renews(
    tmp_path: Path, moto: Moto, portal: SsoPortal
) -> None:
    """A role whose source_profile signs in with SSO: before any sign-in every caller gets
    the sso-session and the login command (exit 2); once a token that must be refreshed is
    written, the next request is served (the refresh grant, then AssumeRole signed with the
    portal's credentials)."""
    env = _env(tmp_path, moto, portal)
    role = unique_role("behind-sso")
    with open(env["AWS_CONFIG_FILE"], "a") as config:
        config.write("\n" + role_profile("app", role, "dev"))
    daemon = start_daemon(tmp_path, env)
    try:
        for _ in range(2):
            before = daemon.client("env", "--profile", "app")
            assert before.returncode == 2, before.stderr
            assert "rolecache login --sso-session corp" in before.stderr
        assert moto.proxy.calls == []
        expired_login_with_refresh(portal, Path(env["HOME"]))
        after = daemon.client("env", "--profile", "app")
        assert after.returncode == 0, after.stderr
        assert "AWS_SESSION_TOKEN" in after.stdout and ROLE_KEY_ID not in after.stdout
    finally:
        daemon.stop()
    assert "CreateToken:refresh_token" in portal.oidc_calls
    assert moto.proxy.calls == ["AssumeRole"]
    assert moto.proxy.forms[0]["RoleArn"] == role and moto.proxy.temporary == [True]


def test_a_request_waits_for_a_login_in_progress(
    tmp_path: Path, moto: Moto, portal: SsoPortal
) -> None:
    """A request for a profile whose sign-in has ended, made while `rolecache login` of its
    sso-session waits for the user, is served once the user confirms the code, instead of
    failing (as callers wait for another caller's MFA prompt)."""
    env = _env(tmp_path, moto, portal)
    expired_login_with_refresh(portal, Path(env["HOME"]))
    portal.refresh_tokens.clear()
    daemon = start_daemon(tmp_path, env)
    login = subprocess.Popen(
        [str(BIN / "rolecache"), "login", "dev"], env=env, stdout=subprocess.PIPE, text=True
    )
    request = None
    try:
        assert login.stdout is not None
        (code,) = re.findall(
            r"confirm the code (\S+)", login.stdout.readline() + login.stdout.readline()
        )
        request = subprocess.Popen(
            [str(BIN / "rolecache"), "env", "--profile", "dev"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert portal.refresh_tried.wait(timeout=30)  # the request found the sign-in ended
        portal.device(code).approved = True  # the user confirms the code
        out, err = request.communicate(timeout=60)
        assert request.returncode == 0, err
        assert ROLE_KEY_ID in out
        assert login.wait(timeout=60) == 0
    finally:
        for process in (login, request):
            if process is not None and process.poll() is None:
                process.kill()
        daemon.stop()
