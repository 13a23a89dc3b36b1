"""The one map of an error to an HTTP answer (`answer_for`): its status, its document in the
listener's shape and its headers. Every listener answers errors through it, lanes included."""

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

from rolecached.errors import EndpointError, HttpRefusal, NotHttp, RolecacheError, TooManyRequests

Shape = Literal["api", "endpoint"]


def error_document(code: str, message: str, details: dict[str, str] | None = None) -> Any:
    """The socket API's one error shape: {"error": {"code", "message", ...details}}."""
    return {"error": {"code": code, "message": message, **(details or {})}}


def endpoint_error_document(code: str, message: str) -> dict[str, str]:
    """The endpoints' error shape, the one SDKs surface: {"Code", "Message"}."""
    return {"Code": code, "Message": message}


@dataclass(frozen=True)
class ErrorAnswer:
    """An error as HTTP says it: the status, the JSON document in the listener's shape, and
    the extra headers (Retry-After of a rate limit)."""

    status: int
    document: Any
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def status_line(self) -> bytes:
        """The status as a response's first line shows it: the code, then its reason phrase."""
        return f"{self.status} {HTTPStatus(self.status).phrase}".encode()

    def body(self) -> bytes:
        """The document as JSON bytes, as aiohttp's json_response writes it."""
        return json.dumps(self.document).encode()


def answer_for(error: BaseException, shape: Shape) -> ErrorAnswer:
    """The one map of errors to HTTP answers: a RolecacheError's own status and code, any
    other exception a 500 that says to look at the log. `shape` picks the document: the
    socket API's {"error": {"code", "message", ...}}, or the endpoints' {"Code", "Message"}
    that SDKs surface. The endpoints answer only their own refusals so: any other error there
    is internal."""
    if not isinstance(error, _ANSWERED[shape]):
        error = RolecacheError("internal error; see the daemon's log")
    if shape == "api":
        document = error_document(error.code, error.message, error.details)
    else:
        document = endpoint_error_document(error.code, error.message)
    headers = {}
    if isinstance(error, TooManyRequests):
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return ErrorAnswer(error.status, document, headers)


# What each shape answers with the error's own status and code.
_ANSWERED: dict[Shape, tuple[type[RolecacheError], ...]] = {
    "api": (RolecacheError,),
    "endpoint": (EndpointError, HttpRefusal, NotHttp),
}
