"""Start-up and shutdown of rolecached: the socket, its folder and lock, systemd, signals."""

import argparse
import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import os
import signal
import socket
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from rolecache import __version__
from rolecache.protocol import socket_path, socket_path_problem
from rolecached import config
from rolecached.api import endpoint_routes
from rolecached.api.routes import LANE, MAX_BODY, make_app
from rolecached.core.store import Settings, Store
from rolecached.endpoints import bindingstate
from rolecached.endpoints.manager import EndpointManager
from rolecached.errors import ListenError
from rolecached.fake_sts import serve_fake_sts
from rolecached.front.gate import Gate, default_gate
from rolecached.front.held_ports import HeldPorts
from rolecached.front.httphead import Head
from rolecached.front.site import Door, FrontSite, Lane, Reply
from rolecached.host import peers, process, systemd
from rolecached.host.peers import Peer, unix_peer
from rolecached.observe import logsink
from rolecached.observe.audit import describe_peer
from rolecached.sources import profiles, sourcestamp
from rolecached.sts import StaticSource, StsCaller

log = logging.getLogger("rolecached")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


class StartupError(Exception):
    """rolecached cannot start; the message says why and what to do."""


# -- the runtime folder, the lock and the socket ---------------------------------------


def secure_folder(folder: Path) -> None:
    """Create `folder` 0700, or accept it only if it is a real folder of ours that is private."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = folder.lstat()
    if stat.S_ISLNK(info.st_mode):
        raise StartupError(f"{folder} is a symlink; refusing to put the socket there")
    if not stat.S_ISDIR(info.st_mode):
        raise StartupError(f"{folder} is not a folder")
    if info.st_uid != os.getuid():
        raise StartupError(
            f"{folder} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}); "
            "someone may be trying to intercept your credentials. Remove it or set "
            "ROLECACHE_SOCKET to a path in a private folder"
        )
    if info.st_mode & 0o077:
        raise StartupError(
            f"{folder} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run `chmod 700 {folder}` or choose another ROLECACHE_SOCKET"
        )


def hold_lock(path: Path, lines: list[str]) -> tuple[int | None, list[str]]:
    """Lock `path` (created 0600) for the daemon's lifetime and write `lines` (pid first) in
    it: (its descriptor or None when another process has it, the lines the last or current
    holder wrote, padded with "?")."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        locked = True
    except BlockingIOError:
        locked = False
    written = os.pread(fd, 4096, 0).decode(errors="replace").splitlines()
    written = [line.strip() or "?" for line in written] + ["?"] * (len(lines) + 1)
    if not locked:
        os.close(fd)
        return None, written
    os.ftruncate(fd, 0)
    os.pwrite(fd, "".join(f"{line}\n" for line in [str(os.getpid()), *lines]).encode(), 0)
    return fd, written


def take_lock(path: Path) -> int:
    """Hold an exclusive lock for the daemon's lifetime: one daemon per socket path."""
    fd, holder = hold_lock(path, [])
    if fd is None:
        raise StartupError(
            f"another rolecached (pid {holder[0]}) already serves this socket; "
            "stop it first or pass --socket for a second one"
        )
    return fd


def take_state_lock(state_file: Path, socket_file: Path) -> tuple[int, Path | None]:
    """Hold the lock of the endpoints state file for the daemon's lifetime: one daemon of a
    user writes it, whatever its socket (another XDG_RUNTIME_DIR from cron, `su -` or ssh
    names another one). The lock file says which pid and socket hold it; returned with it,
    the socket of the daemon that held it last (its port keeper is beside it)."""
    state_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, holder = hold_lock(state_file.with_name(state_file.name + ".lock"), [str(socket_file)])
    if fd is None:
        pid, where = holder[:2]
        raise StartupError(
            f"another rolecached of yours (pid {pid}) already serves the endpoints of "
            f"{state_file}, on the socket {where}; use that one (ROLECACHE_SOCKET={where}) "
            "or stop it first"
        )
    last = holder[1]
    return fd, Path(last) if last.startswith("/") else None


def keeper_path(socket_file: Path) -> Path:
    """Where the port keeper of the daemon on `socket_file` listens: beside it."""
    return socket_file.with_name(f"{socket_file.stem}.ports")


def answers(path: Path) -> bool:
    """True when something accepts connections on the Unix socket at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def bind_socket(path: Path) -> socket.socket:
    """Bind a listening socket at `path` with mode 0600, replacing only a stale socket file."""
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise StartupError(f"{path} exists and is not a socket; move it away")
        if answers(path):
            raise StartupError(f"another process already answers on {path}")
        path.unlink()  # left by a daemon that crashed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is born 0600: no window where others can connect
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


# -- running -----------------------------------------------------------------------------


@dataclass
class Listener:
    """The API socket and how to tidy up after it."""

    sock: socket.socket
    path: Path
    owned: bool  # we bound it (and remove it at exit); systemd's stays
    lock_fd: int  # held open for the daemon's lifetime


def open_listener(path: Path) -> Listener:
    """Adopt systemd's socket or bind our own; take the lock either way."""
    inherited = systemd.activation_socket()
    if inherited is None:
        problem = socket_path_problem(str(path))
        if problem:
            raise StartupError(problem)
        # The default folder sits under ~/.local/state, which may not exist yet; under the
        # umask of 077 the missing parents are made 0700. The folder itself is checked below.
        os.makedirs(path.parent.parent, 0o700, exist_ok=True)
        secure_folder(path.parent)
    lock_fd = take_lock(path.parent / (path.name + ".lock"))
    if inherited is not None:
        return Listener(inherited, path, owned=False, lock_fd=lock_fd)
    try:
        return Listener(bind_socket(path), path, owned=True, lock_fd=lock_fd)
    except BaseException:
        os.close(lock_fd)
        raise


async def serve(
    listener: Listener,
    store: Store,
    *,
    sandbox: bool = False,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[], None] = lambda: None,
    endpoints: EndpointManager | None = None,
    allowed_uid: int | None = None,
    gate: Gate | None = None,
    arrival_timeout: float = 5.0,
) -> None:
    """Serve the API on `listener` (and the container endpoints, if given) until `stop` is
    set, then shut down gracefully. `gate` admits connections (default: `allowed_uid`, else
    ours, with caps for this process's descriptor limit); a request must arrive whole within
    `arrival_timeout` seconds (slowloris; the [daemon] request_timeout is how long one waits
    for STS)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    gate = gate or default_gate(os.getuid() if allowed_uid is None else allowed_uid)
    app = make_app(store, gate.peer_of, sandbox=sandbox)
    if endpoints is not None:
        endpoint_routes.add_routes(app, endpoints)
    # An idle kept-alive connection is closed after 5 s: shells open one per command anyway.
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=5.0)
    await runner.setup()
    fast = runner.app[LANE]

    def fast_lane(head: Head, peer: Peer) -> Reply | None:
        return fast.answer(head, lambda: describe_peer(peer))

    lane = Lane(fast_lane, fast.bad_request, MAX_BODY)
    # The socket is 0600: only our uid can connect, and root has no business there.
    door = Door("socket", gate, unix_peer, allow_root=False, timeout=arrival_timeout, lane=lane)
    await FrontSite(runner, listener.sock, door).start()
    renewer = loop.create_task(store.run_renewer())
    maintainer = None
    try:
        if endpoints is not None:
            await endpoints.start()  # READY=1 only once every listener is bound
            maintainer = loop.create_task(endpoints.run())
        on_ready()
        await stop.wait()
    finally:
        log.info("stopping: no new connections, finishing requests in flight")
        await runner.shutdown()
        await runner.cleanup()  # stops accepting, waits for handlers in flight
        if maintainer is not None:
            maintainer.cancel()
        if endpoints is not None:
            await endpoints.close()
        renewer.cancel()
        await store.close()
        gate.refusals.flush(force=True)
        if listener.owned:
            with contextlib.suppress(FileNotFoundError):
                listener.path.unlink()


def start_sandbox() -> StsCaller:
    """An embedded moto STS on loopback, for this uid only, and a caller that uses it with
    fixed fake keys."""
    try:
        url = serve_fake_sts()
    except ImportError:
        raise StartupError(
            "--sandbox needs moto, the [sandbox] extra, in rolecache's own environment: from a"
            " checkout, pipx install --force '.[sandbox]' or uv tool install --force"
            " '.[sandbox]' (in a venv: pip install -e '.[sandbox]')"
        ) from None
    log.warning("SANDBOX: using an embedded fake STS at %s, not AWS", url)
    return StsCaller(
        endpoint_url=url,
        static_source=StaticSource("AKIASANDBOXSOURCE000", "sandbox-source-secret"),
    )


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
            _run(
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


async def _run(
    listener: Listener,
    caller: StsCaller,
    settings: Settings,
    sandbox: bool,
    endpoint_config: config.EndpointConfig | None = None,
    config_path: Path | None = None,
    last_socket: Path | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT; 1 when a listener or the token folder cannot be set up."""
    stop = _stop_on_signals()
    loop = asyncio.get_running_loop()

    def ready() -> None:
        log.info("rolecached %s ready on %s (pid %d)", __version__, listener.path, os.getpid())
        systemd.notify("READY=1")

    store = _store(caller, settings)

    endpoints: EndpointManager | None = None
    # One gate for every listener, so the caps hold over all of them together.
    gate = default_gate(os.getuid())
    log.debug("connection caps %s (for the descriptor limit)", gate.caps)
    if endpoint_config is not None:
        try:
            endpoints = _endpoint_manager(
                listener, store, endpoint_config, sandbox, gate, last_socket
            )
        except StartupError as exc:
            log.error("%s", exc)
            return 1
    nudges: set[asyncio.Task[None]] = set()  # held until done: the loop keeps weak references
    reload = functools.partial(_reload, store, caller, config_path, endpoints, nudges)
    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await serve(
            listener,
            store,
            sandbox=sandbox,
            stop=stop,
            on_ready=ready,
            endpoints=endpoints,
            gate=gate,
        )
    except ListenError as exc:
        log.error("%s", exc)
        return 1
    log.info("stopped")
    return 0


def _stop_on_signals() -> asyncio.Event:
    """An event SIGTERM and SIGINT set, those signals unblocked for this loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    return stop


def _store(caller: StsCaller, settings: Settings) -> Store:
    """The credential store, calling STS through `caller`."""
    source_files = profiles.ConfigFiles()
    return Store(
        caller.call,
        settings,
        reload_sources=caller.forget_sources,
        source_stamp=lambda key: sourcestamp.source_stamp(key, source_files),
    )


def _endpoint_manager(
    listener: Listener,
    store: Store,
    endpoint_config: config.EndpointConfig,
    sandbox: bool,
    gate: Gate,
    last_socket: Path | None,
) -> EndpointManager:
    """The container endpoints of `endpoint_config`; StartupError when their token folder
    cannot be made private."""
    # Token files live beside the socket, in a private folder of their own.
    tokens = listener.path.parent / f"{listener.path.stem}-tokens"
    secure_folder(tokens)
    return EndpointManager(
        store,
        endpoint_config.settings,
        tokens,
        sandbox=sandbox,
        bindings=endpoint_config.bindings,
        gate=gate,
        # Runtime bindings outlive restarts, SIGKILL included (see bindingstate.py).
        state_file=bindingstate.default_path(listener.path.stem),
        resolver=endpoint_routes.default_resolver(profiles.ConfigFiles()),
        skipped=endpoint_config.skipped,
        # Beside the socket: the next daemon on this socket finds it.
        held=HeldPorts(
            keeper_path(listener.path),
            endpoint_config.settings.hold_ports,
            # The last daemon's may still hold the ports, when its socket was elsewhere.
            keeper_path(last_socket) if last_socket else None,
        ),
    )


def _reload(
    store: Store,
    caller: StsCaller,
    config_path: Path | None,
    endpoints: EndpointManager | None,
    nudges: set[asyncio.Task[None]],
) -> None:
    """SIGHUP: read the config file again and reload source credentials; the cache stays."""
    try:
        changed = store.apply_settings(config.load(config_path))
    except config.ConfigError as exc:
        log.error("SIGHUP: keeping the current settings: %s", exc)
        return
    caller.forget_sources()
    if endpoints is not None:
        # Also a nudge to try the ports waited for again, now.
        nudges.add(task := asyncio.get_running_loop().create_task(endpoints.retry_waiting()))
        task.add_done_callback(nudges.discard)
    log.info(
        "SIGHUP: reloaded the config (%s; applied now: %s) and the source credentials; "
        "[endpoints] is read at start-up only: restart rolecached to apply changes there",
        store.settings,
        ", ".join(changed) or "no [daemon] setting changed",
    )
