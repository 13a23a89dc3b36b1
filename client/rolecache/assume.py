"""`rolecache sts assume-role`: a drop-in for `aws sts assume-role`.

Same options (the CLI's global options included), same output bytes (the daemon renders the
CLI's formats and applies --query) and the CLI's exit codes, so a script or an `aws` shell
function can forward `sts assume-role` here unchanged. Credentials come from the daemon's
cache. Which CLI it copies, v1 or v2, is ROLECACHE_CLI_VERSION, else the daemon's
`cli_version` setting (1 by default).
"""

import os
import sys

from rolecache.cmdline import option_value


class Codes:
    """One AWS CLI generation's exit codes, as it really exits (the tests compare with it)."""

    def __init__(self, usage: int, unknown: int, invalid: int, service: int) -> None:
        self.usage = usage  # a syntax error, a missing option, an invalid choice
        self.unknown = unknown  # an option it does not know
        self.invalid = invalid  # a value the request's rules refuse
        self.service = service  # STS said no


# v1's argparse exits 2 (its docs say 252, which is v2's) and everything else is 255.
EXIT_CODES = {1: Codes(2, 255, 255, 255), 2: Codes(252, 252, 252, 254)}
CLI_ERROR = 255  # anything else, in both: a malformed number, no daemon

USAGE = """\
usage: rolecache sts assume-role --role-arn ARN --role-session-name NAME
         [--duration-seconds N] [--external-id ID] [--serial-number ARN] [--token-code CODE|-]
         [--policy JSON|file://PATH] [--policy-arns arn=ARN ...] [--tags Key=K,Value=V ...]
         [--transitive-tag-keys K ...] [--source-identity ID] [--profile NAME]
         [--region REGION] [--output json|text|table|yaml|yaml-stream] [--query JMESPATH]
         [--endpoint-url URL] [--ca-bundle PATH] [--no-verify-ssl] [--debug]
         [the CLI's other global options, which change nothing here]

Prints what `aws sts assume-role` prints for the same request. --profile names the profile
whose credentials call AssumeRole (as in the AWS CLI; default $AWS_PROFILE, else the daemon's
default chain). `--token-code -` reads the MFA code from stdin, and ROLECACHE_TOKEN_CODE
is used when a code is needed: a code on the command line is visible to other users.
yaml and yaml-stream exist in AWS CLI v2 only (ROLECACHE_CLI_VERSION=2 or cli_version = 2).
"""

# Global options of the CLI that change nothing about credentials from the cache; scripts
# written for v2 pass some of them everywhere. Flag -> whether it takes a value.
IGNORED = {
    "--no-cli-pager": False,
    "--cli-auto-prompt": False,
    "--no-cli-auto-prompt": False,
    "--no-paginate": False,
    "--color": True,
    "--page-size": True,
    "--cli-read-timeout": True,
    "--cli-connect-timeout": True,
    "--cli-binary-format": True,
}
# The CLI's own options that take a value and shape the output or the call.
VALUED = ("--output", "--query", "--endpoint-url", "--ca-bundle")
# Options that cannot mean anything here, and why.
REFUSED = {
    "--cli-input-json": "rolecache takes the request from its options, not from JSON input",
    "--cli-input-yaml": "rolecache takes the request from its options, not from YAML input",
    "--generate-cli-skeleton": "rolecache calls nothing it could print a skeleton of",
    "--no-sign-request": "AssumeRole must be signed; rolecache's daemon always signs it",
}

# The AWS CLI option -> rolecache option it means here.
OPTIONS = {
    "--role-arn": "--role-arn",
    "--role-session-name": "--role-session-name",
    "--duration-seconds": "--duration-seconds",
    "--external-id": "--external-id",
    "--serial-number": "--serial-number",
    "--token-code": "--token-code",
    "--policy": "--policy",
    "--policy-arns": "--policy-arns",
    "--tags": "--tags",
    "--transitive-tag-keys": "--transitive-tag-keys",
    "--source-identity": "--source-identity",
    "--profile": "--source-profile",  # the CLI's --profile is the caller, not the role
    "--region": "--region",
}


class CliUsage(Exception):
    """A command line the AWS CLI refuses before calling anything; `kind` names the exit
    code in Codes: "usage" or "unknown"."""

    def __init__(self, message: str, kind: str = "usage") -> None:
        super().__init__(message)
        self.kind = kind


class Parsed:
    """An `sts assume-role` command line, read: rolecache selector options, the output and
    query, --debug, and request fields of the CLI's global options (endpoint and TLS)."""

    def __init__(self) -> None:
        self.selector: list[str] = []
        self.output = os.environ.get("AWS_DEFAULT_OUTPUT") or "json"
        self.query: str | None = None
        self.debug = False
        self.fields: dict[str, object] = {}


def translate(args: list[str], version: int = 1) -> Parsed:
    """Map CLI-style arguments onto rolecache's selector and request fields."""
    parsed = Parsed()
    out = parsed.selector
    i = 0
    while i < len(args):
        name, eq, inline = args[i].partition("=")
        i += 1
        if name == "--debug" and not eq:
            parsed.debug = True
        elif name == "--no-verify-ssl" and not eq:
            parsed.fields["verify_ssl"] = False
        elif name in VALUED:
            value, i = option_value(args, i, eq, inline)
            if value is None:
                raise CliUsage(f"argument {name}: expected one argument")
            if name == "--output":
                parsed.output = value
            elif name == "--query":
                parsed.query = value
            elif name == "--endpoint-url":
                parsed.fields["endpoint_url"] = value
            else:  # --ca-bundle; the daemon runs elsewhere: a relative path is this shell's
                parsed.fields["ca_bundle"] = os.path.abspath(value)
        elif name in IGNORED:
            if IGNORED[name] and not eq:
                if i >= len(args):
                    raise CliUsage(f"argument {name}: expected one argument")
                i += 1
        elif name in REFUSED:
            raise CliUsage(f"{name} is not supported by rolecache: {REFUSED[name]}", "unknown")
        elif name in OPTIONS:
            out.append(OPTIONS[name] + (f"={inline}" if eq else ""))
        elif name.startswith("--"):
            raise CliUsage(f"Unknown options: {args[i - 1]}", "unknown")
        else:
            out.append(args[i - 1])  # a value of the option before
    choices = ("json", "text", "table") + (("yaml", "yaml-stream") if version == 2 else ())
    if parsed.output not in choices:
        raise CliUsage(
            f"argument --output: Invalid choice {parsed.output!r}, valid choices are: "
            + ", ".join(choices)
        )
    missing = [
        o
        for o in ("--role-arn", "--role-session-name")
        if o not in {a.partition("=")[0] for a in args}
    ]
    if missing:
        raise CliUsage(f"the following arguments are required: {', '.join(missing)}")
    if "--profile" not in {a.partition("=")[0] for a in args} and os.environ.get("AWS_PROFILE"):
        out += ["--source-profile", os.environ["AWS_PROFILE"]]
    return parsed


def cli_version(sandbox: bool) -> int:
    """The CLI generation to copy: ROLECACHE_CLI_VERSION, else the daemon's setting."""
    from rolecache import cmdline, daemon

    chosen = os.environ.get("ROLECACHE_CLI_VERSION", "").strip()
    if chosen in ("1", "2"):
        return int(chosen)
    if chosen:
        raise cmdline.UsageError(f"ROLECACHE_CLI_VERSION must be 1 or 2, not {chosen!r}")
    status = daemon.json_of(daemon.call("GET", "/v1/status", None, sandbox))
    return int(status.get("cli_version", 1))


def terminal_columns() -> int:
    """The width of the terminal stdout writes to; 80 when it is not one (as the CLI)."""
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        return 80


def run(args: list[str], sandbox: bool) -> int:
    """Run `sts assume-role ARGS`; return the AWS CLI's exit code for the outcome."""
    from rolecache import cmdline, daemon, transport

    if "--help" in args or "help" in args:
        sys.stdout.write(USAGE)
        return 0
    try:
        version = cli_version(sandbox)
    except (daemon.Failed, cmdline.UsageError, transport.Unreachable) as exc:
        sys.stderr.write(f"rolecache: {exc}\n")
        return CLI_ERROR
    codes = EXIT_CODES[version]
    try:
        parsed = translate(args, version)
        fields, _, rest = cmdline.parse_options(parsed.selector, {})
        if rest:
            raise CliUsage(f"Unknown options: {' '.join(rest)}", "unknown")
        body = cmdline.build_request(fields)
        body.update(parsed.fields)
    except CliUsage as exc:
        sys.stderr.write(f"{USAGE}\naws: error: {exc}\n")
        return codes.unknown if exc.kind == "unknown" else codes.usage
    except cmdline.UsageError as exc:  # a malformed value, e.g. --duration-seconds 1h
        sys.stderr.write(f"{USAGE}\naws: error: {exc}\n")
        return CLI_ERROR
    if parsed.query is not None:
        body["query"] = parsed.query
    target = f"/v1/credentials?format=aws-{parsed.output}&cli={version}"
    if parsed.output == "table":
        target += f"&columns={terminal_columns()}"
    debug = parsed.debug
    if debug:
        shown = {k: v for k, v in body.items() if k != "token_code"}
        sys.stderr.write(f"rolecache: debug: AWS CLI v{version}, POST {target} {shown}\n")
    try:
        response = daemon.call("POST", target, body, sandbox)
    except daemon.Failed as exc:
        code = exc.error.get("code", "")
        if debug:
            sys.stderr.write(f"rolecache: debug: the daemon answered {code}\n")
        if code in ("BadQuery", "InvalidRequest", "ProfileError"):
            sys.stderr.write(f"\n{exc.error.get('message')}\n")
            return codes.invalid
        if "sts_message" in exc.error:
            sys.stderr.write(
                f"\nAn error occurred ({code}) when calling the AssumeRole operation: "
                f"{exc.error['sts_message']}\n"
            )
            return codes.service
        sys.stderr.write(f"rolecache: {exc}\n")
        return CLI_ERROR
    except transport.Unreachable as exc:
        sys.stderr.write(f"rolecache: {exc}\n")
        return CLI_ERROR
    if debug:
        sys.stderr.write(
            f"rolecache: debug: served from the daemon ({len(response.body)} bytes)\n"
        )
    sys.stdout.buffer.write(response.body)
    sys.stdout.flush()
    return 0
