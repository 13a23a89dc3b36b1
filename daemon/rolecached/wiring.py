"""Building the daemon's parts from its settings: the STS caller (the sandbox's too), the
store, the endpoint manager and the socket API's site."""

import logging
from pathlib import Path

from aiohttp import web

from rolecached import config
from rolecached.api import endpoint_routes
from rolecached.api.appkeys import LANE
from rolecached.api.requestbody import MAX_BODY
from rolecached.api.routes import make_app
from rolecached.apisocket import Listener, StartupError, keeper_path, secure_folder
from rolecached.core.store import Settings, Store
from rolecached.endpoints import bindingstate
from rolecached.endpoints.manager import EndpointManager
from rolecached.fake_sts import serve_fake_sts
from rolecached.front.gate import Gate
from rolecached.front.held_ports import HeldPorts
from rolecached.front.site import Door, FrontSite, Lane
from rolecached.host.peers import unix_peer
from rolecached.sources import awsfiles, sourcestamp
from rolecached.sources.credsources import StaticSource
from rolecached.sts import StsCaller

log = logging.getLogger("rolecached")


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


def make_store(caller: StsCaller, settings: Settings) -> Store:
    """The credential store, calling STS through `caller`."""
    source_files = awsfiles.ConfigFiles()
    return Store(
        caller.call,
        settings,
        reload_sources=caller.forget_sources,
        source_stamp=lambda key: sourcestamp.source_stamp(key, source_files),
    )


def make_endpoint_manager(
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
        resolver=endpoint_routes.default_resolver(awsfiles.ConfigFiles()),
        skipped=endpoint_config.skipped,
        # Beside the socket: the next daemon on this socket finds it.
        held=HeldPorts(
            keeper_path(listener.path),
            endpoint_config.settings.hold_ports,
            # The last daemon's may still hold the ports, when its socket was elsewhere.
            keeper_path(last_socket) if last_socket else None,
        ),
    )


async def open_api_site(
    listener: Listener,
    store: Store,
    gate: Gate,
    endpoints: EndpointManager | None,
    *,
    sandbox: bool,
    arrival_timeout: float,
) -> web.AppRunner:
    """The socket API's app (with the endpoints' routes, if given) served on `listener`
    behind `gate` and its fast lane; the runner, to shut it down."""
    app = make_app(store, gate.peer_of, sandbox=sandbox)
    if endpoints is not None:
        endpoint_routes.add_routes(app, endpoints)
    # An idle kept-alive connection is closed after 5 s: shells open one per command anyway.
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=5.0)
    await runner.setup()
    fast = runner.app[LANE]
    lane = Lane(fast.answer, fast.bad_request, MAX_BODY)
    # The socket is 0600: only our uid can connect, and root has no business there.
    door = Door("socket", gate, unix_peer, allow_root=False, timeout=arrival_timeout, lane=lane)
    await FrontSite(runner, listener.sock, door).start()
    return runner
