"""The daemon's TOML config file: tunables of the store.

[daemon]
idle_ttl = 28800          # seconds without a request before an entry stops renewing
negative_ttl = 10         # seconds a permanent STS error is remembered
max_concurrent_sts = 8    # STS calls in flight at once, over all roles
request_timeout = 20      # seconds a request waits for STS
cli_version = 1           # the AWS CLI generation `rolecache sts assume-role` copies: 1 or 2
"""

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from rolecache.protocol import aws_config_paths
from rolecached.core import bindings
from rolecached.core.request import RoleRequest
from rolecached.core.store import Settings
from rolecached.errors import InvalidRequest
from rolecached.sources import awsfiles, profiles


class ConfigError(Exception):
    """The config file cannot be used; the message names the file and the fix."""


def default_path() -> Path:
    """Where the config lives when --config is not given."""
    return Path(platformdirs.user_config_dir("rolecache")) / "config.toml"


def load(path: Path | None) -> Settings:
    """Read settings from `path` (or the default file, which may be absent)."""
    explicit = path is not None
    path = path or default_path()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {path} does not exist") from None
        return Settings()
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None

    unknown = sorted(set(data) - {"daemon", "endpoints"})
    if unknown:
        raise ConfigError(f"{path}: unknown table [{unknown[0]}]; known: [daemon], [endpoints]")
    table = data.get("daemon", {})
    known = {f.name: f for f in fields(Settings)}
    changes: dict[str, float | int] = {}
    for name, value in table.items():
        if name not in known:
            raise ConfigError(
                f"{path}: unknown setting daemon.{name}; known: {', '.join(sorted(known))}"
            )
        default = getattr(Settings(), name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{path}: daemon.{name} must be a positive number, not {value!r}")
        if isinstance(default, int) and not isinstance(value, int):
            raise ConfigError(f"{path}: daemon.{name} must be a whole number, not {value!r}")
        if name == "cli_version" and value not in (1, 2):
            raise ConfigError(f"{path}: daemon.cli_version must be 1 or 2, not {value!r}")
        changes[name] = value
    return replace(Settings(), **changes)


@dataclass(frozen=True)
class EndpointConfig:
    """The [endpoints] table: listener settings and the bindings to serve from start-up."""

    settings: bindings.EndpointSettings
    bindings: list[bindings.Binding]
    # Why each binding that could not be served was skipped (the others serve).
    skipped: list[str] = field(default_factory=list)


def _aws_files(body: dict[str, Any]) -> dict[str, Any]:
    # Profiles in config.toml are read from the files the daemon's environment names, as the
    # AWS CLI would read them (the client sends its own paths for runtime bindings).
    if "profile" in body or "source_profile" in body:
        for field, path in aws_config_paths().items():
            body.setdefault(field, path)
    return body


def load_endpoints(
    path: Path | None,
    resolver: Callable[[dict[str, Any]], tuple[RoleRequest, int]] | None = None,
) -> EndpointConfig:
    """Read and validate [endpoints] from `path` (or the default file): listener settings
    and [endpoints.NAME] bindings, each resolved to its role request now."""
    path = path or default_path()
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f).get("endpoints", {})
    except FileNotFoundError:
        table = {}  # load() reports a missing explicit file
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: endpoints must be a table: [endpoints]")
    if resolver is None:
        files = awsfiles.ConfigFiles()
        resolver = lambda body: profiles.select(_aws_files(body), files)  # noqa: E731
    try:
        settings, tables = bindings.parse_endpoints_table(table)
    except InvalidRequest as exc:
        raise ConfigError(f"{path}: {exc.message}") from None
    resolved: list[bindings.Binding] = []
    skipped: list[str] = []
    for name, body in tables.items():
        # One binding gone bad (its profile renamed, say) must not stop the others.
        try:
            spec = bindings.parse_spec(name, body, origin="config")
            resolved.append(bindings.resolve(spec, resolver))
        except InvalidRequest as exc:
            skipped.append(f"{path}: {exc.message}; endpoint {name!r} is not served")
    return EndpointConfig(settings, resolved, skipped)
