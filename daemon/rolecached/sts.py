"""AssumeRole and GetSessionToken through botocore: the only module that calls AWS.

Calls are blocking; `stslane.py` runs them in a thread pool off the event loop. botocore's own
retries are off because the store owns the retry policy (back-off while serving valid
credentials), and every failure comes back as an `StsFailure` with STS's code and message.
"""

import logging
import threading
from typing import Any

import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.session

from rolecache.protocol import file_stamp
from rolecached.core.cache import Credentials
from rolecached.core.request import Key, MfaSession, RoleRequest, SourceSession
from rolecached.core.requestfields import CHAINED_MAX_DURATION
from rolecached.errors import TemporarySource
from rolecached.sources.credsources import StaticSource, source_of
from rolecached.stsanswers import assume_role_params, credentials_from, temporary_source
from rolecached.stserrors import translated

log = logging.getLogger(__name__)

_CLIENT_CONFIG = botocore.config.Config(
    retries={"total_max_attempts": 1, "mode": "standard"},
    connect_timeout=5,
    read_timeout=10,
)


# What makes a source's credentials temporary, by the botocore provider that found them.
_TEMPORARY_KINDS = {
    "sso": "SSO",
    "login": "`aws login`",
    "custom-process": "a credential_process that returns a session token",
    "env": "AWS_SESSION_TOKEN in the environment",
    "explicit": "AWS_SESSION_TOKEN in the daemon's environment",
    "shared-credentials-file": "aws_session_token in the credentials file",
    "config-file": "aws_session_token in the config file",
    "assume-role": "a role it assumes",
    "assume-role-with-web-identity": "a web identity role",
    "container-role": "a container role",
    "iam-role": "an instance role",
}


class StsCaller:
    """Makes AssumeRole and GetSessionToken calls. One botocore session per source (profile,
    config files, as they are on disk now) and one client per endpoint: building them costs
    tens of milliseconds, calling them is cheap."""

    def __init__(
        self, endpoint_url: str | None = None, static_source: StaticSource | None = None
    ) -> None:
        self._endpoint_url = endpoint_url
        self._static_source = static_source
        self._lock = threading.Lock()
        self._sessions: dict[tuple[Any, ...], botocore.session.Session] = {}
        self._clients: dict[tuple[Any, ...], Any] = {}

    @staticmethod
    def _new_session() -> botocore.session.Session:
        session = botocore.session.get_session()
        # Keep timestamps as STS sent them, as the AWS CLI does, so `sts assume-role` can
        # print the same bytes.
        session.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=lambda text: text
        )
        return session

    def _source_session(self, source: Key) -> botocore.session.Session:
        # File stamps are part of the key: an edited config or credentials file is re-read.
        key = (
            source.source_profile,
            source.config_file,
            source.credentials_file,
            source.credential_source,
            source.sts_regional_endpoints,
            file_stamp(source.config_file),
            file_stamp(source.credentials_file),
        )
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = self._build_source_session(source)
        return session

    def _build_source_session(self, source: Key) -> botocore.session.Session:
        """A botocore session whose credentials are `source`'s, not yet resolved."""
        session = self._new_session()
        if source.config_file:
            session.set_config_variable("config_file", source.config_file)
        if source.credentials_file:
            session.set_config_variable("credentials_file", source.credentials_file)
        if source.sts_regional_endpoints:
            session.set_config_variable("sts_regional_endpoints", source.sts_regional_endpoints)
        (self._static_source or source_of(source)).load(session)
        return session

    def _client(self, source: Key, signer: Credentials | None = None) -> Any:
        """An STS client for `source`'s region and endpoint, signed by `signer` if given,
        else by the source's long-term credentials."""
        endpoint = self._endpoint_url or source.endpoint_url
        # botocore's verify: False, a CA bundle's path, or None for its default.
        verify = False if not source.verify_ssl else source.ca_bundle
        with self._lock:  # botocore sessions are not safe to share while creating clients
            if signer is not None:
                # Temporary credentials change at every renewal: a client per call.
                return self._new_session().create_client(
                    "sts",
                    region_name=source.region or ("us-east-1" if endpoint else None),
                    endpoint_url=endpoint,
                    verify=verify,
                    config=_CLIENT_CONFIG,
                    aws_access_key_id=signer.access_key_id,
                    aws_secret_access_key=signer.secret_access_key,
                    aws_session_token=signer.session_token,
                )
            session = self._source_session(source)
            region = source.region
            if region is None and endpoint and not session.get_config_variable("region"):
                # A custom endpoint needs a signing region; STS's global one signs as us-east-1.
                region = "us-east-1"
            key = (id(session), region, endpoint, verify)
            client = self._clients.get(key)
            if client is None:
                client = session.create_client(
                    "sts",
                    region_name=region,
                    endpoint_url=endpoint,
                    verify=verify,
                    config=_CLIENT_CONFIG,
                )
                self._clients[key] = client
            return client

    def temporary_kind(self, source: Key) -> str | None:
        """What makes the source's own credentials temporary (e.g. "SSO"), or None when they
        are long-term keys. STS treats a call they sign as role chaining."""
        if self._static_source is not None:
            return None
        with self._lock:  # as in _client: the session's chain resolves once, under the lock
            credentials = self._source_session(source).get_credentials()
        if credentials is None:
            raise botocore.exceptions.NoCredentialsError()
        if not credentials.get_frozen_credentials().token:
            return None
        return _TEMPORARY_KINDS.get(credentials.method, f"{credentials.method} credentials")

    def forget_sources(self) -> None:
        """Drop cached sessions so the next call reloads source credentials from their chain."""
        with self._lock:
            self._sessions.clear()
            self._clients.clear()

    def call(
        self,
        request: Key,
        now: float,
        signer: Credentials | None = None,
        token_code: str | None = None,
    ) -> Credentials:
        """AssumeRole for a role request, GetSessionToken for an MFA session; raise
        StsCallFailed with STS's verdict on failure."""
        if isinstance(request, MfaSession):
            return self.get_session_token(request, now, token_code)
        if isinstance(request, SourceSession):
            return self.source_credentials(request, now)
        return self.assume_role(request, now, signer, token_code)

    def source_credentials(self, source: SourceSession, now: float) -> Credentials:
        """A profile's own credentials, for a profile without a role: from long-term keys a
        GetSessionToken session (the keys never leave the daemon); temporary ones (SSO, a
        credential_process, `aws login`) as the source gives them, freshly resolved so a
        renewal gets their full lifetime, not what is left of the last ones."""
        if self._static_source is None:
            with translated(source):
                # Its own session: a fresh resolution (a new SSO call, the process run again).
                resolved = self._build_source_session(source).get_credentials()
                if resolved is None:
                    raise botocore.exceptions.NoCredentialsError()
                frozen = resolved.get_frozen_credentials()
            if frozen.token:
                return temporary_source(source, resolved, frozen, now)
        with translated(source):
            response = self._client(source).get_session_token(
                DurationSeconds=source.duration_seconds
            )
        return credentials_from(response, now)

    def get_session_token(
        self, session: MfaSession, now: float, token_code: str | None
    ) -> Credentials:
        """Open an MFA session with one code from the device (refused before the call when
        the source's credentials are temporary: STS refuses GetSessionToken for those)."""
        with translated(session):
            kind = self.temporary_kind(session)
        if kind is not None:
            where = source_of(session).where()
            raise TemporarySource(
                f"{session.mfa_serial}: an MFA session needs GetSessionToken, which STS refuses "
                f"to temporary credentials, and the source ({where}) gives temporary "
                f"credentials ({kind}); use a source with long-term keys for roles behind an "
                "MFA device"
            )
        params = {
            "DurationSeconds": session.duration_seconds,
            "SerialNumber": session.mfa_serial,
            "TokenCode": token_code or "",
        }
        with translated(session):
            response = self._client(session).get_session_token(**params)
        return credentials_from(response, now)

    def assume_role(
        self,
        request: RoleRequest,
        now: float,
        signer: Credentials | None = None,
        token_code: str | None = None,
    ) -> Credentials:
        """Call AssumeRole for `request`, signed by `signer` (a chained role's or an MFA
        session's credentials) or by the source's own credentials; a role with MFA over an
        hour sends its code (`token_code`) in the call itself.

        Over an hour, a call that temporary credentials would sign is refused before it is
        made: STS caps every role assumed with them at an hour (role chaining)."""
        if request.duration_seconds > CHAINED_MAX_DURATION:
            if signer is not None:
                where, kind = "the previous hop or an MFA session", "an assumed session"
            else:
                with translated(request):
                    kind = self.temporary_kind(request)
                where = source_of(request).where()
            if kind is not None:
                raise TemporarySource(
                    f"{request.role_arn} cannot be assumed for {request.duration_seconds} s: "
                    f"its source ({where}) gives temporary credentials ({kind}), so STS caps "
                    f"the role at {CHAINED_MAX_DURATION} s (role chaining); ask for "
                    f"{CHAINED_MAX_DURATION} s or less, or use a source with long-term keys"
                )
        params = assume_role_params(request, token_code)
        with translated(request):
            response = self._client(request, signer).assume_role(**params)
        return credentials_from(response, now)
