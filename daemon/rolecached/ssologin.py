"""`rolecache login`: IAM Identity Center's OIDC device authorization flow, run by the
daemon through botocore's sso-oidc client (so AWS_ENDPOINT_URL_SSO_OIDC and the user's
botocore settings apply), leaving the token where botocore and the AWS CLI read it.

The client only shows the user the verification URL and code: the client secret, the device
code and the tokens never leave the daemon and the token cache file.
"""

import asyncio
import calendar
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import botocore
import botocore.config
import botocore.exceptions
import botocore.session
from botocore.utils import JSONFileCache

from rolecached.errors import NotFound, RolecacheError
from rolecached.sso import SsoSession, cache_dir

log = logging.getLogger(__name__)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# RFC 8628 §3.5: a slow_down answer adds 5 s to the polling interval; 5 s is its default.
SLOW_DOWN_STEP = 5.0
DEFAULT_INTERVAL = 5.0
# Never poll faster than this, whatever the service says (an interval of 0 would spin).
MIN_INTERVAL = 1.0
# A cached client registration this close to its end is registered anew, as the CLI does.
REGISTRATION_MARGIN = 15 * 60
# How long one wait request is held before it answers "still pending" (under the client's
# 30 s response timeout), and how long a finished login's outcome is kept for its client.
WAIT_LIMIT = 20.0
KEEP_FINISHED = 600.0
# How long a credentials request whose SSO sign-in has ended waits for a `rolecache login` of
# that session in progress (as callers wait for another's MFA prompt), under the client's 30 s.
SIGN_IN_WAIT = 25.0
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_CLIENT_CONFIG = botocore.config.Config(
    signature_version=botocore.UNSIGNED,
    retries={"total_max_attempts": 1, "mode": "standard"},
    connect_timeout=5,
    read_timeout=10,
)


class LoginFailed(RolecacheError):
    """The OIDC service refused or could not be reached; its code and message."""

    status = 502
    code = "SsoLoginFailed"


class LoginExpired(RolecacheError):
    """Nobody confirmed the code before it expired: a new login is needed."""

    status = 410
    code = "SsoLoginExpired"


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
                raise LoginExpired(_expired(session)) from None
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


def _expired(session: SsoSession) -> str:
    return f"the code for {session.describe()} expired before it was confirmed; run the login again"


async def poll(
    flow: DeviceFlow,
    pending: Pending,
    sleep: Callable[[float], Awaitable[None]],
    now: Callable[[], float] = time.time,
) -> str:
    """Ask for the token every `interval` (5 s longer after each slow_down) until the user
    confirms; the token's expiry. LoginExpired once the code has expired."""
    interval = pending.interval
    while True:
        await sleep(interval)
        if now() >= pending.expires_at:
            raise LoginExpired(_expired(pending.session))
        result = await asyncio.to_thread(flow.attempt, pending)
        if result == "slow_down":
            interval += SLOW_DOWN_STEP
        elif isinstance(result, dict):
            return str(result["expiresAt"])


@dataclass
class _Login:
    pending: Pending
    task: "asyncio.Task[str]"
    finished_at: float | None = None


class Logins:
    """The sign-ins in progress, each polled by a task of its own, by id for their client."""

    def __init__(
        self,
        flow: DeviceFlow | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wait_limit: float = WAIT_LIMIT,
    ) -> None:
        self._flow = flow or DeviceFlow()
        self._sleep = sleep
        self._wait_limit = wait_limit
        self._logins: dict[str, _Login] = {}

    async def start(self, session: SsoSession) -> tuple[str, Pending]:
        """Start a sign-in; its id and what the user must be shown."""
        self._sweep()
        pending = await asyncio.to_thread(self._flow.start, session)
        login_id = secrets.token_urlsafe(12)
        task = asyncio.get_running_loop().create_task(poll(self._flow, pending, self._sleep))
        login = self._logins[login_id] = _Login(pending, task)

        def done(finished: "asyncio.Task[str]") -> None:
            login.finished_at = time.monotonic()
            if not finished.cancelled():
                finished.exception()  # kept for its client, not logged as never retrieved

        task.add_done_callback(done)
        return login_id, pending

    async def wait(self, login_id: str) -> str | None:
        """The token's expiry once signed in, None while still pending after the wait limit;
        raises what the sign-in failed with."""
        login = self._logins.get(login_id)
        if login is None:
            raise NotFound(f"no sign-in in progress has id {login_id!r}; start one again")
        done, _ = await asyncio.wait({login.task}, timeout=self._wait_limit)
        if not done:
            return None
        del self._logins[login_id]
        return login.task.result()

    async def settled(self, token_file: str, limit: float) -> None:
        """Wait (at most `limit` seconds) for the sign-ins in progress that write
        `token_file`; at once when there is none."""
        tasks = {
            login.task
            for login in self._logins.values()
            if not login.task.done() and login.pending.session.token_file() == token_file
        }
        if tasks:
            await asyncio.wait(tasks, timeout=limit)

    def _sweep(self) -> None:
        """Forget sign-ins that ended long ago and whose client never came back."""
        now = time.monotonic()
        for login_id, login in list(self._logins.items()):
            if login.finished_at is not None and now - login.finished_at > KEEP_FINISHED:
                del self._logins[login_id]

    def close(self) -> None:
        """Stop every sign-in in progress."""
        for login in self._logins.values():
            login.task.cancel()
