"""An interactive bash, zsh or fish on a pseudo-terminal, so that its prompt hooks run as
they do for a person (fish fires fish_prompt only on a terminal), typed into by the test.
What a test wants to know a shell writes to a FIFO the test reads line by line; the
terminal's own output is only drained (and kept for a failure's message)."""

import fcntl
import os
import pty
import shutil
import subprocess
import termios
import threading
from pathlib import Path

import pytest

from tests.fakeday import Lines

# How each shell starts interactive without the user's rc files.
INTERACTIVE = {
    "bash": ["bash", "--norc", "--noprofile", "-i"],
    "zsh": ["zsh", "-f", "-i"],
    "fish": ["fish", "--no-config", "-i"],
}
# The last command's exit status in each shell.
STATUS = {"bash": "$?", "zsh": "$?", "fish": "$status"}


def shell_or_skip(shell: str) -> list[str]:
    """The command that starts `shell` interactive, or skip when it is not installed."""
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    return INTERACTIVE[shell]


def _controlling_terminal() -> None:
    # In the child, after setsid: stdin (the pty) becomes its controlling terminal.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class TerminalShell:
    """`argv` (a shell, perhaps under strace) on a new pty; `report` is a FIFO whose lines
    the test reads with `reports.next()`."""

    def __init__(self, argv: list[str], env: dict[str, str], report: Path) -> None:
        os.mkfifo(report)
        read_end = os.open(report, os.O_RDONLY | os.O_NONBLOCK)
        # A writer of our own, so the FIFO never reads as ended between the shell's reports;
        # closing it at the end lets the reading thread see the end and finish.
        self._writer = os.open(report, os.O_WRONLY)
        os.set_blocking(read_end, True)
        self._fifo = os.fdopen(read_end, "r")
        self.reports = Lines(self._fifo, argv[0])
        self.screen: list[bytes] = []
        master, slave = pty.openpty()
        self.process = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**env, "TERM": "dumb"},
            start_new_session=True,
            preexec_fn=_controlling_terminal,
        )
        os.close(slave)
        self._master = master
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.screen.append(chunk)

    def type(self, line: str) -> None:
        """Type `line` and Enter."""
        os.write(self._master, line.encode() + b"\n")

    def close(self) -> None:
        """Type `exit`, wait for the shell (kill it after 30 s) and let go of the pty."""
        if self.process.poll() is None:
            self.type("exit")
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._drainer.join(timeout=30)  # the pty reads as ended once the shell is gone
        os.close(self._master)
        os.close(self._writer)  # the reader then sees the end (the shell's writers are gone)
        if self.reports.finished(timeout=30):  # else closing would wait for the reader
            self._fifo.close()

    def seen(self) -> str:
        """The terminal's output so far, for an assertion's message."""
        return b"".join(self.screen).decode(errors="replace")[-3000:]
