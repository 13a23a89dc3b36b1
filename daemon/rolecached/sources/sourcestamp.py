"""What a request's source credentials are read from, as file stamps: an error remembered
for a request is forgotten once one of them changes (a fixed credentials file, a new SSO
token after `aws sso login`), instead of outliving its cause for the negative-cache window.
"""

import os

from rolecache.protocol import Stamp, aws_config_paths, file_stamp
from rolecached.core.request import MfaSession, RoleRequest
from rolecached.sources.awsfiles import ConfigFiles, ProfileError
from rolecached.sources.sso import token_file_named

Key = RoleRequest | MfaSession


def sso_token_file(profile: dict[str, object]) -> str | None:
    """Where botocore and the AWS CLI keep the SSO token of `profile`: ~/.aws/sso/cache/,
    named by the SHA-1 of its sso_session (or, for a legacy profile, its sso_start_url)."""
    name = profile.get("sso_session") or profile.get("sso_start_url")
    if not isinstance(name, str) or not name:
        return None
    return token_file_named(name)


def source_stamp(key: Key, files: ConfigFiles) -> tuple[Stamp | None, ...]:
    """The stamps of the config and credentials files behind `key`'s source credentials and,
    when the source profile signs in with SSO, of its SSO token file."""
    root = key
    while isinstance(root, RoleRequest) and root.source_role is not None:
        root = root.source_role
    defaults = aws_config_paths()
    config_file = root.config_file or defaults["config_file"]
    credentials_file = root.credentials_file or defaults["credentials_file"]
    stamps = (file_stamp(config_file), file_stamp(credentials_file))
    if root.credential_source is not None:
        return stamps  # the daemon's environment: no file to watch
    name = root.source_profile or os.environ.get("AWS_PROFILE") or "default"
    try:
        profile = files.load(config_file, credentials_file).profiles.get(name, {})
    except ProfileError:
        return stamps
    return (*stamps, file_stamp(sso_token_file(profile)))
