"""The embedded fake STS behind `rolecached --sandbox`: moto's server on loopback, for this
user alone.

moto answers whoever connects and lists every credential it issued at /moto-api/data.json,
so every connection's peer is checked (as the endpoints check theirs) before a byte is read:
another uid's is closed at once, with one log line per interval. moto's own request log is
off: any local process could flood the journal with bad requests."""

import logging
import os
import socket
import threading
from typing import Any

from rolecached.front.gate import RefusalLog
from rolecached.host import peers


def owner_only(owner: int, refusals: RefusalLog) -> Any:
    """A socketserver `verify_request` that admits peers of `owner` (and root) only."""

    def verify(request: socket.socket, client_address: tuple[Any, ...]) -> bool:
        uid = peers.tcp_peer_uid(request.getsockname(), client_address, request.family)
        if peers.allowed_uid(uid, owner):
            return True
        refusals.refused(f"connections to the sandbox's fake STS from uid {uid}")
        return False

    return verify


def serve_fake_sts() -> str:
    """Start moto's STS on 127.0.0.1 in a thread, for this uid only; its URL. Raises
    ImportError when moto is not installed."""
    # ImportError without moto: the caller says how to install it.
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    # Set before the first accept: no connection is ever served unchecked.
    server.verify_request = owner_only(os.getuid(), RefusalLog())  # type: ignore[method-assign]
    threading.Thread(target=server.serve_forever, name="sandbox-sts", daemon=True).start()
    host_, port = server.server_address[:2]
    return f"http://{host_}:{port}"
