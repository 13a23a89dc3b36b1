"""The rolecached command: its arguments, logging, the checks before start-up (the platform,
the config, the locks and the socket), the event loop and the exit code."""

import argparse
import asyncio
import errno
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp.http_exceptions import HttpProcessingError

from rolecache import __version__
from rolecache.protocol import socket_path
from rolecached import config
from rolecached.apisocket import StartupError, open_listener, take_state_lock
from rolecached.core.store import Settings
from rolecached.endpoints import bindingstate
from rolecached.host import peers, process
from rolecached.observe import logsink
from rolecached.runtime import STOP_SIGNALS, run
from rolecached.sts import StsCaller
from rolecached.wiring import start_sandbox

log = logging.getLogger("rolecached")


def configure_logging(level: str) -> None:
    """Plain lines on stderr for journald; botocore's debug output would log secrets."""
    logsink.install(sys.stderr, level)
    # Every hand-out writes an audit line at INFO: skip what the format never shows (the
    # caller's frame, thread and process), as the logging HOWTO's optimization section does.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # type: ignore[attr-defined]
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug", "moto", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    server = logging.getLogger("aiohttp.server")
    server.addFilter(without_raw_requests)
    if level.lower() != "debug":
        # aiohttp logs every malformed request with a traceback: any local process could
        # flood the journal. The client got its 400; keep a line for debug runs.
        server.setLevel(logging.CRITICAL)


def without_raw_requests(record: logging.LogRecord) -> bool:
    """Strip aiohttp's parse errors down to their type: their messages quote the raw request,
    headers (and so bearer tokens) included, and their tracebacks say nothing more."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError):
        record.msg, record.args = (
            "refused a malformed request (%s, HTTP %s)",
            (
                type(exc).__name__,
                exc.code,
            ),
        )
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="rolecached",
        description="Keep assumed-role AWS credentials warm in memory, served on a Unix socket.",
    )
    parser.add_argument(
        "--socket",
        type=Path,
        help="socket path (default: $ROLECACHE_SOCKET, "
        "else $XDG_RUNTIME_DIR/rolecache/rolecache.sock)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--config", type=Path, help="TOML config file")
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="use an embedded fake STS (moto) instead of AWS, on its own socket",
    )
    parser.add_argument("--version", action="version", version=f"rolecached {__version__}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """The rolecached command."""
    args = parse_args(argv)
    # Hold SIGTERM/SIGINT until the event loop handles them: a stop request that arrives
    # while the socket is already accepting must still end in a clean exit 0.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    configure_logging(args.log_level)
    if not peers.SUPPORTED:
        log.error(
            "rolecached knows how to check its peers (who may have credentials) only on "
            "Linux, not on %s yet: refusing to start rather than serve anyone",
            sys.platform,
        )
        return 1
    process.harden_process()
    path = args.socket or Path(socket_path(sandbox=args.sandbox))
    try:
        settings: Settings = config.load(args.config)
        endpoint_config = config.load_endpoints(args.config)
        for problem in endpoint_config.skipped:
            log.error("%s", problem)
        state_lock, last_socket = take_state_lock(bindingstate.default_path(path.stem), path)
        listener = open_listener(path)
    except (StartupError, config.ConfigError) as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:
        log.error("cannot open %s: %s", path, os.strerror(exc.errno or errno.EIO))
        return 1
    try:
        caller = start_sandbox() if args.sandbox else StsCaller()
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        code = runner.run(
            run(
                listener,
                caller,
                settings,
                args.sandbox,
                endpoint_config,
                args.config,
                last_socket,
            )
        )
    os.close(state_lock)
    return code


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop (a dependency on every platform but Windows): the socket API's
    fast lane serves about 3x the requests per core on it (bench B4); asyncio's own loop
    where it is missing, or with ROLECACHE_EVENT_LOOP=asyncio."""
    if os.environ.get("ROLECACHE_EVENT_LOOP") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
