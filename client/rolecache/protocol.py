"""What the daemon and the client agree on: socket path, request fields, error codes.

Shared by both sides, so like dmypy's client-server protocol module it must not depend on
other code: standard library only, and only cheap modules (the client imports it on every
shell command).
"""

import os

# Request fields of POST /v1/credentials, in the order the client documents them.
REQUEST_FIELDS = (
    "role_arn",
    "role_session_name",
    "duration_seconds",
    "external_id",
    "policy",
    "policy_arns",
    "tags",
    "transitive_tag_keys",
    "source_identity",
    "source_profile",
    "region",
    "min_ttl",
    "profile",
    "config_file",
    "credentials_file",
    "file_stamps",
    "mfa_serial",
    "token_code",
    "cannot_prompt",
    "mfa_wait",
    "query",
    "endpoint_url",
    "ca_bundle",
    "verify_ssl",
)

# An endpoint binding's name appears in URL paths, file names and as the IMDS role name.
BINDING_NAME_RULE = "1 to 64 characters of [A-Za-z0-9_.-], starting with a letter or digit"
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_CHARS = _NAME_START | frozenset("_.-")


def valid_binding_name(name: str) -> bool:
    """Whether `name` follows BINDING_NAME_RULE (no `re`: the client imports this module on
    every command)."""
    return 0 < len(name) <= 64 and name[0] in _NAME_START and set(name) <= _NAME_CHARS


# Default minimum remaining lifetime of served credentials, in seconds. The credential_process
# default is higher because botocore refreshes anything under 15 minutes on every call.
DEFAULT_MIN_TTL = 300
PROCESS_MIN_TTL = 960
# How long `rolecache process` (an IDE's, CDK's credential_process) waits, with no terminal,
# for an MFA code given with `rolecache mfa` elsewhere.
PROCESS_MFA_WAIT = 300

# Output formats the daemon renders for the client (query parameter `format`).
FORMATS = (
    "json",
    "env",
    "process",
    "aws-json",
    "aws-text",
    "aws-table",
    "aws-yaml",
    "aws-yaml-stream",
)
SHELLS = ("sh", "bash", "zsh", "fish", "powershell")

# Header that marks every response of a daemon running against the embedded fake STS.
SANDBOX_HEADER = "X-Rolecache-Sandbox"

# Exit codes of the client, documented in docs/cli.md.
EXIT_OK = 0
EXIT_ERROR = 1  # STS refused, or the daemon failed
EXIT_USAGE = 2  # bad command line or invalid request
EXIT_UNREACHABLE = 3  # no daemon to talk to


def exit_code_for_status(status: int) -> int:
    """Map the daemon's HTTP status to the client's exit code: 4xx is the caller's fault."""
    if 400 <= status < 500:
        return EXIT_USAGE
    return EXIT_ERROR


def runtime_dir() -> str:
    """The per-user folder that holds the socket (not created here).

    $XDG_RUNTIME_DIR/rolecache when the session has a runtime folder, else a folder under
    the user's own home. Never a folder in a shared /tmp: another local user could create
    that first and answer in the daemon's place.
    """
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "rolecache")
    return os.path.join(state_dir(), "run")


def socket_path(sandbox: bool = False) -> str:
    """The daemon's socket: $ROLECACHE_SOCKET, else rolecache.sock in the runtime folder.

    The sandbox daemon gets a socket of its own so it can never answer for the real one.
    """
    override = os.environ.get("ROLECACHE_SOCKET")
    if override:
        return override
    return os.path.join(runtime_dir(), "sandbox.sock" if sandbox else "rolecache.sock")


# A Unix socket's address (sun_path) holds 108 bytes, the terminating NUL included.
MAX_SOCKET_PATH = 107


def socket_path_problem(path: str) -> str | None:
    """Why `path` cannot be a Unix socket's address (too long), or None when it can."""
    size = len(os.fsencode(path))
    if size <= MAX_SOCKET_PATH:
        return None
    return (
        f"the socket path {path} is {size} bytes long, but a Unix socket's path holds at most "
        f"{MAX_SOCKET_PATH}; set XDG_RUNTIME_DIR (the socket goes in $XDG_RUNTIME_DIR/rolecache) "
        "or ROLECACHE_SOCKET to a shorter path"
    )


def state_dir() -> str:
    """Where the autostarted daemon's log goes; the same folder platformdirs gives the daemon."""
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(xdg, "rolecache")


def aws_config_paths() -> dict[str, str]:
    """The AWS config and credentials files this process's environment names, as the AWS
    CLI finds them: AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/."""
    home = os.path.expanduser("~")
    config = os.environ.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config")
    creds = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(
        home, ".aws", "credentials"
    )
    return {
        "config_file": os.path.abspath(os.path.expanduser(config)),
        "credentials_file": os.path.abspath(os.path.expanduser(creds)),
    }


Stamp = tuple[int, int, int]


def file_stamp(path: str | None) -> Stamp | None:
    """What tells an edited file from the one read before, from one stat(): its mtime (ns),
    size and inode (an editor that writes a new file and renames it changes the inode).
    None for no file."""
    try:
        info = os.stat(path) if path else None
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino) if info else None


def with_file_stamps(body: dict[str, object]) -> dict[str, object]:
    """`body` naming this shell's AWS config files, and their stamps as the caller sees them:
    the daemon's fast lane then answers a repeat without a stat() of its own."""
    paths = aws_config_paths()
    stamps = [file_stamp(paths["config_file"]), file_stamp(paths["credentials_file"])]
    return {**body, **paths, "file_stamps": [list(s) if s else None for s in stamps]}


def whole_number(text: str) -> int | None:
    """`text` as an int if it is one written plainly (ASCII digits, an optional leading
    minus, at most 15 digits); else None. str.isdigit() also takes "²" and "٣", which int()
    then refuses or reads as another digit."""
    digits = text[1:] if text.startswith("-") else text
    if not (0 < len(digits) <= 15 and digits.isascii() and digits.isdigit()):
        return None
    return int(text)


def env_flag(name: str) -> bool:
    """True when an environment variable is set to a yes-like value."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def dumps(value: object) -> str:
    """Encode strings, ints, bools, None, lists and dicts as JSON.

    The client's hot path avoids `import json` (it pulls in `re`, a measurable share of a
    cache hit's start-up); requests only ever hold these types.
    """
    if isinstance(value, str):
        out = ['"']
        for ch in value:
            if ch == '"' or ch == "\\":
                out.append("\\" + ch)
            elif ch < " " or "\ud800" <= ch <= "\udfff":
                # Control characters, and the lone surrogates that undecodable argv bytes
                # become, travel as escapes; the daemon's validation then names them.
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        out.append('"')
        return "".join(out)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{dumps(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot encode {type(value).__name__}")
