"""IAM Identity Center (SSO) sign-ins as the AWS CLI keeps them: the session a profile signs
in with, the names of its files in ~/.aws/sso/cache, and what to run when it has ended.

Pure apart from `cache_dir` (the home folder): reading and writing the files is the
caller's business.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from rolecached.errors import InvalidRequest

# A session's name as `aws sso login --sso-session` takes it on a command line.
_NAME_LIMIT = 256


class SsoConfigError(InvalidRequest):
    """The SSO settings of a profile or sso-session are missing or incomplete."""

    code = "SsoConfigError"


@dataclass(frozen=True)
class SsoSession:
    """What a sign-in needs: an [sso-session NAME], or a legacy profile's own sso_start_url
    (`name` None, `profile` the profile)."""

    name: str | None
    start_url: str
    region: str
    scopes: tuple[str, ...] | None = None
    profile: str | None = None

    def token_file(self) -> str:
        """The token's cache file: SHA-1 of the session's name (legacy: of the start URL),
        where botocore and the AWS CLI read and write it."""
        return token_file_named(self.name or self.start_url)

    def registration_file(self) -> str:
        """The OIDC client registration's cache file, named as the AWS CLI v2 names it."""
        args = {
            "tool": "botocore",
            "startUrl": self.start_url,
            "region": self.region,
            "scopes": list(self.scopes) if self.scopes is not None else None,
            "session_name": self.name,
        }
        return os.path.join(cache_dir(), f"{_sha1(json.dumps(args, sort_keys=True))}.json")

    def client_name(self, now: float) -> str:
        """The name RegisterClient gets, as the AWS CLI names it."""
        return f"botocore-client-{self.name if self.name is not None else int(now)}"

    def describe(self) -> str:
        """How messages name it."""
        if self.name is not None:
            return f"sso-session {self.name!r}"
        return f"the SSO sign-in of profile {self.profile!r} ({self.start_url})"

    def login_commands(self) -> str:
        """The commands that sign in again, for a message."""
        if self.name is not None:
            flag = f"--sso-session {self.name}"
            return f"`aws sso login {flag}` or `rolecache login {flag}`"
        return f"`aws sso login --profile {self.profile}` or `rolecache login {self.profile}`"


def cache_dir() -> str:
    """~/.aws/sso/cache, where botocore and the AWS CLI keep SSO tokens."""
    return os.path.join(os.path.expanduser("~"), ".aws", "sso", "cache")


def token_file_named(name: str) -> str:
    """The token cache file of an sso-session `name` (or a legacy profile's start URL)."""
    return os.path.join(cache_dir(), f"{_sha1(name)}.json")


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()  # names a file, not a secret


def _scopes(raw: object) -> tuple[str, ...] | None:
    """sso_registration_scopes as the AWS CLI parses it: comma-separated, blanks dropped."""
    if not isinstance(raw, str):
        return None
    return tuple(s.strip() for s in raw.split(",") if s.strip())


def session_named(name: str, sso_sessions: dict[str, dict[str, Any]]) -> SsoSession:
    """The [sso-session NAME] section, complete; SsoConfigError naming what is missing."""
    if not name or len(name) > _NAME_LIMIT:
        raise SsoConfigError("an sso-session needs a name of 1 to 256 characters")
    section = sso_sessions.get(name)
    if section is None:
        raise SsoConfigError(
            f"there is no [sso-session {name}] in the AWS config file; "
            "`aws configure sso-session` writes one"
        )
    missing = [key for key in ("sso_start_url", "sso_region") if not section.get(key)]
    if missing:
        raise SsoConfigError(f"[sso-session {name}] has no {' and no '.join(missing)}")
    return SsoSession(
        name=name,
        start_url=str(section["sso_start_url"]),
        region=str(section["sso_region"]),
        scopes=_scopes(section.get("sso_registration_scopes")),
    )


def session_of_profile(
    profile: str, profiles: dict[str, dict[str, Any]], sso_sessions: dict[str, dict[str, Any]]
) -> SsoSession | None:
    """The SSO sign-in profile `profile` uses, or None when it signs in otherwise."""
    values = profiles.get(profile, {})
    if values.get("sso_session"):
        return session_named(str(values["sso_session"]), sso_sessions)
    if values.get("sso_start_url"):
        if not values.get("sso_region"):
            raise SsoConfigError(f"profile {profile!r} has sso_start_url but no sso_region")
        return SsoSession(
            name=None,
            start_url=str(values["sso_start_url"]),
            region=str(values["sso_region"]),
            profile=profile,
        )
    return None
