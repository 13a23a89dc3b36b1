"""The drop-in's command line, `aws sts assume-role ...`, read as the AWS CLI reads it and
translated onto rolecache's selector options and request fields."""

import os

from rolecache.cmdline import option_value

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

# Global options the CLI takes before its command that the drop-in understands, with
# whether each takes a value: `rolecache aws` reads past them to find the command.
GLOBALS = {
    **{name: True for name in VALUED},
    **IGNORED,
    "--profile": True,
    "--region": True,
    "--debug": False,
    "--no-verify-ssl": False,
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


# Options whose values run up to the next --option (the CLI's lists); every other option of
# OPTIONS and VALUED takes one value.
LISTS = ("--policy-arns", "--tags", "--transitive-tag-keys")


class CliUsage(Exception):
    """A command line the AWS CLI refuses before calling anything; `kind` names the exit
    code in Codes: "usage" or "unknown"."""

    def __init__(self, message: str, kind: str = "usage") -> None:
        super().__init__(message)
        self.kind = kind


class HelpAsked(Exception):
    """The word `help` where the CLI reads a command or a positional, not an option's value."""


class Parsed:
    """An `sts assume-role` command line, read: rolecache selector options, the output (None:
    not on the command line) and query, --debug, the caller's profile, and request fields of
    the CLI's global options (endpoint and TLS)."""

    def __init__(self) -> None:
        self.selector: list[str] = []
        self.output: str | None = None
        self.query: str | None = None
        self.debug = False
        self.profile: str | None = None
        self.fields: dict[str, object] = {}


def _valued(parsed: Parsed, name: str, value: str) -> None:
    """Note a global option's value (VALUED) on `parsed`."""
    if name == "--output":
        parsed.output = value
    elif name == "--query":
        parsed.query = value
    elif name == "--endpoint-url":
        parsed.fields["endpoint_url"] = value
    else:  # --ca-bundle; the daemon runs elsewhere: a relative path is this shell's
        parsed.fields["ca_bundle"] = os.path.abspath(value)


def _selector_option(
    parsed: Parsed, args: list[str], i: int, name: str, eq: str, inline: str
) -> int:
    """Translate one of OPTIONS (at `args[i - 1]`) and its values onto the selector; the
    index after them."""
    out = parsed.selector
    out.append(OPTIONS[name] + (f"={inline}" if eq else ""))
    if name in LISTS:
        while i < len(args) and not args[i].startswith("--"):
            out.append(args[i])
            i += 1
    elif not eq and i < len(args):
        if name == "--profile":
            parsed.profile = args[i]
        out.append(args[i])
        i += 1
    elif name == "--profile" and eq:
        parsed.profile = inline
    return i


def _option(parsed: Parsed, args: list[str], i: int, strays: list[str]) -> int:
    """Translate the argument at `args[i]`; the index of the next one."""
    arg = args[i]
    name, eq, inline = arg.partition("=")
    i += 1
    if name == "--debug" and not eq:
        parsed.debug = True
    elif name == "--no-verify-ssl" and not eq:
        parsed.fields["verify_ssl"] = False
    elif name in VALUED:
        value, i = option_value(args, i, eq, inline)
        if value is None:
            raise CliUsage(f"argument {name}: expected one argument")
        _valued(parsed, name, value)
    elif name in IGNORED:
        if IGNORED[name] and not eq:
            if i >= len(args):
                raise CliUsage(f"argument {name}: expected one argument")
            i += 1
    elif name in REFUSED:
        raise CliUsage(f"{name} is not supported by rolecache: {REFUSED[name]}", "unknown")
    elif name in OPTIONS:
        i = _selector_option(parsed, args, i, name, eq, inline)
    elif arg == "help":
        raise HelpAsked()
    elif arg.startswith("--"):
        raise CliUsage(f"Unknown options: {arg}", "unknown")
    else:
        strays.append(arg)  # no option takes it: the CLI refuses it, as rolecache does
    return i


def translate(args: list[str]) -> Parsed:
    """Map CLI-style arguments onto rolecache's selector and request fields; raises CliUsage,
    or HelpAsked for a `help` that is not an option's value (as the CLI reads it)."""
    parsed = Parsed()
    strays: list[str] = []
    i = 0
    while i < len(args):
        i = _option(parsed, args, i, strays)
    if strays:
        raise CliUsage(f"Unknown options: {', '.join(strays)}", "unknown")
    given = {a.partition("=")[0] for a in args}
    missing = [o for o in ("--role-arn", "--role-session-name") if o not in given]
    if missing:
        raise CliUsage(f"the following arguments are required: {', '.join(missing)}")
    if parsed.profile is None and os.environ.get("AWS_PROFILE"):
        parsed.profile = os.environ["AWS_PROFILE"]
        parsed.selector += ["--source-profile", parsed.profile]
    return parsed


def output_choices(version: int) -> tuple[str, ...]:
    """The --output values CLI `version` takes."""
    return ("json", "text", "table") + (("yaml", "yaml-stream") if version == 2 else ())


def chosen_output(parsed: Parsed) -> str:
    """The output format as the CLI picks it: --output, else AWS_DEFAULT_OUTPUT, else the
    `output` of the caller's profile (--profile, AWS_PROFILE, else [default]), else json."""
    if parsed.output is not None:
        return parsed.output
    if os.environ.get("AWS_DEFAULT_OUTPUT"):
        return os.environ["AWS_DEFAULT_OUTPUT"]
    from rolecache import awsconfig, protocol

    path = protocol.aws_config_paths()["config_file"]
    return awsconfig.profile_value(path, parsed.profile or "default", "output") or "json"
