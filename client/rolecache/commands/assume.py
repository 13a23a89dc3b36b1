"""`rolecache sts assume-role`: a drop-in for `aws sts assume-role`.

Same options (the CLI's global options included), same output bytes (the daemon renders the
CLI's formats and applies --query) and the CLI's exit codes, so a script or an `aws` shell
function can forward `sts assume-role` here unchanged. Credentials come from the daemon's
cache. Which CLI it copies, v1 or v2, is ROLECACHE_CLI_VERSION, else the daemon's
`cli_version` setting (1 by default).
"""

import os
import sys

from rolecache.commands.assumeargs import (
    GLOBALS,
    REFUSED,
    CliUsage,
    HelpAsked,
    chosen_output,
    output_choices,
    translate,
)


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


class Generation:
    """The CLI generation to copy, found out only when something depends on it:
    ROLECACHE_CLI_VERSION, else the daemon's setting (one more request, so a cache hit in a
    common format leaves the choice to the daemon)."""

    def __init__(self, sandbox: bool) -> None:
        self.sandbox = sandbox
        self.version: int | None = None
        chosen = os.environ.get("ROLECACHE_CLI_VERSION", "").strip()
        if chosen in ("1", "2"):
            self.version = int(chosen)
        elif chosen:
            from rolecache import cmdline

            raise cmdline.UsageError(f"ROLECACHE_CLI_VERSION must be 1 or 2, not {chosen!r}")

    def get(self) -> int:
        """The version, asked of the daemon if the environment does not say."""
        if self.version is None:
            from rolecache import ask

            status = ask.json_of(ask.call("GET", "/v1/status", None, self.sandbox))
            self.version = int(status.get("cli_version", 1))
        return self.version

    def codes(self) -> Codes:
        """The exit codes of the version; v1's (the daemon's default) when the daemon cannot
        say, for the daemon is then the failure being reported."""
        from rolecache import ask, transport

        try:
            return EXIT_CODES[self.get()]
        except (ask.Failed, transport.Unreachable):
            return EXIT_CODES[1]


def terminal_columns() -> int:
    """The width of the terminal stdout writes to; 80 when it is not one (as the CLI)."""
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        return 80


def _refuse(text: str, code: int) -> int:
    sys.stderr.write(text)
    return code


def run(args: list[str], sandbox: bool) -> int:
    """Run `sts assume-role ARGS`; return the AWS CLI's exit code for the outcome."""
    from rolecache import ask, cmdline, transport

    try:
        generation = Generation(sandbox)
        parsed = translate(args)
        output = chosen_output(parsed)
        if output not in output_choices(1) or parsed.debug:
            generation.get()  # yaml is v2's alone; --debug names the version
        version = generation.version
        if output not in output_choices(version or 1):
            choices = ", ".join(output_choices(version or 1))
            raise CliUsage(
                f"argument --output: Invalid choice {output!r}, valid choices are: {choices}"
            )
        fields, _, _ = cmdline.parse_options(parsed.selector, {})
        body = cmdline.build_request(fields)
        body.update(parsed.fields)
    except HelpAsked:
        sys.stdout.write(USAGE)
        return 0
    except (ask.Failed, transport.Unreachable) as exc:  # asking the daemon its version
        return _refuse(f"rolecache: {exc}\n", CLI_ERROR)
    except CliUsage as exc:
        codes = generation.codes()
        if exc.kind == "unknown":  # the CLI's own check after argparse's, worded without aws:
            return _refuse(f"{USAGE}\n{exc}\n", codes.unknown)
        return _refuse(f"{USAGE}\naws: error: {exc}\n", codes.usage)
    except cmdline.ParameterError as exc:  # worded as the CLI words it
        return _refuse(f"\n{exc}\n", generation.codes().invalid)
    except cmdline.UsageError as exc:  # a malformed value, e.g. --duration-seconds 1h
        return _refuse(f"{USAGE}\naws: error: {exc}\n", CLI_ERROR)
    if parsed.query is not None:
        body["query"] = parsed.query
    target = f"/v1/credentials?format=aws-{output}"
    if version is not None:
        target += f"&cli={version}"
    if output == "table":
        target += f"&columns={terminal_columns()}"
    if parsed.debug:
        shown = {k: v for k, v in body.items() if k != "token_code"}
        sys.stderr.write(f"rolecache: debug: AWS CLI v{version}, POST {target} {shown}\n")
    try:
        response = ask.call("POST", target, body, sandbox)
    except ask.Failed as exc:
        return _failed(exc.error, str(exc), parsed.debug, generation)
    except transport.Unreachable as exc:
        return _refuse(f"rolecache: {exc}\n", CLI_ERROR)
    if parsed.debug:
        sys.stderr.write(f"rolecache: debug: served from the daemon ({len(response.body)} bytes)\n")
    sys.stdout.buffer.write(response.body)
    sys.stdout.flush()
    return 0


def _failed(error: dict[str, str], text: str, debug: bool, generation: Generation) -> int:
    """Say what the daemon refused as the CLI would say it; the CLI's exit code for it."""
    code = error.get("code", "")
    if debug:
        sys.stderr.write(f"rolecache: debug: the daemon answered {code}\n")
    if "sts_message" in error:  # STS refused, or would have (the daemon checked first)
        return _refuse(
            f"\nAn error occurred ({error.get('sts_code', code)}) when calling the AssumeRole "
            f"operation: {error['sts_message']}\n",
            generation.codes().service,
        )
    if code in ("BadQuery", "InvalidRequest", "ProfileError"):  # the CLI's checks of values
        return _refuse(
            f"\n{error.get('cli_message', error.get('message'))}\n", generation.codes().invalid
        )
    if "cli_message" in error:  # what botocore refused (a profile, an SSO token, no network)
        return _refuse(f"\n{error['cli_message']}\n", CLI_ERROR)
    return _refuse(f"rolecache: {text}\n", CLI_ERROR)


def forward(args: list[str], sandbox: bool) -> int:
    """`rolecache aws ARGS`, for an `aws` shell function: `sts assume-role` after any global
    options the drop-in understands is served here; anything else (another command, an
    option only the CLI can act on) runs the real `aws` on PATH with ARGS unchanged."""
    i = 0
    while i < len(args) and args[i].startswith("--"):
        name, eq, _ = args[i].partition("=")
        if name not in GLOBALS:
            break
        i += 2 if GLOBALS[name] and not eq else 1
    rest = args[i + 2 :]
    if args[i : i + 2] == ["sts", "assume-role"] and not any(
        a.partition("=")[0] in REFUSED for a in rest
    ):
        return run(args[:i] + rest, sandbox)
    from rolecache import cmdline

    return cmdline.exec_command(["aws", *args], dict(os.environ))
