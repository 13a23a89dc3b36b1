"""Running the daemon: serving until SIGTERM or SIGINT, then stopping gracefully; READY=1 to
systemd once every listener is bound; SIGHUP's reload of the config and source credentials."""

import asyncio
import contextlib
import functools
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from rolecache import __version__
from rolecached import config
from rolecached.apisocket import Listener, StartupError
from rolecached.core.store import Settings, Store
from rolecached.endpoints.manager import EndpointManager
from rolecached.errors import ListenError
from rolecached.front.gate import Gate, default_gate
from rolecached.host import systemd
from rolecached.sts import StsCaller
from rolecached.wiring import make_endpoint_manager, make_store, open_api_site

log = logging.getLogger("rolecached")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


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
    runner = await open_api_site(
        listener, store, gate, endpoints, sandbox=sandbox, arrival_timeout=arrival_timeout
    )
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


async def run(
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

    store = make_store(caller, settings)

    endpoints: EndpointManager | None = None
    # One gate for every listener, so the caps hold over all of them together.
    gate = default_gate(os.getuid())
    log.debug("connection caps %s (for the descriptor limit)", gate.caps)
    if endpoint_config is not None:
        try:
            endpoints = make_endpoint_manager(
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
