"""Every error the daemon reports, as types carrying an error code and an HTTP status: the one
module holding statuses (erroranswers.py answers with them). Messages never hold a secret."""

from dataclasses import dataclass


class RolecacheError(Exception):
    """Base class: `code` names the error for scripts, the message tells a person what to do."""

    status = 500
    code = "InternalError"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        # More fields for the error object, for clients that act on them.
        self.details: dict[str, str] = {}


class NotHttp(RolecacheError):
    """A request head no HTTP server may accept (see httphead.Malformed), either listener."""

    status = 400
    code = "BadRequest"


class HttpRefusal(RolecacheError):
    """A request aiohttp refused before any handler ran (no such path or method, too big)."""

    code = "HttpError"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, _HTTP_CODES.get(status))
        self.status = status


# The codes of the statuses aiohttp raises itself.
_HTTP_CODES = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}


def api_refusal(status: int, reason: str, max_body: int) -> HttpRefusal:
    """aiohttp's own refusal as the socket API words it: what to do instead."""
    messages = {
        404: "no such path; the API lives under /v1/ (see the README)",
        405: "this path does not take that method",
        413: f"request bodies are limited to {max_body} bytes",
    }
    return HttpRefusal(status, messages.get(status, reason))


class InvalidRequest(RolecacheError):
    """The request is malformed or breaks an AssumeRole rule; nothing was sent to STS."""

    status = 400
    code = "InvalidRequest"


class TemporarySource(InvalidRequest):
    """STS would refuse the call because the credentials that sign it are temporary (role
    chaining over an hour, or GetSessionToken); found out before anything was sent."""


class NotFound(RolecacheError):
    status = 404
    code = "NotFound"


class BindingExists(RolecacheError):
    """A binding of that name exists and the caller did not ask to replace it."""

    status = 409
    code = "EndpointExists"


class MfaRequired(RolecacheError):
    """The role needs an MFA session and none is open: the client asks for a code."""

    status = 401
    code = "MfaRequired"

    def __init__(self, mfa_serial: str, waited: float = 0) -> None:
        if waited:
            message = (
                f"no MFA code from {mfa_serial} was given within {waited:.0f} s: run "
                "`rolecache mfa` in a terminal while the command waits, or pass --token-code"
            )
        else:
            message = (
                f"an MFA code from {mfa_serial} is needed: run the command in a terminal to "
                "be asked for it, or pass --token-code"
            )
        super().__init__(message)
        self.details["mfa_serial"] = mfa_serial


class Stopping(RolecacheError):
    """The daemon is stopping: a request waiting for an MFA code is let go."""

    status = 503
    code = "DaemonStopping"


class MfaCodeRejected(RolecacheError):
    """STS refused the MFA code (wrong, expired or already used)."""

    status = 403
    code = "MfaCodeRejected"


class StsTimeout(RolecacheError):
    """STS did not answer within the request's time budget."""

    status = 504
    code = "StsTimeout"


@dataclass(frozen=True)
class StsFailure:
    """What STS (or the way to it) said when a call failed; `retryable` picks the policy."""

    code: str
    message: str
    retryable: bool
    # Refused on this side of the network (botocore: no such profile, an expired SSO token,
    # no connection) rather than answered by STS; the message is botocore's own.
    local: bool = False
    # The token file of an SSO sign-in that has ended: only signing in again ends this
    # failure, and the message says what to run.
    login_file: str | None = None
    # botocore's own words for a local failure, when `message` says more: what the AWS CLI
    # prints, so the drop-in `sts assume-role` prints it too.
    cli_text: str | None = None

    @property
    def needs_login(self) -> bool:
        """Whether only a new SSO sign-in ends this failure."""
        return self.login_file is not None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class StsError(RolecacheError):
    """STS refused or could not be reached; carries STS's own error code and message."""

    def __init__(self, failure: StsFailure, context: str = "") -> None:
        prefix = f"{context}: " if context else ""
        what = "" if failure.needs_login else f"STS {failure.code}: "
        super().__init__(f"{prefix}{what}{failure.message}", code=failure.code)
        self.failure = failure
        if failure.local:
            self.details["cli_message"] = failure.cli_text or failure.message
        else:
            self.details["sts_message"] = failure.message
        # 503 while the failure may pass (throttling, outage), 502 when STS said no for good,
        # 401 when only signing in again ends it (the client exits 2: the caller must act).
        self.status = 401 if failure.needs_login else 503 if failure.retryable else 502


class ListenError(RolecacheError):
    """A container endpoint's listener could not bind its address."""

    status = 503
    code = "EndpointUnavailable"

    def __init__(self, message: str, port: int = 0, holder: int | None = None) -> None:
        super().__init__(message)
        self.port = port  # the port that could not be bound (0: any free one)
        self.holder = holder  # the uid listening there, when the kernel says


class LoginFailed(RolecacheError):
    """The OIDC service refused or could not be reached; its code and message."""

    status = 502
    code = "SsoLoginFailed"


class LoginExpired(RolecacheError):
    """Nobody confirmed the code before it expired: a new login is needed."""

    status = 410
    code = "SsoLoginExpired"


# -- the container endpoints' refusals -----------------------------------------------------
# Rendered as {"Code", "Message"}, the shape SDKs surface, by the endpoints' one middleware.


class EndpointError(RolecacheError):
    """An endpoint request refused; its code and message go to the SDK."""


class EndpointBadRequest(EndpointError):
    status = 400
    code = "BadRequest"


class Unauthorized(EndpointError):
    status = 401
    code = "Unauthorized"


class Forbidden(EndpointError):
    status = 403
    code = "Forbidden"


class EndpointNotFound(EndpointError):
    status = 404
    code = "NotFound"


class TooLarge(EndpointError):
    status = 413
    code = "PayloadTooLarge"


class TooManyRequests(EndpointError):
    status = 429
    code = "TooManyRequests"

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limit exceeded; retry in {retry_after:.2f} s")
        self.retry_after = retry_after


class Unavailable(EndpointError):
    """No credentials with enough life left to serve right now."""

    status = 503
    code = "CredentialsUnavailable"


class StsRefused(EndpointError):
    """STS refused the binding's role for good (AccessDenied and friends): its code."""

    status = 502
