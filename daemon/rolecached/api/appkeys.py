"""What the socket API's handlers share on the aiohttp app, by typed key: the store, the
config files, the fast lane, the MFA waits and the SSO logins."""

from collections.abc import Callable
from typing import Any

from aiohttp import web

from rolecached.core.store import Store
from rolecached.front import fastlane
from rolecached.host.peers import Peer
from rolecached.sources import awsfiles, mfawait, ssologin

STORE: web.AppKey[Store] = web.AppKey("store", Store)
SANDBOX: web.AppKey[bool] = web.AppKey("sandbox", bool)
STARTED: web.AppKey[float] = web.AppKey("started", float)
PROFILES: web.AppKey[awsfiles.ConfigFiles] = web.AppKey("profiles", awsfiles.ConfigFiles)
LANE: web.AppKey[fastlane.FastLane] = web.AppKey("lane", fastlane.FastLane)
LOGINS: web.AppKey[ssologin.Logins] = web.AppKey("logins", ssologin.Logins)
# More of `GET /v1/status`: each part adds its fields (the endpoints add theirs).
STATUS_PARTS: web.AppKey[list[Callable[[], dict[str, Any]]]] = web.AppKey("status_parts")
WAITS: web.AppKey[mfawait.Waits] = web.AppKey("waits", mfawait.Waits)
# Who is on the other end of a request's connection, as the front layer found it on arrival.
PEER_OF: web.AppKey[Callable[[Any], Peer | None]] = web.AppKey("peer_of")
