"""A role request: its validation against STS's AssumeRole rules, and its cache key.

Pure: no I/O. The keys are frozen dataclasses (equal requests share a cache entry); the
rules for each group of fields are in `requestfields.py`.
"""

from dataclasses import dataclass, field, fields
from typing import Any

from rolecache.protocol import DEFAULT_MIN_TTL, REQUEST_FIELDS
from rolecached.core.fieldcheck import type_name
from rolecached.core.requestfields import (
    CHAINED_MAX_DURATION,
    DEFAULT_DURATION,
    parse_duration,
    parse_external_id,
    parse_mfa_serial,
    parse_min_ttl,
    parse_policies,
    parse_role,
    parse_source,
    parse_source_identity,
    parse_sts_endpoint,
    parse_tags,
)
from rolecached.errors import InvalidRequest

MFA_SESSION_DURATION = 12 * 3600

# Fields only profile resolution sets (from ~/.aws/config), never a caller directly.
CONFIG_ONLY_FIELDS = ("credential_source", "sts_regional_endpoints")
# Request fields the client sends that are not part of the credentials asked for.
CALL_FIELDS = frozenset({"profile", "token_code", "cannot_prompt", "mfa_wait", "query"})


@dataclass(frozen=True, kw_only=True)
class Source:
    """Where a key's source credentials come from and how STS is reached: a profile in the
    caller's config files (None: the daemon's default chain) or the daemon's environment
    (credential_source). TLS checking is part of the key, so credentials fetched without
    verification are never served to a caller who verifies."""

    source_profile: str | None = None
    config_file: str | None = None
    credentials_file: str | None = None
    credential_source: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    sts_regional_endpoints: str | None = None
    ca_bundle: str | None = None
    verify_ssl: bool = True

    def source_fields(self) -> dict[str, Any]:
        """The Source fields of this key, by name."""
        return {f.name: getattr(self, f.name) for f in fields(Source)}


@dataclass(frozen=True)
class MfaSession(Source):
    """A GetSessionToken session opened with one MFA code: it signs the AssumeRole calls of
    every role behind that device, so their renewals need no new code until it ends."""

    mfa_serial: str
    duration_seconds: int = MFA_SESSION_DURATION

    def describe(self) -> str:
        return f"MFA session of {self.mfa_serial}"


@dataclass(frozen=True)
class SourceSession(Source):
    """The credentials of a profile that assumes no role (long-term keys, SSO, a
    credential_process), served as they come: long-term keys become a GetSessionToken session
    (the keys themselves never leave the daemon), temporary ones are handed out as they are.
    Its credential_source is never set: a profile names one only with a role."""

    source_profile: str = field()
    duration_seconds: int = DEFAULT_DURATION  # of the GetSessionToken session

    def describe(self) -> str:
        return f"profile {self.source_profile!r}"


@dataclass(frozen=True)
class RoleRequest(Source):
    """Every input that changes the credentials STS issues; equal requests share an entry.
    For role chaining, `source_role` is the request whose credentials sign this one."""

    role_arn: str
    role_session_name: str
    duration_seconds: int = DEFAULT_DURATION
    external_id: str | None = None
    policy: str | None = None
    policy_arns: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    transitive_tag_keys: tuple[str, ...] = ()
    source_identity: str | None = None
    source_role: "RoleRequest | None" = None
    mfa_serial: str | None = None

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
        return MfaSession(mfa_serial=self.mfa_serial, **self.source_fields())

    def describe(self) -> str:
        """How log lines and error messages name this request (it holds no secret)."""
        return f"{self.role_arn} as {self.role_session_name}"


# What the store keeps an entry for: a role, an MFA session, or a profile's own credentials.
Key = RoleRequest | MfaSession | SourceSession

# Fields that only mean something for AssumeRole, which a profile without a role refuses:
# the request fields a source session has no field for.
ROLE_ONLY_FIELDS = tuple(
    f.name
    for f in fields(RoleRequest)
    if f.name in REQUEST_FIELDS and f.name not in {g.name for g in fields(SourceSession)}
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
    source = {**parsed.source_fields(), "credential_source": None}
    session = SourceSession(duration_seconds=parsed.duration_seconds, **source)
    return session, min_ttl


def _check_known(body: dict[str, Any], from_config: bool) -> None:
    known = set(REQUEST_FIELDS) - CALL_FIELDS
    if from_config:
        known |= set(CONFIG_ONLY_FIELDS)
    unknown = sorted(set(body) - known)
    if unknown:
        raise InvalidRequest(
            f"unknown field {unknown[0]!r}; allowed fields: {', '.join(REQUEST_FIELDS)}"
        )


def parse_request(
    body: object, *, from_config: bool = False, source_role: RoleRequest | None = None
) -> tuple[RoleRequest, int]:
    """Validate a decoded JSON request; return the role request and its minimum lifetime.

    `from_config` admits the fields only a profile can set; `source_role` chains the request
    onto another role's credentials (STS then caps the duration at one hour).
    """
    if not isinstance(body, dict):
        raise InvalidRequest(f"the request body must be a JSON object, not {type_name(body)}")
    _check_known(body, from_config)
    role_arn, session_name = parse_role(body)
    chained_from = None if source_role is None else source_role.role_arn
    duration = parse_duration(body, role_arn, chained_from)
    external_id = parse_external_id(body)
    policy, policy_arns = parse_policies(body)
    tags, transitive = parse_tags(body)
    source_identity = parse_source_identity(body)
    source = parse_source(body)
    mfa_serial = parse_mfa_serial(body, role_arn, chained=source_role is not None)
    min_ttl = parse_min_ttl(body, duration, DEFAULT_MIN_TTL)
    request = RoleRequest(
        role_arn=role_arn,
        role_session_name=session_name,
        duration_seconds=duration,
        external_id=external_id,
        policy=policy,
        policy_arns=policy_arns,
        tags=tags,
        transitive_tag_keys=transitive,
        source_identity=source_identity,
        source_role=source_role,
        mfa_serial=mfa_serial,
        **source,
        **parse_sts_endpoint(body),
    )
    return request, min_ttl


def parse_token_code(value: object) -> str | None:
    """An MFA code: exactly six digits (it is never part of a cache key)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 6 or not value.isdigit():
        raise InvalidRequest("an MFA token code is exactly 6 digits")
    return value
