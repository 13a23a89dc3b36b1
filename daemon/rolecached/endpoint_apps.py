"""The container endpoints' aiohttp apps: the ECS-style app every binding shares, and the
IMDSv2-style app of one binding.

Both answer from the store's memory, never waiting on STS longer than `settings.wait`, behind
endpoint_guard's middleware. The documents are the ones botocore's container and IMDS
providers parse: AccessKeyId, SecretAccessKey, Token and an Expiration ending in Z. Each
app's handlers close over what they read: the served bindings, the Handout that serves,
counts and audits every hand-out, and the app's Guard (its settings, clock and gate).
"""

import json
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from rolecached import ecslane
from rolecached.bindings import ECS_MIN_TTL, ECS_PATH, IMDS_MIN_TTL
from rolecached.cache import Credentials
from rolecached.endpoint_guard import Guard, guarded_app
from rolecached.errors import EndpointBadRequest, EndpointNotFound, Forbidden, Unauthorized
from rolecached.gate import peer_key
from rolecached.handout import Handout
from rolecached.host import Peer
from rolecached.registry import Served
from rolecached.render.documents import ecs_document, imds_document
from rolecached.tokens import parse_ttl

IMDS_TOKEN_PATH = "/latest/api/token"
IMDS_ROLES = "/latest/meta-data/iam/security-credentials"
IMDS_ROLES_EXTENDED = "/latest/meta-data/iam/security-credentials-extended"
IMDS_TOKEN_HEADER = "X-aws-ec2-metadata-token"
IMDS_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"

# The container app's fast lane, built with it so both serve the same bindings, Host
# allow-list, rate limiter, credentials and bytes.
ECS_LANE: web.AppKey[ecslane.EcsLane] = web.AppKey("ecs_lane", ecslane.EcsLane)


def render_ecs(
    served: Served, creds: Credentials, sandbox: bool
) -> tuple[bytes, tuple[bytes, bytes]]:
    """The container answer for `creds`: the handler's JSON body and the fast lane's whole
    HTTP responses, rendered once per credentials object (the one place for both)."""
    if served.rendered is None or served.rendered[0] is not creds:
        body = json.dumps(ecs_document(served.binding, creds)).encode()
        served.rendered = (creds, body, ecslane.http_responses(body, sandbox))
    return served.rendered[1], served.rendered[2]


def host_peer_text(peer: Peer | None) -> str:
    """A peer as a refusal line names it: its uid, else its address."""
    return "an unknown peer" if peer is None else peer_key(peer)


# -- the container app ---------------------------------------------------------------------------


def make_ecs_app(serving: Mapping[str, Served], handout: Handout, guard: Guard) -> web.Application:
    """The container endpoint: GET ECS_PATH (and ECS_PATH/CAPABILITY) for every binding in
    `serving` (a live mapping: adds and removes show at once), checked by `guard` (whose
    clock, gate and sandbox flag the handler uses too); its fast lane is app[ECS_LANE]."""
    app = guarded_app(guard)
    clock, gate, sandbox = guard.clock, guard.gate, guard.sandbox

    async def credentials(request: web.Request) -> web.Response:
        """GET /v1/credentials/{name} with the binding's token as Authorization."""
        token = request.headers.get("Authorization")
        peer = gate.peer_of(request.transport)
        if not token:
            # Logged (once per interval): an SDK that sends no token is otherwise hard to spot.
            gate.refusals.refused(f"container requests without a token from {host_peer_text(peer)}")
            raise Unauthorized(
                "the Authorization header must carry the endpoint's token "
                "(AWS_CONTAINER_AUTHORIZATION_TOKEN or its _FILE)"
            )
        name = request.match_info["name"]
        served = serving.get(name)
        capability = request.match_info.get("capability")
        # An unknown name gets the wrong token's answer: names are not for probing. The
        # RELATIVE_URI path needs both its capability and the token.
        if (
            served is None
            or not served.ring.valid(token, clock())
            or (capability is not None and not served.ring.capability_valid(capability))
        ):
            who = host_peer_text(peer)
            gate.refusals.refused(f"container requests with a wrong token from {who}")
            raise Forbidden("the token is not valid for this endpoint")
        guard.throttle(request, name)
        agent = request.headers.get("User-Agent")
        creds = await handout.credentials(served.binding, ECS_MIN_TTL, peer, agent)
        body, _ = render_ecs(served, creds, sandbox)
        return web.Response(body=body, content_type="application/json")

    app.router.add_get(ECS_PATH, credentials)
    app.router.add_get(ECS_PATH + "/{capability}", credentials)
    app[ECS_LANE] = ecslane.EcsLane(
        serving,
        lambda: guard.hosts,
        guard.limiter,
        clock,
        handout.held,
        lambda one, creds: render_ecs(one, creds, sandbox)[1],
    )
    return app


# -- the IMDS app --------------------------------------------------------------------------------


def make_imds_app(served: Served, handout: Handout, guard: Guard) -> web.Application:
    """The IMDSv2-style app of one binding: session tokens, and its one role's credentials;
    checked by `guard`, whose clock and gate the handlers use too."""
    clock, gate = guard.clock, guard.gate

    @web.middleware
    async def require_token(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        # Every GET needs a session token (IMDSv2), unless the binding allows v1.
        if request.method != "PUT":
            token = request.headers.get(IMDS_TOKEN_HEADER)
            if token is None:
                if not served.binding.spec.imds_v1:
                    raise Unauthorized("an IMDSv2 session token is required")
            elif not served.imds_tokens.valid(token, clock()):
                raise Unauthorized("the session token is not valid or has expired")
        guard.throttle(request, served.binding.name)
        return await handler(request)

    app = guarded_app(guard, require_token)

    async def put_token(request: web.Request) -> web.Response:
        """PUT /latest/api/token: a session token for this listener only."""
        if "X-Forwarded-For" in request.headers:
            # IMDS refuses forwarded requests, so a proxy on this host cannot relay them.
            raise Forbidden("requests with X-Forwarded-For are refused")
        try:
            ttl = parse_ttl(request.headers.get(IMDS_TTL_HEADER))
        except ValueError as exc:
            raise EndpointBadRequest(str(exc)) from None
        token = served.imds_tokens.issue(ttl, clock())
        return web.Response(
            text=token, content_type="text/plain", headers={IMDS_TTL_HEADER: str(ttl)}
        )

    async def roles(request: web.Request) -> web.Response:
        """The role listing: exactly one name, no newline."""
        return web.Response(text=served.binding.name, content_type="text/plain")

    async def role(request: web.Request) -> web.Response:
        """The credentials document of the one role; other names are 404."""
        if request.match_info["role"] != served.binding.name:
            raise EndpointNotFound("no such role at this endpoint")
        extended = request.path.startswith(IMDS_ROLES_EXTENDED)
        binding = served.binding
        peer = gate.peer_of(request.transport)
        agent = request.headers.get("User-Agent")
        creds = await handout.credentials(binding, IMDS_MIN_TTL, peer, agent, via="IMDS")
        return web.json_response(imds_document(binding, creds, extended))

    app.router.add_put(IMDS_TOKEN_PATH, put_token)
    for base in (IMDS_ROLES, IMDS_ROLES_EXTENDED):
        app.router.add_get(base, roles)
        app.router.add_get(base + "/", roles)
        app.router.add_get(base + "/{role}", role)
    return app
