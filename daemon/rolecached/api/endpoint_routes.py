"""The socket API's /v1/endpoints routes: add, list, show, remove and rotate bindings.

Errors are RolecacheError types, so the socket API's own error middleware answers them in
its shape {"error": {"code", "message"}}; nothing here returns a token or a secret.
"""

import json
from typing import Any

from aiohttp import web

from rolecached.api.appkeys import STATUS_PARTS
from rolecached.core import bindings
from rolecached.core.request import parse_token_code
from rolecached.endpoints.manager import EndpointManager
from rolecached.errors import InvalidRequest
from rolecached.sources import awsfiles, profiles

MANAGER: web.AppKey[EndpointManager] = web.AppKey("endpoints", EndpointManager)
RESOLVER: web.AppKey[bindings.Resolve] = web.AppKey("endpoint_resolver")


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidRequest("the request body is not a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


async def add_endpoint(request: web.Request) -> web.Response:
    """POST /v1/endpoints: {"name", "replace", "imds_v1", "imds_port", selector fields...}."""
    body = await _body(request)
    name = body.pop("name", None)
    replace = body.pop("replace", False)
    if not isinstance(replace, bool):
        raise InvalidRequest("replace must be true or false")
    token_code = parse_token_code(body.pop("token_code", None))
    spec = bindings.parse_spec(name, body)
    binding = bindings.resolve(spec, request.app[RESOLVER])
    manager = request.app[MANAGER]
    served = await manager.add(binding, replace=replace, token_code=token_code)
    return web.json_response(manager.summary(served))


async def list_endpoints(request: web.Request) -> web.Response:
    """GET /v1/endpoints: every binding, its URLs and token file (never the token)."""
    manager = request.app[MANAGER]
    return web.json_response(
        {
            "endpoints": [manager.summary(s) for s in manager.all()],
            "container_port": manager.container_port,
            "skipped": manager.skipped,
            # "waiting for port N, held by uid U" while another program holds it, else None.
            "container_waiting": manager.waits.container,
            # Another uid held a port at start: what was done about it.
            "alerts": manager.waits.alerts,
        }
    )


async def show_endpoint(request: web.Request) -> web.Response:
    """GET /v1/endpoints/{name}: one binding, as in the listing."""
    manager = request.app[MANAGER]
    return web.json_response(manager.summary(manager.get(request.match_info["name"])))


async def remove_endpoint(request: web.Request) -> web.Response:
    """DELETE /v1/endpoints/{name}: stop serving it."""
    name = request.match_info["name"]
    await request.app[MANAGER].remove(name)
    return web.json_response({"removed": name})


async def rotate_endpoint(request: web.Request) -> web.Response:
    """POST /v1/endpoints/{name}/rotate: a new token; the old one works for the grace period.
    With {"containers": true}, the container token is replaced too, at once."""
    manager = request.app[MANAGER]
    body = await _body(request) if request.can_read_body else {}
    containers = body.pop("containers", False)
    if not isinstance(containers, bool) or body:
        raise InvalidRequest('rotate takes only {"containers": true or false}')
    served = manager.rotate(request.match_info["name"], containers=containers)
    return web.json_response(manager.summary(served))


async def docker_settings(request: web.Request) -> web.Response:
    """GET /v1/docker: the container port and whether port 80 of 169.254.170.2 is
    redirected to it; PUT with {"port_80": true or false} records the latter."""
    manager = request.app[MANAGER]
    if request.method == "PUT":
        body = await _body(request)
        port_80 = body.pop("port_80", None)
        if not isinstance(port_80, bool) or body:
            raise InvalidRequest('PUT /v1/docker takes only {"port_80": true or false}')
        manager.set_port_80(port_80)
    return web.json_response({"container_port": manager.container_port, "port_80": manager.port_80})


def default_resolver(files: awsfiles.ConfigFiles) -> bindings.Resolve:
    """Resolve selectors as `rolecache env` does: a profile, or explicit request fields."""
    return lambda body: profiles.select(body, files)


def add_routes(
    app: web.Application,
    manager: EndpointManager,
    resolver: bindings.Resolve | None = None,
) -> None:
    """Mount the /v1/endpoints routes on the socket API `app`."""
    app[MANAGER] = manager
    app[STATUS_PARTS].append(manager.status)
    app[RESOLVER] = resolver or default_resolver(awsfiles.ConfigFiles())
    app.router.add_get("/v1/endpoints", list_endpoints)
    app.router.add_post("/v1/endpoints", add_endpoint)
    app.router.add_get("/v1/endpoints/{name}", show_endpoint)
    app.router.add_delete("/v1/endpoints/{name}", remove_endpoint)
    app.router.add_post("/v1/endpoints/{name}/rotate", rotate_endpoint)
    app.router.add_get("/v1/docker", docker_settings)
    app.router.add_put("/v1/docker", docker_settings)
