"""A socket API request's body: read whole, at most MAX_BODY bytes, and decoded as one JSON
value, every way it can be wrong answered as the caller's mistake."""

import json
from typing import Any

from aiohttp import web

from rolecached.errors import InvalidRequest

MAX_BODY = 64 * 1024  # beyond this, aiohttp answers 413 (and the fast lane takes no body)


async def json_body(request: web.Request) -> Any:
    """The request's body as the JSON value it holds, or an InvalidRequest that says why not."""
    try:
        raw = await request.read()
    except web.RequestPayloadError:
        # A body that does not match its Content-Encoding (or chunking): the caller's fault.
        raise InvalidRequest(
            "the request body could not be read: it does not match its Content-Encoding"
        ) from None
    except RuntimeError:
        # aiohttp's "Connection closed.": the client hung up before its body arrived whole.
        # Nobody reads this answer; it only keeps a client's mistake out of the error log.
        raise InvalidRequest("the connection closed before the request body arrived") from None
    if not raw:
        raise InvalidRequest("the request needs a JSON object body")
    # Any Content-Type is read as JSON, so a plain `curl -d '{...}'` works; only our user's
    # processes reach this socket, so there is no browser to defend against here.
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidRequest("the request body is not UTF-8") from None
    except ValueError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        # A few KB of "[" exhaust json's recursion limit: the caller's fault, not a 500.
        raise InvalidRequest("the request body is nested too deeply to be a request") from None
