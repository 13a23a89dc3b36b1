"""The container endpoint's answers as bytes, rendered in one place for the aiohttp handler
and the fast lane (both import this module; it imports neither).

A credentials answer is rendered once per credentials object: the handler's JSON body, and
the lane's whole HTTP responses with the headers the middleware adds (policy.py), so
the same bytes serve every request until renewal (json.dumps per request is a visible share).
"""

import json
from dataclasses import dataclass, field

from rolecached.core.bindings import Binding
from rolecached.core.cache import Credentials
from rolecached.endpoints.policy import header_lines
from rolecached.erroranswers import answer_for
from rolecached.errors import NotHttp
from rolecached.front.httphead import error_response, response
from rolecached.render.documents import ecs_document


@dataclass(frozen=True)
class Rendered:
    """The container answer for one credentials object (its repr shows no secret)."""

    credentials: Credentials = field(repr=False)
    body: bytes = field(repr=False)  # the handler's JSON body
    closing: bytes = field(repr=False)  # the lane's response that closes the connection
    keeping: bytes = field(repr=False)  # the lane's response that keeps it alive


def render_ecs(binding: Binding, creds: Credentials, sandbox: bool) -> Rendered:
    """The container answer for `creds`: the handler's body, with the handler's Content-Type
    and the middleware's headers for the lane."""
    body = json.dumps(ecs_document(binding, creds)).encode()
    closing, keeping = (
        response(b"200 OK", b"application/json", body, header_lines(sandbox), close)
        for close in (True, False)
    )
    return Rendered(creds, body, closing, keeping)


def bad_request(reason: str, sandbox: bool) -> bytes:
    """An endpoint's JSON 400 ({"Code", "Message"}, the middleware's headers) for a head
    that is not HTTP; the connection closes after it."""
    return error_response(answer_for(NotHttp(reason), "endpoint"), header_lines(sandbox))
