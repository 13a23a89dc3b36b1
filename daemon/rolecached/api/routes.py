"""The socket API's aiohttp app (HTTP/1.1 + JSON under /v1/): its route table, and its one error
middleware, which answers every error as {"error": {"code", "message"}} through answer_for."""

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rolecache.protocol import SANDBOX_HEADER
from rolecached.api.admin_routes import (
    forget_all,
    forget_by_id,
    forget_matching,
    list_sessions,
    status,
)
from rolecached.api.appkeys import (
    LANE,
    LOGINS,
    PEER_OF,
    PROFILES,
    SANDBOX,
    STARTED,
    STATUS_PARTS,
    STORE,
    WAITS,
)
from rolecached.api.credentials_route import get_credentials
from rolecached.api.requestbody import MAX_BODY
from rolecached.api.signin_routes import (
    answer_mfa,
    list_mfa,
    start_login,
    stop_logins,
    stop_waiting,
    tell_desktop,
    wait_login,
)
from rolecached.core.store import Store
from rolecached.erroranswers import answer_for
from rolecached.errors import RolecacheError, api_refusal
from rolecached.front import fastlane
from rolecached.host.peers import Peer
from rolecached.sources import awsfiles, mfawait, ssologin

log = logging.getLogger(__name__)


def error_response(error: BaseException) -> web.Response:
    """`error` in the API's one error shape (some errors add fields, such as mfa_serial)."""
    answer = answer_for(error, "api")
    return web.json_response(answer.document, status=answer.status, headers=answer.headers)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer every exception in the API's error shape (answer_for picks the status)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = error_response(api_refusal(exc.status, exc.reason, MAX_BODY))
    except Exception as exc:
        if not isinstance(exc, RolecacheError):
            log.exception("internal error on %s %s", request.method, request.path)
        response = error_response(exc)
    if request.app[SANDBOX]:
        response.headers[SANDBOX_HEADER] = "1"
    return response


def make_app(
    store: Store, peer_of: Callable[[Any], Peer | None], *, sandbox: bool = False
) -> web.Application:
    """The socket API as an aiohttp application; `peer_of` tells who is on the other end of
    a request's transport (the Gate's record of it, made when the connection arrived)."""
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY)
    app[PEER_OF] = peer_of
    app[STORE] = store
    app[SANDBOX] = sandbox
    app[STARTED] = time.monotonic()
    app[STATUS_PARTS] = []
    app[PROFILES] = awsfiles.ConfigFiles()
    app[WAITS] = mfawait.Waits(store.now, tell_desktop)
    app.on_shutdown.append(stop_waiting)
    app[LANE] = fastlane.FastLane(store, f"{SANDBOX_HEADER}: 1\r\n".encode() if sandbox else b"")
    store.on_drop(app[LANE].drop)  # a forgotten session leaves no rendered copy behind
    app[LOGINS] = ssologin.Logins()
    app.on_shutdown.append(stop_logins)
    app.router.add_post("/v1/credentials", get_credentials)
    app.router.add_get("/v1/sessions", list_sessions)
    app.router.add_delete("/v1/sessions", forget_all)
    app.router.add_post("/v1/sessions/forget", forget_matching)
    app.router.add_delete("/v1/sessions/{id}", forget_by_id)
    app.router.add_get("/v1/status", status)
    app.router.add_get("/v1/mfa", list_mfa)
    app.router.add_post("/v1/mfa", answer_mfa)
    app.router.add_post("/v1/sso/login", start_login)
    app.router.add_post("/v1/sso/login/{id}", wait_login)
    return app
