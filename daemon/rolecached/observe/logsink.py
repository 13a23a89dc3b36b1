"""The daemon's log output: plain lines on stderr, written in batches of at most a few ms.

Every credential handed out writes an audit line at INFO, and a shell loop asks thousands of
times a second. Through `logging` each line costs a LogRecord, a Formatter pass and a write
syscall, more than the lane's whole answer (bench B4b). The sink keeps `logging` for every
other line, in order, but buffers them and writes with one syscall: at the end of the loop
turn, or, within WINDOW of the last write, when WINDOW has passed. (Under load a loop turn
answers one connection, so a write per turn was a syscall per request.) `audit` hands the
sink its lines already formatted, with no LogRecord. A line logged off the loop's thread
(boto3 runs in worker threads) is written at once, after whatever was buffered. A SIGKILL
loses at most the lines of the last WINDOW.

Under journald (which stamps every line itself) a line is just FORMAT; written anywhere else
(a terminal, the autostarted daemon's log file) it starts with an ISO-8601 UTC time.
"""

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TextIO

FORMAT = "%(levelname)s %(name)s: %(message)s"
WINDOW = 0.005  # seconds: the most a buffered line waits behind the last write


def under_journald(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """True when `stream` is the journal: systemd sets JOURNAL_STREAM to the device and inode
    of the stream it connected, and a child whose stderr was redirected elsewhere inherits the
    variable, so the descriptor itself must match (systemd.exec(5))."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep:
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # no descriptor: not the journal
        return False
    return f"{info.st_dev}:{info.st_ino}" == f"{dev}:{ino}"


class Stamps:
    """ISO-8601 UTC times for line prefixes; the seconds part is formatted once a second,
    since the audit writes thousands of lines a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def at(self, when: float) -> str:
        """`when` (seconds since the epoch) as 2026-01-31T12:00:00.123Z."""
        second = int(when)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._text}.{int((when - second) * 1000):03d}Z"


class LineSink(logging.Handler):
    """A logging handler that writes FORMAT lines to `stream`, batched per loop turn."""

    def __init__(
        self,
        stream: TextIO,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
        stamped: bool = False,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(FORMAT))
        # Lines start with the time they were logged at, unless journald stamps them.
        self._stamps = Stamps() if stamped else None
        self._wall = wall
        self._stream = stream
        self._lines: list[str] = []
        self._scheduled = False
        self._window = window
        self._clock = clock
        self._last_write = -window  # long ago: the first line goes out at its turn's end

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if self._stamps is not None:
                line = f"{self._stamps.at(record.created)} {line}"
            self.write(line)
        except Exception:
            self.handleError(record)

    def write_message(self, level: str, logger: str, message: str) -> None:
        """Write one line as FORMAT would show it, without building a LogRecord."""
        if self._stamps is not None:
            self.write(f"{self._stamps.at(self._wall())} {level} {logger}: {message}")
        else:
            self.write(f"{level} {logger}: {message}")

    def write(self, line: str) -> None:
        """Buffer `line` until the loop turn ends (or the window since the last write does),
        or write it now off the loop's thread."""
        loop = _running_loop()
        with self.lock or threading.Lock():
            self._lines.append(line)
            if loop is None:
                self._write_buffered()
            elif not self._scheduled:
                self._scheduled = True
                wait = self._last_write + self._window - self._clock()
                if wait > 0:
                    loop.call_later(wait, self.flush)
                else:
                    loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every buffered line (at the end of a loop turn, and at shutdown)."""
        with self.lock or threading.Lock():
            self._scheduled = False
            self._write_buffered()

    def _write_buffered(self) -> None:
        if self._lines:
            text = "\n".join(self._lines) + "\n"
            self._lines.clear()
            self._stream.write(text)
            self._stream.flush()
            self._last_write = self._clock()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


SINK: LineSink | None = None  # the daemon's, once install() ran; None in library use


def install(stream: TextIO, level: str, stamped: bool | None = None) -> LineSink:
    """Send every log line through one LineSink on `stream`, at `level` and above; each line
    starts with its time if `stamped`, by default unless `stream` is the journal."""
    global SINK
    if stamped is None:
        stamped = not under_journald(stream)
    SINK = LineSink(stream, stamped=stamped)
    logging.basicConfig(level=level.upper(), handlers=[SINK], force=True)
    return SINK
