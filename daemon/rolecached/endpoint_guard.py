"""The hardening every container-endpoint request passes, ECS and IMDS alike.

One aiohttp middleware runs the guard first (Host allow-list against DNS rebinding, no
`Origin`, small bodies) and maps every failure, once, to the error shape SDKs surface:
`{"Code", "Message"}`. The rate limit is asked by the handlers once a token is known to be
good, so a flood of refused requests never uses up anyone's allowance.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rolecache.protocol import SANDBOX_HEADER
from rolecached.bindings import EndpointSettings
from rolecached.errors import (
    EndpointError,
    Forbidden,
    HttpRefusal,
    TooLarge,
    TooManyRequests,
    answer_for,
)
from rolecached.gate import Gate, peer_key
from rolecached.ratelimit import RateLimiter

log = logging.getLogger(__name__)


def error_body(error: BaseException) -> web.Response:
    """`error` in the shape SDKs surface: {"Code", "Message"} with capitalised keys."""
    answer = answer_for(error, "endpoint")
    return web.json_response(answer.document, status=answer.status, headers=answer.headers)


class Guard:
    """The checks every endpoint request passes first (Host, Origin, size), and the rate
    limit each passes once its token is known to be good."""

    def __init__(
        self, settings: EndpointSettings, clock: Callable[[], float], sandbox: bool, gate: Gate
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.sandbox = sandbox
        self.gate = gate
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
        self.hosts: frozenset[str] = frozenset()

    def listening_on(self, port: int, bare: tuple[str, ...] = ()) -> None:
        """Allow the Host values that name this listener: loopback names and bound addresses
        with the port, and the addresses in `bare` also without it (169.254.170.2, reached
        on port 80 through a redirect by SDKs that know only RELATIVE_URI)."""
        names = {"127.0.0.1", "localhost", "[::1]", *bare}
        for address in self.settings.bind:
            names.add(f"[{address}]" if ":" in address else address)
        self.hosts = frozenset({f"{name}:{port}" for name in names} | set(bare))

    def check(self, request: web.Request) -> None:
        """Raise the EndpointError for the first check the request fails."""
        hosts = request.headers.getall("Host", [])
        if len(hosts) != 1 or hosts[0].lower() not in self.hosts:
            # DNS rebinding: a web page's requests carry the attacker's host name.
            raise Forbidden("Host header not allowed: use 127.0.0.1:PORT or localhost:PORT")
        if "Origin" in request.headers:
            raise Forbidden("requests from web pages (with an Origin header) are refused")
        length = request.content_length
        if (length is not None and length > self.settings.max_body) or (
            "Transfer-Encoding" in request.headers
        ):
            raise TooLarge(f"request bodies are limited to {self.settings.max_body} bytes")

    def throttle(self, request: web.Request, binding: str) -> None:
        """Raise TooManyRequests past the rate limit of this peer (uid, or a container's
        address) for `binding`: asked only once the token is good, so a flood of refused
        requests never uses up anyone's allowance."""
        wait = self.limiter.wait(limit_key(request.transport, binding, self.gate), self.clock())
        if wait:
            raise TooManyRequests(wait)


GUARD: web.AppKey[Guard] = web.AppKey("guard", Guard)


def limit_key(transport: Any, binding: str, gate: Gate) -> str:
    """The rate limiter's key: the admitted peer (uid or address) and the binding."""
    peer = gate.peer_of(transport)
    return f"{peer_key(peer) if peer is not None else '?'} {binding}"


@web.middleware
async def endpoint_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Run the guard, then map every failure to a JSON error: the one place for statuses."""
    guard = request.app[GUARD]
    try:
        guard.check(request)
        response = await handler(request)
    except web.HTTPException as exc:
        response = error_body(HttpRefusal(exc.status, exc.reason))
    except Exception as exc:
        if not isinstance(exc, EndpointError):
            log.exception("internal error on %s %s", request.method, request.path)
        response = error_body(exc)
    response.headers["Cache-Control"] = "no-store"
    if guard.sandbox:
        response.headers[SANDBOX_HEADER] = "1"
    return response


def guarded_app(guard: Guard, *middlewares: Any) -> web.Application:
    """An empty endpoint app behind the middleware (then `middlewares`), checked by `guard`,
    a Guard of its own (each listener allows its own Host values)."""
    app = web.Application(
        middlewares=[endpoint_middleware, *middlewares], client_max_size=guard.settings.max_body
    )
    app[GUARD] = guard
    return app
