"""The strict STS proxy every test talks to: each STS rule moto skips is enforced with STS's
own status, code and message (proved by calling the proxy with botocore), and the real
daemon and client answer each one as they should."""

import json
import re
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import botocore.config
import botocore.exceptions
import botocore.session
import pytest

from tests.daemonkit import ACCOUNT, Daemon, Moto, unique_role
from tests.strict_sts import (
    CANNED_FAULTS,
    CHAINING_MESSAGE,
    MAX_SESSION_MESSAGE,
    MFA_REUSED_MESSAGE,
    SESSION_TOKEN_MESSAGE,
    StsProxy,
)

MFA = f"arn:aws:iam::{ACCOUNT}:mfa/strict"
NS = "{https://sts.amazonaws.com/doc/2011-06-15/}"
LONG_TERM = {"aws_access_key_id": "AKIASTRICTPROXY00001", "aws_secret_access_key": "long-term"}

Client = Any  # a botocore STS or IAM client


def client(url: str, service: str = "sts", **credentials: str) -> Client:
    """A botocore client for `url` with these credentials (long-term keys by default) and no
    retries, so every call reaches the proxy once."""
    return botocore.session.get_session().create_client(
        service,
        region_name="us-east-1",
        endpoint_url=url,
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
        **(credentials or LONG_TERM),
    )


def temporary(url: str) -> Client:
    """An STS client signed by temporary credentials (an assumed role's, so it sends
    X-Amz-Security-Token)."""
    creds = client(url).assume_role(RoleArn=unique_role("signer"), RoleSessionName="signer")
    c = creds["Credentials"]
    return client(
        url,
        aws_access_key_id=c["AccessKeyId"],
        aws_secret_access_key=c["SecretAccessKey"],
        aws_session_token=c["SessionToken"],
    )


def refusal(call: Callable[[], object]) -> tuple[int, str, str]:
    """Run `call`, which must fail; return STS's HTTP status, error code and message."""
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    response = caught.value.response
    error = response["Error"]
    return response["ResponseMetadata"]["HTTPStatusCode"], error["Code"], error["Message"]


# -- the proxy, called directly -----------------------------------------------------------


def test_chained_assume_role_over_an_hour_is_a_validation_error(moto: Moto) -> None:
    """AssumeRole signed by temporary credentials asking for more than 3600 s gets STS's 400
    ValidationError; 3600 s with the same credentials works."""
    sts = temporary(moto.url)
    role = unique_role("chained")
    ask = lambda seconds: sts.assume_role(  # noqa: E731
        RoleArn=role, RoleSessionName="ss", DurationSeconds=seconds
    )
    assert refusal(lambda: ask(3601)) == (400, "ValidationError", CHAINING_MESSAGE)
    assert moto.assume_role_calls(role) == 0
    assert ask(3600)["Credentials"]["AccessKeyId"].startswith("ASIA")
    assert moto.proxy.temporary[-1] is True


def test_duration_over_the_roles_max_session_duration_is_a_validation_error(moto: Moto) -> None:
    """A role created in moto's IAM with MaxSessionDuration 3600 refuses 3601 s with STS's
    400 ValidationError; a per-test maximum works for made-up roles, and a made-up role
    without one takes up to 43200 s."""
    name = unique_role("capped").rsplit("/", 1)[1]
    created = client(moto.url, "iam").create_role(
        RoleName=name, AssumeRolePolicyDocument="{}", MaxSessionDuration=3600
    )
    role = created["Role"]["Arn"]
    sts = client(moto.url)
    ask = lambda arn, seconds: sts.assume_role(  # noqa: E731
        RoleArn=arn, RoleSessionName="ss", DurationSeconds=seconds
    )
    assert refusal(lambda: ask(role, 3601)) == (400, "ValidationError", MAX_SESSION_MESSAGE)
    assert ask(role, 3600)["AssumedRoleUser"]["Arn"].endswith(f"/{name}/ss")

    configured = unique_role("configured")
    moto.proxy.max_session[configured] = 7200
    assert refusal(lambda: ask(configured, 7201))[1] == "ValidationError"
    assert ask(configured, 7200)
    assert ask(unique_role("made-up"), 43200)
    assert moto.proxy.refused == ["ValidationError", "ValidationError"]


def test_get_session_token_with_session_credentials_is_access_denied(moto: Moto) -> None:
    """GetSessionToken signed by temporary credentials gets STS's 403 AccessDenied; signed by
    long-term keys it works."""
    assert refusal(lambda: temporary(moto.url).get_session_token()) == (
        403,
        "AccessDenied",
        SESSION_TOKEN_MESSAGE,
    )
    assert client(moto.url).get_session_token()["Credentials"]["SessionToken"]


def test_an_mfa_code_is_accepted_once(moto: Moto) -> None:
    """An MFA code STS took once is refused the second time with STS's 403 AccessDenied,
    for AssumeRole and GetSessionToken alike; another code, or another device, works."""
    sts = client(moto.url)
    mfa = {"SerialNumber": MFA, "TokenCode": "123456"}
    assert sts.assume_role(RoleArn=unique_role("m"), RoleSessionName="ss", **mfa)
    again = lambda: sts.assume_role(RoleArn=unique_role("m"), RoleSessionName="ss", **mfa)  # noqa: E731
    assert refusal(again) == (403, "AccessDenied", MFA_REUSED_MESSAGE)
    assert refusal(lambda: sts.get_session_token(**mfa))[1] == "AccessDenied"
    assert sts.get_session_token(SerialNumber=MFA, TokenCode="234567")
    assert sts.get_session_token(SerialNumber=MFA + "-backup", TokenCode="123456")


def test_a_refused_call_does_not_spend_its_code(moto: Moto) -> None:
    """A call STS refuses for another rule does not use up its MFA code: the same code then
    works on a valid call."""
    sts = client(moto.url)
    role = unique_role("capped")
    moto.proxy.max_session[role] = 3600
    mfa = {"SerialNumber": MFA, "TokenCode": "345678"}
    ask = lambda seconds: sts.assume_role(  # noqa: E731
        RoleArn=role, RoleSessionName="ss", DurationSeconds=seconds, **mfa
    )
    assert refusal(lambda: ask(7200))[1] == "ValidationError"
    assert ask(3600)


@pytest.mark.parametrize("code", sorted(CANNED_FAULTS))
def test_canned_faults_answer_as_sts_does(moto: Moto, code: str) -> None:
    """An injected fault answers with STS's status, code and message, as many times as
    asked; then calls reach moto again."""
    status, message = CANNED_FAULTS[code]
    moto.proxy.inject(code, times=1)
    sts = client(moto.url)
    role = unique_role("fault")
    ask = lambda: sts.assume_role(RoleArn=role, RoleSessionName="ss")  # noqa: E731
    assert refusal(ask) == (status, code, message)
    assert ask()["AssumedRoleUser"]["Arn"].endswith("/ss")
    assert moto.assume_role_calls(role) == 1


def test_error_bodies_are_stss_xml(moto: Moto) -> None:
    """A refusal's body is STS's ErrorResponse document: namespace, Sender type, code,
    message and a request id."""
    request = urllib.request.Request(
        moto.url + "/",
        data=b"Action=GetSessionToken&Version=2011-06-15",
        headers={"X-Amz-Security-Token": "temporary", "Content-Type": "text/plain"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 403
    root = ET.fromstring(caught.value.read())
    assert root.tag == f"{NS}ErrorResponse"
    assert [child.tag for child in root] == [f"{NS}Error", f"{NS}RequestId"]
    error = root.find(f"{NS}Error")
    assert error is not None
    assert [(child.tag, child.text) for child in error] == [
        (f"{NS}Type", "Sender"),
        (f"{NS}Code", "AccessDenied"),
        (f"{NS}Message", SESSION_TOKEN_MESSAGE),
    ]
    assert re.fullmatch(r"[0-9a-f-]{36}", root.findtext(f"{NS}RequestId") or "")


def test_the_daemon_fixture_talks_to_the_strict_proxy(daemon: Daemon, sts_proxy: StsProxy) -> None:
    """The shared daemon fixture's STS is this test's strict proxy (not moto directly)."""
    result = daemon.client("env", "--role-arn", unique_role("via"), "--role-session-name", "via")
    assert result.returncode == 0, result.stderr
    assert sts_proxy.calls == ["AssumeRole"]
    assert daemon.env["AWS_ENDPOINT_URL_STS"] == sts_proxy.url


# -- the daemon's answers -----------------------------------------------------------------


def test_daemon_reports_a_duration_over_the_roles_maximum(daemon: Daemon, moto: Moto) -> None:
    """Asking for more than the role's MaxSessionDuration: one AssumeRole, STS's
    ValidationError and message on stderr, exit 1, and no retry on the next request."""
    role = unique_role("max")
    moto.proxy.max_session[role] = 3600
    args = ["env", "--role-arn", role, "--role-session-name", "max", "--duration-seconds", "7200"]
    first = daemon.client(*args)
    assert first.returncode == 1
    assert "ValidationError" in first.stderr and MAX_SESSION_MESSAGE in first.stderr
    assert daemon.client(*args).returncode == 1
    assert moto.proxy.count("AssumeRole") == 1  # the refusal is remembered briefly
    assert moto.assume_role_calls(role) == 0


# fault -> (exit status, AssumeRole calls the daemon makes for one request)
DAEMON_ANSWERS = {
    "Throttling": (1, 3),  # retried with back-off, then reported as STS trouble
    "RegionDisabledException": (1, 1),  # permanent: not retried
    "ExpiredToken": (1, 2),  # the source credentials are reloaded once, then reported
    "InvalidClientTokenId": (1, 2),
    "PackedPolicyTooLarge": (1, 1),
}


@pytest.mark.parametrize("code", sorted(DAEMON_ANSWERS))
def test_daemon_answers_each_canned_fault(daemon: Daemon, moto: Moto, code: str) -> None:
    """Each canned STS fault reaches the client as STS's code and message with exit 1, after
    the calls the daemon's retry policy allows and no more."""
    status, calls = DAEMON_ANSWERS[code]
    moto.proxy.inject(code)
    role = unique_role("fault")
    result = daemon.client("env", "--role-arn", role, "--role-session-name", "fault")
    assert result.returncode == status, result.stderr
    assert code in result.stderr and CANNED_FAULTS[code][1] in result.stderr
    assert result.stdout == ""
    assert moto.proxy.count("AssumeRole") == calls
    listed = json.loads(daemon.client("list", "--json").stdout)["sessions"]
    assert all(s["access_key_id"] is None for s in listed)
