"""IAM Identity Center's OIDC device authorization flow: the blocking calls of one sign-in,
through botocore's sso-oidc client, leaving the token where botocore and the AWS CLI read it.
The client secret, the device code and the tokens never leave the daemon and the cache."""

import calendar
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import botocore
import botocore.config
import botocore.exceptions
import botocore.session
from botocore.utils import JSONFileCache

from rolecached.errors import LoginExpired, LoginFailed
from rolecached.sources.sso import SsoSession, cache_dir

log = logging.getLogger(__name__)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# RFC 8628 §3.5: a slow_down answer adds 5 s to the polling interval; 5 s is its default.
SLOW_DOWN_STEP = 5.0
DEFAULT_INTERVAL = 5.0
# Never poll faster than this, whatever the service says (an interval of 0 would spin).
MIN_INTERVAL = 1.0
# A cached client registration this close to its end is registered anew, as the CLI does.
REGISTRATION_MARGIN = 15 * 60
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_CLIENT_CONFIG = botocore.config.Config(
    signature_version=botocore.UNSIGNED,
    retries={"total_max_attempts": 1, "mode": "standard"},
    connect_timeout=5,
    read_timeout=10,
)


@dataclass(frozen=True)
class Pending:
    """A device authorization waiting for the user to confirm `user_code`."""

    session: SsoSession
    registration: dict[str, Any]
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_at: float
    interval: float


def utc_text(epoch: float) -> str:
    """A time as the token cache writes it: UTC, `...Z`."""
    return time.strftime(_TIME_FORMAT, time.gmtime(epoch))


def _epoch(text: str) -> float:
    return float(calendar.timegm(time.strptime(text, _TIME_FORMAT)))


@contextlib.contextmanager
def _oidc_errors(session: SsoSession) -> Iterator[None]:
    """Turn what the OIDC call raised into LoginFailed naming the session."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code") or "UnknownError"
        message = error.get("Message") or exc.response.get("error_description") or ""
        raise LoginFailed(
            f"signing in to {session.describe()}: the SSO OIDC service refused {code} {message}"
        ) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise LoginFailed(f"signing in to {session.describe()}: {exc}") from None
    except OSError as exc:
        raise LoginFailed(
            f"signing in to {session.describe()}: cannot write {cache_dir()}: {exc.strerror}"
        ) from None
    except (KeyError, TypeError, ValueError):
        # An answer without a field it must have: not the OIDC service, or a broken one.
        raise LoginFailed(
            f"signing in to {session.describe()}: the SSO OIDC service's answer lacks a "
            "field it must have"
        ) from None


class DeviceFlow:
    """The blocking OIDC calls of one sign-in; `now` and the cache folder are injectable."""

    def __init__(
        self, now: Callable[[], float] = time.time, cache: JSONFileCache | None = None
    ) -> None:
        self._now = now
        self._cache = cache

    def _client(self, session: SsoSession) -> Any:
        return botocore.session.get_session().create_client(
            "sso-oidc", region_name=session.region, config=_CLIENT_CONFIG
        )

    def _files(self) -> JSONFileCache:
        return self._cache if self._cache is not None else JSONFileCache(cache_dir())

    def _registration(self, session: SsoSession, client: Any) -> dict[str, Any]:
        """The cached client registration, or a new one (cached as the AWS CLI caches it)."""
        files = self._files()
        key = _key(session.registration_file())
        with contextlib.suppress(KeyError, TypeError, ValueError):  # none, or unreadable
            cached = files[key]
            if _epoch(cached["expiresAt"]) - self._now() > REGISTRATION_MARGIN:
                return dict(cached)
        params: dict[str, Any] = {
            "clientName": session.client_name(self._now()),
            "clientType": "public",
        }
        if session.scopes:
            params["scopes"] = list(session.scopes)
        response = client.register_client(**params)
        registration: dict[str, Any] = {
            "clientId": response["clientId"],
            "clientSecret": response["clientSecret"],
            "expiresAt": utc_text(response["clientSecretExpiresAt"]),
        }
        if session.scopes:
            registration["scopes"] = list(session.scopes)
        files[key] = registration
        return registration

    def start(self, session: SsoSession) -> Pending:
        """Register (unless a registration is cached) and start a device authorization."""
        with _oidc_errors(session):
            client = self._client(session)
            registration = self._registration(session, client)
            response = client.start_device_authorization(
                clientId=registration["clientId"],
                clientSecret=registration["clientSecret"],
                startUrl=session.start_url,
            )
            return Pending(
                session=session,
                registration=registration,
                device_code=response["deviceCode"],
                user_code=response["userCode"],
                verification_uri=response["verificationUri"],
                verification_uri_complete=response.get("verificationUriComplete")
                or response["verificationUri"],
                expires_at=self._now() + response["expiresIn"],
                interval=max(MIN_INTERVAL, float(response.get("interval") or DEFAULT_INTERVAL)),
            )

    def attempt(self, pending: Pending) -> dict[str, Any] | str:
        """One CreateToken: the token (written to the cache), or "pending" / "slow_down"."""
        session = pending.session
        with _oidc_errors(session):
            client = self._client(session)
            try:
                response = client.create_token(
                    grantType=DEVICE_GRANT,
                    clientId=pending.registration["clientId"],
                    clientSecret=pending.registration["clientSecret"],
                    deviceCode=pending.device_code,
                )
            except client.exceptions.AuthorizationPendingException:
                return "pending"
            except client.exceptions.SlowDownException:
                return "slow_down"
            except client.exceptions.ExpiredTokenException:
                raise LoginExpired(expired_message(session)) from None
            token: dict[str, Any] = {
                "startUrl": session.start_url,
                "region": session.region,
                "accessToken": response["accessToken"],
                "expiresAt": utc_text(self._now() + response["expiresIn"]),
                "clientId": pending.registration["clientId"],
                "clientSecret": pending.registration["clientSecret"],
                "registrationExpiresAt": pending.registration["expiresAt"],
            }
            if "refreshToken" in response:
                token["refreshToken"] = response["refreshToken"]
            self._files()[_key(session.token_file())] = token
        log.info("signed in to %s: token valid until %s", session.describe(), token["expiresAt"])
        return token


def _key(path: str) -> str:
    """A cache file's JSONFileCache key (its name without .json)."""
    return path.rsplit("/", 1)[-1].removesuffix(".json")


def expired_message(session: SsoSession) -> str:
    """The refusal of a code nobody confirmed in time."""
    return f"the code for {session.describe()} expired before it was confirmed; run the login again"
