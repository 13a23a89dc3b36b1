"""`rolecache sts assume-role`: a drop-in for `aws sts assume-role`.

Same options, same output bytes (the daemon renders the AWS CLI v1 formats and applies
--query), and the CLI's exit codes, so a script or an `aws` shell function can forward
`sts assume-role` here unchanged. Credentials come from the daemon's cache.
"""

import os
import sys

# The AWS CLI v1's return codes, as it really exits (its docs list 252 for usage errors, but
# v1's argparse exits 2; the tests compare with the real CLI).
CLI_USAGE = 2  # syntax error, missing required option
CLI_ERROR = 255  # anything else, parameter validation included

USAGE = """\
usage: rolecache sts assume-role --role-arn ARN --role-session-name NAME
         [--duration-seconds N] [--external-id ID] [--serial-number ARN] [--token-code CODE|-]
         [--policy JSON|file://PATH] [--policy-arns arn=ARN ...] [--tags Key=K,Value=V ...]
         [--transitive-tag-keys K ...] [--source-identity ID] [--profile NAME]
         [--region REGION] [--output json|text] [--query JMESPATH]

Prints what `aws sts assume-role` prints for the same request. --profile names the profile
whose credentials call AssumeRole (as in the AWS CLI; default $AWS_PROFILE, else the daemon's
default chain). `--token-code -` reads the MFA code from stdin, and ROLECACHE_TOKEN_CODE
is used when a code is needed: a code on the command line is visible to other users.
"""

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
    """A command line the AWS CLI refuses before calling anything: exit 2, or 255 for unknown
    options (v1 checks those after parsing)."""

    def __init__(self, message: str, status: int = CLI_USAGE) -> None:
        super().__init__(message)
        self.status = status


def translate(args: list[str]) -> tuple[list[str], str, str | None]:
    """Map CLI-style arguments onto rolecache's selector; return them, the output format and
    the query."""
    out: list[str] = []
    output = os.environ.get("AWS_DEFAULT_OUTPUT") or "json"
    query = None
    i = 0
    while i < len(args):
        name, eq, inline = args[i].partition("=")
        i += 1
        if name in ("--output", "--query"):
            if eq:
                value = inline
            elif i < len(args):
                value, i = args[i], i + 1
            else:
                raise CliUsage(f"argument {name}: expected one argument")
            if name == "--output":
                output = value
            else:
                query = value
        elif name in OPTIONS:
            out.append(OPTIONS[name] + (f"={inline}" if eq else ""))
        elif name.startswith("--"):
            raise CliUsage(f"Unknown options: {args[i - 1]}", CLI_ERROR)
        else:
            out.append(args[i - 1])  # a value of the option before
    if output not in ("json", "text"):
        raise CliUsage(
            f"argument --output: Invalid choice {output!r}: rolecache prints json or text"
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
    return out, output, query


def run(args: list[str], sandbox: bool) -> int:
    """Run `sts assume-role ARGS`; return the AWS CLI's exit code for the outcome."""
    from rolecache import cli, transport

    if "--help" in args or "help" in args:
        sys.stdout.write(USAGE)
        return 0
    try:
        selector, output, query = translate(args)
        fields, _, rest = cli.parse_options(selector, {})
        if rest:
            raise CliUsage(f"Unknown options: {' '.join(rest)}", CLI_ERROR)
        body = cli.build_request(fields)
    except CliUsage as exc:
        sys.stderr.write(f"{USAGE}\naws: error: {exc}\n")
        return exc.status
    except cli.UsageError as exc:  # a malformed value, e.g. --duration-seconds 1h
        sys.stderr.write(f"{USAGE}\naws: error: {exc}\n")
        return CLI_ERROR
    if query is not None:
        body["query"] = query
    try:
        response = cli._call("POST", f"/v1/credentials?format=aws-{output}", body, sandbox)
    except cli.Failed as exc:
        code = exc.error.get("code", "")
        if code in ("BadQuery", "InvalidRequest", "ProfileError"):
            sys.stderr.write(f"\n{exc.error.get('message')}\n")
            return CLI_ERROR
        if "sts_message" in exc.error:
            sys.stderr.write(
                f"\nAn error occurred ({code}) when calling the AssumeRole operation: "
                f"{exc.error['sts_message']}\n"
            )
            return CLI_ERROR  # v1 exits 255 for service errors too (v2: 254)
        sys.stderr.write(f"rolecache: {exc}\n")
        return CLI_ERROR
    except transport.Unreachable as exc:
        sys.stderr.write(f"rolecache: {exc}\n")
        return CLI_ERROR
    sys.stdout.buffer.write(response.body)
    sys.stdout.flush()
    return 0
