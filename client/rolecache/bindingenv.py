"""The environment that points a program at an endpoint binding: the variables to set and
unset, and the refusals when the program's SDK would take other credentials first."""

import configparser
import os

from rolecache import ask, protocol

# Variables that would win over the endpoint in the SDKs' credential chains.
STATIC = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)
# Every SDK reads the shared credentials file before the container and IMDS providers, so a
# [default] profile there would win: the program gets an empty one instead (an empty file is
# valid for botocore, the AWS CLI v1 and v2, the JS SDK v3 and the Go SDK v2). The config
# file stays: it holds the region and the rest of the program's settings.
NO_CREDENTIALS_FILE = {"AWS_SHARED_CREDENTIALS_FILE": os.devnull}
# Settings of the config file's default profile that every SDK takes before the container and
# IMDS providers: with one of them there, a program handed a binding would not use it.
WINNING_KEYS = (
    "aws_access_key_id",
    "credential_process",
    "role_arn",
    "web_identity_token_file",
    "sso_session",
    "sso_start_url",
    "sso_account_id",
)
# The container variables: RELATIVE_URI wins over FULL_URI in every SDK, so it is unset
# whenever FULL_URI is set.
CONTAINER = (
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)


def merge_no_proxy(environ: dict[str, str] | os._Environ[str], host: str) -> str:
    """NO_PROXY (and no_proxy) as set, plus `host` if missing: botocore's IMDS client
    honours proxies, and a proxy cannot reach our loopback listener."""
    entries: list[str] = []
    for name in ("NO_PROXY", "no_proxy"):
        for item in environ.get(name, "").split(","):
            item = item.strip()
            if item and item not in entries:
                entries.append(item)
    if host not in entries and "*" not in entries:
        entries.append(host)
    return ",".join(entries)


def docker_handoff(info: dict[str, object]) -> dict[str, str]:
    """What a container on the rolecache docker network needs: the URL at the network's
    gateway and the container token (the host's token file is not in the container, and a
    container's environment cannot be updated: the container token outlives rotations)."""
    url = info.get("docker_url")
    if not url:
        # The daemon says why: docker serving is off, or 169.254.170.2 is on no interface
        # (a request to it would leave by the default route with the token).
        raise ask.Failed(str(info.get("docker_refusal")), protocol.EXIT_ERROR)
    where = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": str(url)}
    if info.get("port_80"):
        # Port 80 of 169.254.170.2 reaches the daemon: the path every SDK generation takes.
        path = f"{info['ecs_path']}/{read_secret(info, 'capability_file')}"
        where = {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": path}
    return {
        **where,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": container_token(info),
        # Nothing else answers there: SDKs would wait on 169.254.169.254 for a second or more.
        "AWS_EC2_METADATA_DISABLED": "true",
    }


DOCKER_NOTE = (
    "rolecache: a FULL_URI at 169.254.170.2 with a port works in botocore (boto3, the AWS "
    "CLI) and in SDKs released from late 2023 on; older Go and Ruby SDKs accept only a "
    "RELATIVE_URI (169.254.170.2, port 80): see `rolecache docker setup --port-80`\n"
)


def handoff(
    info: dict[str, object], imds: bool, environ: dict[str, str] | os._Environ[str]
) -> tuple[dict[str, str], tuple[str, ...]]:
    """(variables to set, variables to unset) that point a program at the binding."""
    if imds:
        url = str(info["imds_url"])
        host = url.split("://", 1)[1].rsplit(":", 1)[0].strip("[]")
        merged = merge_no_proxy(environ, host)
        variables = {
            # No path: the JS SDK v3 keeps only the origin of this URL.
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": url,
            "NO_PROXY": merged,
            "no_proxy": merged,  # urllib lets the lower-case name win: set both
            **NO_CREDENTIALS_FILE,
        }
        return variables, (*STATIC, *CONTAINER, "AWS_EC2_METADATA_DISABLED")
    variables = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": str(info["ecs_url"]),
        # The file is re-read on every fetch, so a rotated token reaches running programs.
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(info["token_file"]),
        # SDKs from before late 2023 read only this variable (and the JS SDK v3 prefers it
        # to the file). A process's environment cannot be updated, so it is the container
        # token, which rotation leaves valid: both variables always hold a valid token.
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": container_token(info),
        **NO_CREDENTIALS_FILE,
    }
    return variables, (*STATIC, *CONTAINER[:1])


def winning_settings(config_file: str) -> list[str]:
    """The settings of `config_file`'s default profile that would win over an endpoint in
    the SDKs' chains (an unreadable or malformed file has none we can see)."""
    parser = configparser.RawConfigParser(strict=False)
    try:
        parser.read(config_file, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return []
    found: list[str] = []
    for section in ("default", "profile default"):
        if parser.has_section(section):
            found += [k for k in WINNING_KEYS if parser.has_option(section, k) and k not in found]
    return found


def check_config(config_file: str) -> None:
    """Refuse to hand a binding to a program whose SDK would take other credentials from
    the config file's default profile, silently."""
    found = winning_settings(config_file)
    if found:
        raise ask.Failed(
            f"the [default] profile of {config_file} sets {', '.join(found)}, which SDKs use "
            "before the endpoint: the program would not run as the binding; move them to a "
            "named profile",
            protocol.EXIT_USAGE,
        )


def container_token(info: dict[str, object]) -> str:
    """The binding's container token, from the file the daemon handed it out in."""
    return read_secret(info, "container_token_file")


def read_secret(info: dict[str, object], key: str) -> str:
    """A secret the daemon handed out in the file `info[key]` names."""
    path = str(info[key])
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except OSError as exc:
        raise ask.Failed(f"cannot read {path}: {exc.strerror}", protocol.EXIT_ERROR) from None
