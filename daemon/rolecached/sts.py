"""AssumeRole through boto3: the only module that imports boto3 or botocore.

Calls are blocking; `store.py` runs them in a thread pool off the event loop. botocore's own
retries are off because the store owns the retry policy (back-off while serving valid
credentials), and every failure comes back as an `StsFailure` with STS's code and message.
"""

import logging
import threading
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from rolecached.cache import Credentials
from rolecached.errors import StsFailure
from rolecached.request import RoleRequest

log = logging.getLogger(__name__)

# STS errors worth retrying: throttling, STS's own trouble, and the identity provider's.
RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "IDPCommunicationError",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
    }
)

_CLIENT_CONFIG = botocore.config.Config(
    retries={"total_max_attempts": 1, "mode": "standard"},
    connect_timeout=5,
    read_timeout=10,
)


class StsCallFailed(Exception):
    """An AssumeRole call failed; `failure` says how and whether to retry."""

    def __init__(self, failure: StsFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


def is_retryable(code: str, http_status: int) -> bool:
    """Throttling, 5xx and identity-provider hiccups pass; everything else is permanent."""
    return code in RETRYABLE_CODES or http_status >= 500


@dataclass(frozen=True)
class StaticSource:
    """Fixed source credentials, used by the sandbox instead of the user's chain."""

    access_key_id: str
    secret_access_key: str


class StsCaller:
    """Makes AssumeRole calls, with one boto3 session per source profile and one client per
    (profile, region): building them costs tens of milliseconds, calling them is cheap."""

    def __init__(
        self, endpoint_url: str | None = None, static_source: StaticSource | None = None
    ) -> None:
        self._endpoint_url = endpoint_url
        self._static_source = static_source
        self._lock = threading.Lock()
        self._sessions: dict[str | None, boto3.Session] = {}
        self._clients: dict[tuple[str | None, str | None], Any] = {}

    def _client(self, profile: str | None, region: str | None) -> Any:
        with self._lock:  # boto3 sessions are not safe to share while creating clients
            client = self._clients.get((profile, region))
            if client is None:
                session = self._sessions.get(profile)
                if session is None:
                    if self._static_source is not None:
                        session = boto3.Session(
                            aws_access_key_id=self._static_source.access_key_id,
                            aws_secret_access_key=self._static_source.secret_access_key,
                            region_name="us-east-1",
                        )
                    else:
                        session = boto3.Session(profile_name=profile)
                    self._sessions[profile] = session
                client = session.client(
                    "sts",
                    region_name=region,
                    endpoint_url=self._endpoint_url,
                    config=_CLIENT_CONFIG,
                )
                self._clients[(profile, region)] = client
            return client

    def forget_sources(self) -> None:
        """Drop cached sessions so the next call reloads source credentials from their chain."""
        with self._lock:
            self._sessions.clear()
            self._clients.clear()

    def assume_role(self, request: RoleRequest, now: float) -> Credentials:
        """Call AssumeRole for `request`; raise StsCallFailed with STS's verdict on failure."""
        params: dict[str, Any] = {
            "RoleArn": request.role_arn,
            "RoleSessionName": request.role_session_name,
            "DurationSeconds": request.duration_seconds,
        }
        if request.external_id is not None:
            params["ExternalId"] = request.external_id
        if request.policy is not None:
            params["Policy"] = request.policy
        if request.policy_arns:
            params["PolicyArns"] = [{"arn": arn} for arn in request.policy_arns]
        if request.tags:
            params["Tags"] = [{"Key": k, "Value": v} for k, v in request.tags]
        if request.transitive_tag_keys:
            params["TransitiveTagKeys"] = list(request.transitive_tag_keys)
        if request.source_identity is not None:
            params["SourceIdentity"] = request.source_identity
        try:
            client = self._client(request.source_profile, request.region)
            response = client.assume_role(**params)
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            code = error.get("Code") or "UnknownError"
            message = error.get("Message") or f"HTTP {status}"
            raise StsCallFailed(StsFailure(code, message, is_retryable(code, status))) from None
        except (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError) as exc:
            # Connection refused, reset, timed out: the network may come back.
            raise StsCallFailed(StsFailure("NetworkError", str(exc), True)) from None
        except botocore.exceptions.NoCredentialsError:
            where = (
                f"profile {request.source_profile!r}"
                if request.source_profile
                else ("the default chain (environment, ~/.aws/credentials, SSO, instance role)")
            )
            raise StsCallFailed(
                StsFailure(
                    "NoSourceCredentials",
                    f"no source credentials found in {where}; configure them with "
                    "`aws configure` or name one with --source-profile",
                    False,
                )
            ) from None
        except botocore.exceptions.ProfileNotFound:
            raise StsCallFailed(
                StsFailure(
                    "ProfileNotFound",
                    f"source profile {request.source_profile!r} is not in the AWS config "
                    "files; check `aws configure list-profiles`",
                    False,
                )
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            # Partial keys, an expired SSO token, a failing credential_process: fix the source.
            raise StsCallFailed(StsFailure(type(exc).__name__, str(exc), False)) from None

        creds = response["Credentials"]
        user = response.get("AssumedRoleUser", {})
        return Credentials(
            access_key_id=creds["AccessKeyId"],
            secret_access_key=creds["SecretAccessKey"],
            session_token=creds["SessionToken"],
            expiration=creds["Expiration"].timestamp(),
            issued_at=now,
            assumed_role_arn=user.get("Arn", ""),
            assumed_role_id=user.get("AssumedRoleId", ""),
            packed_policy_size=response.get("PackedPolicySize"),
            source_identity=response.get("SourceIdentity"),
        )
