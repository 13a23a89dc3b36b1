"""STS's answers read into Credentials, each value checked for the shape STS gives it,
and the parameters of an AssumeRole call. Pure: no call is made here."""

import re
from datetime import datetime
from typing import Any

from rolecached.core.cache import Credentials
from rolecached.core.request import RoleRequest, SourceSession
from rolecached.errors import StsFailure
from rolecached.stserrors import StsCallFailed


def expiration_time(text: str) -> float:
    """An ISO 8601 time as STS writes it, in seconds since the epoch."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# What STS's credentials are made of. They are pasted into shell code that users `eval`
# and into files SDKs parse, so a value of any other shape (from an STS look-alike or
# something in the way) is refused here, once, before anything is rendered from it.
_ALLOWED = (
    ("AccessKeyId", re.compile(r"[A-Z0-9]{16,128}")),
    ("SecretAccessKey", re.compile(r"[A-Za-z0-9/+=]+")),
    ("SessionToken", re.compile(r"[A-Za-z0-9/+=]+")),
    ("Expiration", re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")),
)


def temporary_source(source: SourceSession, resolved: Any, frozen: Any, now: float) -> Credentials:
    """Temporary source credentials as the store keeps them; refused (not served) when
    botocore does not know when they expire, or they are not shaped like STS's."""
    expiry = getattr(resolved, "_expiry_time", None)  # botocore keeps it nowhere public
    if expiry is None:
        raise StsCallFailed(
            StsFailure(
                "NoExpiration",
                f"profile {source.source_profile!r} gives a session token with no expiry time "
                f"({resolved.method}), so rolecache cannot tell how long it lasts; give the "
                "profile long-term keys, SSO or a credential_process that returns Expiration",
                False,
            )
        )
    expiration = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = {
        "AccessKeyId": frozen.access_key,
        "SecretAccessKey": frozen.secret_key,
        "SessionToken": frozen.token,
        "Expiration": expiration,
    }
    check_shapes(fields)
    return Credentials(
        access_key_id=frozen.access_key,
        secret_access_key=frozen.secret_key,
        session_token=frozen.token,
        expiration=expiry.timestamp(),
        issued_at=now,
        expiration_text=expiration,
    )


def check_shapes(creds: dict[str, Any]) -> None:
    """Raise StsCallFailed when a credential field is not the shape STS gives it. The message
    names the field only: the value may be a secret, or an attack."""
    for name, pattern in _ALLOWED:
        if not isinstance(creds[name], str) or not pattern.fullmatch(creds[name]):
            raise StsCallFailed(
                StsFailure(
                    "MalformedResponse",
                    f"STS answered with a {name} that is not shaped like one; refused",
                    True,
                )
            )


def credentials_from(response: dict[str, Any], now: float) -> Credentials:
    """The credentials in a parsed answer; a well-formed answer without usable ones (a field
    missing, an unreadable Expiration, a value not shaped like STS's) is a retryable
    failure, not a crash."""
    try:
        creds = response["Credentials"]
        user = response.get("AssumedRoleUser", {})
        expiration = creds["Expiration"]
        if not isinstance(expiration, str):  # a parser that did parse: keep working
            expiration = expiration.isoformat()
        check_shapes({**creds, "Expiration": expiration})
        return Credentials(
            access_key_id=creds["AccessKeyId"],
            secret_access_key=creds["SecretAccessKey"],
            session_token=creds["SessionToken"],
            expiration=expiration_time(expiration),
            issued_at=now,
            assumed_role_arn=user.get("Arn", ""),
            assumed_role_id=user.get("AssumedRoleId", ""),
            packed_policy_size=response.get("PackedPolicySize"),
            source_identity=response.get("SourceIdentity"),
            expiration_text=expiration,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"no {exc.args[0]}" if isinstance(exc, KeyError) else "an unreadable Expiration"
        raise StsCallFailed(
            StsFailure("MalformedResponse", f"STS answered with {what} in its credentials", True)
        ) from None


def assume_role_params(request: RoleRequest, token_code: str | None) -> dict[str, Any]:
    """The AssumeRole parameters for `request`; a role with MFA over an hour carries the code."""
    params: dict[str, Any] = {
        "RoleArn": request.role_arn,
        "RoleSessionName": request.role_session_name,
        "DurationSeconds": request.duration_seconds,
    }
    if request.external_id is not None:
        params["ExternalId"] = request.external_id
    if request.policy is not None:
        params["Policy"] = request.policy
    if request.policy_arns:
        params["PolicyArns"] = [{"arn": arn} for arn in request.policy_arns]
    if request.tags:
        params["Tags"] = [{"Key": k, "Value": v} for k, v in request.tags]
    if request.transitive_tag_keys:
        params["TransitiveTagKeys"] = list(request.transitive_tag_keys)
    if request.source_identity is not None:
        params["SourceIdentity"] = request.source_identity
    if request.direct_mfa:
        params["SerialNumber"] = request.mfa_serial
        params["TokenCode"] = token_code or ""
    return params
