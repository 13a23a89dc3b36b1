"""Role profiles from the caller's ~/.aws/config, resolved the way the AWS CLI resolves them.

The client sends the paths of the config and credentials files it would use; the daemon reads
them (botocore's own INI loader, so the syntax is exactly the CLI's), re-reading a file when
it changes (`awsfiles.py`), and turns a profile into a chain of role requests: one per hop,
each its own cache entry. Resolution itself (`rolechain.py`) is pure.
"""

from typing import Any

from rolecache.protocol import file_stamp
from rolecached.core.request import (
    CONFIG_ONLY_FIELDS,
    RoleRequest,
    SourceSession,
    parse_request,
    parse_source_request,
)
from rolecached.errors import InvalidRequest
from rolecached.sources.awsfiles import (
    AwsConfig,
    ConfigFiles,
    ProfileError,
    files_of,
)
from rolecached.sources.rolechain import (
    MAX_HOPS,
    has_static_keys,
    hop_body,
    is_role_profile,
    role_chain,
    too_many_hops,
)


async def select_async(body: object, files: ConfigFiles) -> tuple[RoleRequest | SourceSession, int]:
    """`select_any`, with the config files read off the event loop when they changed."""
    if isinstance(body, dict) and ("profile" in body or "source_profile" in body):
        config_file, credentials_file = files_of(body)
        if isinstance(config_file, str) and isinstance(credentials_file, str):
            await files.refresh(config_file, credentials_file)
    return select_any(body, files)


def select_any(body: object, files: ConfigFiles) -> tuple[RoleRequest | SourceSession, int]:
    """`select`, where a profile without a role (keys, SSO, a credential_process) gives its
    own credentials: a source session, cached and renewed as any other."""
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("profile"), str)
        or {"role_arn", "source_profile"} & set(body)
    ):
        return select(body, files)
    name = body["profile"]
    config_file, credentials_file = files_of(body)
    if not isinstance(config_file, str) or not isinstance(credentials_file, str):
        return select(body, files)
    config = files.load(config_file, credentials_file)
    profile = config.profiles.get(name)
    if profile is None or is_role_profile(profile):
        return select(body, files)
    # A role's own settings (role_session_name, mfa_serial...) mean nothing here.
    kept = ("region", "sts_regional_endpoints", "duration_seconds", "endpoint_url")
    fields = {k: v for k, v in hop_body(name, profile, config).items() if k in kept}
    fields.update({k: v for k, v in body.items() if k != "profile"})
    fields.update(source_profile=name, config_file=config_file, credentials_file=credentials_file)
    try:
        return parse_source_request(fields)
    except InvalidRequest as exc:
        raise ProfileError(f"profile {name!r}: {exc.message}") from None


def select(body: object, files: ConfigFiles) -> tuple[RoleRequest, int]:
    """Turn a credentials request (a profile, or explicit fields) into a validated request,
    chained hop by hop where the profile needs it; return it with its minimum lifetime."""
    if not isinstance(body, dict):
        return parse_request(body)
    profile = body.get("profile")
    source = body.get("source_profile")
    if profile is None and source is None:
        return parse_request(body)
    config_file, credentials_file = files_of(body)
    if not isinstance(config_file, str) or not isinstance(credentials_file, str):
        return parse_request(body)  # reports the wrong type
    config = files.load(config_file, credentials_file)
    overrides = {k: v for k, v in body.items() if k != "profile"}
    for field in CONFIG_ONLY_FIELDS:
        if field in overrides:
            raise InvalidRequest(f"unknown field {field!r}: only a profile can set it")
    if profile is not None:
        hops = _profile_hops(profile, overrides, config, config_file)
    else:
        hops = _source_hops(source, overrides, config)
    paths = {"config_file": config_file, "credentials_file": credentials_file}
    return _parse_hops(hops, paths, profile if profile is not None else source)


def _profile_hops(
    profile: object, overrides: dict[str, Any], config: AwsConfig, config_file: str
) -> list[dict[str, Any]]:
    """The hops of a request naming a profile, the request's own fields on the last."""
    if not isinstance(profile, str):
        raise InvalidRequest("profile must be a string")
    if profile not in config.profiles and file_stamp(config_file) is None:
        raise ProfileError(
            f"profile {profile!r}: there is no AWS config file at {config_file} (set "
            "AWS_CONFIG_FILE, or create it: `aws configure --profile NAME` writes one)"
        )
    hops = role_chain(profile, config)
    if "source_profile" in overrides:
        # Flags override the profile, the source included: the chain starts there.
        hops = hops[-1:]
        hops[0].pop("credential_source", None)
    hops[-1].update(overrides)
    return hops


def _source_hops(
    source: object, overrides: dict[str, Any], config: AwsConfig
) -> list[dict[str, Any]]:
    """The hops of a request naming only a source profile: one, or that role chain first."""
    if (
        isinstance(source, str)
        and is_role_profile(config.profiles.get(source, {}))
        and (not has_static_keys(config.profiles[source]))
    ):
        # --source-profile naming a role profile: assume that chain first, then this role.
        hops = [*role_chain(source, config), dict(overrides)]
        hops[-1].pop("source_profile")
        if len(hops) > MAX_HOPS:
            raise ProfileError(too_many_hops(source))
        return hops
    return [dict(overrides)]


def _parse_hops(
    hops: list[dict[str, Any]], paths: dict[str, str], name: object
) -> tuple[RoleRequest, int]:
    """Validate the hops in order, each signed by the one before; the last and its min_ttl.
    Only the first reads the files (later hops are signed by a role)."""
    request: RoleRequest | None = None
    min_ttl = 0
    for i, hop in enumerate(hops):
        if i == 0:
            hop = {**paths, **hop}
        else:
            hop.pop("config_file", None)
            hop.pop("credentials_file", None)
        last = i == len(hops) - 1
        if not last:
            hop.pop("min_ttl", None)
        try:
            request, min_ttl = parse_request(hop, from_config=True, source_role=request)
        except InvalidRequest as exc:
            raise ProfileError(f"profile {name!r}: {exc.message}") from None
    assert request is not None
    return request, min_ttl
