"""The socket API: HTTP/1.1 + JSON under /v1/, as an aiohttp app factory.

`make_app` is shared by the daemon and the tests. Every error is answered by
`error_middleware` through errors.answer_for (the one map of errors to statuses), in the
shape {"error": {"code", "message"}}.
"""

import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rolecache import __version__
from rolecache.protocol import FORMATS, SANDBOX_HEADER, SHELLS, Stamp, file_stamp
from rolecached.core.cache import Credentials, Entry
from rolecached.core.request import RoleRequest, parse_token_code
from rolecached.core.store import Store
from rolecached.errors import (
    InvalidRequest,
    MfaRequired,
    NotFound,
    RolecacheError,
    StsError,
    answer_for,
    api_refusal,
)
from rolecached.front import fastlane
from rolecached.host import desktop
from rolecached.host.peers import Peer
from rolecached.observe import audit
from rolecached.render.awstable import DEFAULT_COLUMNS
from rolecached.render.credentials import Shape, iso_expiration, renderer
from rolecached.sources import mfawait, profiles, sso, ssologin

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # beyond this, aiohttp answers 413 (and the fast lane takes no body)

STORE: web.AppKey[Store] = web.AppKey("store", Store)
SANDBOX: web.AppKey[bool] = web.AppKey("sandbox", bool)
STARTED: web.AppKey[float] = web.AppKey("started", float)
PROFILES: web.AppKey[profiles.ConfigFiles] = web.AppKey("profiles", profiles.ConfigFiles)
LANE: web.AppKey[fastlane.FastLane] = web.AppKey("lane", fastlane.FastLane)
LOGINS: web.AppKey[ssologin.Logins] = web.AppKey("logins", ssologin.Logins)
# More of `GET /v1/status`: each part adds its fields (the endpoints add theirs).
STATUS_PARTS: web.AppKey[list[Callable[[], dict[str, Any]]]] = web.AppKey("status_parts")
WAITS: web.AppKey[mfawait.Waits] = web.AppKey("waits", mfawait.Waits)
# Who is on the other end of a request's connection, as the front layer found it on arrival.
PEER_OF: web.AppKey[Callable[[Any], Peer | None]] = web.AppKey("peer_of")


def error_response(error: BaseException) -> web.Response:
    """`error` in the API's one error shape (some errors add fields, such as mfa_serial)."""
    answer = answer_for(error, "api")
    return web.json_response(answer.document, status=answer.status, headers=answer.headers)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer every exception in the API's error shape (errors.answer_for picks the status)."""
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


async def _json_body(request: web.Request) -> Any:
    try:
        raw = await request.read()
    except web.RequestPayloadError:
        # A body that does not match its Content-Encoding (or chunking): the caller's fault.
        raise InvalidRequest(
            "the request body could not be read: it does not match its Content-Encoding"
        ) from None
    except RuntimeError:
        # aiohttp's "Connection closed.": the client hung up before its body arrived whole.
        # Nobody reads this answer; it only keeps a client's mistake out of the error log.
        raise InvalidRequest("the connection closed before the request body arrived") from None
    if not raw:
        raise InvalidRequest("the request needs a JSON object body")
    # Any Content-Type is read as JSON, so a plain `curl -d '{...}'` works; only our user's
    # processes reach this socket, so there is no browser to defend against here.
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidRequest("the request body is not UTF-8") from None
    except ValueError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        # A few KB of "[" exhaust json's recursion limit: the caller's fault, not a 500.
        raise InvalidRequest("the request body is nested too deeply to be a request") from None


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


async def get_credentials(request: web.Request) -> web.Response:
    """POST /v1/credentials[?format=json|env|process|aws-json|aws-text&shell=...]: assume or
    serve from memory."""
    fmt = request.query.get("format", "json")
    shell = request.query.get("shell", "bash")
    if fmt not in FORMATS:
        raise InvalidRequest(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if shell not in SHELLS:
        raise InvalidRequest(f"unknown shell {shell!r}; use one of {', '.join(SHELLS)}")
    body = await _json_body(request)
    # The MFA code and the query shape this answer only: they are not part of the cache key.
    token_code = parse_token_code(body.pop("token_code", None)) if isinstance(body, dict) else None
    # Sent by a client that was asked for a code but has no terminal to ask on.
    cannot_prompt = body.pop("cannot_prompt", False) if isinstance(body, dict) else False
    if not isinstance(cannot_prompt, bool):
        raise InvalidRequest("cannot_prompt must be true or false")
    # Seconds to wait for a code given with `rolecache mfa` instead of failing at once: a
    # caller that waits types no code itself.
    mfa_wait = mfawait.parse_mfa_wait(
        body.pop("mfa_wait", None) if isinstance(body, dict) else None
    )
    cannot_prompt = cannot_prompt or mfa_wait > 0
    query = body.pop("query", None) if isinstance(body, dict) else None
    if query is not None and not isinstance(query, str):
        raise InvalidRequest("query must be a string (a JMESPath expression)")
    claimed = _claimed_stamps(body.pop("file_stamps", None)) if isinstance(body, dict) else None
    # Stamped before they are read: an edit in between makes the route stale, never wrong.
    files = _profile_files(body)
    role_request, min_ttl = await profiles.select_async(body, request.app[PROFILES])
    store = request.app[STORE]
    peer = request.app[PEER_OF](request.transport)
    who = audit.describe_peer(peer)
    try:
        credentials = await store.get(
            role_request, min_ttl, token_code, requester=who, can_prompt=not cannot_prompt
        )
    except MfaRequired:
        if not mfa_wait or token_code is not None:
            raise
        credentials = await request.app[WAITS].wait(
            store, role_request, min_ttl, who, peer, mfa_wait, lambda: _hung_up(request)
        )
    except StsError as exc:
        if exc.failure.login_file is None:
            raise
        # The SSO sign-in has ended: wait for a `rolecache login` of it in progress, then
        # ask again (served once the new token is written; else the same error, from memory).
        await request.app[LOGINS].settled(exc.failure.login_file, ssologin.SIGN_IN_WAIT)
        credentials = await store.get(
            role_request, min_ttl, token_code, requester=who, can_prompt=not cannot_prompt
        )
    audit.served(role_request.describe(), credentials, who, store.now())
    shape = Shape(fmt, shell, query, *_cli_options(request, store.settings.cli_version))
    render = renderer(role_request, shape, request.app[SANDBOX])
    content_type, text = render(credentials)
    # MFA codes are used once: a request with one is never answered again by the fast lane.
    # A profile's depends on its files, whose stamps the lane checks before answering.
    if token_code is None and not cannot_prompt:
        await _remember_route(request, role_request, min_ttl, render, files, claimed)
    return web.Response(body=text, content_type=content_type, charset="utf-8")


async def _remember_route(
    request: web.Request,
    role_request: RoleRequest,
    min_ttl: float,
    render: Callable[[Credentials], tuple[str, bytes]],
    files: tuple,
    claimed: list | None,
) -> None:
    """Let the fast lane answer this request's exact bytes again, from memory."""
    version = f"HTTP/{request.version.major}.{request.version.minor}"
    line = f"{request.method} {request.raw_path} {version}".encode()
    key = fastlane.request_key(line, await request.read())
    # A caller that stamped the files itself, as the daemon sees them now, sends other
    # bytes once they change: its repeats need no stat() here (bench B9).
    if claimed is not None and claimed == [stamp for _, stamp in files]:
        files = ()
    route = fastlane.Route(role_request, min_ttl, render, files=files)
    request.app[LANE].remember(key, route)


def _hung_up(request: web.Request) -> bool:
    """True once the caller closed its connection."""
    transport = request.transport
    return transport is None or transport.is_closing()


def tell_desktop(waiter: mfawait.Waiter) -> None:
    """A desktop notification that a request waits for a code, and how to give it."""
    asker = f"{waiter.comm} (pid {waiter.pid})" if waiter.pid is not None else "a program"
    desktop.notify(
        f"rolecache: MFA code needed for {waiter.mfa_serial}",
        f"{asker} waits for {waiter.role}. Run `rolecache mfa` in a terminal to type the "
        "code, or `rolecache mfa CODE`.",
    )


async def _stop_waiting(app: web.Application) -> None:
    app[WAITS].stop()


async def list_mfa(request: web.Request) -> web.Response:
    """GET /v1/mfa: the requests waiting for an MFA code (never a secret)."""
    now = request.app[STORE].now()
    waiting = request.app[WAITS].listing()
    return web.json_response({"waiting": [mfawait.summary(w, now) for w in waiting]})


async def answer_mfa(request: web.Request) -> web.Response:
    """POST /v1/mfa {"code", "mfa_serial"?}: give a code to the requests waiting for it."""
    body = await _json_body(request)
    if not isinstance(body, dict) or set(body) - {"code", "mfa_serial"}:
        raise InvalidRequest('the body is {"code": "123456", "mfa_serial": ARN (optional)}')
    code = parse_token_code(body.get("code"))
    serial = body.get("mfa_serial")
    if code is None or (serial is not None and not isinstance(serial, str)):
        raise InvalidRequest("code (6 digits) is required; mfa_serial, if given, is a string")
    answer = await request.app[WAITS].answer(request.app[STORE], serial, code)
    return web.json_response(answer)


def _claimed_stamps(value: object) -> list[Stamp | None] | None:
    """`file_stamps` as the client sent it: one [mtime_ns, size, inode] or null per file."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        stamp is None
        or (
            isinstance(stamp, list)
            and len(stamp) == 3
            and all(type(n) is int and n >= 0 for n in stamp)
        )
        for stamp in value
    ):
        raise InvalidRequest(
            "file_stamps must be a list holding, per config file, [mtime_ns, size, inode] or null"
        )
    return [tuple(stamp) if stamp is not None else None for stamp in value]  # type: ignore[misc]


def _profile_files(body: Any) -> tuple[tuple[str, Stamp | None], ...]:
    """The config files a profile request resolves from, with their stamps (none for a
    request without a profile)."""
    if not isinstance(body, dict) or not {"profile", "source_profile"} & set(body):
        return ()
    paths = [path for path in profiles.files_of(body) if isinstance(path, str)]
    return tuple((path, file_stamp(path)) for path in paths)


def _cli_options(request: web.Request, default_version: int) -> tuple[int, int]:
    """The drop-in's `cli` (1 or 2; default: the daemon's cli_version setting) and
    `columns` (the caller's terminal width) query parameters."""
    version = request.query.get("cli", str(default_version))
    columns = request.query.get("columns", str(DEFAULT_COLUMNS))
    if version not in ("1", "2"):
        raise InvalidRequest(f"cli must be 1 or 2 (the AWS CLI generation), not {version!r}")
    if not (columns.isascii() and columns.isdigit() and 0 < len(columns) <= 4):
        raise InvalidRequest(f"columns must be a terminal width in characters, not {columns!r}")
    return int(version), int(columns)


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
    body = await _json_body(request)
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


async def _sso_session(body: Any, files: profiles.ConfigFiles) -> sso.SsoSession:
    """The sign-in a login request names: {"profile": P} or {"sso_session": NAME}, with the
    config files as in a credentials request."""
    if not isinstance(body, dict) or len({"profile", "sso_session"} & set(body)) != 1:
        raise InvalidRequest("a login names a profile or an sso_session (one of them)")
    name = body.get("profile", body.get("sso_session"))
    if not isinstance(name, str):
        raise InvalidRequest("profile and sso_session must be strings")
    config_file, credentials_file = profiles.files_of(body)
    if not isinstance(config_file, str) or not isinstance(credentials_file, str):
        raise InvalidRequest("config_file and credentials_file must be strings")
    await files.refresh(config_file, credentials_file)
    config = files.load(config_file, credentials_file)
    if "sso_session" in body:
        return sso.session_named(name, config.sso_sessions)
    if name not in config.profiles:
        raise profiles.ProfileError(f"profile {name!r} is not in {config_file}")
    session = sso.session_of_profile(name, config.profiles, config.sso_sessions)
    if session is None:
        raise sso.SsoConfigError(
            f"profile {name!r} does not sign in with SSO (no sso_session or sso_start_url)"
        )
    return session


async def start_login(request: web.Request) -> web.Response:
    """POST /v1/sso/login: start signing in to a profile's sso-session; the URL and code the
    user confirms (nothing secret: the device code stays here)."""
    if request.app[SANDBOX]:
        raise InvalidRequest("the sandbox daemon does not sign in to SSO; use the real one")
    session = await _sso_session(await _json_body(request), request.app[PROFILES])
    login_id, pending = await request.app[LOGINS].start(session)
    return web.json_response(
        {
            "login_id": login_id,
            "sso_session": session.describe(),
            "verification_uri": pending.verification_uri,
            "verification_uri_complete": pending.verification_uri_complete,
            "user_code": pending.user_code,
        }
    )


async def wait_login(request: web.Request) -> web.Response:
    """POST /v1/sso/login/{id}: wait a while for the user to confirm; {"done": false} while
    still pending, else the new token's expiry."""
    expires_at = await request.app[LOGINS].wait(request.match_info["id"])
    if expires_at is None:
        return web.json_response({"done": False})
    return web.json_response({"done": True, "expires_at": expires_at})


async def _stop_logins(app: web.Application) -> None:
    app[LOGINS].close()


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
    app[PROFILES] = profiles.ConfigFiles()
    app[WAITS] = mfawait.Waits(store.now, tell_desktop)
    app.on_shutdown.append(_stop_waiting)
    app[LANE] = fastlane.FastLane(store, f"{SANDBOX_HEADER}: 1\r\n".encode() if sandbox else b"")
    store.on_drop(app[LANE].drop)  # a forgotten session leaves no rendered copy behind
    app[LOGINS] = ssologin.Logins()
    app.on_shutdown.append(_stop_logins)
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
