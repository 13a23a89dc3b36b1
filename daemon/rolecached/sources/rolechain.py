"""A role profile's chain of AssumeRole hops, resolved as the AWS CLI resolves it.

Pure: the config files come already read (`awsfiles.py`); each hop is the request body of
one role, from the one nearest the long-term credentials to the profile asked for.
"""

import os
import pwd
import re
from typing import Any

from rolecached.sources.awsfiles import AwsConfig, ProfileError
from rolecached.sources.credsources import CREDENTIAL_SOURCES

# Profile keys honoured on a role profile, and the request field each becomes.
ROLE_KEYS = {
    "role_arn": "role_arn",
    "role_session_name": "role_session_name",
    "duration_seconds": "duration_seconds",
    "external_id": "external_id",
    "mfa_serial": "mfa_serial",
    "region": "region",
    "sts_regional_endpoints": "sts_regional_endpoints",
}
SUPPORTED_CREDENTIAL_SOURCES = tuple(CREDENTIAL_SOURCES)
STATIC_KEYS = ("aws_access_key_id", "aws_secret_access_key")
# Roles assumed one after another for one profile: real chains are two or three deep, and a
# config with hundreds would cost as many STS calls per renewal.
MAX_HOPS = 10


def stable_session_name(profile: str) -> str:
    """The session name of a profile without role_session_name: the same for every call by
    this user (so calls share a cache entry), readable in CloudTrail, within STS's rules."""
    user = pwd.getpwuid(os.getuid()).pw_name
    name = re.sub(r"[^\w+=,.@-]", "-", f"{user}@{profile}", flags=re.ASCII)
    return name[:64] if len(name) >= 2 else f"rolecache-{name}"


def is_role_profile(profile: dict[str, Any]) -> bool:
    """True for a profile that assumes a role (web identity aside)."""
    return "role_arn" in profile and "web_identity_token_file" not in profile


def has_static_keys(profile: dict[str, Any]) -> bool:
    """True for a profile holding keys of its own."""
    return any(key in profile for key in STATIC_KEYS)


def _endpoint_url(profile: dict[str, Any], config: AwsConfig) -> str | None:
    """STS endpoint from the profile: its services section first, then endpoint_url; the
    daemon's AWS_ENDPOINT_URL(_STS) environment wins over both, as in botocore."""
    if os.environ.get("AWS_ENDPOINT_URL_STS") or os.environ.get("AWS_ENDPOINT_URL"):
        return None
    services = config.services.get(profile.get("services", ""), {})
    sts = services.get("sts", {})
    if isinstance(sts, dict) and sts.get("endpoint_url"):
        return str(sts["endpoint_url"])
    url = profile.get("endpoint_url")
    return str(url) if url else None


def hop_body(name: str, profile: dict[str, Any], config: AwsConfig) -> dict[str, Any]:
    """The request fields profile `name` sets for its own hop."""
    body: dict[str, Any] = {}
    for key, field in ROLE_KEYS.items():
        if key in profile:
            body[field] = profile[key]
    if "duration_seconds" in body:
        try:
            body["duration_seconds"] = int(body["duration_seconds"])
        except ValueError:
            raise ProfileError(
                f"profile {name!r}: duration_seconds = {body['duration_seconds']!r} is not a "
                "whole number of seconds"
            ) from None
    body.setdefault("role_session_name", stable_session_name(name))
    endpoint = _endpoint_url(profile, config)
    if endpoint:
        body["endpoint_url"] = endpoint
    return body


def _profile(config: AwsConfig, current: str, name: str, visited: list[str]) -> dict[str, Any]:
    """The role profile `current` of the chain of `name`; refused when missing or no role."""
    profile = config.profiles.get(current)
    if profile is None:
        if current == name:
            raise ProfileError(
                f"profile {name!r} is not in the AWS config files; "
                "`aws configure list-profiles` shows the ones there are"
            )
        raise ProfileError(
            f"the source_profile {current!r} of profile {visited[-1]!r} does not exist; "
            "add it or fix the name"
        )
    if not is_role_profile(profile):
        raise ProfileError(
            f"profile {current!r} has no role_arn: rolecache assumes roles, so use a role "
            "profile (role_arn plus source_profile or credential_source)"
        )
    return profile


def _next_hop(
    current: str, profile: dict[str, Any], hop: dict[str, Any], config: AwsConfig
) -> str | None:
    """The profile whose role signs `current`'s, or None when `current` holds the chain's
    source (then written into `hop`: credential_source or source_profile)."""
    source = profile.get("source_profile")
    credential_source = profile.get("credential_source")
    if source is not None and credential_source is not None:
        raise ProfileError(
            f"profile {current!r} has both source_profile and credential_source; keep one"
        )
    if credential_source is not None:
        if credential_source not in SUPPORTED_CREDENTIAL_SOURCES:
            raise ProfileError(
                f"profile {current!r}: credential_source = {credential_source} is not "
                "supported by rolecache; use Environment (the daemon's environment) or "
                "a source_profile"
            )
        hop["credential_source"] = credential_source
        return None
    if source is None:
        raise ProfileError(
            f"profile {current!r} has role_arn but neither source_profile nor "
            "credential_source; add source_profile = <profile with credentials>"
        )
    source_profile = config.profiles.get(source)
    if source_profile is None:
        raise ProfileError(
            f"the source_profile {source!r} of profile {current!r} does not exist; "
            "add it or fix the name"
        )
    # A source with keys of its own (or no role) holds the long-term credentials; a
    # profile may name itself as source only to use its own keys, as in botocore.
    if has_static_keys(source_profile) or not is_role_profile(source_profile):
        hop["source_profile"] = source
        return None
    return source


def role_chain(name: str, config: AwsConfig) -> list[dict[str, Any]]:
    """The AssumeRole hops behind role profile `name`, from the one nearest the long-term
    credentials to `name` itself. The first hop says where its source credentials come from
    (source_profile or credential_source); each later hop is signed by the one before."""
    hops: list[dict[str, Any]] = []
    visited: list[str] = []
    current: str | None = name
    while current is not None:
        profile = _profile(config, current, name, visited)
        visited.append(current)
        if len(visited) > MAX_HOPS:
            raise ProfileError(too_many_hops(name))
        hop = hop_body(current, profile, config)
        hops.append(hop)
        source = _next_hop(current, profile, hop, config)
        if source is not None and source in visited:
            raise ProfileError(
                f"source_profile loop: {' -> '.join([*visited, source])}; one profile in the "
                "chain must have credentials instead of a source_profile"
            )
        current = source
    hops.reverse()
    # Later hops use the region of the profile asked for unless they set their own.
    top_region = hops[-1].get("region")
    for hop in hops:
        if top_region and "region" not in hop:
            hop["region"] = top_region
    return hops


def too_many_hops(name: str) -> str:
    """The refusal of a chain longer than MAX_HOPS, naming the profile asked for."""
    return (
        f"profile {name!r}: its source_profile chain is longer than {MAX_HOPS} roles; "
        "point one of its profiles at a source with credentials"
    )
