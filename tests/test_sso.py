"""SSO sign-ins end to end: the real daemon and client against the SSO stand-in (portal and
OIDC service): a token renewed with its refresh token as botocore renews it, one clear
message once the sign-in has ended, and `rolecache login`'s device flow writing the token
cache botocore and the AWS CLI read."""

import asyncio
import re
import time
from hashlib import sha1
from pathlib import Path

import pytest
from botocore.utils import SSOTokenLoader

from rolecached.sso import SsoSession
from rolecached.ssologin import DeviceFlow, LoginExpired, poll
from tests.conftest import Moto, base_env, start_daemon
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
