"""Role profiles from the caller's ~/.aws/config, resolved the way the AWS CLI resolves them.

The client sends the paths of the config and credentials files it would use; the daemon reads
them (botocore's own INI loader, so the syntax is exactly the CLI's), re-reading a file when
it changes, and turns a profile into a chain of role requests: one per hop, each its own
cache entry. Resolution itself (`role_chain`) is pure.
"""

import asyncio
import configparser
import dataclasses
import os
import pwd
import re
import stat
from dataclasses import dataclass
from typing import Any

import botocore.configloader

from rolecache.protocol import aws_config_paths, file_stamp
from rolecached.errors import InvalidRequest
from rolecached.request import (
    CONFIG_ONLY_FIELDS,
    RoleRequest,
    SourceSession,
    parse_request,
    parse_source_request,
)

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
SUPPORTED_CREDENTIAL_SOURCES = ("Environment",)
STATIC_KEYS = ("aws_access_key_id", "aws_secret_access_key")
# Roles assumed one after another for one profile: real chains are two or three deep, and a
# config with hundreds would cost as many STS calls per renewal.
MAX_HOPS = 10
# AWS config files are a few KB; anything far bigger is a mistake, and reading it would
# stall every request that names a profile.
MAX_CONFIG_BYTES = 1024 * 1024
_NOT_REGULAR = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFDIR: "a folder",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class ProfileError(InvalidRequest):
    """A profile cannot be used as it is; the message names it and says what to change."""

    code = "ProfileError"


@dataclass(frozen=True)
class AwsConfig:
    """The profiles of a config file merged with a credentials file, and its services."""

    profiles: dict[str, dict[str, Any]]
    services: dict[str, dict[str, Any]]
    sso_sessions: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


def stable_session_name(profile: str) -> str:
    """The session name of a profile without role_session_name: the same for every call by
    this user (so calls share a cache entry), readable in CloudTrail, within STS's rules."""
    user = pwd.getpwuid(os.getuid()).pw_name
    name = re.sub(r"[^\w+=,.@-]", "-", f"{user}@{profile}", flags=re.ASCII)
    return name[:64] if len(name) >= 2 else f"rolecache-{name}"


def _is_role_profile(profile: dict[str, Any]) -> bool:
    return "role_arn" in profile and "web_identity_token_file" not in profile


def _has_static_keys(profile: dict[str, Any]) -> bool:
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


def _hop(name: str, profile: dict[str, Any], config: AwsConfig) -> dict[str, Any]:
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


def role_chain(name: str, config: AwsConfig) -> list[dict[str, Any]]:
    """The AssumeRole hops behind role profile `name`, from the one nearest the long-term
    credentials to `name` itself. The first hop says where its source credentials come from
    (source_profile or credential_source); each later hop is signed by the one before."""
    hops: list[dict[str, Any]] = []
    visited: list[str] = []
    current = name
    while True:
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
        if not _is_role_profile(profile):
            raise ProfileError(
                f"profile {current!r} has no role_arn: rolecache assumes roles, so use a role "
                "profile (role_arn plus source_profile or credential_source)"
            )
        visited.append(current)
        if len(visited) > MAX_HOPS:
            raise ProfileError(too_many_hops(name))
        hop = _hop(current, profile, config)
        hops.append(hop)
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
            break
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
        if _has_static_keys(source_profile) or not _is_role_profile(source_profile):
            hop["source_profile"] = source
            break
        if source in visited:
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


class ConfigFiles:
    """Reads AWS config and credentials files, again only when one changed (file_stamp)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[tuple[Any, ...], AwsConfig]] = {}

    def load(self, config_file: str, credentials_file: str) -> AwsConfig:
        """The merged profiles of both files (credentials-file keys win, as in botocore)."""
        stamp = (file_stamp(config_file), file_stamp(credentials_file))
        cached = self._cache.get((config_file, credentials_file))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        config = self._read(config_file, credentials_file)
        self._cache[(config_file, credentials_file)] = (stamp, config)
        return config

    async def refresh(self, config_file: str, credentials_file: str) -> None:
        """Read the files again in a worker thread if they changed, so `load` on the event
        loop then costs two stat() calls (a read of up to 2 MB, or a slow disk, would stall
        every other request). Raises what `load` raises (ProfileError)."""
        stamp = (file_stamp(config_file), file_stamp(credentials_file))
        cached = self._cache.get((config_file, credentials_file))
        if cached is None or cached[0] != stamp:
            await asyncio.to_thread(self.load, config_file, credentials_file)

    @staticmethod
    def _read(config_file: str, credentials_file: str) -> AwsConfig:
        config_text = read_config_file(config_file)
        creds_text = read_config_file(credentials_file)
        parsed = (
            botocore.configloader.build_profile_map(parse_ini(config_text, config_file))
            if config_text is not None
            else {"profiles": {}}
        )
        creds = parse_ini(creds_text, credentials_file) if creds_text is not None else {}
        profiles = {name: dict(values) for name, values in parsed.get("profiles", {}).items()}
        for name, values in creds.items():
            profiles.setdefault(name, {}).update(values)
        return AwsConfig(
            profiles=profiles,
            services=parsed.get("services", {}),
            sso_sessions=parsed.get("sso_sessions", {}),
        )


def read_config_file(path: str) -> str | None:
    """The text of an AWS config or credentials file, or None when there is none.

    Opened without blocking and checked on the open descriptor: a FIFO would block an open()
    or read() until someone writes to it (stalling the daemon), and a device or a huge file
    would never end. Only a regular file of at most MAX_CONFIG_BYTES is read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProfileError(f"cannot read {path!r}: {exc.strerror}") from None
    except ValueError:  # os.open refuses a NUL byte; no file's path holds one
        raise ProfileError(f"cannot read {path!r}: a path cannot hold a NUL character") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = _NOT_REGULAR.get(stat.S_IFMT(info.st_mode), "not a regular file")
            raise ProfileError(
                f"cannot read {path!r}: it is {kind}, not a regular file; AWS_CONFIG_FILE "
                "and AWS_SHARED_CREDENTIALS_FILE must name files"
            )
        if info.st_size > MAX_CONFIG_BYTES:
            raise ProfileError(
                f"cannot read {path!r}: {info.st_size} bytes is more than an AWS config file "
                f"can be here ({MAX_CONFIG_BYTES} bytes)"
            )
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_CONFIG_BYTES:  # it grew after fstat
                raise ProfileError(
                    f"cannot read {path!r}: it is more than {MAX_CONFIG_BYTES} bytes"
                )
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileError(f"cannot parse {path}: it is not UTF-8 text") from None


def parse_problem(exc: configparser.Error) -> str:
    """Where and why configparser (and so botocore, and the AWS CLI) refuses a file."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"line {exc.lineno} comes before any [section] header"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"line {exc.lineno} repeats the section [{exc.section}]"
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"line {exc.lineno} sets {exc.option} a second time in [{exc.section}]"
    if isinstance(exc, configparser.ParsingError) and exc.errors:
        return (
            f"line {exc.errors[0][0]} is not a [section] header, a `key = value` setting, "
            "an indented continuation or a comment"
        )
    return "it is not an INI file"


def parse_ini(text: str, path: str) -> dict[str, dict[str, Any]]:
    """Sections of an AWS INI file, parsed as botocore's raw_config_parse parses a file
    (one level of indented sub-sections included), but from text already read."""
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text, source=path)
    except configparser.Error as exc:
        raise ProfileError(f"cannot parse {path}: {parse_problem(exc)}") from None
    sections: dict[str, dict[str, Any]] = {}
    for section in parser.sections():
        values: dict[str, Any] = {}
        for option in parser.options(section):
            value = parser.get(section, option)
            if value.startswith("\n"):
                nested: dict[str, str] = {}
                for line in value.splitlines():
                    if line.strip():
                        key, sep, inner = line.strip().partition("=")
                        if not sep:
                            raise ProfileError(f"cannot parse {path}")
                        nested[key.strip()] = inner.strip()
                value = nested
            values[option] = value
        sections[section] = values
    return sections


def files_of(body: dict[str, Any]) -> tuple[object, object]:
    """The config and credentials files a request names, else the daemon's own (as the AWS
    CLI would find them in its environment)."""
    defaults = aws_config_paths()
    return (
        body.get("config_file") or defaults["config_file"],
        body.get("credentials_file") or defaults["credentials_file"],
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
    if profile is None or _is_role_profile(profile):
        return select(body, files)
    # A role's own settings (role_session_name, mfa_serial...) mean nothing here.
    kept = ("region", "sts_regional_endpoints", "duration_seconds", "endpoint_url")
    fields = {k: v for k, v in _hop(name, profile, config).items() if k in kept}
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
    paths = {"config_file": config_file, "credentials_file": credentials_file}
    overrides = {k: v for k, v in body.items() if k != "profile"}
    for field in CONFIG_ONLY_FIELDS:
        if field in overrides:
            raise InvalidRequest(f"unknown field {field!r}: only a profile can set it")

    if profile is not None:
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
    elif (
        isinstance(source, str)
        and _is_role_profile(config.profiles.get(source, {}))
        and (not _has_static_keys(config.profiles[source]))
    ):
        # --source-profile naming a role profile: assume that chain first, then this role.
        hops = [*role_chain(source, config), dict(overrides)]
        hops[-1].pop("source_profile")
        if len(hops) > MAX_HOPS:
            raise ProfileError(too_many_hops(source))
    else:
        hops = [dict(overrides)]

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
            name = profile if profile is not None else source
            raise ProfileError(f"profile {name!r}: {exc.message}") from None
    assert request is not None
    return request, min_ttl
