"""Which SSO sign-in a profile uses, and the names of its cache files, as the AWS CLI names
them: pure logic, no daemon."""

import hashlib
import json

import pytest

from rolecached.sources.sso import SsoConfigError, session_named, session_of_profile

START = "https://example.awsapps.com/start"
SESSIONS = {"corp": {"sso_start_url": START, "sso_region": "eu-west-1"}}


def test_an_sso_session_profile_names_its_session_files_and_commands(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    """A profile with sso_session uses that [sso-session]: token file SHA-1 of its name,
    registration file keyed as the CLI keys it, and the --sso-session login commands."""
    monkeypatch.setenv("HOME", str(tmp_path))
    session = session_of_profile("dev", {"dev": {"sso_session": "corp"}}, SESSIONS)
    assert session is not None and session.region == "eu-west-1"
    assert session.token_file().endswith(
        f"/.aws/sso/cache/{hashlib.sha1(b'corp').hexdigest()}.json"
    )
    key = json.dumps(
        {
            "tool": "botocore",
            "startUrl": START,
            "region": "eu-west-1",
            "scopes": None,
            "session_name": "corp",
        },
        sort_keys=True,
    )
    assert session.registration_file().endswith(f"{hashlib.sha1(key.encode()).hexdigest()}.json")
    assert "`rolecache login --sso-session corp`" in session.login_commands()


def test_a_legacy_profile_uses_its_start_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    """A profile with its own sso_start_url: token file SHA-1 of the URL, login by profile."""
    monkeypatch.setenv("HOME", str(tmp_path))
    profile = {"old": {"sso_start_url": START, "sso_region": "us-east-1"}}
    session = session_of_profile("old", profile, {})
    assert session is not None and session.name is None
    assert session.token_file().endswith(f"{hashlib.sha1(START.encode()).hexdigest()}.json")
    assert "`rolecache login old`" in session.login_commands()
    assert session.client_name(1700000000.5) == "botocore-client-1700000000"


def test_scopes_are_parsed_as_the_cli_parses_them() -> None:
    """sso_registration_scopes is a comma-separated list, blanks dropped."""
    sessions = {"corp": {**SESSIONS["corp"], "sso_registration_scopes": " sso:account:access, ,x"}}
    assert session_named("corp", sessions).scopes == ("sso:account:access", "x")


@pytest.mark.parametrize(
    ("profiles", "sessions", "words"),
    [
        ({"dev": {"sso_session": "nope"}}, SESSIONS, "no [sso-session nope]"),
        ({"dev": {"sso_session": "corp"}}, {"corp": {"sso_region": "x"}}, "no sso_start_url"),
        ({"dev": {"sso_start_url": START}}, {}, "no sso_region"),
    ],
)
def test_incomplete_settings_are_named(profiles: dict, sessions: dict, words: str) -> None:
    """A missing sso-session or setting is refused with a message that names it."""
    with pytest.raises(SsoConfigError, match=words.replace("[", r"\[")):
        session_of_profile("dev", profiles, sessions)


def test_a_profile_without_sso_has_no_session() -> None:
    """A profile with keys or a role is not an SSO profile."""
    assert session_of_profile("keys", {"keys": {"aws_access_key_id": "AKIA"}}, SESSIONS) is None
