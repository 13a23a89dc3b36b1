"""A role request's fields, group by group, checked against STS's AssumeRole rules.

Pure: no I/O. Every rule here is one of STS's documented constraints (lengths, character
sets, duration bounds), so a request that passes is one STS would not reject for its shape.
"""

import json
import re
from typing import Any

from rolecached.core.fieldcheck import (
    as_sts_refuses,
    check_pattern,
    integer,
    path,
    refused_text,
    shown,
    string,
    string_list,
    type_name,
)
from rolecached.errors import InvalidRequest

DEFAULT_DURATION = 3600
MIN_DURATION, MAX_DURATION = 900, 43200
CHAINED_MAX_DURATION = 3600  # STS's cap for a role assumed with another role's credentials

ENDPOINT = re.compile(r"https?://[\x21-\x7e]{1,2040}", re.ASCII)
ROLE_ARN = re.compile(
    r"arn:aws[a-z-]*:iam::\d{12}:role/(?:[\x21-\x7e]+/)?[\w+=,.@-]{1,64}", re.ASCII
)
# STS's documented pattern for Policy: a few control characters and Latin-1.
POLICY_TEXT = re.compile(r"[\t\n\r\u0020-\u00ff]*")
POLICY_ARN = re.compile(r"arn:aws[a-z-]*:iam::(?:\d{12}|aws):policy/[\x21-\x7e]+", re.ASCII)
SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
SESSION_CHARS = re.compile(r"[\w+=,.@-]*", re.ASCII)
EXTERNAL_ID_CHARS = re.compile(r"[\w+=,.@:/-]*", re.ASCII)
EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
SOURCE_IDENTITY = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
# Tag keys and values: Unicode letters, digits, spaces and _.:/=+-@ (STS's pattern
# [\p{L}\p{Z}\p{N}_.:/=+\-@]). \p{Z} is spelled out because \s would also let through tab,
# newline and other control characters, which STS refuses.
TAG_TEXT = re.compile(r"[\w.:/=+@\- \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*")
REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}", re.ASCII)
PROFILE = re.compile(r"[^\s\[\]]{1,128}")
MFA_SERIAL = re.compile(r"[\w+=/:,.@-]{9,256}", re.ASCII)

CHARSET_SESSION = "[A-Za-z0-9_+=,.@-]"


def parse_role(body: dict[str, Any]) -> tuple[str, str]:
    """The role ARN and session name, both required."""
    role_arn = string(body, "role_arn")
    session_name = string(body, "role_session_name")
    if role_arn is None or session_name is None:
        raise InvalidRequest("role_arn and role_session_name are both required")
    if not 20 <= len(role_arn) <= 2048 or not ROLE_ARN.fullmatch(role_arn):
        raise InvalidRequest(
            f"role ARN {shown(role_arn)} is not valid: expected "
            "arn:aws:iam::<12-digit account>:role/<optional path/>NAME"
        )
    if not SESSION_NAME.fullmatch(session_name):
        size = (
            "too short"
            if len(session_name) < 2
            else "too long"
            if len(session_name) > 64
            else "invalid"
        )
        raise refused_text(
            f"role session name {shown(session_name)} is {size}: "
            f"2 to 64 characters of {CHARSET_SESSION}",
            ("RoleSessionName", session_name, 2, 64, SESSION_CHARS, r"[\w+=,.@-]*"),
        )
    return role_arn, session_name


def parse_duration(body: dict[str, Any], role_arn: str, chained_from: str | None) -> int:
    """The session duration; a role assumed from `chained_from` is capped at one hour."""
    duration = integer(body, "duration_seconds")
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
            as_sts_refuses(
                refusal,
                "durationSeconds",
                str(duration),
                [f"have value less than or equal to {MAX_DURATION}"],
            )
        raise refusal
    if chained_from is not None and duration > CHAINED_MAX_DURATION:
        raise InvalidRequest(
            f"duration {duration} s is too long for {role_arn}: it is assumed with the "
            f"credentials of {chained_from} (role chaining), and STS caps chained "
            f"sessions at {CHAINED_MAX_DURATION} s"
        )
    return duration


def parse_external_id(body: dict[str, Any]) -> str | None:
    """The external id a third party's role asks for, if any."""
    external_id = string(body, "external_id")
    if external_id is not None and not EXTERNAL_ID.fullmatch(external_id):
        raise refused_text(
            f"external id {shown(external_id)} is not valid: 2 to 1224 characters of "
            "[A-Za-z0-9_+=,.@:/-]",
            ("ExternalId", external_id, 2, 1224, EXTERNAL_ID_CHARS, r"[\w+=,.@:\/-]*"),
        )
    return external_id


def parse_policies(body: dict[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """The inline session policy and the managed policy ARNs (sorted, each once)."""
    policy = string(body, "policy")
    if policy is not None:
        if len(policy) > 2048:
            raise InvalidRequest(f"session policy is {len(policy)} characters: at most 2048")
        if not POLICY_TEXT.fullmatch(policy):
            raise InvalidRequest(
                "session policy contains a character STS refuses: tab, newline, carriage "
                "return and U+0020 to U+00FF only"
            )
        try:
            json.loads(policy)
        except (ValueError, RecursionError):  # 2 KB of "[" is enough to exhaust the stack
            raise InvalidRequest("session policy is not valid JSON") from None
    policy_arns = string_list(body, "policy_arns")
    if len(policy_arns) > 10:
        raise InvalidRequest(f"{len(policy_arns)} policy ARNs given: at most 10 are allowed")
    for arn in policy_arns:
        if not 20 <= len(arn) <= 2048 or not POLICY_ARN.fullmatch(arn):
            raise InvalidRequest(
                f"policy ARN {shown(arn)} is not valid: expected "
                "arn:aws:iam::<account or 'aws'>:policy/NAME"
            )
    return policy, tuple(sorted(set(policy_arns)))


def _tag(tag: object, seen: set[str]) -> tuple[str, str]:
    """One session tag as (key, value); `seen` holds the lowercased keys before it."""
    if not isinstance(tag, dict) or set(tag) - {"Key", "Value"} or "Key" not in tag:
        raise InvalidRequest('each tag must be an object {"Key": ..., "Value": ...}')
    key, val = tag["Key"], tag.get("Value", "")
    if not isinstance(key, str) or not isinstance(val, str):
        raise InvalidRequest("tag keys and values must be strings")
    if not 1 <= len(key) <= 128:
        raise InvalidRequest(f"tag key {shown(key)} must be 1 to 128 characters")
    if len(val) > 256:
        raise InvalidRequest(f"tag {key!r} has a value over 256 characters")
    for text in (key, val):
        if not TAG_TEXT.fullmatch(text):
            raise InvalidRequest(
                f"tag {shown(key)} contains a character STS refuses: "
                "letters, digits, spaces and _.:/=+-@ only"
            )
    if key.lower() in seen:
        raise InvalidRequest(f"tag key {key!r} is given twice (keys are case-insensitive)")
    seen.add(key.lower())
    return key, val


def parse_tags(
    body: dict[str, Any],
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """The session tags (sorted) and the transitive tag keys (sorted, each once)."""
    value = body.get("tags")
    tags: tuple[tuple[str, str], ...] = ()
    if value is not None:
        if not isinstance(value, list):
            raise InvalidRequest('tags must be a list of {"Key": ..., "Value": ...} objects')
        if len(value) > 50:
            raise InvalidRequest(f"{len(value)} tags given: at most 50 session tags are allowed")
        seen: set[str] = set()
        tags = tuple(sorted(_tag(tag, seen) for tag in value))
    transitive = string_list(body, "transitive_tag_keys")
    tag_keys = {key.lower() for key, _ in tags}
    for key in transitive:
        if key.lower() not in tag_keys:
            raise InvalidRequest(f"transitive tag key {key!r} is not one of the session tags")
    return tags, tuple(sorted({k.lower(): k for k in transitive}.values()))


def parse_source_identity(body: dict[str, Any]) -> str | None:
    """The source identity to stamp on the session, if any."""
    source_identity = string(body, "source_identity")
    if source_identity is not None:
        if not SOURCE_IDENTITY.fullmatch(source_identity):
            raise refused_text(
                f"source identity {shown(source_identity)} is not valid: 2 to 64 characters "
                "of [A-Za-z0-9_+=,.@-]",
                ("SourceIdentity", source_identity, 2, 64, SESSION_CHARS, r"[\w+=,.@-]*"),
            )
        if source_identity.lower().startswith("aws:"):
            raise InvalidRequest("source identity must not start with 'aws:'")
    return source_identity


def parse_source(body: dict[str, Any]) -> dict[str, Any]:
    """Where the source credentials come from: profile, region, config files, environment."""
    source_profile = string(body, "source_profile")
    if source_profile is not None:
        check_pattern(
            "source profile", source_profile, PROFILE, "a profile name from ~/.aws/config"
        )
    region = string(body, "region")
    if region is not None:
        check_pattern("region", region, REGION, "an AWS region name such as us-east-1")
    return {
        "source_profile": source_profile,
        "region": region,
        "config_file": path(body, "config_file"),
        "credentials_file": path(body, "credentials_file"),
        "credential_source": string(body, "credential_source"),
    }


def parse_sts_endpoint(body: dict[str, Any]) -> dict[str, Any]:
    """How STS is reached: its URL, regional or global, and how TLS to it is checked."""
    endpoint_url = string(body, "endpoint_url")
    if endpoint_url is not None:
        check_pattern("endpoint URL", endpoint_url, ENDPOINT, "an http:// or https:// URL")
    verify_ssl = body.get("verify_ssl", True)
    fields = {
        "endpoint_url": endpoint_url,
        "sts_regional_endpoints": string(body, "sts_regional_endpoints"),
        "ca_bundle": path(body, "ca_bundle"),
    }
    if not isinstance(verify_ssl, bool):
        raise InvalidRequest(f"verify_ssl must be true or false, not {type_name(verify_ssl)}")
    return {**fields, "verify_ssl": verify_ssl}


def parse_mfa_serial(body: dict[str, Any], role_arn: str, chained: bool) -> str | None:
    """The MFA device's serial number, if any (not on a role assumed from another)."""
    mfa_serial = string(body, "mfa_serial")
    if mfa_serial is not None:
        check_pattern(
            "MFA serial number",
            mfa_serial,
            MFA_SERIAL,
            "9 to 256 characters, an ARN such as arn:aws:iam::123456789012:mfa/alice",
        )
        if chained:
            raise InvalidRequest(
                f"an MFA device on {role_arn}, which is assumed from another role (role "
                "chaining), is not supported: put mfa_serial on the first role of the chain"
            )
    return mfa_serial


def parse_min_ttl(body: dict[str, Any], duration: int, default: int) -> int:
    """The least lifetime served credentials must have left, below `duration`."""
    min_ttl = integer(body, "min_ttl")
    if min_ttl is None:
        min_ttl = min(default, duration // 2)
    if not 0 <= min_ttl < duration:
        raise InvalidRequest(
            f"minimum lifetime {min_ttl} s is impossible for a {duration} s session: "
            f"use 0 to {duration - 1} s, or ask for a longer duration"
        )
    return min_ttl
