"""The socket API's routes by which the user signs in: MFA codes given to the requests that wait
for them, and SSO device logins."""

from typing import Any

from aiohttp import web

from rolecached.api.appkeys import LOGINS, PROFILES, SANDBOX, STORE, WAITS
from rolecached.api.requestbody import json_body
from rolecached.core.request import parse_token_code
from rolecached.errors import InvalidRequest
from rolecached.host import desktop
from rolecached.sources import awsfiles, mfawait, sso


def tell_desktop(waiter: mfawait.Waiter) -> None:
    """A desktop notification that a request waits for a code, and how to give it."""
    asker = f"{waiter.comm} (pid {waiter.pid})" if waiter.pid is not None else "a program"
    desktop.notify(
        f"rolecache: MFA code needed for {waiter.mfa_serial}",
        f"{asker} waits for {waiter.role}. Run `rolecache mfa` in a terminal to type the "
        "code, or `rolecache mfa CODE`.",
    )


async def stop_waiting(app: web.Application) -> None:
    """At shutdown: let go of every request waiting for a code."""
    app[WAITS].stop()


async def list_mfa(request: web.Request) -> web.Response:
    """GET /v1/mfa: the requests waiting for an MFA code (never a secret)."""
    now = request.app[STORE].now()
    waiting = request.app[WAITS].listing()
    return web.json_response({"waiting": [mfawait.summary(w, now) for w in waiting]})


async def answer_mfa(request: web.Request) -> web.Response:
    """POST /v1/mfa {"code", "mfa_serial"?}: give a code to the requests waiting for it."""
    body = await json_body(request)
    if not isinstance(body, dict) or set(body) - {"code", "mfa_serial"}:
        raise InvalidRequest('the body is {"code": "123456", "mfa_serial": ARN (optional)}')
    code = parse_token_code(body.get("code"))
    serial = body.get("mfa_serial")
    if code is None or (serial is not None and not isinstance(serial, str)):
        raise InvalidRequest("code (6 digits) is required; mfa_serial, if given, is a string")
    answer = await request.app[WAITS].answer(request.app[STORE], serial, code)
    return web.json_response(answer)


async def _sso_session(body: Any, files: awsfiles.ConfigFiles) -> sso.SsoSession:
    """The sign-in a login request names: {"profile": P} or {"sso_session": NAME}, with the
    config files as in a credentials request."""
    if not isinstance(body, dict) or len({"profile", "sso_session"} & set(body)) != 1:
        raise InvalidRequest("a login names a profile or an sso_session (one of them)")
    name = body.get("profile", body.get("sso_session"))
    if not isinstance(name, str):
        raise InvalidRequest("profile and sso_session must be strings")
    config_file, credentials_file = awsfiles.files_of(body)
    if not isinstance(config_file, str) or not isinstance(credentials_file, str):
        raise InvalidRequest("config_file and credentials_file must be strings")
    await files.refresh(config_file, credentials_file)
    config = files.load(config_file, credentials_file)
    if "sso_session" in body:
        return sso.session_named(name, config.sso_sessions)
    if name not in config.profiles:
        raise awsfiles.ProfileError(f"profile {name!r} is not in {config_file}")
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
    session = await _sso_session(await json_body(request), request.app[PROFILES])
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


async def stop_logins(app: web.Application) -> None:
    """At shutdown: end the sign-ins in progress."""
    app[LOGINS].close()
