"""The caller's AWS config and credentials files, read safely and parsed as botocore
parses them, again only when one changed."""

import asyncio
import configparser
import dataclasses
import os
import stat
from dataclasses import dataclass
from typing import Any

import botocore.configloader

from rolecache.protocol import aws_config_paths, file_stamp
from rolecached.errors import InvalidRequest

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
