"""`rolecache endpoint ...` and `rolecache exec --endpoint`: manage container bindings and
hand their endpoints to programs. Standard library only; not on any cache-hit path."""

import os
import sys

from rolecache import ask, cmdline, protocol, shells
from rolecache.bindingenv import DOCKER_NOTE, check_config, docker_handoff, handoff

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


def _name(args: list[str], usage: str) -> tuple[str, list[str]]:
    """The binding name (first argument), checked so it is safe in a URL path."""
    if not args or args[0].startswith("-"):
        raise cmdline.UsageError(f"usage: rolecache endpoint {usage}")
    name = args[0]
    if not protocol.valid_binding_name(name):
        rule = protocol.BINDING_NAME_RULE
        raise cmdline.UsageError(f"endpoint name {name!r} is not valid: {rule}")
    return name, args[1:]


def _info(name: str, sandbox: bool) -> dict[str, object]:
    info = ask.json_of(ask.call("GET", f"/v1/endpoints/{name}", None, sandbox))
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
    info = ask.json_of(ask.call("POST", "/v1/endpoints", body, sandbox))
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
    response = ask.call("GET", "/v1/endpoints", None, sandbox)
    if flags.get("--json"):
        sys.stdout.buffer.write(response.body + b"\n")
        return protocol.EXIT_OK
    listing = ask.json_of(response)
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
    ask.call("DELETE", f"/v1/endpoints/{name}", None, sandbox)
    print(f"removed endpoint {name}")
    return protocol.EXIT_OK


def cmd_rotate(args: list[str], sandbox: bool) -> int:
    """Rotate a binding's token; with --containers, its container token too."""
    name, rest = _name(args, "rotate NAME [--containers]")
    _, flags, _ = cmdline.parse_options(rest, cmdline.ENDPOINT_FLAGS["rotate"])
    containers = bool(flags.get("--containers"))
    body = {"containers": True} if containers else None
    info = ask.json_of(ask.call("POST", f"/v1/endpoints/{name}/rotate", body, sandbox))
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
