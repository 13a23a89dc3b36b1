"""The container endpoints' rules, each written once: who may have an answer, and what every
answer carries.

Pure functions of a request's facts (however it was parsed: by aiohttp in the middleware and
handlers, or by the front layer's strict parser in the fast lane), returning the refusal to
raise, or None to go on. Both paths call the same functions, so the lane can never admit what
aiohttp would refuse: when a rule refuses, the lane hands the request to aiohttp, which
refuses it through these same rules and answers with erroranswers.answer_for.
"""

from dataclasses import dataclass

from rolecache.protocol import SANDBOX_HEADER
from rolecached.endpoints.ratelimit import RateLimiter
from rolecached.endpoints.tokens import ImdsTokens, TokenRing
from rolecached.errors import EndpointError, Forbidden, TooLarge, TooManyRequests, Unauthorized
from rolecached.front.gate import peer_key
from rolecached.host.peers import Peer


@dataclass(frozen=True)
class Facts:
    """What the guard reads of any endpoint request."""

    hosts: tuple[str, ...]  # every Host value, as sent
    origin: bool  # an Origin header came (a web page's request)
    length: int | None  # Content-Length, when sent
    chunked: bool  # a Transfer-Encoding came


@dataclass(frozen=True)
class Refusal:
    """A refusal, and what the refusal log counts it as (None: not logged)."""

    error: EndpointError
    tally: str | None = None


def guard(facts: Facts, allowed: frozenset[str], max_body: int) -> EndpointError | None:
    """The check every endpoint request passes first: one Host in the listener's allow-list
    (DNS rebinding), no Origin, no body over `max_body` bytes and no chunked one."""
    if len(facts.hosts) != 1 or facts.hosts[0].lower() not in allowed:
        # DNS rebinding: a web page's requests carry the attacker's host name.
        return Forbidden("Host header not allowed: use 127.0.0.1:PORT or localhost:PORT")
    if facts.origin:
        return Forbidden("requests from web pages (with an Origin header) are refused")
    if (facts.length is not None and facts.length > max_body) or facts.chunked:
        return TooLarge(f"request bodies are limited to {max_body} bytes")
    return None


def container_refusal(
    token: str | None, ring: TokenRing | None, capability: str | None, now: float
) -> Refusal | None:
    """The container route's token rule: a token is required, and must be valid at `now`
    for the binding (`ring`, None for an unknown name) and, on the RELATIVE_URI path, its
    `capability` too. An unknown name gets the wrong token's answer: names are not for
    probing."""
    if not token:
        # Logged (once per interval): an SDK that sends no token is otherwise hard to spot.
        return Refusal(
            Unauthorized(
                "the Authorization header must carry the endpoint's token "
                "(AWS_CONTAINER_AUTHORIZATION_TOKEN or its _FILE)"
            ),
            "container requests without a token",
        )
    if (
        ring is None
        or not ring.valid(token, now)
        or (capability is not None and not ring.capability_valid(capability))
    ):
        return Refusal(
            Forbidden("the token is not valid for this endpoint"),
            "container requests with a wrong token",
        )
    return None


def imds_session_refusal(
    token: str | None, tokens: ImdsTokens, v1_allowed: bool, now: float
) -> EndpointError | None:
    """The IMDS rule for every GET: a valid session token (IMDSv2), unless the binding
    allows v1 and none was sent."""
    if token is None:
        return None if v1_allowed else Unauthorized("an IMDSv2 session token is required")
    if not tokens.valid(token, now):
        return Unauthorized("the session token is not valid or has expired")
    return None


def forwarded_refusal(forwarded: bool) -> EndpointError | None:
    """IMDS refuses forwarded requests, so a proxy on this host cannot relay them."""
    return Forbidden("requests with X-Forwarded-For are refused") if forwarded else None


def limit_key(peer: Peer | None, binding: str) -> str:
    """The rate limiter's key: the admitted peer (uid or address) and the binding."""
    return f"{peer_key(peer) if peer is not None else '?'} {binding}"


def throttle(
    limiter: RateLimiter, peer: Peer | None, binding: str, now: float
) -> TooManyRequests | None:
    """The rate limit of `peer` for `binding`, asked only once the token is good (a flood of
    refused requests never uses up anyone's allowance); each call not refused is counted."""
    wait = limiter.wait(limit_key(peer, binding), now)
    return TooManyRequests(wait) if wait else None


def answer_headers(sandbox: bool) -> dict[str, str]:
    """The headers every endpoint answer carries, refusals included."""
    headers = {"Cache-Control": "no-store"}
    if sandbox:
        headers[SANDBOX_HEADER] = "1"
    return headers


def header_lines(sandbox: bool) -> bytes:
    """answer_headers as a raw response's CRLF-ended lines."""
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in answer_headers(sandbox).items())
