"""`rolecache endpoint ...` and `rolecache exec --endpoint`: manage container bindings and
hand their endpoints to programs. Standard library only; not on any cache-hit path."""

import configparser
import os
import sys

from rolecache import cmdline, daemon, protocol, shells

USAGE = """\
usage: rolecache endpoint COMMAND ...

Serve a role to SDKs and containers on loopback, ECS-style and IMDSv2-style.

  add NAME (--profile P | --role-arn ARN --role-session-name S) [selector options]
          [--imds-v1] [--imds-port N] [--replace]
                      create (or with --replace, replace) a binding; its sessions must
                      last at least 1 h (--duration-seconds 3600 or more)
  list [--json]       bindings, their URLs and token files
  remove NAME         stop serving a binding
  rotate NAME [--containers]
                      give a binding a new token file (the old token works for a grace
                      period); --containers also replaces the container token that
                      `env` hands out, at once: running programs holding it lose access
  env NAME [--imds | --docker] [--env-file [PATH]] [--shell sh|bash|zsh|fish|powershell]
                      the variables a program needs: export lines, or Docker's
                      KEY=VALUE lines with --env-file (with PATH, written to a new file
                      PATH, or one of yours, mode 0600). They include the container token
                      (AWS_CONTAINER_AUTHORIZATION_TOKEN, for SDKs from before late 2023):
                      it lasts until `rotate --containers` or `remove`. --docker: what
                      a container on the rolecache docker network needs (the URL at
                      169.254.170.2 and the container token), e.g. for docker run --env-file

and: rolecache exec --endpoint NAME [--imds] -- CMD   runs CMD against the endpoint
"""

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


def _name(args: list[str], usage: str) -> tuple[str, list[str]]:
    """The binding name (first argument), checked so it is safe in a URL path."""
    if not args or args[0].startswith("-"):
        raise cmdline.UsageError(f"usage: rolecache endpoint {usage}")
    name = args[0]
    if not protocol.valid_binding_name(name):
        rule = protocol.BINDING_NAME_RULE
        raise cmdline.UsageError(f"endpoint name {name!r} is not valid: {rule}")
    return name, args[1:]


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
        raise daemon.Failed(str(info.get("docker_refusal")), protocol.EXIT_ERROR)
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
        raise daemon.Failed(
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
        raise daemon.Failed(f"cannot read {path}: {exc.strerror}", protocol.EXIT_ERROR) from None


def _info(name: str, sandbox: bool) -> dict[str, object]:
    info = daemon.json_of(daemon.call("GET", f"/v1/endpoints/{name}", None, sandbox))
    if info.get("waiting"):
        # Handed out anyway: the URLs stay the same, and work once the port is back.
        sys.stderr.write(f"rolecache: endpoint {name} is {info['waiting']}; it answers once free\n")
    return info


def cmd_add(args: list[str], sandbox: bool) -> int:
    """Create a binding; print its URLs and how to hand it to a program."""
    name, rest = _name(args, "add NAME --role-arn ARN --role-session-name S | --profile P")
    fields, flags, extra = cmdline.parse_options(rest, cmdline.ENDPOINT_FLAGS["add"])
    if extra:
        raise cmdline.UsageError(f"unexpected arguments after --: {' '.join(extra)}")
    body = cmdline.build_request(fields)
    port = str(flags.get("--imds-port", "0"))
    if protocol.whole_number(port) is None or port.startswith("-"):
        raise cmdline.UsageError(f"--imds-port takes a port number, not {port!r}")
    body.update(
        name=name,
        replace=bool(flags.get("--replace")),
        imds_v1=bool(flags.get("--imds-v1")),
        imds_port=int(port),
    )
    info = daemon.json_of(daemon.call("POST", "/v1/endpoints", body, sandbox))
    print(f"endpoint {name}: {info['role_arn']} as {info['role_session_name']}")
    print(f"  container (ECS): {info['ecs_url']}")
    print(f"  token file:      {info['token_file']}")
    print(f"  IMDSv2:          {info['imds_url']}")
    print(
        f'use: eval "$(rolecache endpoint env {name})"  or  rolecache exec --endpoint {name} -- CMD'
    )
    return protocol.EXIT_OK


def _endpoint_row(e: dict) -> tuple[str, ...]:
    return (
        e["name"],
        e["role_arn"],
        e["role_session_name"],
        e["ecs_url"],
        e["imds_url"] or "-",
        e["origin"],
        e.get("waiting") or e["last_error"] or "",
    )


def cmd_list(args: list[str], sandbox: bool) -> int:
    """A table of bindings, or their JSON with --json."""
    _, flags, _ = cmdline.parse_options(args, cmdline.ENDPOINT_FLAGS["list"])
    response = daemon.call("GET", "/v1/endpoints", None, sandbox)
    if flags.get("--json"):
        sys.stdout.buffer.write(response.body + b"\n")
        return protocol.EXIT_OK
    listing = daemon.json_of(response)
    endpoints = listing["endpoints"]
    # Per user (derived from the uid unless config.toml sets it): worth seeing before use.
    waiting = listing.get("container_waiting")
    print(f"container port: {listing.get('container_port')}" + (f" ({waiting})" if waiting else ""))
    for alert in listing.get("alerts") or ():
        print(f"ALERT: {alert}")
    if not endpoints:
        print("no endpoints")
    else:
        header = ("NAME", "ROLE", "SESSION", "CONTAINER URL", "IMDS URL", "FROM", "LAST ERROR")
        cmdline.print_table(header, [_endpoint_row(e) for e in endpoints])
    for problem in listing.get("skipped", ()):
        print(f"skipped: {problem}")
    return protocol.EXIT_OK


def cmd_remove(args: list[str], sandbox: bool) -> int:
    """Stop serving a binding."""
    name, rest = _name(args, "remove NAME")
    cmdline.parse_options(rest, cmdline.ENDPOINT_FLAGS["remove"])
    daemon.call("DELETE", f"/v1/endpoints/{name}", None, sandbox)
    print(f"removed endpoint {name}")
    return protocol.EXIT_OK


def cmd_rotate(args: list[str], sandbox: bool) -> int:
    """Rotate a binding's token; with --containers, its container token too."""
    name, rest = _name(args, "rotate NAME [--containers]")
    _, flags, _ = cmdline.parse_options(rest, cmdline.ENDPOINT_FLAGS["rotate"])
    containers = bool(flags.get("--containers"))
    body = {"containers": True} if containers else None
    info = daemon.json_of(daemon.call("POST", f"/v1/endpoints/{name}/rotate", body, sandbox))
    print(f"new token for endpoint {name} in {info['token_file']}")
    if containers:
        print(
            f"new container token in {info['container_token_file']}: programs and containers "
            f"started with the old one need `rolecache endpoint env {name}` again"
        )
    return protocol.EXIT_OK


def cmd_env(args: list[str], sandbox: bool) -> int:
    """Print the variables that point a program at the binding."""
    name, rest = _name(args, "env NAME [--imds | --docker] [--env-file [PATH]] [--shell SHELL]")
    _, flags, _ = cmdline.parse_options(rest, cmdline.ENDPOINT_FLAGS["env"])
    shell = str(flags.get("--shell", "bash"))
    if shell not in protocol.SHELLS:
        names = ", ".join(protocol.SHELLS)
        raise cmdline.UsageError(f"--shell takes one of {names}, not {shell!r}")
    if flags.get("--docker"):
        if flags.get("--imds"):
            raise cmdline.UsageError("--imds is for host programs; containers get --docker alone")
        variables = docker_handoff(_info(name, sandbox))
        if "AWS_CONTAINER_CREDENTIALS_FULL_URI" in variables:
            sys.stderr.write(DOCKER_NOTE)
        return print_env(variables, (), shell, flags.get("--env-file"))
    variables, unset = handoff(_info(name, sandbox), bool(flags.get("--imds")), os.environ)
    return print_env(variables, unset, shell, flags.get("--env-file"))


def print_env(
    variables: dict[str, str], unset: tuple[str, ...], shell: str, env_file: object
) -> int:
    """Export lines for `shell`; with --env-file, Docker's KEY=VALUE lines instead, printed,
    or with --env-file PATH written to PATH, 0600 (they hold the container token)."""
    if isinstance(env_file, str):
        from rolecache.privatefile import write_private

        write_private(env_file, shells.env_file_lines(variables))
        print(f"wrote {env_file} (mode 0600)")
    elif env_file:
        sys.stdout.write(shells.env_file_lines(variables))
    else:
        check_config(protocol.aws_config_paths()["config_file"])
        sys.stdout.write(shells.export_lines(variables, unset, shell))
    return protocol.EXIT_OK


def exec_endpoint(name: str, imds: bool, command: list[str], sandbox: bool) -> int:
    """Replace this process with CMD, pointed at the binding instead of static keys."""
    _name([name], "exec --endpoint NAME -- CMD")
    check_config(protocol.aws_config_paths()["config_file"])
    variables, unset = handoff(_info(name, sandbox), imds, os.environ)
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(variables)
    return cmdline.exec_command(command, env)


def run(args: list[str], sandbox: bool) -> int:
    """Dispatch `rolecache endpoint SUBCOMMAND ...`."""
    commands = {
        "add": cmd_add,
        "list": cmd_list,
        "remove": cmd_remove,
        "rotate": cmd_rotate,
        "env": cmd_env,
    }
    if not args or args[0] in ("-h", "--help", "help") or "--help" in args:
        sys.stdout.write(USAGE)
        return protocol.EXIT_OK if args else protocol.EXIT_USAGE
    if args[0] not in commands:
        raise cmdline.UsageError(
            f"unknown endpoint command {args[0]!r}; see rolecache endpoint --help"
        )
    return commands[args[0]](args[1:], sandbox)
