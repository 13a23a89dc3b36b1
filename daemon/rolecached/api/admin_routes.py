"""The socket API's routes over what the daemon holds: its status, the cached sessions (never a
secret) and forgetting them."""

import hashlib
import os
import time
from typing import Any

from aiohttp import web

from rolecache import __version__
from rolecached.api.appkeys import PROFILES, SANDBOX, STARTED, STATUS_PARTS, STORE
from rolecached.api.requestbody import json_body
from rolecached.core.cache import Entry
from rolecached.core.request import RoleRequest
from rolecached.errors import NotFound
from rolecached.render.credentials import iso_expiration
from rolecached.sources import profiles


def session_id(key: RoleRequest) -> str:
    """A short stable id for an entry, for `DELETE /v1/sessions/{id}` (derived, not secret)."""
    return hashlib.sha256(repr(key).encode()).hexdigest()[:16]


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else iso_expiration(epoch)


def session_summary(entry: Entry, now: float) -> dict[str, Any]:
    """What `GET /v1/sessions` shows of an entry: everything but the secrets."""
    creds = entry.credentials
    req = entry.request
    return {
        "id": session_id(req),
        "role_arn": req.role_arn,
        "role_session_name": req.role_session_name,
        "source_profile": req.source_profile,
        "region": req.region,
        "duration_seconds": req.duration_seconds,
        "access_key_id": creds.masked_key_id if creds else None,
        "expiration": _iso(creds.expiration if creds else None),
        "expires_in": None if creds is None else round(creds.expiration - now),
        "next_renewal": _iso(entry.renew_at),
        "renews_in": None if entry.renew_at is None else round(entry.renew_at - now),
        # A role with MFA over an hour is never renewed in the background: a new code is.
        "needs_mfa_code": req.direct_mfa,
        "hits": entry.hits,
        "sts_calls": entry.sts_calls,
        "last_sts_call": _iso(entry.last_sts_call),
        "last_error": None if entry.last_error is None else str(entry.last_error),
        "last_requester": entry.last_requester,
    }


async def list_sessions(request: web.Request) -> web.Response:
    """GET /v1/sessions: every cached session, never a secret."""
    now = time.time()
    entries = request.app[STORE].entries()
    return web.json_response({"sessions": [session_summary(e, now) for e in entries]})


async def forget_all(request: web.Request) -> web.Response:
    """DELETE /v1/sessions: drop every cached session."""
    return web.json_response({"forgotten": request.app[STORE].forget()})


async def forget_by_id(request: web.Request) -> web.Response:
    """DELETE /v1/sessions/{id}: drop the session with that id."""
    store = request.app[STORE]
    wanted = request.match_info["id"]
    for entry in store.entries():
        if session_id(entry.request) == wanted:
            return web.json_response({"forgotten": store.forget(entry.request)})
    raise NotFound(f"no cached session has id {wanted!r}; `rolecache list --json` shows ids")


async def forget_matching(request: web.Request) -> web.Response:
    """POST /v1/sessions/forget: drop the session a credentials request would use."""
    body = await json_body(request)
    role_request, _ = await profiles.select_async(body, request.app[PROFILES])
    return web.json_response({"forgotten": request.app[STORE].forget(role_request)})


async def status(request: web.Request) -> web.Response:
    """GET /v1/status: version, pid, uptime and counters."""
    store = request.app[STORE]
    return web.json_response(
        {
            "version": __version__,
            "pid": os.getpid(),
            "uptime": round(time.monotonic() - request.app[STARTED], 3),
            "sandbox": request.app[SANDBOX],
            "sessions": len(store.entries()),
            "sts_calls": store.sts_calls,
            "sts_errors": store.sts_errors,
            "cli_version": store.settings.cli_version,
            **{k: v for part in request.app[STATUS_PARTS] for k, v in part().items()},
        }
    )
