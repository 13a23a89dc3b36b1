"""An AWS IAM Identity Center (SSO) portal on loopback for the profile tests, and `aws sso
login`'s effect: a token in ~/.aws/sso/cache written with botocore's own token cache.
moto has no SSO portal, so this answers GetRoleCredentials as the portal documents it."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from botocore.utils import JSONFileCache, SSOTokenLoader

START_URL = "https://example.awsapps.com/start"
# What the portal hands out: shaped like real credentials (STS's character sets).
ROLE_KEY_ID = "ASIASSOPORTALROLE001"
ROLE_TOKEN = "c3NvLXJvbGUtc2Vzc2lvbi10b2tlbg=="


class SsoPortal:
    """GET /federation/credentials: role credentials for a valid bearer token, valid an hour;
    401 UnauthorizedException for any other token (an expired login)."""

    def __init__(self) -> None:
        self.valid_tokens: set[str] = set()
        self.calls = 0
        portal = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                portal.calls += 1
                if self.headers.get("x-amz-sso_bearer_token") in portal.valid_tokens:
                    status, body = (
                        200,
                        {
                            "roleCredentials": {
                                "accessKeyId": ROLE_KEY_ID,
                                "secretAccessKey": "c3NvLXJvbGUtc2VjcmV0",
                                "sessionToken": ROLE_TOKEN,
                                "expiration": int((time.time() + 3600) * 1000),
                            }
                        },
                    )
                else:
                    status, body = 401, {"message": "Session token not found or invalid"}
                data = json.dumps(body).encode()
                self.send_response(status)
                if status == 401:
                    self.send_header("x-amzn-ErrorType", "UnauthorizedException")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sso_profile(name: str, session: str = "corp") -> str:
    """A profile that signs in with SSO only (sso_session), and its [sso-session]."""
    return (
        f"[profile {name}]\nsso_session = {session}\nsso_account_id = 123456789012\n"
        f"sso_role_name = dev\nregion = us-east-1\n\n"
        f"[sso-session {session}]\nsso_start_url = {START_URL}\nsso_region = us-east-1\n"
    )


def sso_login(home: Path, token: str, session: str = "corp") -> None:
    """What `aws sso login` leaves behind: the session's token in ~/.aws/sso/cache."""
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 8 * 3600))
    cache = JSONFileCache(str(home / ".aws" / "sso" / "cache"))
    SSOTokenLoader(cache).save_token(
        START_URL,
        {"startUrl": START_URL, "region": "us-east-1", "accessToken": token, "expiresAt": expires},
        session_name=session,
    )
