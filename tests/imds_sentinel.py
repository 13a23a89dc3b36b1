"""A pytest plugin that keeps the suite away from the real instance metadata service.

At start-up it sets `AWS_EC2_METADATA_DISABLED=true` for this process and every process a test
starts from its environment, and points `AWS_EC2_METADATA_SERVICE_ENDPOINT` at a counting
loopback listener, the sentinel: botocore then never talks to 169.254.169.254, and anything
that asks for instance credentials anyway (a process that dropped the first variable but kept
the second) lands on the sentinel. A session where the sentinel was reached fails: its
session fixture raises at teardown, which pytest-xdist reports from each worker as an error
(a worker's own exit status does not reach the controller).

Tests that point `AWS_EC2_METADATA_SERVICE_ENDPOINT` at rolecache's own IMDS listener set it
(and unset the first variable) for their own processes; the sentinel never sees those.
"""

import http.server
import os
import threading
from collections.abc import Iterator

import pytest

DISABLED = "AWS_EC2_METADATA_DISABLED"
ENDPOINT = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
# Variables a test's clean environment keeps from the session's, so its processes stay hermetic.
HERMETIC_VARIABLES = (DISABLED, ENDPOINT)


class Sentinel:
    """A loopback HTTP listener that answers 404 to everything and remembers what it saw."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._lock = threading.Lock()
        sentinel = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                with sentinel._lock:
                    sentinel.seen.append(f"{self.command} {self.path}")
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()

            do_GET = do_PUT = do_POST = do_HEAD = _answer

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # The trailing slash: older botocore appends "latest/api/token" without one.
        self.url = f"http://127.0.0.1:{self._server.server_port}/"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def hits(self) -> list[str]:
        with self._lock:
            return list(self.seen)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


_sentinel: Sentinel | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Before any test or fixture runs: disable IMDS and aim whatever ignores that at us."""
    global _sentinel
    _sentinel = Sentinel()
    os.environ[DISABLED] = "true"
    os.environ[ENDPOINT] = _sentinel.url


def pytest_unconfigure(config: pytest.Config) -> None:
    if _sentinel is not None:
        _sentinel.close()


def sentinel_report(hits: list[str]) -> str:
    """Why the session fails: how many requests reached the sentinel, and the first few."""
    shown = ", ".join(hits[:5]) + (" ..." if len(hits) > 5 else "")
    return (
        f"{len(hits)} request(s) reached the IMDS sentinel ({shown}): a process started "
        f"without {DISABLED}=true would have sent them to 169.254.169.254"
    )


@pytest.fixture(scope="session", autouse=True)
def imds_sentinel() -> Iterator[Sentinel]:
    """The session's sentinel; its teardown fails the session if anything reached it."""
    assert _sentinel is not None, "imds_sentinel's pytest_configure did not run"
    yield _sentinel
    hits = _sentinel.hits()
    if hits:
        raise RuntimeError(sentinel_report(hits))
