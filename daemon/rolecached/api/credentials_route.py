"""`POST /v1/credentials`: the request read and checked, the credentials got from the store
(waiting for an MFA code or an SSO login when asked), rendered, and remembered by the fast lane."""

from collections.abc import Callable
from typing import Any

from aiohttp import web

from rolecache.protocol import FORMATS, SHELLS, Stamp, file_stamp
from rolecached.api.appkeys import LANE, LOGINS, PEER_OF, PROFILES, SANDBOX, STORE, WAITS
from rolecached.api.requestbody import json_body
from rolecached.core.cache import Credentials
from rolecached.core.request import RoleRequest, parse_token_code
from rolecached.errors import InvalidRequest, MfaRequired, StsError
from rolecached.front import fastlane
from rolecached.observe import audit
from rolecached.render.awstable import DEFAULT_COLUMNS
from rolecached.render.credentials import Shape, renderer
from rolecached.sources import awsfiles, mfawait, profiles, ssologin


async def get_credentials(request: web.Request) -> web.Response:
    """POST /v1/credentials[?format=json|env|process|aws-json|aws-text&shell=...]: assume or
    serve from memory."""
    fmt = request.query.get("format", "json")
    shell = request.query.get("shell", "bash")
    if fmt not in FORMATS:
        raise InvalidRequest(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if shell not in SHELLS:
        raise InvalidRequest(f"unknown shell {shell!r}; use one of {', '.join(SHELLS)}")
    body = await json_body(request)
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
    paths = [path for path in awsfiles.files_of(body) if isinstance(path, str)]
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
