"""The lines that set and unset an environment variable in each shell, quoted.

Both sides write them: the daemon in the credentials it renders for `rolecache env`
(rolecached.render), the client in the endpoint hand-off it prints itself. Like protocol.py
this module is shared, so it depends on nothing but the standard library.
"""

from collections.abc import Mapping

# The variables `rolecache env` sets, and the credential field each holds.
ENV_NAMES = (
    ("AWS_ACCESS_KEY_ID", "AccessKeyId"),
    ("AWS_SECRET_ACCESS_KEY", "SecretAccessKey"),
    ("AWS_SESSION_TOKEN", "SessionToken"),
    ("AWS_CREDENTIAL_EXPIRATION", "Expiration"),
)

# Expiration in epoch seconds, a shell variable (not exported) after the four: a shell can
# compare it with its own clock (bash's printf %(%s)T, zsh's EPOCHSECONDS) and so decide
# without starting a process whether the credentials need renewing.
EXPIRES_AT_NAME = "ROLECACHE_EXPIRES_AT"


def _quote_posix(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _quote_fish(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# Every character PowerShell takes for a single quote: the ASCII one and the typographic
# ones (U+2018 to U+201B). Inside a single-quoted string each is escaped by doubling it; an
# undoubled one would end the string and let the rest run as code.
POWERSHELL_QUOTES = frozenset("'\u2018\u2019\u201a\u201b")


def _quote_powershell(value: str) -> str:
    return "'" + "".join(ch * 2 if ch in POWERSHELL_QUOTES else ch for ch in value) + "'"


def assignment(name: str, value: str, shell: str) -> str:
    """The line that sets environment variable `name` to `value` in `shell`, quoted."""
    if shell == "fish":
        return f"set -gx {name} {_quote_fish(value)};"
    if shell == "powershell":
        return f"$Env:{name} = {_quote_powershell(value)}"
    return f"export {name}={_quote_posix(value)}"


def shell_variable(name: str, number: int, shell: str) -> str:
    """The line that sets shell variable `name` to a whole `number` in `shell`, not
    exported: for the shell itself (rolecache-assume's renewal hook), not its children."""
    if shell == "fish":
        return f"set -g {name} {number};"
    if shell == "powershell":
        return f"${name} = {number}"
    return f"{name}={number}"


def removal(name: str, shell: str) -> str:
    """The line that unsets environment variable `name` in `shell`."""
    if shell == "fish":
        return f"set -e {name};"
    if shell == "powershell":
        return f"Remove-Item Env:{name} -ErrorAction SilentlyContinue"
    return f"unset {name}"


def export_lines(
    variables: Mapping[str, str], unset: tuple[str, ...] = (), shell: str = "bash"
) -> str:
    """Lines that set `variables` and unset `unset` in `shell` (endpoint hand-off)."""
    lines = [removal(name, shell) for name in unset]
    lines += [assignment(name, value, shell) for name, value in variables.items()]
    return "\n".join(lines) + "\n"


def env_file_lines(variables: Mapping[str, str]) -> str:
    """Docker's --env-file form: KEY=VALUE lines, taken literally (no quotes, no escapes)."""
    for name, value in variables.items():
        if "\n" in value or "\r" in value:
            raise ValueError(f"{name} holds a line break, which an env file cannot carry")
    return "".join(f"{name}={value}\n" for name, value in variables.items())
