"""The container endpoints' aiohttp apps: the ECS-style app every binding shares, and the
IMDSv2-style app of one binding.

Both answer from the store's memory, never waiting on STS longer than `settings.wait`, behind
guard.py's middleware. The documents are the ones botocore's container and IMDS
providers parse: AccessKeyId, SecretAccessKey, Token and an Expiration ending in Z. Each
app's handlers close over what they read: the served bindings, the Handout that serves,
counts and audits every hand-out, and the app's Guard (its settings, clock and gate).
"""

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from rolecached.core.bindings import ECS_MIN_TTL, ECS_PATH, IMDS_MIN_TTL
from rolecached.endpoints import policy
from rolecached.endpoints.guard import Guard, guarded_app
from rolecached.endpoints.handout import Handout
from rolecached.endpoints.registry import Served
from rolecached.endpoints.tokens import parse_ttl
from rolecached.errors import EndpointBadRequest, EndpointNotFound
from rolecached.render.documents import imds_document

IMDS_TOKEN_PATH = "/latest/api/token"
IMDS_ROLES = "/latest/meta-data/iam/security-credentials"
IMDS_ROLES_EXTENDED = "/latest/meta-data/iam/security-credentials-extended"
IMDS_TOKEN_HEADER = "X-aws-ec2-metadata-token"
IMDS_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"

# -- the container app ---------------------------------------------------------------------------


def make_ecs_app(serving: Mapping[str, Served], handout: Handout, guard: Guard) -> web.Application:
    """The container endpoint: GET ECS_PATH (and ECS_PATH/CAPABILITY) for every binding in
    `serving` (a live mapping: adds and removes show at once), checked by `guard` (whose
    clock, gate and sandbox flag the handler uses too)."""
    app = guarded_app(guard)

    async def credentials(request: web.Request) -> web.Response:
        """GET /v1/credentials/{name} with the binding's token as Authorization."""
        name = request.match_info["name"]
        served = serving.get(name)
        token = request.headers.get("Authorization")
        capability = request.match_info.get("capability")
        ring = None if served is None else served.ring
        refusal = policy.container_refusal(token, ring, capability, guard.clock())
        if refusal is not None:
            guard.refuse(request, refusal)
        assert served is not None  # container_refusal refuses an unknown name
        guard.throttle(request, name)
        peer = guard.gate.peer_of(request.transport)
        agent = request.headers.get("User-Agent")
        creds = await handout.credentials(served.binding, ECS_MIN_TTL, peer, agent)
        body = served.container_answer(creds, guard.sandbox).body
        return web.Response(body=body, content_type="application/json")

    app.router.add_get(ECS_PATH, credentials)
    app.router.add_get(ECS_PATH + "/{capability}", credentials)
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
            v1_allowed = served.binding.spec.imds_v1
            refusal = policy.imds_session_refusal(token, served.imds_tokens, v1_allowed, clock())
            if refusal is not None:
                raise refusal
        guard.throttle(request, served.binding.name)
        return await handler(request)

    app = guarded_app(guard, require_token)

    async def put_token(request: web.Request) -> web.Response:
        """PUT /latest/api/token: a session token for this listener only."""
        refusal = policy.forwarded_refusal("X-Forwarded-For" in request.headers)
        if refusal is not None:
            raise refusal
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
