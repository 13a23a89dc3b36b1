"""A simulated day for real processes: one wall-clock offset that every process of a test
reads, moved by the test without sleeping.

libfaketime (Debian's `faketime`) is preloaded into each process that decides anything about
expiry: the daemon, a moto server of the test's own (the in-process moto cannot be moved) and
the SDKs in containers. It reads the offset ("+SECONDS") from a file on every clock call, so
writing the file moves them all at once. Monotonic clocks stay real: asyncio's timers, the
daemon's renewer tick and its awake clock run at the real pace, as after a suspend. A shim
(tests/monotonic_sleep.c, built here with gcc) is preloaded first: with monotonic time left
alone, libfaketime 0.9.10 still breaks monotonic sleeps, and Python's time.sleep is one.
"""

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pytest

# Debian's multiarch path (x86_64-linux-gnu, aarch64-linux-gnu, ...); the first one found.
LIBFAKETIME = next(
    iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))),
    Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
)
OFFSET_NAME = "offset"
SHIM_SOURCE = Path(__file__).resolve().parent / "monotonic_sleep.c"
SHIM_NAME = "monotonic_sleep.so"
ROOT = Path(__file__).resolve().parent.parent


def libfaketime_missing() -> str | None:
    """Why the simulated-day tests cannot run here, or None when libfaketime is installed."""
    if not LIBFAKETIME.is_file():
        return (
            f"!!! {LIBFAKETIME} is missing: THE SIMULATED-DAY TESTS SKIP "
            "(install Debian's faketime package; .ci/run does)"
        )
    if shutil.which("gcc") is None:
        return "!!! gcc is missing: THE SIMULATED-DAY TESTS SKIP (they build a preload shim)"
    return None


@dataclass
class FakeDay:
    """The offset file and the shim in `folder` (mount the folder, not the file, into
    containers: a bind mounted file keeps the inode that `advance` replaces) and how far the
    offset has moved."""

    folder: Path
    seconds: int = 0

    @property
    def file(self) -> Path:
        return self.folder / OFFSET_NAME

    def env(self, folder: Path | None = None) -> dict[str, str]:
        """The variables that put a process on this offset; `folder` is where a container
        sees the offset's folder (the same path by default)."""
        return {
            "LD_PRELOAD": f"{(folder or self.folder) / SHIM_NAME} {LIBFAKETIME}",
            "FAKETIME_TIMESTAMP_FILE": str((folder or self.folder) / OFFSET_NAME),
            "FAKETIME_NO_CACHE": "1",  # re-read on every call: a step is seen at once
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    def advance(self, seconds: int) -> None:
        """Move every process on this offset `seconds` ahead (written whole, then renamed, so
        no reader sees half a number)."""
        self.seconds += seconds
        draft = self.folder / f".{OFFSET_NAME}.new"
        draft.write_text(f"+{self.seconds}\n")
        draft.chmod(0o644)
        os.replace(draft, self.file)


def fake_day(folder: Path) -> FakeDay:
    """A FakeDay at offset 0 in `folder`, or skip loudly when libfaketime is missing."""
    reason = libfaketime_missing()
    if reason:
        pytest.skip(reason)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # containers read it
    built = subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(folder / SHIM_NAME), str(SHIM_SOURCE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    day = FakeDay(folder)
    day.advance(0)
    return day


# moto's server in a process of its own, so that libfaketime moves the clock it issues
# Expiration by. Like real STS, it refuses a call signed with assumed-role credentials past
# their Expiration (moto would answer it): a caller that held on to expired credentials fails.
MOTO_SCRIPT = """
import sys, threading, time
sys.path.insert(0, sys.argv[2])  # the checkout, for tests.motokit
from moto.core.utils import utcnow
from moto.sts.exceptions import STSClientError
from moto.sts.models import STSBackend
from tests.motokit import moto_server

class ExpiredToken(STSClientError):
    code = "ExpiredToken"
    message = "The security token included in the request is expired"

identity = STSBackend.get_caller_identity

def get_caller_identity(self, access_key_id, region):
    assumed = self.get_assumed_role_from_access_key(access_key_id)
    if assumed is not None and assumed.expiration <= utcnow():
        raise ExpiredToken()
    return identity(self, access_key_id, region)

STSBackend.get_caller_identity = get_caller_identity
server = moto_server(sys.argv[1])
threading.Thread(target=server.serve_forever, daemon=True).start()
print("http://%s:%d" % server.server_address[:2], flush=True)
sys.stdin.read()  # until the test closes stdin
server.shutdown()
"""


@contextlib.contextmanager
def moto_on(day: FakeDay, address: str) -> Iterator[str]:
    """moto's server on `address` (port chosen by the kernel), on `day`'s clock, for the
    duration; yields its URL, once it listens."""
    from tests.daemonkit import outside_env  # no AWS settings, but the hermetic variables

    process = subprocess.Popen(
        [sys.executable, "-c", MOTO_SCRIPT, address, str(ROOT)],
        env={**outside_env(), **day.env()},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()  # printed once it listens
        assert url.startswith("http://"), process.stderr.read() if process.poll() else url
        yield url
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


class Lines:
    """The lines a process writes, read in a thread so that a test can wait for the next one
    with a deadline instead of hanging on a process that stopped talking."""

    def __init__(self, stream: TextIO, name: str) -> None:
        import queue

        self.name = name
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: TextIO) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def finished(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) for the stream to end; whether it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def next(self, timeout: float = 120) -> str:
        """The next line; fails when the process ends or says nothing for `timeout` s."""
        import queue

        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            said = self.seen[-5:]
            raise AssertionError(f"{self.name} said nothing for {timeout} s: {said}") from None
        if line is None:
            raise AssertionError(f"{self.name} ended: {self.seen[-5:]}")
        self.seen.append(line)
        return line
