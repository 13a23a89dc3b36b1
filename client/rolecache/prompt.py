"""Asking for an MFA code on the terminal itself (/dev/tty), never on stdin or stdout, so
`eval "$(rolecache env ...)"` and pipes keep working while the user types."""

import os


class NoTerminal(Exception):
    """There is no terminal to ask on (a cron job, CI, a pipe with no controlling tty)."""


def ask_mfa_code(serial: str) -> str:
    """Prompt on /dev/tty until the user types six digits; return them."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        raise NoTerminal() from None
    with open(fd, "r+b", buffering=0) as tty:
        while True:
            tty.write(f"MFA code for {serial}: ".encode())
            line = b""
            while not line.endswith(b"\n"):
                chunk = tty.read(1)
                if not chunk:
                    raise NoTerminal()
                line += chunk
            code = line.decode(errors="replace").strip()
            if len(code) == 6 and code.isdigit():
                return code
            tty.write(b"an MFA code is 6 digits\n")
