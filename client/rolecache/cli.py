"""The rolecache command: parse the command line, ask the daemon, print or exec.

Shells call this many times a minute, so the cache-hit path imports only `os`, `sys`, `_socket`
and this package: the options are parsed by hand from a table (argparse and json pull in
`re` and friends), and the daemon renders the output so the client only copies bytes.
"""

import os
import sys

from rolecache import __version__, protocol, transport

USAGE = """\
usage: rolecache COMMAND [OPTIONS]

Assumed-role AWS credentials from the rolecached daemon's memory.

commands:
  env      print export lines: eval "$(rolecache env --role-arn ARN --role-session-name NAME)"
  process  print credential_process JSON (for credential_process = rolecache process ...)
  exec     run a command with the credentials in its environment: rolecache exec ... -- CMD
  list     show cached sessions (--json for scripts)
  forget   drop a cached session (same selector options), or --all
  status   show the daemon's version, uptime and counters
  sts assume-role ...     drop-in for `aws sts assume-role` (same options and output)
  shell-init bash|zsh|fish  shell functions (rolecache-assume PROFILE) and completion
  endpoint add|list|remove|rotate|env ...   serve a role to SDKs and containers on
           loopback (ECS- and IMDSv2-style); exec --endpoint NAME [--imds] -- CMD uses one
  docker setup [--network NAME] [--print]   the docker network (gateway 169.254.170.2)
           whose containers reach the container endpoint

selector options (env, process, exec, forget):
  --profile NAME               a role profile from ~/.aws/config (or AWS_CONFIG_FILE);
                               other options given with it override the profile's values
  --role-arn ARN               role to assume (required without --profile)
  --role-session-name NAME     session name, 2-64 of [A-Za-z0-9_+=,.@-] (required with --role-arn)
  --duration-seconds N         session length, 900-43200 (default 3600)
  --external-id ID             external id the role's trust policy asks for
  --source-profile NAME        profile whose credentials assume the role (default chain if absent)
  --region REGION              STS region (regional endpoint)
  --policy JSON|file://PATH    session policy
  --policy-arns ARN ...        managed session policies (arn=ARN accepted too)
  --tags Key=K,Value=V ...     session tags
  --transitive-tag-keys K ...  tags that pass on through role chaining
  --source-identity ID         source identity to set on the session
  --min-ttl SECONDS            least remaining lifetime to accept (default 300; process: 960)
  --serial-number ARN          MFA device the role needs (else mfa_serial of the profile)
  --token-code CODE            the device's current code (else you are asked on the terminal)

other options:
  --shell sh|bash|zsh|fish|powershell   export syntax for env (default bash)
  --sandbox                    talk to the sandbox daemon (fake STS); also ROLECACHE_SANDBOX=1
  --version, --help

exit status: 0 ok, 1 STS or daemon error, 2 bad usage or invalid request,
3 daemon unreachable; exec exits with the command's status.
"""

# Option -> (request field, kind). Kinds: "str", "int", "list" (values up to the next --opt).
SELECTOR_OPTIONS = {
    "--role-arn": ("role_arn", "str"),
    "--role-session-name": ("role_session_name", "str"),
    "--duration-seconds": ("duration_seconds", "int"),
    "--external-id": ("external_id", "str"),
    "--source-profile": ("source_profile", "str"),
    "--region": ("region", "str"),
    "--policy": ("policy", "str"),
    "--policy-arns": ("policy_arns", "list"),
    "--tags": ("tags", "list"),
    "--transitive-tag-keys": ("transitive_tag_keys", "list"),
    "--source-identity": ("source_identity", "str"),
    "--min-ttl": ("min_ttl", "int"),
    "--profile": ("profile", "str"),
    "--serial-number": ("mfa_serial", "str"),
    "--token-code": ("token_code", "str"),
}

# Variables that would override or confuse the credentials `exec` hands to its command.
CONFLICTING_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN")


class UsageError(Exception):
    """The command line is wrong; exit 2 with the message."""


class Failed(Exception):
    """The daemon answered with an error; carries the exit code."""

    def __init__(self, message: str, code: int, error: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.error = error or {}


def _tag(text: str) -> dict[str, str]:
    # Key=K,Value=V — the value may itself hold commas, so split at ",Value=" only.
    if not text.startswith("Key="):
        raise UsageError(f"--tags takes Key=K,Value=V items, not {text!r}")
    key, sep, value = text[4:].partition(",Value=")
    return {"Key": key, "Value": value if sep else ""}


def _policy(text: str) -> str:
    if not text.startswith("file://"):
        return text
    try:
        with open(text[7:], encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise UsageError(f"--policy {text}: {exc.strerror}") from None


def parse_options(
    args: list[str], allowed: dict[str, str]
) -> tuple[dict[str, object], dict[str, object], list[str]]:
    """Split `args` into selector fields, other flags (names in `allowed`), and what follows
    `--`. `allowed` maps a flag to "flag" (no value) or "str" (one value)."""
    fields: dict[str, object] = {}
    flags: dict[str, object] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            return fields, flags, args[i:]
        name, eq, inline = arg.partition("=")
        if name in SELECTOR_OPTIONS:
            field, kind = SELECTOR_OPTIONS[name]
            if kind == "list":
                values = [inline] if eq else []
                while i < len(args) and not args[i].startswith("--"):
                    values.append(args[i])
                    i += 1
                if not values:
                    raise UsageError(f"{name} needs at least one value")
                fields[field] = values
                continue
            if eq:
                value = inline
            elif i < len(args):
                value, i = args[i], i + 1
            else:
                raise UsageError(f"{name} needs a value")
            if kind == "int":
                if not value.lstrip("-").isdigit():
                    raise UsageError(f"{name} takes a whole number of seconds, not {value!r}")
                fields[field] = int(value)
            else:
                fields[field] = value
        elif arg in allowed and allowed[arg] == "flag":
            flags[arg] = True
        elif name in allowed:
            if eq:
                flags[name] = inline
            elif i < len(args):
                flags[name], i = args[i], i + 1
            else:
                raise UsageError(f"{name} needs a value")
        else:
            raise UsageError(f"unknown option {arg!r}; see rolecache --help")
    return fields, flags, []


def aws_config_paths() -> dict[str, str]:
    """The AWS config and credentials files this shell would use, for the daemon to read."""
    home = os.path.expanduser("~")
    config = os.environ.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config")
    creds = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(
        home, ".aws", "credentials"
    )
    return {
        "config_file": os.path.abspath(os.path.expanduser(config)),
        "credentials_file": os.path.abspath(os.path.expanduser(creds)),
    }


def build_request(fields: dict[str, object]) -> dict[str, object]:
    """Turn parsed selector fields into the daemon's request body."""
    if "profile" not in fields and ("role_arn" not in fields or "role_session_name" not in fields):
        raise UsageError(
            "--role-arn and --role-session-name are both required (or name a role profile "
            "with --profile)"
        )
    body = dict(fields)
    if "profile" in body or "source_profile" in body:
        body.update(aws_config_paths())
    if "tags" in body:
        body["tags"] = [_tag(t) for t in body["tags"]]  # type: ignore[attr-defined]
    if "policy_arns" in body:
        body["policy_arns"] = [a[4:] if a.startswith("arn=") else a for a in body["policy_arns"]]  # type: ignore[attr-defined]
    if "policy" in body:
        body["policy"] = _policy(str(body["policy"]))
    return body


def _send(method: str, target: str, body: object, sandbox: bool) -> transport.Response:
    encoded = None if body is None else protocol.dumps(body)
    response = transport.request(method, target, encoded, sandbox=sandbox)
    if response.headers.get(protocol.SANDBOX_HEADER.lower()) == "1":
        sys.stderr.write(
            "rolecache: SANDBOX daemon: its credentials come from a fake STS, not from AWS\n"
        )
    return response


def _call(method: str, target: str, body: object, sandbox: bool) -> transport.Response:
    """One request to the daemon; when it needs an MFA code, ask on the terminal and retry."""
    response = _send(method, target, body, sandbox)
    serial = ""
    tries = 0
    while response.status in (401, 403) and isinstance(body, dict):
        error = _error(response)
        code = error.get("code")
        serial = error.get("mfa_serial") or serial
        if code == "MfaCodeRejected" and "token_code" not in body and tries < 3:
            sys.stderr.write(f"rolecache: {error.get('message')}; try again\n")
        elif code != "MfaRequired" or "token_code" in body:
            break
        from rolecache import prompt  # only when a code is needed

        try:
            token = prompt.ask_mfa_code(serial)
        except prompt.NoTerminal:
            raise Failed(
                f"an MFA code from {serial} is needed, but there is no terminal to ask on; "
                "run the command in a terminal, or pass --token-code CODE",
                protocol.EXIT_ERROR,
            ) from None
        tries += 1
        response = _send(method, target, {**body, "token_code": token}, sandbox)
    if response.status != 200:
        error = _error(response)
        message = f"{error.get('message')} ({error.get('code')})"
        raise Failed(message, protocol.exit_code_for_status(response.status), error)
    return response


def _error(response: transport.Response) -> dict[str, str]:
    """The daemon's error object: {"code", "message", ...}."""
    import json  # error path only

    try:
        error = json.loads(response.body)["error"]
        if isinstance(error, dict):
            return error
    except (ValueError, KeyError, TypeError):
        pass
    return {"code": "HttpError", "message": f"the daemon answered HTTP {response.status}"}


def _json(response: transport.Response) -> dict:  # type: ignore[type-arg]
    import json  # not on the env/process hot path

    return json.loads(response.body)


def cmd_credentials(fmt: str, args: list[str], sandbox: bool) -> int:
    """env and process: the daemon renders; we copy its bytes to stdout."""
    allowed = {"--shell": "str"} if fmt == "env" else {}
    fields, flags, rest = parse_options(args, allowed)
    if rest:
        raise UsageError(f"unexpected arguments after --: {' '.join(rest)}")
    body = build_request(fields)
    if fmt == "process":
        body.setdefault("min_ttl", protocol.PROCESS_MIN_TTL)
    shell = flags.get("--shell", "bash")
    if shell not in protocol.SHELLS:
        raise UsageError(f"--shell takes one of {', '.join(protocol.SHELLS)}, not {shell!r}")
    response = _call("POST", f"/v1/credentials?format={fmt}&shell={shell}", body, sandbox)
    sys.stdout.buffer.write(response.body)
    sys.stdout.flush()
    return protocol.EXIT_OK


def cmd_exec(args: list[str], sandbox: bool) -> int:
    """Replace this process with CMD, the credentials in its environment."""
    fields, flags, command = parse_options(args, {"--endpoint": "str", "--imds": "flag"})
    if not command:
        raise UsageError("exec needs a command after --: rolecache exec --role-arn ... -- CMD")
    if "--endpoint" in flags:
        if fields:
            raise UsageError("exec takes either --endpoint NAME or a selector, not both")
        from rolecache import endpoint_cmd  # not on the cache-hit path

        return endpoint_cmd.exec_endpoint(
            str(flags["--endpoint"]), bool(flags.get("--imds")), command, sandbox
        )
    if "--imds" in flags:
        raise UsageError("--imds goes with --endpoint NAME: rolecache exec --endpoint NAME --imds")
    doc = _json(_call("POST", "/v1/credentials", build_request(fields), sandbox))
    env = {k: v for k, v in os.environ.items() if k not in CONFLICTING_ENV}
    env["AWS_ACCESS_KEY_ID"] = doc["AccessKeyId"]
    env["AWS_SECRET_ACCESS_KEY"] = doc["SecretAccessKey"]
    env["AWS_SESSION_TOKEN"] = doc["SessionToken"]
    env["AWS_CREDENTIAL_EXPIRATION"] = doc["Expiration"]
    sys.stdout.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        sys.stderr.write(f"rolecache: cannot run {command[0]!r}: {exc.strerror}\n")
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return 0  # not reached: execvpe does not return


def print_table(rows: list[tuple[str, ...]]) -> None:
    """Print rows as left-aligned columns, the first row being the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0:
        return "expired"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def cmd_list(args: list[str], sandbox: bool) -> int:
    """A table of cached sessions, or their JSON with --json."""
    _, flags, _ = parse_options(args, {"--json": "flag"})
    response = _call("GET", "/v1/sessions", None, sandbox)
    if flags.get("--json"):
        sys.stdout.buffer.write(response.body + b"\n")
        return protocol.EXIT_OK
    sessions = _json(response)["sessions"]
    if not sessions:
        print("no cached sessions")
        return protocol.EXIT_OK
    rows = [("ROLE", "SESSION", "EXPIRES IN", "RENEWS IN", "HITS", "LAST REQUESTER", "LAST ERROR")]
    for s in sessions:
        rows.append(
            (
                s["role_arn"],
                s["role_session_name"],
                _duration(s["expires_in"]),
                _duration(s["renews_in"])
                if s["renews_in"] is None or s["renews_in"] > 0
                else "now",
                str(s["hits"]),
                s.get("last_requester") or "",
                s["last_error"] or "",
            )
        )
    print_table(rows)
    return protocol.EXIT_OK


def cmd_forget(args: list[str], sandbox: bool) -> int:
    """Drop one cached session (by selector) or all of them (--all)."""
    fields, flags, _ = parse_options(args, {"--all": "flag"})
    if flags.get("--all"):
        if fields:
            raise UsageError("forget takes either --all or a selector, not both")
        response = _call("DELETE", "/v1/sessions", None, sandbox)
    else:
        response = _call("POST", "/v1/sessions/forget", build_request(fields), sandbox)
    count = _json(response)["forgotten"]
    print(f"forgot {count} session{'s' if count != 1 else ''}")
    return protocol.EXIT_OK


def cmd_status(args: list[str], sandbox: bool) -> int:
    """The daemon's version, pid, uptime and counters."""
    parse_options(args, {})
    for key, value in _json(_call("GET", "/v1/status", None, sandbox)).items():
        print(f"{key}: {value}")
    return protocol.EXIT_OK


def run(argv: list[str]) -> int:
    """Dispatch one command line; raises UsageError, Failed or transport.Unreachable."""
    sandbox = protocol.env_flag("ROLECACHE_SANDBOX")
    head = argv.index("--") if "--" in argv else len(argv)  # what follows -- belongs to CMD
    if "--sandbox" in argv[:head]:
        sandbox = True
        argv = [a for a in argv[:head] if a != "--sandbox"] + argv[head:]
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return protocol.EXIT_OK if argv else protocol.EXIT_USAGE
    if argv[0] == "--version":
        print(f"rolecache {__version__}")
        return protocol.EXIT_OK
    command, args = argv[0], argv[1:]
    if command == "sts" and args[:1] == ["assume-role"]:
        from rolecache import assume

        return assume.run(args[1:], sandbox)
    if command == "shell-init":
        from rolecache import shellinit

        return shellinit.run(args)
    if command == "endpoint":
        from rolecache import endpoint_cmd

        return endpoint_cmd.run(args, sandbox)
    if command == "docker":
        from rolecache import docker_cmd

        return docker_cmd.run(args, sandbox)
    if "--help" in args[: args.index("--") if "--" in args else len(args)]:
        sys.stdout.write(USAGE)
        return protocol.EXIT_OK
    if command in ("env", "process"):
        return cmd_credentials(command, args, sandbox)
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
