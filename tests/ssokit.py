"""An AWS IAM Identity Center (SSO) stand-in on loopback for the profile tests: the portal
(GetRoleCredentials) and the OIDC service (RegisterClient, StartDeviceAuthorization,
CreateToken with the device-code and refresh-token grants), strict about what each call must
carry; and `aws sso login`'s effect: a token in ~/.aws/sso/cache written with botocore's own
token cache. moto has neither, so this answers as the services document it."""

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from botocore.utils import JSONFileCache, SSOTokenLoader

START_URL = "https://example.awsapps.com/start"
# What the portal hands out: shaped like real credentials (STS's character sets).
ROLE_KEY_ID = "ASIASSOPORTALROLE001"
ROLE_TOKEN = "c3NvLXJvbGUtc2Vzc2lvbi10b2tlbg=="
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_GRANT = "refresh_token"
# The OIDC service's errors: type (x-amzn-ErrorType) -> the `error` member it carries.
OIDC_ERRORS = {
    "AuthorizationPendingException": "authorization_pending",
    "SlowDownException": "slow_down",
    "ExpiredTokenException": "expired_token",
    "InvalidGrantException": "invalid_grant",
    "InvalidClientException": "invalid_client",
    "InvalidRequestException": "invalid_request",
    "UnsupportedGrantTypeException": "unsupported_grant_type",
}


class OidcRefusal(Exception):
    """A 400 from the OIDC service, of type `kind`."""

    def __init__(self, kind: str, description: str) -> None:
        super().__init__(description)
        self.kind = kind


@dataclass
class DeviceAuthorization:
    """One StartDeviceAuthorization: what the user is shown, and what CreateToken answers."""

    client_id: str
    user_code: str
    approved: bool = False
    expired: bool = False
    # Errors CreateToken answers first, one per poll (e.g. SlowDownException), then pending
    # until approved.
    script: list[str] = field(default_factory=list)
    # Approve on its own after this many pending answers (None: only when the test says).
    approve_after: int | None = None
    polls: int = 0


class SsoPortal:
    """GET /federation/credentials: role credentials for a valid bearer token, valid an hour;
    401 UnauthorizedException for any other token (an expired login). The OIDC calls (POST
    /client/register, /device_authorization, /token) issue access tokens the portal takes."""

    def __init__(self, interval: int = 1) -> None:
        self.valid_tokens: set[str] = set()
        self.calls = 0
        self.interval = interval
        # Each new device authorization approves itself after this many pending answers
        # (the user confirming the code in the browser); None: only when a test says.
        self.approve_after: int | None = None
        self.clients: dict[str, str] = {}  # clientId -> clientSecret
        self.devices: dict[str, DeviceAuthorization] = {}  # deviceCode -> authorization
        self.refresh_tokens: dict[str, str] = {}  # refreshToken -> clientId
        self.oidc_calls: list[str] = []  # operation, or "CreateToken:<grant>"
        self.refresh_tried = threading.Event()  # set at each refresh_token grant asked for
        self.lock = threading.Lock()
        portal = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                portal.calls += 1
                if self.headers.get("x-amz-sso_bearer_token") in portal.valid_tokens:
                    self.answer(200, portal.role_credentials())
                else:
                    self.answer(
                        401,
                        {"message": "Session token not found or invalid"},
                        "UnauthorizedException",
                    )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    if self.headers.get_content_type() != "application/json":
                        raise OidcRefusal("InvalidRequestException", "JSON body expected")
                    try:
                        body = json.loads(self.rfile.read(length) or b"{}")
                    except ValueError:
                        raise OidcRefusal("InvalidRequestException", "body is not JSON") from None
                    with portal.lock:
                        answer = portal.oidc(self.path, body)
                    self.answer(200, answer)
                except OidcRefusal as exc:
                    body = {"error": OIDC_ERRORS[exc.kind], "error_description": str(exc)}
                    self.answer(400, body, exc.kind)

            def answer(self, status: int, body: dict[str, Any], kind: str = "") -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                if kind:
                    self.send_header("x-amzn-ErrorType", kind)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    @staticmethod
    def role_credentials() -> dict[str, Any]:
        return {
            "roleCredentials": {
                "accessKeyId": ROLE_KEY_ID,
                "secretAccessKey": "c3NvLXJvbGUtc2VjcmV0",
                "sessionToken": ROLE_TOKEN,
                "expiration": int((time.time() + 3600) * 1000),
            }
        }

    def oidc(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One OIDC call, as the service answers it (raises OidcRefusal for a 400)."""
        if path == "/client/register":
            self.oidc_calls.append("RegisterClient")
            need(body, "clientName", "clientType")
            if body["clientType"] != "public":
                raise OidcRefusal("InvalidRequestException", "clientType must be public")
            client_id = "client-" + secrets.token_hex(6)
            self.clients[client_id] = secrets.token_hex(16)
            now = int(time.time())
            return {
                "clientId": client_id,
                "clientSecret": self.clients[client_id],
                "clientIdIssuedAt": now,
                "clientSecretExpiresAt": now + 90 * 86400,
            }
        if path == "/device_authorization":
            self.oidc_calls.append("StartDeviceAuthorization")
            need(body, "clientId", "clientSecret", "startUrl")
            self.check_client(body)
            if body["startUrl"] != START_URL:
                raise OidcRefusal("InvalidRequestException", "unknown startUrl")
            device_code = secrets.token_hex(16)
            user_code = f"{secrets.token_hex(2).upper()}-{secrets.token_hex(2).upper()}"
            self.devices[device_code] = DeviceAuthorization(
                body["clientId"], user_code, approve_after=self.approve_after
            )
            return {
                "deviceCode": device_code,
                "userCode": user_code,
                "verificationUri": "https://device.sso.us-east-1.amazonaws.com/",
                "verificationUriComplete": (
                    f"https://device.sso.us-east-1.amazonaws.com/?user_code={user_code}"
                ),
                "expiresIn": 600,
                "interval": self.interval,
            }
        if path == "/token":
            need(body, "clientId", "clientSecret", "grantType")
            self.oidc_calls.append(f"CreateToken:{body['grantType']}")
            self.check_client(body)
            if body["grantType"] == DEVICE_GRANT:
                return self.device_token(body)
            if body["grantType"] == REFRESH_GRANT:
                need(body, "refreshToken")
                self.refresh_tried.set()
                if self.refresh_tokens.pop(body["refreshToken"], None) != body["clientId"]:
                    raise OidcRefusal("InvalidGrantException", "refresh token invalid")
                return self.issue(body["clientId"])
            raise OidcRefusal("UnsupportedGrantTypeException", body["grantType"])
        raise OidcRefusal("InvalidRequestException", f"no such path {path}")

    def check_client(self, body: dict[str, Any]) -> None:
        if self.clients.get(body["clientId"]) != body["clientSecret"]:
            raise OidcRefusal("InvalidClientException", "unknown client or wrong secret")

    def device_token(self, body: dict[str, Any]) -> dict[str, Any]:
        need(body, "deviceCode")
        device = self.devices.get(body["deviceCode"])
        if device is None or device.client_id != body["clientId"]:
            raise OidcRefusal("InvalidGrantException", "unknown device code")
        device.polls += 1
        if device.expired:
            raise OidcRefusal("ExpiredTokenException", "device code expired")
        if device.script:
            raise OidcRefusal(device.script.pop(0), "scripted answer")
        if device.approve_after is not None and device.polls > device.approve_after:
            device.approved = True
        if not device.approved:
            raise OidcRefusal("AuthorizationPendingException", "waiting for the user")
        del self.devices[body["deviceCode"]]  # a device code is exchanged once
        return self.issue(device.client_id)

    def issue(self, client_id: str) -> dict[str, Any]:
        """A new access token (valid for the portal) and refresh token."""
        access = "sso-access-" + secrets.token_hex(12)
        refresh = "sso-refresh-" + secrets.token_hex(12)
        self.valid_tokens.add(access)
        self.refresh_tokens[refresh] = client_id
        return {
            "accessToken": access,
            "tokenType": "Bearer",
            "expiresIn": 8 * 3600,
            "refreshToken": refresh,
        }

    def device(self, user_code: str) -> DeviceAuthorization:
        """The pending authorization the user was shown `user_code` for."""
        with self.lock:
            return next(d for d in self.devices.values() if d.user_code == user_code)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def need(body: dict[str, Any], *names: str) -> None:
    """Refuse a call without each of `names` as a non-empty string, as the service does."""
    for name in names:
        if not isinstance(body.get(name), str) or not body[name]:
            raise OidcRefusal("InvalidRequestException", f"{name} is required")


def sso_env(env: dict[str, str], portal: SsoPortal) -> dict[str, str]:
    """`env` with botocore's SSO and SSO OIDC calls sent to `portal`, and every other HTTP(S)
    request sent to a proxy that refuses it: a call meant for AWS fails loudly, never leaves."""
    env = dict(env)
    env.update(
        AWS_ENDPOINT_URL_SSO=portal.url,
        AWS_ENDPOINT_URL_SSO_OIDC=portal.url,
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        NO_PROXY="127.0.0.1",
    )
    return env


def sso_profile(name: str, session: str = "corp") -> str:
    """A profile that signs in with SSO only (sso_session), and its [sso-session]."""
    return (
        f"[profile {name}]\nsso_session = {session}\nsso_account_id = 123456789012\n"
        f"sso_role_name = dev\nregion = us-east-1\n\n"
        f"[sso-session {session}]\nsso_start_url = {START_URL}\nsso_region = us-east-1\n"
    )


def token_cache(home: Path) -> JSONFileCache:
    """~/.aws/sso/cache as botocore reads and writes it."""
    return JSONFileCache(str(home / ".aws" / "sso" / "cache"))


def sso_login(home: Path, token: str, session: str = "corp", **extra: str) -> None:
    """What `aws sso login` leaves behind: the session's token in ~/.aws/sso/cache (with
    `extra` fields such as an expiresAt in the past or a refreshToken)."""
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 8 * 3600))
    token_doc = {"startUrl": START_URL, "region": "us-east-1", "accessToken": token}
    token_doc.update({"expiresAt": expires, **extra})
    SSOTokenLoader(token_cache(home)).save_token(START_URL, token_doc, session_name=session)


def expired_login_with_refresh(portal: SsoPortal, home: Path, session: str = "corp") -> str:
    """A cached token that expired an hour ago but holds a refresh token the service takes
    (what a login from the day before leaves); returns that refresh token."""
    registration = portal.oidc("/client/register", {"clientName": "t", "clientType": "public"})
    client_id = registration["clientId"]
    refresh = portal.issue(client_id)["refreshToken"]
    past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 30 * 86400))
    sso_login(
        home,
        "sso-access-expired",
        session,
        expiresAt=past,
        refreshToken=refresh,
        clientId=client_id,
        clientSecret=registration["clientSecret"],
        registrationExpiresAt=later,
    )
    return refresh
