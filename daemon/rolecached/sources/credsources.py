"""Where a key's own credentials come from, one class per kind behind one small protocol:
a profile (its keys, SSO, a credential_process, `aws login`, all resolved by botocore), the
daemon's environment (credential_source), the default chain, or the sandbox's fixed keys.

A new kind is a class here and an entry in `source_of` (and, when a profile can name it as
credential_source, in CREDENTIAL_SOURCES); the STS caller and its messages ask only this.
"""

import os
from dataclasses import dataclass
from typing import Protocol

import botocore.credentials
import botocore.exceptions
import botocore.session

from rolecached.core.request import Source


class CredentialSource(Protocol):
    """One kind of source: how messages name it and how a botocore session gets it."""

    def where(self) -> str:
        """The source, as a message about its credentials names it."""
        ...

    def missing(self) -> str:
        """Where no credentials were found, as the refusal names it."""
        ...

    def load(self, session: botocore.session.Session) -> None:
        """Make `session` resolve this source's credentials (not resolved yet)."""
        ...


@dataclass(frozen=True)
class EnvironmentSource:
    """credential_source = Environment: the daemon's AWS_ACCESS_KEY_ID and friends."""

    def where(self) -> str:
        return "the daemon's environment (credential_source = Environment)"

    def missing(self) -> str:
        return self.where()

    def load(self, session: botocore.session.Session) -> None:
        key_id = os.environ.get("AWS_ACCESS_KEY_ID")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not key_id or not secret:
            raise botocore.exceptions.NoCredentialsError()
        session.set_credentials(key_id, secret, os.environ.get("AWS_SESSION_TOKEN"))


@dataclass(frozen=True)
class ProfileSource:
    """A source profile: its keys, SSO, credential_process or login, as botocore finds them."""

    profile: str

    def where(self) -> str:
        return f"source profile {self.profile!r}"

    def missing(self) -> str:
        return f"profile {self.profile!r}"

    def load(self, session: botocore.session.Session) -> None:
        session.set_config_variable("profile", self.profile)
        lend_own_credentials(session, self.profile)


@dataclass(frozen=True)
class DefaultChain:
    """No source named: botocore's default chain, as the daemon's environment sets it up."""

    def where(self) -> str:
        return "the daemon's default credential chain"

    def missing(self) -> str:
        return "the default chain (environment, ~/.aws/credentials, SSO, instance role)"

    def load(self, session: botocore.session.Session) -> None:
        return None


@dataclass(frozen=True)
class StaticSource:
    """Fixed source credentials, used by the sandbox instead of the user's chain."""

    access_key_id: str
    secret_access_key: str

    def where(self) -> str:
        return "the sandbox's fixed source keys"

    def missing(self) -> str:
        return self.where()

    def load(self, session: botocore.session.Session) -> None:
        session.set_credentials(self.access_key_id, self.secret_access_key)


# The credential_source values a profile may name, each with its kind.
CREDENTIAL_SOURCES: dict[str, CredentialSource] = {"Environment": EnvironmentSource()}


def source_of(key: Source) -> CredentialSource:
    """The kind of source a key's own credentials come from."""
    if key.credential_source is not None and key.credential_source in CREDENTIAL_SOURCES:
        return CREDENTIAL_SOURCES[key.credential_source]
    if key.source_profile:
        return ProfileSource(key.source_profile)
    return DefaultChain()


def lend_own_credentials(session: botocore.session.Session, profile: str) -> None:
    """Make a role profile, as a source, sign with its own credentials (keys, SSO, a
    process), as botocore's source-profile chain does: the default chain would assume its
    role first, a second AssumeRole (and role chaining) for a profile that is its own
    source. Profiles without a role keep the default chain."""
    if "role_arn" not in session.full_config.get("profiles", {}).get(profile, {}):
        return
    builder = botocore.credentials.ProfileProviderBuilder(session)
    resolver = botocore.credentials.CredentialResolver(
        builder.providers(profile_name=profile, disable_env_vars=True)
    )
    session.register_component("credential_provider", resolver)
