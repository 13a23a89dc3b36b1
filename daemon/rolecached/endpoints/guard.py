"""The hardening every container-endpoint request passes, ECS and IMDS alike.

One aiohttp middleware runs the guard first (Host allow-list against DNS rebinding, no
`Origin`, small bodies: policy.guard, which the fast lane asks too) and answers
every failure in the error shape SDKs surface, `{"Code", "Message"}`, through
erroranswers.answer_for. The rate limit is asked by the handlers once a token is known to be
good, so a flood of refused requests never uses up anyone's allowance.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from aiohttp import web

from rolecached.core.bindings import EndpointSettings
from rolecached.endpoints import policy
from rolecached.endpoints.ratelimit import RateLimiter
from rolecached.erroranswers import answer_for
from rolecached.errors import EndpointError, HttpRefusal
from rolecached.front.gate import Gate, peer_key

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
        """Raise the EndpointError for the first check the request fails (policy.guard)."""
        headers = request.headers
        facts = policy.Facts(
            tuple(headers.getall("Host", [])),
            "Origin" in headers,
            request.content_length,
            "Transfer-Encoding" in headers,
        )
        refusal = policy.guard(facts, self.hosts, self.settings.max_body)
        if refusal is not None:
            raise refusal

    def throttle(self, request: web.Request, binding: str) -> None:
        """Raise TooManyRequests past the rate limit of this peer for `binding`
        (policy.throttle)."""
        peer = self.gate.peer_of(request.transport)
        refusal = policy.throttle(self.limiter, peer, binding, self.clock())
        if refusal is not None:
            raise refusal

    def refuse(self, request: web.Request, refusal: policy.Refusal) -> NoReturn:
        """Raise `refusal`'s error, counted in the refusal log under its tally with the peer."""
        if refusal.tally is not None:
            peer = self.gate.peer_of(request.transport)
            who = "an unknown peer" if peer is None else peer_key(peer)
            self.gate.refusals.refused(f"{refusal.tally} from {who}")
        raise refusal.error


GUARD: web.AppKey[Guard] = web.AppKey("guard", Guard)


@web.middleware
async def endpoint_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Run the guard, then answer every failure as a JSON error (erroranswers.answer_for)."""
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
    response.headers.update(policy.answer_headers(guard.sandbox))
    return response


def guarded_app(guard: Guard, *middlewares: Any) -> web.Application:
    """An empty endpoint app behind the middleware (then `middlewares`), checked by `guard`,
    a Guard of its own (each listener allows its own Host values)."""
    app = web.Application(
        middlewares=[endpoint_middleware, *middlewares], client_max_size=guard.settings.max_body
    )
    app[GUARD] = guard
    return app
