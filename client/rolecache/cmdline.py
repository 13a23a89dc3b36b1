"""The command line's conventions, shared by every rolecache command: the selector options
and their parser (by hand from a table: argparse pulls in `re` and friends, too slow for a
cache hit), the request they build, the table listings print, and running a command.

Imports nothing of rolecache but `protocol`, so every command can use it without a cycle.
"""

import os
import sys

from rolecache import protocol

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
    "--mfa-wait": ("mfa_wait", "int"),
}


# Each command's own flags, beyond the selector options: what its parser accepts, and what
# completion offers. A flag takes no value ("flag"), one ("str"), or one when an argument not
# starting with "-" follows it ("optional"; True without one).
COMMAND_FLAGS: dict[str, dict[str, str]] = {
    "env": {"--shell": "str"},
    "process": {},
    "exec": {"--endpoint": "str", "--imds": "flag"},
    "list": {"--json": "flag"},
    "forget": {"--all": "flag"},
    "status": {},
    "mfa": {"--list": "flag", "--json": "flag", "--device": "str", "--code": "str"},
}
ENDPOINT_FLAGS: dict[str, dict[str, str]] = {
    "add": {"--replace": "flag", "--imds-v1": "flag", "--imds-port": "str"},
    "list": {"--json": "flag"},
    "remove": {},
    "rotate": {"--containers": "flag"},
    "env": {"--imds": "flag", "--docker": "flag", "--env-file": "optional", "--shell": "str"},
}
DOCKER_FLAGS: dict[str, str] = {
    "--network": "str",
    "--print": "flag",
    "--port-80": "flag",
    "--remove": "flag",
    "--apply": "flag",
    "--no-guard": "flag",
    "--undo": "flag",
}
# Commands that parse their own arguments, the words each takes next, and the flags every
# command takes.
OTHER_COMMANDS = ("sts", "shell-init", "endpoint", "docker", "aws", "login")
# `rolecache login`'s flags (it also takes --profile).
LOGIN_FLAGS: dict[str, str] = {"--sso-session": "str", "--no-browser": "flag"}
SUBCOMMANDS: dict[str, tuple[str, ...]] = {
    "sts": ("assume-role",),
    "shell-init": ("bash", "zsh", "fish"),
    "endpoint": tuple(ENDPOINT_FLAGS),
    "docker": ("setup",),
}
GLOBAL_FLAGS = ("--sandbox", "--help", "--version")


def completion_words() -> tuple[str, str]:
    """(commands, options) as completion offers them: every command, every option."""
    commands = " ".join((*COMMAND_FLAGS, *OTHER_COMMANDS))
    options = set(SELECTOR_OPTIONS) | set(GLOBAL_FLAGS)
    for table in (COMMAND_FLAGS, ENDPOINT_FLAGS, {"docker": DOCKER_FLAGS, "login": LOGIN_FLAGS}):
        for flags in table.values():
            options |= set(flags)
    return commands, " ".join(sorted(options))


class UsageError(Exception):
    """The command line is wrong; exit 2 with the message."""


class ParameterError(UsageError):
    """An option's value the AWS CLI cannot parse either, worded as the CLI words it."""


def _json_list(option: str, text: str) -> list[object]:
    """An option's value in the CLI's JSON form, `[{...}, ...]`."""
    import json  # only for this form, never on a cache hit's path

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ParameterError(f"Error parsing parameter '{option}': Invalid JSON: {exc}") from None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ParameterError(
            f"Error parsing parameter '{option}': expected a JSON list of objects, not {text!r}"
        )
    return value


def _tags(text: str) -> list[dict[str, object]]:
    """One --tags item: Key=K,Value=V, or the JSON form [{"Key": K, "Value": V}, ...]."""
    # Key=K,Value=V — the value may itself hold commas, so split at ",Value=" only.
    if text.startswith("["):
        return _json_list("--tags", text)  # type: ignore[return-value]  # the daemon checks each
    if not text.startswith("Key="):
        raise UsageError(f"--tags takes Key=K,Value=V items, not {text!r}")
    key, sep, value = text[4:].partition(",Value=")
    return [{"Key": key, "Value": value if sep else ""}]


def _policy_arns(text: str) -> list[object]:
    """One --policy-arns item: ARN, arn=ARN, or the JSON form [{"arn": ARN}, ...]."""
    if text.startswith("["):
        return [item.get("arn") for item in _json_list("--policy-arns", text)]  # type: ignore[union-attr]
    if not text.startswith("arn="):
        return [text]
    second = text.find(",arn=", 4)
    if second >= 0:
        # One shorthand structure holds one arn: two in one argument is what the CLI refuses
        # (each policy is its own argument, space-separated).
        raise ParameterError(
            f"Error parsing parameter '--policy-arns': Second instance of key \"arn\" "
            f"encountered for input:\n{text}\n{' ' * (second + 1)}^\nThis is often because "
            'there is a preceding "," instead of a space.'
        )
    return [text[4:]]


def _policy(text: str) -> str:
    if not text.startswith("file://"):
        return text
    try:
        with open(text[7:], encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise ParameterError(
            f"Error parsing parameter '--policy': Unable to load paramfile {text}: {exc}"
        ) from None


def option_value(args: list[str], i: int, eq: str, inline: str) -> tuple[str | None, int]:
    """An option's value (after its `=`, else the next argument; None when there is none)
    and the index of the argument after it."""
    if eq:
        return inline, i
    if i < len(args):
        return args[i], i + 1
    return None, i


def parse_options(
    args: list[str], allowed: dict[str, str]
) -> tuple[dict[str, object], dict[str, object], list[str]]:
    """Split `args` into selector fields, other flags (names in `allowed`), and what follows
    `--`. `allowed` maps a flag to "flag" (no value), "str" (one value) or "optional"."""
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
            value, i = option_value(args, i, eq, inline)
            if value is None:
                raise UsageError(f"{name} needs a value")
            if kind == "int":
                number = protocol.whole_number(value)
                if number is None:
                    raise UsageError(f"{name} takes a whole number of seconds, not {value!r}")
                fields[field] = number
            else:
                fields[field] = value
        elif name in allowed and allowed[name] == "flag":
            if eq:
                raise UsageError(f"{name} takes no value, not {inline!r}")
            flags[name] = True
        elif name in allowed and allowed[name] == "optional" and not eq:
            if i < len(args) and not args[i].startswith("-"):
                flags[name], i = args[i], i + 1
            else:
                flags[name] = True
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


def build_request(fields: dict[str, object]) -> dict[str, object]:
    """Turn parsed selector fields into the daemon's request body."""
    if "profile" not in fields and ("role_arn" not in fields or "role_session_name" not in fields):
        raise UsageError(
            "--role-arn and --role-session-name are both required (or name a role profile "
            "with --profile)"
        )
    body = dict(fields)
    if "profile" in body or "source_profile" in body:
        body = protocol.with_file_stamps(body)  # this shell's files, for the daemon
    if "tags" in body:
        body["tags"] = [tag for t in body["tags"] for tag in _tags(t)]  # type: ignore[attr-defined]
    if "policy_arns" in body:
        body["policy_arns"] = [a for t in body["policy_arns"] for a in _policy_arns(t)]  # type: ignore[attr-defined]
    if "policy" in body:
        body["policy"] = _policy(str(body["policy"]))
    if body.get("token_code") == "-":
        body["token_code"] = _token_code_from_stdin()
    return body


def _token_code_from_stdin() -> str:
    """`--token-code -`: the code is the first line of stdin, so it never sits in argv."""
    line = sys.stdin.readline() if sys.stdin is not None else ""
    code = line.strip()
    if not code:
        raise UsageError("--token-code - reads the MFA code from stdin, but stdin was empty")
    return code


def print_table(header: tuple[str, ...], body: list[tuple[str, ...]]) -> None:
    """Print the header and rows as left-aligned columns."""
    rows = [header, *body]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def on_path(name: str, env: dict[str, str]) -> bool:
    """True when `name` exists as a shell would look for it: a path as given, else in a
    PATH folder (one this user cannot search, say root's in a `su` shell, holds nothing)."""
    if "/" in name:
        return os.path.exists(name)
    folders = env.get("PATH", os.defpath).split(os.pathsep)
    return any(os.path.isfile(os.path.join(folder or ".", name)) for folder in folders)


def exec_command(command: list[str], env: dict[str, str]) -> int:
    """Replace this process with `command` in `env`; if it cannot run, say why and return
    the shell's exit code for it (127 not found, 126 not runnable)."""
    sys.stdout.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        found = not isinstance(exc, FileNotFoundError) and on_path(command[0], env)
        why = exc.strerror if found else "No such file or directory"
        sys.stderr.write(f"rolecache: cannot run {command[0]!r}: {why}\n")
        return 126 if found else 127
    return 0  # not reached: execvpe does not return
