"""Role chaining is wider than role to role: the STS caller refuses, before any call, an
AssumeRole over an hour that temporary credentials would sign (SSO, `aws login`, a
credential_process or environment with a session token...) and GetSessionToken from them;
a role with MFA over an hour carries its code in AssumeRole itself. Against the strict STS
proxy, which would refuse the same calls."""

from collections.abc import Iterator
from pathlib import Path

import botocore.credentials
import botocore.session
import pytest

from rolecached.core.request import MfaSession, RoleRequest
from rolecached.errors import TemporarySource
from rolecached.sts import StsCaller
from tests.daemonkit import ACCOUNT, Moto, unique_role

MFA = f"arn:aws:iam::{ACCOUNT}:mfa/chaining"
KEY_ID = "AKIACHAININGTEST0001"


def role(duration: int, source_profile: str | None = "dev", **extra: object) -> RoleRequest:
    return RoleRequest(
        unique_role("chain"), "chaining", duration, source_profile=source_profile, **extra
    )


@pytest.fixture
def source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, object]]:
    """Profile "dev", whose credentials every botocore session of the test resolves to:
    long-term keys unless the test sets a token and the provider `method` that found them."""
    config = tmp_path / "config"
    config.write_text("[profile dev]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    found: dict[str, object] = {"token": None, "method": "shared-credentials-file"}

    def get_credentials(self: botocore.session.Session) -> botocore.credentials.Credentials:
        return botocore.credentials.Credentials(
            KEY_ID, "source-secret", found["token"], method=str(found["method"])
        )

    monkeypatch.setattr(botocore.session.Session, "get_credentials", get_credentials)
    yield found


@pytest.mark.parametrize(
    ("method", "kind"),
    [
        ("sso", "SSO"),
        ("login", "`aws login`"),
        ("custom-process", "credential_process"),
        ("env", "AWS_SESSION_TOKEN"),
        ("shared-credentials-file", "aws_session_token in the credentials file"),
        ("assume-role", "a role it assumes"),
    ],
)
def test_long_role_from_temporary_source_is_refused_before_any_call(
    moto: Moto, source: dict[str, object], method: str, kind: str
) -> None:
    """A 7200 s role whose source gives temporary credentials is refused with a message
    naming the source profile, what makes it temporary and STS's 3600 s cap; STS hears
    nothing."""
    source.update(token="a-session-token", method=method)
    with pytest.raises(TemporarySource) as caught:
        StsCaller(moto.url).assume_role(role(7200), 0.0)
    message = caught.value.message
    assert "source profile 'dev'" in message and kind in message
    assert "temporary" in message and "3600 s" in message and "role chaining" in message
    assert caught.value.status == 400
    assert moto.proxy.calls == []
    assert "a-session-token" not in message


def test_an_hour_from_temporary_source_is_sent(moto: Moto, source: dict[str, object]) -> None:
    """3600 s or less from temporary credentials is allowed by STS, so it is sent (signed
    with the session token) and succeeds."""
    source.update(token="a-session-token", method="sso")
    credentials = StsCaller(moto.url).assume_role(role(3600), 0.0)
    assert credentials.access_key_id.startswith("ASIA")
    assert moto.proxy.calls == ["AssumeRole"] and moto.proxy.temporary == [True]


def test_long_role_from_long_term_keys_is_sent(moto: Moto, source: dict[str, object]) -> None:
    """A 12-hour role from long-term keys goes to STS as asked."""
    StsCaller(moto.url).assume_role(role(43200), 0.0)
    assert moto.proxy.forms[0]["DurationSeconds"] == "43200"
    assert moto.proxy.temporary == [False]


def test_environment_source_names_the_daemons_environment(
    moto: Moto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """credential_source = Environment with AWS_SESSION_TOKEN in the daemon's environment is
    temporary too, and the message says so."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-session-token")
    request = role(7200, source_profile=None, credential_source="Environment")
    with pytest.raises(TemporarySource) as caught:
        StsCaller(moto.url).assume_role(request, 0.0)
    assert "the daemon's environment (credential_source = Environment)" in caught.value.message
    assert moto.proxy.calls == []


def test_mfa_session_from_temporary_source_is_refused_before_any_call(
    moto: Moto, source: dict[str, object]
) -> None:
    """GetSessionToken, which STS refuses to temporary credentials, is not called for a
    source that gives them; the message says why and names the device and the source."""
    source.update(token="a-session-token", method="sso")
    session = MfaSession(mfa_serial=MFA, source_profile="dev")
    with pytest.raises(TemporarySource) as caught:
        StsCaller(moto.url).get_session_token(session, 0.0, "123456")
    message = caught.value.message
    assert MFA in message and "GetSessionToken" in message and "SSO" in message
    assert "source profile 'dev'" in message
    assert moto.proxy.calls == []


def test_long_mfa_role_carries_its_code_in_assume_role(
    moto: Moto, source: dict[str, object]
) -> None:
    """A 12-hour role with MFA is one AssumeRole, signed by the long-term keys, with
    SerialNumber and TokenCode: no GetSessionToken, no session token."""
    request = role(43200, mfa_serial=MFA)
    assert request.direct_mfa and request.mfa_session is None
    StsCaller(moto.url).call(request, 0.0, None, "123456")
    (form,) = moto.proxy.forms
    assert (form["Action"], form["SerialNumber"], form["TokenCode"]) == (
        "AssumeRole",
        MFA,
        "123456",
    )
    assert moto.proxy.temporary == [False]


def test_an_hour_mfa_role_is_signed_by_the_shared_session() -> None:
    """Up to an hour a role with MFA keeps the shared MFA session (no code of its own)."""
    request = role(3600, mfa_serial=MFA)
    assert not request.direct_mfa
    assert request.mfa_session is not None and request.mfa_session.mfa_serial == MFA
