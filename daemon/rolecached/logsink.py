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
"""

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import TextIO

FORMAT = "%(levelname)s %(name)s: %(message)s"
WINDOW = 0.005  # seconds: the most a buffered line waits behind the last write


class LineSink(logging.Handler):
    """A logging handler that writes FORMAT lines to `stream`, batched per loop turn."""

    def __init__(
        self,
        stream: TextIO,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(FORMAT))
        self._stream = stream
        self._lines: list[str] = []
        self._scheduled = False
        self._window = window
        self._clock = clock
        self._last_write = -window  # long ago: the first line goes out at its turn's end

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(self.format(record))
        except Exception:
            self.handleError(record)

    def write_message(self, level: str, logger: str, message: str) -> None:
        """Write one line as FORMAT would show it, without building a LogRecord."""
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


def install(stream: TextIO, level: str) -> LineSink:
    """Send every log line through one LineSink on `stream`, at `level` and above."""
    global SINK
    SINK = LineSink(stream)
    logging.basicConfig(level=level.upper(), handlers=[SINK], force=True)
    return SINK
