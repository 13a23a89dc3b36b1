"""The daemon's TOML config file: tunables of the store.

[daemon]
idle_ttl = 28800          # seconds without a request before an entry stops renewing
negative_ttl = 10         # seconds a permanent STS error is remembered
max_concurrent_sts = 8    # STS calls in flight at once, over all roles
request_timeout = 20      # seconds a request waits for STS
"""

import tomllib
from dataclasses import fields, replace
from pathlib import Path

import platformdirs

from rolecached.store import Settings


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
        raise ConfigError(f"{path}: unknown table [{unknown[0]}]; known: [daemon]")
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
        changes[name] = value
    return replace(Settings(), **changes)
