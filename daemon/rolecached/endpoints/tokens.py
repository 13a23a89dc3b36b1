"""The secrets of the container endpoints: per-binding bearer tokens, and IMDSv2 session tokens.

Pure: time and randomness are injected. Every comparison is constant-time
(`hmac.compare_digest`), and no repr shows a token.
"""

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable

IMDS_MIN_TOKEN_TTL, IMDS_MAX_TOKEN_TTL = 1, 21600


def new_token() -> str:
    """A bearer token: 256 random bits, URL-safe, no CR or LF (botocore refuses those)."""
    return secrets.token_urlsafe(32)


_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # what new_token() makes


def looks_like_token(text: str) -> bool:
    """True for a string new_token() could have made (a token file worth reusing)."""
    return _TOKEN.fullmatch(text) is not None


class TokenRing:
    """A binding's tokens: the current one of its token file and the previous one during a
    grace period after rotation (the AWS CLI v2 reads the token file once per command, so a
    rotation needs an overlap); and the container token, which rotation leaves alone because
    the environment of a running process or container cannot be updated.

    Only a SHA-256 digest of the container token is held: it is what persists, so the daemon
    accepts the token again after a restart without the secret being kept anywhere but the
    file it was handed out in."""

    def __init__(
        self,
        now: float,
        grace: float,
        make_token: Callable[[], str] = new_token,
        *,
        current: str | None = None,
        container_digest: bytes | None = None,
        capability_digest: bytes | None = None,
    ) -> None:
        self._make = make_token
        self._grace = grace
        self._current = current if current is not None else make_token()
        self._previous: str | None = None
        self._previous_until = 0.0
        self.rotated_at = now
        # A random digest nothing hashes to until a container token is made.
        self._container = container_digest or secrets.token_bytes(32)
        self._capability = capability_digest or secrets.token_bytes(32)

    def __repr__(self) -> str:
        return f"TokenRing(rotated_at={self.rotated_at})"

    @property
    def current(self) -> str:
        """The token to hand out (written to the binding's token file)."""
        return self._current

    @property
    def container_digest(self) -> bytes:
        """The SHA-256 digest of the container token: what a restart needs to accept it."""
        return self._container

    def new_container_token(self) -> str:
        """Replace the container token (the old one stops working at once) and return the new
        one, for the caller to hand out; it is not kept."""
        token = self._make()
        self._container = digest(token)
        return token

    @property
    def capability_digest(self) -> bytes:
        """The SHA-256 digest of the capability path segment (RELATIVE_URI hand-outs)."""
        return self._capability

    def new_capability(self) -> str:
        """Replace the capability: the secret last segment of the RELATIVE_URI path
        `/v1/credentials/NAME/CAPABILITY` (192 random bits) handed to containers whose SDKs
        reach 169.254.170.2 only on port 80 and may send no token. Returned, not kept."""
        capability = secrets.token_urlsafe(24)
        self._capability = digest(capability)
        return capability

    def capability_valid(self, presented: str) -> bool:
        """True for the binding's capability (compared as digests, in constant time)."""
        given = presented.encode("utf-8", "surrogateescape")
        return hmac.compare_digest(hashlib.sha256(given).digest(), self._capability)

    def rotate(self, now: float, grace: bool = True) -> None:
        """Make a new token; the old one stays valid for the grace period (with `grace`)."""
        self._previous, self._previous_until = self._current, now + (self._grace if grace else 0)
        self._current = self._make()
        self.rotated_at = now

    def valid(self, presented: str, now: float) -> bool:
        """True for the current token, the previous one within its grace period, or the
        container token."""
        given = presented.encode("utf-8", "surrogateescape")
        ok = hmac.compare_digest(given, self._current.encode())
        if self._previous is not None:
            # Compared even when expired, so the answer takes the same time either way.
            old = hmac.compare_digest(given, self._previous.encode())
            ok |= old and now < self._previous_until
        ok |= hmac.compare_digest(hashlib.sha256(given).digest(), self._container)
        return ok


def digest(token: str) -> bytes:
    """The SHA-256 digest a token is kept as where it must not be kept itself."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class ImdsTokens:
    """IMDSv2 session tokens of one listener: `expiry.signature`, signed with a key of this
    listener only, so a token is worthless at another binding's listener and nothing is
    stored per token (neither SDK caches tokens: every fetch PUTs a new one)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def __repr__(self) -> str:
        return "ImdsTokens(<key>)"

    def _sign(self, expiry: int) -> str:
        mac = hmac.new(self._key, str(expiry).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def issue(self, ttl: int, now: float) -> str:
        """A token valid for `ttl` seconds from `now`."""
        expiry = int(now) + ttl
        return f"{expiry}.{self._sign(expiry)}"

    def valid(self, token: str, now: float) -> bool:
        """True when this listener signed `token` and it has not expired."""
        expiry_text, _, signature = token.partition(".")
        if not (expiry_text.isascii() and expiry_text.isdigit()) or len(expiry_text) > 12:
            return False
        expiry = int(expiry_text)
        good = hmac.compare_digest(
            signature.encode("utf-8", "surrogateescape"), self._sign(expiry).encode()
        )
        return good and now < expiry


def parse_ttl(value: str | None) -> int:
    """The X-aws-ec2-metadata-token-ttl-seconds header: whole seconds, 1-21600."""
    if value is None:
        raise ValueError("the header X-aws-ec2-metadata-token-ttl-seconds is required")
    text = value.strip()
    if (
        not (text.isascii() and text.isdigit() and len(text) <= 6)
        or not IMDS_MIN_TOKEN_TTL <= int(text) <= IMDS_MAX_TOKEN_TTL
    ):
        raise ValueError(
            f"X-aws-ec2-metadata-token-ttl-seconds must be {IMDS_MIN_TOKEN_TTL} to "
            f"{IMDS_MAX_TOKEN_TTL} seconds"
        )
    return int(text)
