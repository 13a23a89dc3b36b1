"""Starting rolecached when no daemon answers: detached, with only the environment it may
inherit, its log in the state folder, and its own words when it fails to start.

Imported only on that rare path: a shell's cache hit never pays for subprocess.
"""

import os
import subprocess
import sys
import time
from collections.abc import Callable

from rolecache import protocol

START_TIMEOUT = 20.0


def make_private_folders(folder: str) -> None:
    """Create `folder` and any missing parents, each 0700 (os.makedirs gives parents the
    umask's mode, typically readable by everyone)."""
    parent = os.path.dirname(folder)
    if parent and parent != folder and not os.path.isdir(parent):
        make_private_folders(parent)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        return  # made by someone else meanwhile: check_folder judges it


def _daemon_log(sandbox: bool) -> str:
    folder = protocol.state_dir()
    make_private_folders(folder)
    return os.path.join(folder, "rolecached-sandbox.log" if sandbox else "rolecached.log")


# What an autostarted daemon may inherit from the shell that happens to start it: where the
# user's files and settings are, how to reach STS, and rolecache's own settings. Nothing
# else: the daemon outlives that shell and serves every later one, so it must not keep one
# shell's keys (AWS_ACCESS_KEY_ID...) or profile (AWS_PROFILE) as its source for all of them,
# and variables such as PYTHONPATH or LD_PRELOAD must not decide what code it runs.
DAEMON_ENV_NAMES = frozenset(
    {
        "HOME",
        "USER",
        "LOGNAME",
        "PATH",
        "LANG",
        "TMPDIR",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_STS_REGIONAL_ENDPOINTS",
        "AWS_CA_BUNDLE",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        # The desktop session, for the notification that a request waits for an MFA code.
        "DBUS_SESSION_BUS_ADDRESS",
        "DISPLAY",
        "WAYLAND_DISPLAY",
    }
)
DAEMON_ENV_PREFIXES = ("XDG_", "LC_", "ROLECACHE_", "AWS_ENDPOINT_URL", "AWS_EC2_METADATA_")
# A one-time MFA code is for this command only; the daemon is told it in the request.
DAEMON_ENV_NEVER = frozenset({"ROLECACHE_TOKEN_CODE"})


def daemon_environment(environ: "os._Environ[str] | dict[str, str]") -> dict[str, str]:
    """The part of `environ` an autostarted daemon gets (see DAEMON_ENV_NAMES)."""
    return {
        name: value
        for name, value in environ.items()
        if (name in DAEMON_ENV_NAMES or name.startswith(DAEMON_ENV_PREFIXES))
        and name not in DAEMON_ENV_NEVER
    }


def launch(path: str, sandbox: bool, answers: Callable[[], bool]) -> str | None:
    """Start rolecached detached (own session, log in the state folder) and wait until
    `answers()`; None once it does, else why it did not start, for the caller to raise.

    Two clients racing here start two processes, but the daemon's lock lets one of them
    serve and the other exit, so both clients end up talking to the same daemon.
    """
    log_path = _daemon_log(sandbox)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    log_start = os.fstat(log_fd).st_size  # what this daemon writes comes after
    # -I: the current folder, PYTHONPATH and the user's site folder must not decide which
    # `rolecached` runs (a folder holding rolecached/__main__.py would otherwise be it);
    # site-packages and its .pth files, which editable installs use, still count.
    command = [sys.executable, "-I", "-m", "rolecached", "--socket", os.path.abspath(path)]
    if sandbox:
        command.append("--sandbox")
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            cwd="/",  # holds no folder busy, and no relative path means the caller's folder
            env=daemon_environment(os.environ),
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(log_fd)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if answers():
            return None
        if process.poll() not in (None, 0):
            # It may have lost the race to another daemon; give that one a moment.
            deadline = min(deadline, time.monotonic() + 3)
        time.sleep(0.02)
    reason = start_failure(log_path, log_start)
    return f"rolecached did not start{': ' + reason if reason else ''}; its log is {log_path}"


# How much of the end of the log is searched for the reason: a failed start writes a few lines.
_REASON_WINDOW = 16384


def start_failure(log_path: str, start: int) -> str | None:
    """Why the daemon did not start, in its own words: the last ERROR (or CRITICAL) line it
    wrote to its log after offset `start`, else its last line (a traceback's ends with the
    exception); None when it wrote nothing."""
    try:
        with open(log_path, "rb") as log:
            log.seek(max(start, os.fstat(log.fileno()).st_size - _REASON_WINDOW))
            text = log.read(_REASON_WINDOW).decode("utf-8", "replace")
    except OSError:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        for level in ("ERROR ", "CRITICAL "):
            at = line.find(level)
            # The level is the first word, after the time a stamped line starts with.
            if at != -1 and " " not in line[:at].strip():
                _, named, message = line[at + len(level) :].partition(": ")
                return message if named else line[at + len(level) :]
    return lines[-1] if lines else None
