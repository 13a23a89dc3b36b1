"""The socket API's credentials answers: the JSON document, `export` lines for each shell,
the credential_process document, and (through awscli.py) `aws sts assume-role`'s output.
`renderer` picks one for a request; the handler and the fast lane both render with it, so
they answer the same bytes. Pure: credentials in, bytes out.
"""

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rolecache.shells import ENV_NAMES, EXPIRES_AT_NAME, assignment, shell_variable
from rolecached.core.cache import Credentials
from rolecached.core.request import RoleRequest, SourceSession
from rolecached.render import awscli, awstable

SANDBOX_NOTE = "rolecache SANDBOX: credentials from an embedded fake STS, not from AWS"


def iso_expiration(epoch: float) -> str:
    """UTC time with a literal Z and whole seconds (rounded down), as SDKs expect."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))


def credentials_document(
    request: RoleRequest | SourceSession, credentials: Credentials
) -> dict[str, Any]:
    """The JSON answer to a credentials request (secrets included: socket peers only); a
    profile without a role has null for the role's fields."""
    role = request if isinstance(request, RoleRequest) else None
    return {
        "AccessKeyId": credentials.access_key_id,
        "SecretAccessKey": credentials.secret_access_key,
        "SessionToken": credentials.session_token,
        "Expiration": iso_expiration(credentials.expiration),
        "RoleArn": role.role_arn if role else None,
        "AccountId": role.account_id if role else None,
        "AssumedRoleArn": credentials.assumed_role_arn if role else None,
    }


def env_lines(
    creds: Mapping[str, str],
    shell: str = "bash",
    comment: str | None = None,
    expires_at: int | None = None,
) -> str:
    """Lines that set the four AWS_* variables in `shell` (sh, bash, zsh, fish, powershell),
    and ROLECACHE_EXPIRES_AT when `expires_at` (epoch seconds) is given."""
    lines = [f"# {comment}"] if comment else []
    lines += [assignment(name, creds[key], shell) for name, key in ENV_NAMES]
    if expires_at is not None:
        lines.append(shell_variable(EXPIRES_AT_NAME, expires_at, shell))
    return "\n".join(lines) + "\n"


def process_json(creds: Mapping[str, str]) -> str:
    """The credential_process document: Version is the number 1, Expiration ends in Z."""
    doc = {
        "Version": 1,
        "AccessKeyId": creds["AccessKeyId"],
        "SecretAccessKey": creds["SecretAccessKey"],
        "SessionToken": creds["SessionToken"],
        "Expiration": creds["Expiration"],
    }
    return json.dumps(doc, indent=2) + "\n"


@dataclass(frozen=True)
class Shape:
    """How one request wants its answer: the format, and its options."""

    fmt: str = "json"
    shell: str = "bash"
    query: str | None = None  # JMESPath, for the aws-* formats
    cli_version: int = 1  # which AWS CLI's bytes the aws-* formats copy
    columns: int = awstable.DEFAULT_COLUMNS  # the terminal's width, for aws-table


def renderer(
    role_request: RoleRequest | SourceSession, shape: Shape, sandbox: bool
) -> Callable[[Credentials], tuple[str, bytes]]:
    """How credentials are rendered for one request: -> (media type, UTF-8 body). Shared by
    the handler and the fast lane, so both answer the same bytes."""
    fmt, shell = shape.fmt, shape.shell

    def render(credentials: Credentials) -> tuple[str, bytes]:
        if fmt.startswith("aws-"):
            text = awscli.render(
                credentials, fmt[4:], shape.query, shape.cli_version, shape.columns
            )
        else:
            doc = credentials_document(role_request, credentials)
            if fmt == "json":
                return "application/json", json.dumps(doc).encode()
            if fmt == "env":
                note = SANDBOX_NOTE if sandbox else None
                text = env_lines(doc, shell, note, int(credentials.expiration))
            else:
                text = process_json(doc)
        return "text/plain", text.encode()

    return render
