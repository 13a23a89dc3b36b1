"""moto's STS server on an address of the tests' networks, without a DNS query.

http.server, under werkzeug's server that moto uses, looks up the name of the address it binds
(socket.getfqdn): for loopback /etc/hosts answers, but for 169.254.170.2 it is a PTR query to
the host's resolver, a packet off this machine. This server binds without that lookup."""

import contextlib
import socketserver
import threading
from collections.abc import Iterator

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import ThreadedWSGIServer


class _NoLookupServer(ThreadedWSGIServer):
    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # what HTTPServer does, less the name lookup
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), port


def moto_server(address: str) -> ThreadedWSGIServer:
    """moto's STS (its in-process backend) bound to `address` on a port the kernel picks; the
    caller runs serve_forever() and shutdown()."""
    app = DomainDispatcherApplication(create_backend_app)
    return _NoLookupServer(address, 0, app, handler=MotoRequestHandler)


@contextlib.contextmanager
def moto_at(address: str) -> Iterator[str]:
    """moto's STS on `address` in a thread, for the duration; yields its URL."""
    server = moto_server(address)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
