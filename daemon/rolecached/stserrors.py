"""What botocore raises, as an StsFailure: STS's code and message, whether to retry, and
for an ended SSO sign-in the command that signs in again."""

import contextlib
import os
from collections.abc import Iterator

import botocore.configloader
import botocore.exceptions
import botocore.parsers

from rolecache.protocol import aws_config_paths
from rolecached.core.request import Key
from rolecached.errors import StsFailure
from rolecached.sources.credsources import source_of
from rolecached.sources.sso import SsoConfigError, session_of_profile

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


class StsCallFailed(Exception):
    """An AssumeRole call failed; `failure` says how and whether to retry."""

    def __init__(self, failure: StsFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


def is_retryable(code: str, http_status: int) -> bool:
    """Throttling, 5xx and identity-provider hiccups pass; everything else is permanent."""
    return code in RETRYABLE_CODES or http_status >= 500


@contextlib.contextmanager
def translated(source: Key) -> Iterator[None]:
    """Turn whatever botocore raises into StsCallFailed with a message a person can act on."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = error.get("Code") or "UnknownError"
        message = error.get("Message") or f"HTTP {status}"
        raise StsCallFailed(StsFailure(code, message, is_retryable(code, status))) from None
    except (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError) as exc:
        # Connection refused, reset, timed out: the network may come back.
        raise StsCallFailed(StsFailure("NetworkError", str(exc), True, local=True)) from None
    except botocore.exceptions.NoCredentialsError:
        where = source_of(source).missing()
        raise StsCallFailed(
            StsFailure(
                "NoSourceCredentials",
                f"no source credentials found in {where}; configure them with "
                "`aws configure` or name a profile with --source-profile",
                False,
                local=True,
            )
        ) from None
    except botocore.exceptions.ProfileNotFound as exc:
        # botocore's own words, which the AWS CLI prints: "The config profile (NAME) could
        # not be found".
        raise StsCallFailed(StsFailure("ProfileNotFound", str(exc), False, local=True)) from None
    except botocore.parsers.ResponseParserError:
        # Not XML (cut short, or not STS answering): another try may do. The exception's text
        # quotes the raw answer, which may hold credentials, so it is not repeated.
        raise StsCallFailed(
            StsFailure(
                "MalformedResponse",
                "STS's answer is not valid XML (cut short, or not from STS?)",
                True,
            )
        ) from None
    except (botocore.exceptions.SSOError, botocore.exceptions.TokenRetrievalError) as exc:
        # No SSO token, an expired one botocore could not renew, or one the portal refused.
        raise StsCallFailed(sso_ended(source, exc)) from None
    except botocore.exceptions.BotoCoreError as exc:
        # Partial keys, a failing credential_process, a broken SSO config: fix the source.
        raise StsCallFailed(StsFailure(type(exc).__name__, str(exc), False, local=True)) from None


def sso_ended(source: Key, exc: Exception) -> StsFailure:
    """The failure of a source whose SSO sign-in has ended: naming the sso-session and the
    command that signs in again (botocore's own words when the profile cannot be read)."""
    profile = source.source_profile or os.environ.get("AWS_PROFILE") or "default"
    config_file = source.config_file or aws_config_paths()["config_file"]
    try:
        config = botocore.configloader.load_config(config_file)
        session = session_of_profile(
            profile, config.get("profiles", {}), config.get("sso_sessions", {})
        )
    except (botocore.exceptions.BotoCoreError, SsoConfigError):
        session = None
    if session is None:
        return StsFailure(type(exc).__name__, str(exc), False, local=True)
    return StsFailure(
        "SsoLoginRequired",
        f"{session.describe()} has no valid sign-in (the token in ~/.aws/sso/cache expired "
        f"and could not be renewed, or there is none); sign in again: {session.login_commands()}",
        False,
        local=True,
        login_file=session.token_file(),
        cli_text=str(exc),
    )
