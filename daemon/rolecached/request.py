"""A role request: its validation against STS's AssumeRole rules, and its cache key.

Pure: no I/O. Every rule here is one of STS's documented AssumeRole constraints (lengths,
character sets, duration bounds); a request that passes is one STS would not reject for its
shape, so bad input never costs an STS call.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from rolecache.protocol import DEFAULT_MIN_TTL, REQUEST_FIELDS
from rolecached.errors import InvalidRequest

DEFAULT_DURATION = 3600
MIN_DURATION, MAX_DURATION = 900, 43200
CHAINED_MAX_DURATION = 3600  # STS's cap for a role assumed with another role's credentials
MFA_SESSION_DURATION = 12 * 3600

# Fields only profile resolution sets (from ~/.aws/config), never a caller directly.
CONFIG_ONLY_FIELDS = ("credential_source", "sts_regional_endpoints")
_ENDPOINT = re.compile(r"https?://[\x21-\x7e]{1,2040}", re.ASCII)

_ROLE_ARN = re.compile(
    r"arn:aws[a-z-]*:iam::\d{12}:role/(?:[\x21-\x7e]+/)?[\w+=,.@-]{1,64}", re.ASCII
)
# STS's documented pattern for Policy: a few control characters and Latin-1.
_POLICY_TEXT = re.compile(r"[\t\n\r\u0020-\u00ff]*")
_POLICY_ARN = re.compile(r"arn:aws[a-z-]*:iam::(?:\d{12}|aws):policy/[\x21-\x7e]+", re.ASCII)
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
_SESSION_CHARS = re.compile(r"[\w+=,.@-]*", re.ASCII)
_EXTERNAL_ID_CHARS = re.compile(r"[\w+=,.@:/-]*", re.ASCII)
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
_SOURCE_IDENTITY = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
# Tag keys and values: Unicode letters, digits, spaces and _.:/=+-@ (STS's pattern
# [\p{L}\p{Z}\p{N}_.:/=+\-@]). \p{Z} is spelled out because \s would also let through tab,
# newline and other control characters, which STS refuses.
_TAG_TEXT = re.compile(r"[\w.:/=+@\- \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}", re.ASCII)
_PROFILE = re.compile(r"[^\s\[\]]{1,128}")
_MFA_SERIAL = re.compile(r"[\w+=/:,.@-]{9,256}", re.ASCII)

_CHARSET_SESSION = "[A-Za-z0-9_+=,.@-]"


@dataclass(frozen=True)
class MfaSession:
    """A GetSessionToken session opened with one MFA code: it signs the AssumeRole calls of
    every role behind that device, so their renewals need no new code until it ends."""

    mfa_serial: str
    duration_seconds: int = MFA_SESSION_DURATION
    # Where the long-term credentials come from, and how to reach STS (as in RoleRequest).
    source_profile: str | None = None
    config_file: str | None = None
    credentials_file: str | None = None
    credential_source: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    sts_regional_endpoints: str | None = None
    ca_bundle: str | None = None
    verify_ssl: bool = True

    def describe(self) -> str:
        return f"MFA session of {self.mfa_serial}"


@dataclass(frozen=True)
class SourceSession:
    """The credentials of a profile that assumes no role (long-term keys, SSO, a
    credential_process), served as they come: long-term keys become a GetSessionToken session
    (the keys themselves never leave the daemon), temporary ones are handed out as they are."""

    source_profile: str
    duration_seconds: int = DEFAULT_DURATION  # of the GetSessionToken session
    config_file: str | None = None
    credentials_file: str | None = None
    credential_source: str | None = None  # never set: a profile names it only with a role
    region: str | None = None
    endpoint_url: str | None = None
    sts_regional_endpoints: str | None = None
    ca_bundle: str | None = None
    verify_ssl: bool = True

    def describe(self) -> str:
        return f"profile {self.source_profile!r}"


# Fields that only mean something for AssumeRole: a profile without a role refuses them.
ROLE_ONLY_FIELDS = (
    "role_arn",
    "role_session_name",
    "external_id",
    "policy",
    "policy_arns",
    "tags",
    "transitive_tag_keys",
    "source_identity",
    "mfa_serial",
)
# Stands in for the role while a source session's fields are checked as a request's are.
_NO_ROLE = {"role_arn": "arn:aws:iam::000000000000:role/none", "role_session_name": "none"}


def parse_source_request(body: dict[str, Any]) -> tuple[SourceSession, int]:
    """Validate the request for a profile without a role (`source_profile` names it); return
    its source session and minimum lifetime."""
    for name in ROLE_ONLY_FIELDS:
        if name in body:
            raise InvalidRequest(f"{name} is for a role, and the profile assumes none")
    parsed, min_ttl = parse_request({**body, **_NO_ROLE}, from_config=True)
    assert parsed.source_profile is not None
    session = SourceSession(
        source_profile=parsed.source_profile,
        duration_seconds=parsed.duration_seconds,
        config_file=parsed.config_file,
        credentials_file=parsed.credentials_file,
        region=parsed.region,
        endpoint_url=parsed.endpoint_url,
        sts_regional_endpoints=parsed.sts_regional_endpoints,
        ca_bundle=parsed.ca_bundle,
        verify_ssl=parsed.verify_ssl,
    )
    return session, min_ttl


@dataclass(frozen=True)
class RoleRequest:
    """Every input that changes the credentials STS issues; equal requests share an entry."""

    role_arn: str
    role_session_name: str
    duration_seconds: int = DEFAULT_DURATION
    external_id: str | None = None
    policy: str | None = None
    policy_arns: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    transitive_tag_keys: tuple[str, ...] = ()
    source_identity: str | None = None
    # The source credentials: a profile in the caller's config files (None: the daemon's
    # default chain), the daemon's environment (credential_source), or, for role chaining,
    # the credentials of another role request.
    source_profile: str | None = None
    config_file: str | None = None
    credentials_file: str | None = None
    credential_source: str | None = None
    source_role: "RoleRequest | None" = None
    mfa_serial: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    sts_regional_endpoints: str | None = None
    # How TLS to STS is checked: part of the key, so credentials fetched without
    # verification are never served to a caller who verifies.
    ca_bundle: str | None = None
    verify_ssl: bool = True

    @property
    def account_id(self) -> str:
        return self.role_arn.split(":")[4]

    @property
    def direct_mfa(self) -> bool:
        """True when AssumeRole itself carries the MFA code (SerialNumber and TokenCode),
        signed by the long-term credentials, as the AWS CLI does: an MFA session's
        credentials are temporary, and STS caps a role assumed with them at one hour."""
        return (
            self.mfa_serial is not None
            and self.source_role is None
            and self.duration_seconds > CHAINED_MAX_DURATION
        )

    @property
    def mfa_session(self) -> MfaSession | None:
        """The MFA session that must sign this request's AssumeRole call, if any: only roles
        of an hour or less, which one code then serves for the session's 12 hours."""
        if self.mfa_serial is None or self.source_role is not None or self.direct_mfa:
            return None
        return MfaSession(
            mfa_serial=self.mfa_serial,
            source_profile=self.source_profile,
            config_file=self.config_file,
            credentials_file=self.credentials_file,
            credential_source=self.credential_source,
            region=self.region,
            endpoint_url=self.endpoint_url,
            sts_regional_endpoints=self.sts_regional_endpoints,
            ca_bundle=self.ca_bundle,
            verify_ssl=self.verify_ssl,
        )

    def describe(self) -> str:
        """How log lines and error messages name this request (it holds no secret)."""
        return f"{self.role_arn} as {self.role_session_name}"


# What the store keeps an entry for: a role, an MFA session, or a profile's own credentials.
Key = RoleRequest | MfaSession | SourceSession


def _string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string, not {_type_name(value)}")
    return value


def _integer(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(
            f"{name} must be an integer number of seconds, not {_type_name(value)}"
        )
    return value


def _string_list(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{name} must be a list of strings")
    return value


def _type_name(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _shown(value: str, limit: int = 80) -> str:
    """The value for an error message, cut so a 2 KB policy does not flood the terminal."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _as_sts_refuses(
    refusal: InvalidRequest, member: str, value: str, constraints: list[str]
) -> None:
    """Add to `refusal` the ValidationError STS answers for the same value, so the drop-in
    can say what the AWS CLI would print after the call."""
    count = len(constraints)
    refusal.details["sts_code"] = "ValidationError"
    refusal.details["sts_message"] = (
        f"{count} validation error{'s' if count > 1 else ''} detected: "
        + "; ".join(
            f"Value '{value}' at '{member}' failed to satisfy constraint: Member must {c}"
            for c in constraints
        )
    )


# A text parameter's rule as botocore and STS check it: (parameter, value, min and max
# length, the characters, STS's pattern as its messages quote it).
TextRule = tuple[str, str, int, int, re.Pattern[str], str]


def _refused_text(message: str, rule: TextRule) -> InvalidRequest:
    """The refusal of a text value, carrying what the AWS CLI would print: botocore's own
    check refuses one that is too short; STS refuses other characters or too many."""
    parameter, value, low, high, chars, pattern = rule
    refusal = InvalidRequest(message)
    if len(value) < low:
        refusal.details["cli_message"] = (
            f"Parameter validation failed:\nInvalid length for parameter {parameter}, "
            f"value: {len(value)}, valid min length: {low}"
        )
        return refusal
    constraints = []
    if not chars.fullmatch(value):
        constraints.append(f"satisfy regular expression pattern: {pattern}")
    if len(value) > high:
        constraints.append(f"have length less than or equal to {high}")
    member = parameter[0].lower() + parameter[1:]  # STS names members in camelCase
    _as_sts_refuses(refusal, member, value, constraints)
    return refusal


def _check_pattern(name: str, value: str, pattern: re.Pattern[str], allowed: str) -> None:
    if not pattern.fullmatch(value):
        raise InvalidRequest(f"{name} {_shown(value)} is not valid: {allowed}")


def _parse_tags(body: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    value = body.get("tags")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest('tags must be a list of {"Key": ..., "Value": ...} objects')
    if len(value) > 50:
        raise InvalidRequest(f"{len(value)} tags given: at most 50 session tags are allowed")
    tags: list[tuple[str, str]] = []
    seen: set[str] = set()
    for tag in value:
        if not isinstance(tag, dict) or set(tag) - {"Key", "Value"} or "Key" not in tag:
            raise InvalidRequest('each tag must be an object {"Key": ..., "Value": ...}')
        key, val = tag["Key"], tag.get("Value", "")
        if not isinstance(key, str) or not isinstance(val, str):
            raise InvalidRequest("tag keys and values must be strings")
        if not 1 <= len(key) <= 128:
            raise InvalidRequest(f"tag key {_shown(key)} must be 1 to 128 characters")
        if len(val) > 256:
            raise InvalidRequest(f"tag {key!r} has a value over 256 characters")
        for text in (key, val):
            if not _TAG_TEXT.fullmatch(text):
                raise InvalidRequest(
                    f"tag {_shown(key)} contains a character STS refuses: "
                    "letters, digits, spaces and _.:/=+-@ only"
                )
        if key.lower() in seen:
            raise InvalidRequest(f"tag key {key!r} is given twice (keys are case-insensitive)")
        seen.add(key.lower())
        tags.append((key, val))
    return tuple(sorted(tags))


def parse_request(
    body: object, *, from_config: bool = False, source_role: RoleRequest | None = None
) -> tuple[RoleRequest, int]:
    """Validate a decoded JSON request; return the role request and its minimum lifetime.

    `from_config` admits the fields only a profile can set; `source_role` chains the request
    onto another role's credentials (STS then caps the duration at one hour).
    """
    if not isinstance(body, dict):
        raise InvalidRequest(f"the request body must be a JSON object, not {_type_name(body)}")
    known = set(REQUEST_FIELDS) - {"profile", "token_code", "cannot_prompt", "mfa_wait", "query"}
    if from_config:
        known |= set(CONFIG_ONLY_FIELDS)
    unknown = sorted(set(body) - known)
    if unknown:
        raise InvalidRequest(
            f"unknown field {unknown[0]!r}; allowed fields: {', '.join(REQUEST_FIELDS)}"
        )

    role_arn = _string(body, "role_arn")
    session_name = _string(body, "role_session_name")
    if role_arn is None or session_name is None:
        raise InvalidRequest("role_arn and role_session_name are both required")
    if not 20 <= len(role_arn) <= 2048 or not _ROLE_ARN.fullmatch(role_arn):
        raise InvalidRequest(
            f"role ARN {_shown(role_arn)} is not valid: expected "
            "arn:aws:iam::<12-digit account>:role/<optional path/>NAME"
        )
    if not _SESSION_NAME.fullmatch(session_name):
        size = (
            "too short"
            if len(session_name) < 2
            else "too long"
            if len(session_name) > 64
            else "invalid"
        )
        raise _refused_text(
            f"role session name {_shown(session_name)} is {size}: "
            f"2 to 64 characters of {_CHARSET_SESSION}",
            ("RoleSessionName", session_name, 2, 64, _SESSION_CHARS, r"[\w+=,.@-]*"),
        )

    duration = _integer(body, "duration_seconds")
    if duration is None:
        duration = DEFAULT_DURATION
    if not MIN_DURATION <= duration <= MAX_DURATION:
        refusal = InvalidRequest(
            f"duration {duration} s is out of range: {MIN_DURATION} to {MAX_DURATION} seconds "
            "(15 minutes to 12 hours, and no more than the role's maximum)"
        )
        if duration < MIN_DURATION:
            refusal.details["cli_message"] = (
                "Parameter validation failed:\nInvalid value for parameter DurationSeconds, "
                f"value: {duration}, valid min value: {MIN_DURATION}"
            )
        else:
            _as_sts_refuses(
                refusal,
                "durationSeconds",
                str(duration),
                [f"have value less than or equal to {MAX_DURATION}"],
            )
        raise refusal
    if source_role is not None and duration > CHAINED_MAX_DURATION:
        raise InvalidRequest(
            f"duration {duration} s is too long for {role_arn}: it is assumed with the "
            f"credentials of {source_role.role_arn} (role chaining), and STS caps chained "
            f"sessions at {CHAINED_MAX_DURATION} s"
        )

    external_id = _string(body, "external_id")
    if external_id is not None and not _EXTERNAL_ID.fullmatch(external_id):
        raise _refused_text(
            f"external id {_shown(external_id)} is not valid: 2 to 1224 characters of "
            "[A-Za-z0-9_+=,.@:/-]",
            ("ExternalId", external_id, 2, 1224, _EXTERNAL_ID_CHARS, r"[\w+=,.@:\/-]*"),
        )

    policy = _string(body, "policy")
    if policy is not None:
        if len(policy) > 2048:
            raise InvalidRequest(f"session policy is {len(policy)} characters: at most 2048")
        if not _POLICY_TEXT.fullmatch(policy):
            raise InvalidRequest(
                "session policy contains a character STS refuses: tab, newline, carriage "
                "return and U+0020 to U+00FF only"
            )
        try:
            json.loads(policy)
        except (ValueError, RecursionError):  # 2 KB of "[" is enough to exhaust the stack
            raise InvalidRequest("session policy is not valid JSON") from None

    policy_arns = _string_list(body, "policy_arns")
    if len(policy_arns) > 10:
        raise InvalidRequest(f"{len(policy_arns)} policy ARNs given: at most 10 are allowed")
    for arn in policy_arns:
        if not 20 <= len(arn) <= 2048 or not _POLICY_ARN.fullmatch(arn):
            raise InvalidRequest(
                f"policy ARN {_shown(arn)} is not valid: expected "
                "arn:aws:iam::<account or 'aws'>:policy/NAME"
            )

    tags = _parse_tags(body)
    transitive = _string_list(body, "transitive_tag_keys")
    tag_keys = {key.lower() for key, _ in tags}
    for key in transitive:
        if key.lower() not in tag_keys:
            raise InvalidRequest(f"transitive tag key {key!r} is not one of the session tags")

    source_identity = _string(body, "source_identity")
    if source_identity is not None:
        if not _SOURCE_IDENTITY.fullmatch(source_identity):
            raise _refused_text(
                f"source identity {_shown(source_identity)} is not valid: 2 to 64 characters "
                "of [A-Za-z0-9_+=,.@-]",
                ("SourceIdentity", source_identity, 2, 64, _SESSION_CHARS, r"[\w+=,.@-]*"),
            )
        if source_identity.lower().startswith("aws:"):
            raise InvalidRequest("source identity must not start with 'aws:'")

    source_profile = _string(body, "source_profile")
    if source_profile is not None:
        _check_pattern(
            "source profile", source_profile, _PROFILE, "a profile name from ~/.aws/config"
        )

    region = _string(body, "region")
    if region is not None:
        _check_pattern("region", region, _REGION, "an AWS region name such as us-east-1")

    config_file = _path(body, "config_file")
    credentials_file = _path(body, "credentials_file")
    mfa_serial = _string(body, "mfa_serial")
    if mfa_serial is not None:
        _check_pattern(
            "MFA serial number",
            mfa_serial,
            _MFA_SERIAL,
            "9 to 256 characters, an ARN such as arn:aws:iam::123456789012:mfa/alice",
        )
        if source_role is not None:
            raise InvalidRequest(
                f"an MFA device on {role_arn}, which is assumed from another role (role "
                "chaining), is not supported: put mfa_serial on the first role of the chain"
            )

    min_ttl = _integer(body, "min_ttl")
    if min_ttl is None:
        min_ttl = min(DEFAULT_MIN_TTL, duration // 2)
    if not 0 <= min_ttl < duration:
        raise InvalidRequest(
            f"minimum lifetime {min_ttl} s is impossible for a {duration} s session: "
            f"use 0 to {duration - 1} s, or ask for a longer duration"
        )

    request = RoleRequest(
        role_arn=role_arn,
        role_session_name=session_name,
        duration_seconds=duration,
        external_id=external_id,
        policy=policy,
        policy_arns=tuple(sorted(set(policy_arns))),
        tags=tags,
        transitive_tag_keys=tuple(sorted({k.lower(): k for k in transitive}.values())),
        source_identity=source_identity,
        source_profile=source_profile,
        config_file=config_file,
        credentials_file=credentials_file,
        credential_source=_string(body, "credential_source"),
        source_role=source_role,
        mfa_serial=mfa_serial,
        region=region,
        endpoint_url=_endpoint_url(body),
        sts_regional_endpoints=_string(body, "sts_regional_endpoints"),
        ca_bundle=_path(body, "ca_bundle"),
        verify_ssl=_verify_ssl(body),
    )
    return request, min_ttl


def _endpoint_url(body: dict[str, Any]) -> str | None:
    value = _string(body, "endpoint_url")
    if value is not None:
        _check_pattern("endpoint URL", value, _ENDPOINT, "an http:// or https:// URL")
    return value


def _verify_ssl(body: dict[str, Any]) -> bool:
    value = body.get("verify_ssl", True)
    if not isinstance(value, bool):
        raise InvalidRequest(f"verify_ssl must be true or false, not {_type_name(value)}")
    return value


def _path(body: dict[str, Any], name: str) -> str | None:
    value = _string(body, name)
    if value is not None and not value.startswith("/"):
        raise InvalidRequest(f"{name} must be an absolute path, not {_shown(value)}")
    if value is not None and "\x00" in value:  # no file has one; os.stat() raises on it
        raise InvalidRequest(f"{name} must not contain a NUL character")
    return value


def parse_token_code(value: object) -> str | None:
    """An MFA code: exactly six digits (it is never part of a cache key)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 6 or not value.isdigit():
        raise InvalidRequest("an MFA token code is exactly 6 digits")
    return value
