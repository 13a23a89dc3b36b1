"""The daemon's log sink: lines of one loop turn in one write, in order, in logging's format;
lines soon after a write wait out the window together; lines from other threads at once; the
audit's lines without a LogRecord but the same text."""

import asyncio
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rolecached.core.cache import Credentials
from rolecached.observe import audit, logsink
from tests.daemonkit import Moto, base_env, start_daemon
from tests.kit import FakeClock


class Recorder:
    """A stream that keeps each write separately."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.written = asyncio.Event()

    def write(self, text: str) -> int:
        self.writes.append(text)
        self.written.set()
        return len(text)

    def flush(self) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[tuple[logsink.LineSink, Recorder]]:
    """A sink installed as the daemon installs it, removed afterwards."""
    stream = Recorder()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    sink = logsink.install(stream, "info", stamped=False)  # type: ignore[arg-type]
    yield sink, stream
    logsink.SINK = None
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


CREDS = Credentials("ASIAEXAMPLEKEY000001", "secret", "token", 4600.0, issued_at=1000.0)


async def test_one_loop_turn_is_one_write_in_order(sink: tuple[logsink.LineSink, Recorder]) -> None:
    """Log lines and audit lines of one turn reach the stream in one write, in the order they
    were made, each as logging's format would show it."""
    _, stream = sink
    logging.getLogger("rolecached.store").warning("renewal of %s failed", "dev")
    audit.served("role app", CREDS, "pid 7 uid 1000 (sh)", 1000.0)
    logging.getLogger("rolecached.endpoints").info("rotated")
    assert stream.writes == []  # nothing before the turn ends
    await asyncio.sleep(0)
    key = CREDS.masked_key_id
    assert stream.writes == [
        "WARNING rolecached.store: renewal of dev failed\n"
        f"INFO rolecached.audit: served role app (key {key}, 3600 s left) to pid 7 uid 1000 (sh)\n"
        "INFO rolecached.endpoints: rotated\n"
    ]
    assert "secret" not in stream.writes[0]


async def turn_ends() -> None:
    """Let the current loop turn end, and the next one too."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_lines_soon_after_a_write_wait_out_the_window_together() -> None:
    """Under load a loop turn answers one request: lines within the window of the last write
    are held to one write when it ends, not one write per turn; after a quiet window a line
    goes out at its turn's end again."""
    stream, clock = Recorder(), FakeClock(100.0)
    sink = logsink.LineSink(stream, window=0.05, clock=clock)  # type: ignore[arg-type]
    sink.write("first")
    await turn_ends()
    assert stream.writes == ["first\n"]  # nothing written lately: out at the turn's end
    clock.advance(0.01)
    stream.written.clear()
    sink.write("second")
    await turn_ends()
    sink.write("third")
    await turn_ends()
    assert stream.writes == ["first\n"]  # 10 ms after a write: held
    await asyncio.wait_for(stream.written.wait(), 5)  # the window's timer, in loop time
    assert stream.writes == ["first\n", "second\nthird\n"]
    clock.advance(0.06)
    sink.write("fourth")
    await turn_ends()
    assert stream.writes[-1] == "fourth\n"


async def test_a_line_from_another_thread_is_written_at_once(
    sink: tuple[logsink.LineSink, Recorder],
) -> None:
    """A worker thread's line is written when it is logged, after the lines buffered before."""
    _, stream = sink
    logging.getLogger("rolecached.a").warning("first")
    worker = threading.Thread(target=logging.getLogger("botocore.b").error, args=("second",))
    worker.start()
    worker.join()
    assert stream.writes == ["WARNING rolecached.a: first\nERROR botocore.b: second\n"]


def test_outside_a_loop_each_line_is_written_and_the_level_holds(
    sink: tuple[logsink.LineSink, Recorder],
) -> None:
    """With no loop running (start-up, shutdown) a line is written at once; below the level,
    nothing is written, the audit's lines included."""
    _, stream = sink
    logging.getLogger("rolecached").debug("hidden")
    logging.getLogger("rolecached").info("shown")
    assert stream.writes == ["INFO rolecached: shown\n"]
    logging.getLogger().setLevel(logging.WARNING)
    audit.served("role app", CREDS, "someone", 1000.0)
    assert stream.writes == ["INFO rolecached: shown\n"]


async def test_shutdown_flushes_what_the_turn_buffered(
    sink: tuple[logsink.LineSink, Recorder],
) -> None:
    """Lines buffered when the daemon stops are written by logging's shutdown flush."""
    handler, stream = sink
    logging.getLogger("rolecached").warning("last words")
    handler.flush()  # what logging.shutdown() calls for each handler
    assert stream.writes == ["WARNING rolecached: last words\n"]


def test_journald_is_the_stream_journal_stream_names(tmp_path: Path) -> None:
    """JOURNAL_STREAM names the journal's stream by device and inode: only a stream that is
    that file counts, not one redirected elsewhere that inherited the variable."""
    with open(tmp_path / "a", "w") as a, open(tmp_path / "b", "w") as b:
        info = os.fstat(a.fileno())
        names_a = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        assert logsink.under_journald(a, names_a)
        assert not logsink.under_journald(b, names_a)
        assert not logsink.under_journald(a, {})
        assert not logsink.under_journald(a, {"JOURNAL_STREAM": "garbage"})
        assert not logsink.under_journald(Recorder(), names_a)  # type: ignore[arg-type]


async def test_a_stamped_sink_starts_each_line_with_its_utc_time() -> None:
    """Outside journald every line, logged or audited, starts with an ISO-8601 UTC time."""
    stream, wall = Recorder(), FakeClock(1_800_000_000.25)
    sink = logsink.LineSink(stream, stamped=True, wall=wall)  # type: ignore[arg-type]
    sink.write_message("INFO", "rolecached.audit", "served")
    wall.advance(1.5)
    record = logging.LogRecord("rolecached.store", logging.ERROR, "", 0, "failed", (), None)
    record.created = wall()
    sink.emit(record)
    sink.flush()
    assert stream.writes == [
        "2027-01-15T08:00:00.250Z INFO rolecached.audit: served\n"
        "2027-01-15T08:00:01.750Z ERROR rolecached.store: failed\n"
    ]


STAMPED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) ")


@pytest.mark.parametrize("journal", [False, True])
def test_the_daemon_stamps_its_lines_unless_journald_does(
    tmp_path: Path, moto: Moto, journal: bool
) -> None:
    """The real daemon logging to a file stamps every line with its time; told (by
    JOURNAL_STREAM naming its stderr) that the journal is listening, it leaves that to it."""
    env = base_env(tmp_path, moto.url)
    env.pop("JOURNAL_STREAM", None)
    log = tmp_path / "daemon.log"
    log.touch()
    if journal:
        info = log.stat()
        env["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
    daemon = start_daemon(tmp_path, env)
    assert daemon.stop() == 0
    lines = log.read_text().splitlines()
    assert lines
    stamped = [bool(STAMPED.match(line)) for line in lines]
    assert stamped == [not journal] * len(lines), lines
