"""The rolecache command: parse the command line, ask the daemon, print or exec.

Shells call this many times a minute, so the cache-hit path imports only `os`, `sys`, `_socket`
and this package: the options are parsed by hand from a table (argparse and json pull in
`re` and friends), and the daemon renders the output so the client only copies bytes.
"""

import os
import sys

from rolecache import __version__, protocol, transport
from rolecache.ask import TOKEN_CODE_ENV, Failed, call, error_of, json_of, send
from rolecache.cmdline import (
    COMMAND_FLAGS,
    UsageError,
    build_request,
    exec_command,
    parse_options,
    print_table,
)

# Variables that would override or confuse the credentials `exec` hands to its command.
CONFLICTING_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN")


def cmd_credentials(fmt: str, args: list[str], sandbox: bool) -> int:
    """env and process: the daemon renders; we copy its bytes to stdout."""
    fields, flags, rest = parse_options(args, COMMAND_FLAGS[fmt])
    if rest:
        raise UsageError(f"unexpected arguments after --: {' '.join(rest)}")
    body = build_request(fields)
    if fmt == "process":
        body.setdefault("min_ttl", protocol.PROCESS_MIN_TTL)
        body.setdefault("mfa_wait", protocol.PROCESS_MFA_WAIT)
    shell = flags.get("--shell", "bash")
    if shell not in protocol.SHELLS:
        raise UsageError(f"--shell takes one of {', '.join(protocol.SHELLS)}, not {shell!r}")
    response = call("POST", f"/v1/credentials?format={fmt}&shell={shell}", body, sandbox)
    sys.stdout.buffer.write(response.body)
    sys.stdout.flush()
    return protocol.EXIT_OK


def cmd_exec(args: list[str], sandbox: bool) -> int:
    """Replace this process with CMD, the credentials in its environment."""
    fields, flags, command = parse_options(args, COMMAND_FLAGS["exec"])
    if not command:
        raise UsageError("exec needs a command after --: rolecache exec --role-arn ... -- CMD")
    if "--endpoint" in flags:
        if fields:
            raise UsageError("exec takes either --endpoint NAME or a selector, not both")
        from rolecache.commands import endpoint  # not on the cache-hit path

        return endpoint.exec_endpoint(
            str(flags["--endpoint"]), bool(flags.get("--imds")), command, sandbox
        )
    if "--imds" in flags:
        raise UsageError("--imds goes with --endpoint NAME: rolecache exec --endpoint NAME --imds")
    doc = json_of(call("POST", "/v1/credentials", build_request(fields), sandbox))
    # The MFA code was for this command, not for the one it runs.
    env = {k: v for k, v in os.environ.items() if k not in (*CONFLICTING_ENV, TOKEN_CODE_ENV)}
    env["AWS_ACCESS_KEY_ID"] = doc["AccessKeyId"]
    env["AWS_SECRET_ACCESS_KEY"] = doc["SecretAccessKey"]
    env["AWS_SESSION_TOKEN"] = doc["SessionToken"]
    env["AWS_CREDENTIAL_EXPIRATION"] = doc["Expiration"]
    return exec_command(command, env)


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0:
        return "expired"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _session_row(s: dict) -> tuple[str, ...]:
    if s.get("needs_mfa_code"):
        renews = "needs MFA code"
    elif s["renews_in"] is None or s["renews_in"] > 0:
        renews = _duration(s["renews_in"])
    else:
        renews = "now"
    return (
        s["role_arn"],
        s["role_session_name"],
        _duration(s["expires_in"]),
        renews,
        str(s["hits"]),
        s.get("last_requester") or "",
        s["last_error"] or "",
    )


def cmd_list(args: list[str], sandbox: bool) -> int:
    """A table of cached sessions, or their JSON with --json."""
    _, flags, _ = parse_options(args, COMMAND_FLAGS["list"])
    response = call("GET", "/v1/sessions", None, sandbox)
    if flags.get("--json"):
        sys.stdout.buffer.write(response.body + b"\n")
        return protocol.EXIT_OK
    sessions = json_of(response)["sessions"]
    if not sessions:
        print("no cached sessions")
        return protocol.EXIT_OK
    header = ("ROLE", "SESSION", "EXPIRES IN", "RENEWS IN", "HITS", "LAST REQUESTER", "LAST ERROR")
    print_table(header, [_session_row(s) for s in sessions])
    return protocol.EXIT_OK


def cmd_forget(args: list[str], sandbox: bool) -> int:
    """Drop one cached session (by selector) or all of them (--all)."""
    fields, flags, _ = parse_options(args, COMMAND_FLAGS["forget"])
    if flags.get("--all"):
        if fields:
            raise UsageError("forget takes either --all or a selector, not both")
        response = call("DELETE", "/v1/sessions", None, sandbox)
    else:
        response = call("POST", "/v1/sessions/forget", build_request(fields), sandbox)
    count = json_of(response)["forgotten"]
    print(f"forgot {count} session{'s' if count != 1 else ''}")
    return protocol.EXIT_OK


def cmd_status(args: list[str], sandbox: bool) -> int:
    """The daemon's version, pid, uptime and counters."""
    parse_options(args, COMMAND_FLAGS["status"])
    # Asking whether it runs must not start it: "not running" is the answer (exit 3).
    response = send("GET", "/v1/status", None, sandbox, autostart=False)
    if response.status != 200:
        error = error_of(response)
        raise Failed(f"{error.get('message')} ({error.get('code')})", protocol.EXIT_ERROR)
    for key, value in json_of(response).items():
        # A list (config errors) is a line per item, and no line when it is empty.
        for item in value if isinstance(value, list) else [value]:
            print(f"{key}: {item}")
    return protocol.EXIT_OK


def _sandbox(argv: list[str]) -> tuple[list[str], bool]:
    """The command line without --sandbox (before any --), and whether to use the sandbox."""
    sandbox = protocol.env_flag("ROLECACHE_SANDBOX")
    head = argv.index("--") if "--" in argv else len(argv)  # what follows -- belongs to CMD
    if "--sandbox" in argv[:head]:
        sandbox = True
        argv = [a for a in argv[:head] if a != "--sandbox"] + argv[head:]
    return argv, sandbox


def _sts(args: list[str], sandbox: bool) -> int:
    """`rolecache sts ...`: only assume-role is served, from the cache."""
    from rolecache.commands import assume

    if args[:1] == ["assume-role"]:
        return assume.run(args[1:], sandbox)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(assume.USAGE)
        return protocol.EXIT_OK
    raise UsageError(
        f"only `sts assume-role` is served here, from the cache; for `sts {args[0]}` run "
        f"the AWS CLI: aws sts {args[0]} (`command aws sts {args[0]}` where an aws() "
        "function forwards to rolecache)"
    )


def _module_command(command: str, args: list[str], sandbox: bool) -> int | None:
    """Run a command whose module is imported only for it; None for other commands."""
    if command == "aws":
        from rolecache.commands import assume

        return assume.forward(args, sandbox)
    if command == "shell-init":
        from rolecache.commands import shellinit

        return shellinit.run(args)
    if command == "endpoint":
        from rolecache.commands import endpoint

        return endpoint.run(args, sandbox)
    if command == "docker":
        from rolecache.commands import docker

        return docker.run(args, sandbox)
    if command == "login":
        from rolecache.commands import login

        return login.run(args, sandbox)
    return None


def run(argv: list[str]) -> int:
    """Dispatch one command line; raises UsageError, Failed or transport.Unreachable."""
    argv, sandbox = _sandbox(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        from rolecache.usage import USAGE

        sys.stdout.write(USAGE)
        return protocol.EXIT_OK if argv else protocol.EXIT_USAGE
    if argv[0] == "--version":
        print(f"rolecache {__version__}")
        return protocol.EXIT_OK
    command, args = argv[0], argv[1:]
    if command == "sts":
        return _sts(args, sandbox)
    done = _module_command(command, args, sandbox)
    if done is not None:
        return done
    if "--help" in args[: args.index("--") if "--" in args else len(args)]:
        from rolecache.usage import COMMAND_HELP, command_help

        if command in COMMAND_HELP:
            sys.stdout.write(command_help(command))
            return protocol.EXIT_OK
    if command in ("env", "process"):
        return cmd_credentials(command, args, sandbox)
    if command == "mfa":
        from rolecache.commands import mfa

        return mfa.run(args, sandbox)
    handlers = {"exec": cmd_exec, "list": cmd_list, "forget": cmd_forget, "status": cmd_status}
    if command not in handlers:
        raise UsageError(f"unknown command {command!r}; see rolecache --help")
    return handlers[command](args, sandbox)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the rolecache command; returns the exit status."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        sys.stderr.write(f"rolecache: {exc}\n")
        return protocol.EXIT_USAGE
    except Failed as exc:
        sys.stderr.write(f"rolecache: {exc}\n")
        return exc.code
    except transport.Unreachable as exc:
        sys.stderr.write(f"rolecache: {exc}\n")
        return protocol.EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130
