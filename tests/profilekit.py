"""The client's AWS config for the profile tests, and a terminal to answer its MFA prompts:
profile sections, the config and credentials files written where the client looks, and the
client run on a pseudo-terminal."""

import os
import time
from pathlib import Path

from tests.daemonkit import BIN

CREDENTIALS = """\
[base]
aws_access_key_id = AKIABASEPROFILE00001
aws_secret_access_key = base-profile-secret
"""


def write_config(env: dict[str, str], text: str) -> None:
    """Write the AWS config and credentials files the client in `env` uses."""
    Path(env["AWS_CONFIG_FILE"]).write_text(text)
    Path(env["AWS_SHARED_CREDENTIALS_FILE"]).write_text(CREDENTIALS)


def role_profile(name: str, role: str, source: str, **extra: str) -> str:
    """A `[profile NAME]` section assuming `role` from `source`, with `extra` settings."""
    lines = [f"[profile {name}]", f"role_arn = {role}", f"source_profile = {source}"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def on_terminal(env: dict[str, str], args: list[str], answers: list[str]) -> tuple[int, str, str]:
    """Run rolecache with a pseudo-terminal as its controlling terminal (stdout to a pipe, as
    under eval "$(...)"); answer each MFA prompt in turn; return status, stdout, terminal text."""
    import pty

    out_r, out_w = os.pipe()
    pid, master = pty.fork()
    if pid == 0:  # the child: a new session whose controlling terminal is the pty
        os.dup2(out_w, 1)
        os.execve(str(BIN / "rolecache"), [str(BIN / "rolecache"), *args], env)
    os.close(out_w)
    screen = b""
    pending = list(answers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 1024)
        except OSError:
            break  # the child closed the terminal: it is done
        if not chunk:
            break
        screen += chunk
        if screen.count(b"MFA code for") > len(answers) - len(pending) and pending:
            os.write(master, pending.pop(0).encode() + b"\n")
    _, status = os.waitpid(pid, 0)
    with os.fdopen(out_r) as out:
        stdout = out.read()
    os.close(master)
    return os.waitstatus_to_exitcode(status), stdout, screen.decode(errors="replace")
