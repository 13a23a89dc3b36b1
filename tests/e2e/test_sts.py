"""sts.py against real HTTP: boto3 talks to a stub STS on loopback that answers what a test
tells it to, so error mapping, source credentials and endpoints are proven on the wire."""

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

import pytest

from rolecached.core.request import MfaSession, RoleRequest
from rolecached.sts import StsCaller
from rolecached.stserrors import StsCallFailed
from tests.daemonkit import Moto
from tests.kit import sts_stand_in
from tests.strict_sts import sts_error_xml

REQUEST = RoleRequest("arn:aws:iam::123456789012:role/stub", "stub-session")

SUCCESS = """<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleResult><Credentials><AccessKeyId>ASIASTUBKEY000000001</AccessKeyId>
<SecretAccessKey>stubSecret/+=0</SecretAccessKey><SessionToken>stubToken/+=0</SessionToken>
<Expiration>2030-01-01T00:00:00Z</Expiration></Credentials>
<AssumedRoleUser><AssumedRoleId>AROASTUB:stub-session</AssumedRoleId>
<Arn>arn:aws:sts::123456789012:assumed-role/stub/stub-session</Arn></AssumedRoleUser>
<PackedPolicySize>6</PackedPolicySize></AssumeRoleResult>
<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleResponse>"""


@dataclass
class StubSts:
    """A loopback STS whose next answers are (status, body) pairs; it records requests."""

    url: str = ""
    answers: list[tuple[int, str]] = field(default_factory=list)
    seen: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def stub() -> Iterator[StubSts]:
    """A stub STS server on 127.0.0.1 for one test."""
    state = StubSts()

    def answer(body: str, authorization: str) -> tuple[int, str]:
        state.seen.append({"auth": authorization, "body": body})
        return state.answers.pop(0) if state.answers else (200, SUCCESS)

    server = sts_stand_in(answer)
    state.url = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()


@pytest.fixture
def aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An AWS environment of the test's own: default-chain keys and empty config files."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIADEFAULTCHAIN0001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "default-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    return tmp_path


def test_success_is_parsed_into_credentials(stub: StubSts, aws_env: Path) -> None:
    """A successful AssumeRole becomes Credentials with the expiration as epoch seconds."""
    creds = StsCaller(endpoint_url=stub.url).assume_role(REQUEST, now=time.time())
    assert creds.access_key_id == "ASIASTUBKEY000000001"
    assert creds.session_token == "stubToken/+=0"
    assert creds.expiration == 1893456000.0  # 2030-01-01T00:00:00Z
    assert creds.assumed_role_arn.endswith("assumed-role/stub/stub-session")
    assert "RoleSessionName=stub-session" in stub.seen[0]["body"]
    assert "DurationSeconds=3600" in stub.seen[0]["body"]


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (400, "Throttling", True),
        (400, "IDPCommunicationError", True),
        (503, "ServiceUnavailable", True),
        (500, "InternalFailure", True),
        (403, "AccessDenied", False),
        (400, "ValidationError", False),
        (403, "ExpiredToken", False),
        (403, "RegionDisabledException", False),
        (400, "MalformedPolicyDocument", False),
    ],
)
def test_sts_errors_keep_their_code_and_retry_class(
    stub: StubSts, aws_env: Path, status: int, code: str, retryable: bool
) -> None:
    """Each STS error arrives with STS's own code and message, classed retryable or not, and
    botocore does not retry behind our back (exactly one request reaches STS)."""
    stub.answers.append((status, sts_error_xml(code, f"message for {code}")))
    with pytest.raises(StsCallFailed) as caught:
        StsCaller(endpoint_url=stub.url).assume_role(REQUEST, now=time.time())
    failure = caught.value.failure
    assert (failure.code, failure.message, failure.retryable) == (
        code,
        f"message for {code}",
        retryable,
    )
    assert len(stub.seen) == 1


# Values no STS sends, each aimed at a shell or at PowerShell reading the export lines.
HOSTILE_VALUES = {
    "AccessKeyId": "ASIA'; Remove-Item -Recurse ~ #",
    "SecretAccessKey": "s3cret$(touch /tmp/pwned)",
    "SessionToken": "token`touch /tmp/pwned`\u2019; Remove-Item ~",
    "Expiration": "2030-01-01T00:00:00Z; rm -rf ~",
}


@pytest.mark.parametrize("field", list(HOSTILE_VALUES))
def test_credentials_of_the_wrong_shape_are_an_sts_failure(
    stub: StubSts, aws_env: Path, field: str
) -> None:
    """A credential field outside STS's alphabet is refused as a retryable MalformedResponse
    whose message names the field but never repeats the value."""
    value = HOSTILE_VALUES[field]
    body = SUCCESS.replace(
        re.search(f"<{field}>(.*?)</{field}>", SUCCESS).group(0),  # type: ignore[union-attr]
        f"<{field}>{xml_escape(value)}</{field}>",
    )
    stub.answers.append((200, body))
    with pytest.raises(StsCallFailed) as caught:
        StsCaller(endpoint_url=stub.url).assume_role(REQUEST, now=time.time())
    failure = caught.value.failure
    assert (failure.code, failure.retryable) == ("MalformedResponse", True)
    assert field in failure.message
    assert value not in failure.message and value[:8] not in failure.message


def test_motos_credentials_fit_the_allow_list(aws_env: Path, moto: Moto) -> None:
    """moto's AssumeRole (ASIA keys, base64-like tokens, microsecond expirations) and its
    GetSessionToken (the fixed AKIA example key) pass the allow-list unchanged."""
    caller = StsCaller(endpoint_url=moto.url)
    role = caller.assume_role(REQUEST, now=time.time())
    assert role.access_key_id.startswith("ASIA") and len(role.session_token) > 100
    session = caller.get_session_token(
        MfaSession("arn:aws:iam::123456789012:mfa/alice"), now=time.time(), token_code="123456"
    )
    assert session.access_key_id.isalnum() and session.secret_access_key


def test_unreachable_sts_is_a_retryable_network_error(aws_env: Path) -> None:
    """A refused connection is reported as a retryable NetworkError."""
    with pytest.raises(StsCallFailed) as caught:
        StsCaller(endpoint_url="http://127.0.0.1:9").assume_role(REQUEST, now=time.time())
    assert caught.value.failure.code == "NetworkError"
    assert caught.value.failure.retryable


def test_source_profile_signs_with_that_profiles_keys(stub: StubSts, aws_env: Path) -> None:
    """With a source profile, the call is signed with that profile's keys, not the default
    chain's; without one, with the default chain's."""
    (aws_env / "credentials").write_text(
        "[src]\naws_access_key_id = AKIASOURCEPROFILE001\naws_secret_access_key = s\n"
    )
    caller = StsCaller(endpoint_url=stub.url)
    caller.assume_role(REQUEST, now=time.time())
    caller.assume_role(
        RoleRequest(REQUEST.role_arn, REQUEST.role_session_name, source_profile="src"),
        now=time.time(),
    )
    assert "Credential=AKIADEFAULTCHAIN0001/" in stub.seen[0]["auth"]
    assert "Credential=AKIASOURCEPROFILE001/" in stub.seen[1]["auth"]


def test_unknown_source_profile_is_a_clear_permanent_error(aws_env: Path) -> None:
    """A source profile missing from the config files names the profile in botocore's
    words (the AWS CLI's), is permanent, and is known to be refused before STS."""
    with pytest.raises(StsCallFailed) as caught:
        StsCaller().assume_role(
            RoleRequest(REQUEST.role_arn, REQUEST.role_session_name, source_profile="nope"),
            now=time.time(),
        )
    assert caught.value.failure.code == "ProfileNotFound"
    assert caught.value.failure.message == "The config profile (nope) could not be found"
    assert not caught.value.failure.retryable
    assert caught.value.failure.local


def test_no_source_credentials_is_a_clear_permanent_error(
    aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no credentials anywhere, the error says where it looked and how to fix it."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StsCallFailed) as caught:
        StsCaller(endpoint_url="http://127.0.0.1:9").assume_role(REQUEST, now=time.time())
    assert caught.value.failure.code == "NoSourceCredentials"
    assert "--source-profile" in caught.value.failure.message


def test_endpoints_follow_boto3(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A region picks STS's regional endpoint, and AWS_ENDPOINT_URL_STS overrides it, as in
    boto3."""
    in_ireland = RoleRequest(REQUEST.role_arn, REQUEST.role_session_name, region="eu-west-1")
    endpoint = StsCaller()._client(in_ireland).meta.endpoint_url
    assert endpoint == "https://sts.eu-west-1.amazonaws.com"
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:4566")
    assert StsCaller()._client(in_ireland).meta.endpoint_url == "http://127.0.0.1:4566"
