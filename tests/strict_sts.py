"""A strict STS for the tests: a loopback proxy in front of moto that enforces the STS rules
moto skips, answering with STS's own status codes and XML error bodies.

Rules (each checked before the call reaches moto; a test's own `rules` come first, as they
stand for STS's state: throttling, expired credentials, a wrong code):

- AssumeRole signed by temporary credentials (the request carries `X-Amz-Security-Token`)
  with DurationSeconds over 3600: 400 ValidationError (role chaining).
- AssumeRole with DurationSeconds over the role's MaxSessionDuration: 400 ValidationError.
  The maximum is the role's MaxSessionDuration in moto's IAM when the role exists there, else
  `max_session[role_arn]` when the test set one, else `default_max_session` (43200): most
  tests assume made-up roles that exist nowhere, and a role's maximum can be set up to 12 h.
- GetSessionToken signed by temporary credentials: 403 AccessDenied.
- An MFA code (SerialNumber + TokenCode) STS already accepted once: 403 AccessDenied. Real
  STS forgets a code after its 30-second window; codes in tests are made up, so this proxy
  never forgets one.
- Canned faults a test injects with `inject(code)`: Throttling (400), RegionDisabledException
  (403), ExpiredToken (403), InvalidClientTokenId (403), PackedPolicyTooLarge (400).
"""

import http.server
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from moto.iam.models import iam_backends

Answer = tuple[int, str]
Rule = Callable[[dict[str, str]], Answer | None]

CHAINED_MAX_DURATION = 3600
DEFAULT_DURATION = 3600
DEFAULT_MAX_SESSION = 43200

CHAINING_MESSAGE = (
    "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by "
    "role chaining."
)
MAX_SESSION_MESSAGE = (
    "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
)
SESSION_TOKEN_MESSAGE = "Cannot call GetSessionToken with session credentials"
MFA_REUSED_MESSAGE = "MultiFactorAuthentication failed, invalid MFA one time pass code."

# Faults a test can inject: code -> (HTTP status, STS's message).
CANNED_FAULTS: dict[str, Answer] = {
    "Throttling": (400, "Rate exceeded"),
    "RegionDisabledException": (
        403,
        "STS is not activated in this region for account:123456789012. Your account "
        "administrator can activate STS in this region using the IAM Console.",
    ),
    "ExpiredToken": (403, "The security token included in the request is expired"),
    "InvalidClientTokenId": (403, "The security token included in the request is invalid."),
    "PackedPolicyTooLarge": (
        400,
        "Packed policy consumes 112% of allotted space, please use smaller policy.",
    ),
}


def sts_error_xml(code: str, message: str) -> str:
    """An STS error response body, as STS sends it."""
    return (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
        f"<Type>Sender</Type><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )


def iam_max_session(role_arn: str) -> int | None:
    """The role's MaxSessionDuration in moto's IAM (in this process), or None if it has none."""
    try:
        account = role_arn.split(":")[4]
        roles = iam_backends[account]["aws"].roles
    except (IndexError, KeyError):
        return None
    for role in list(roles.values()):
        if role.arn == role_arn:
            return int(role.max_session_duration or DEFAULT_DURATION)
    return None


@dataclass
class StsProxy:
    """A loopback STS in front of moto: forwards every call unless a rule answers it first.

    A rule takes the request's form fields and returns (status, XML body) to answer instead,
    or None to let the next rule, then the strict rules, then moto answer. `calls` records
    each call's Action, `forms` its fields, `temporary` whether it was signed by temporary
    credentials, `refused` the code of each strict-rule refusal.
    """

    url: str = ""
    rules: list[Rule] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    forms: list[dict[str, str]] = field(default_factory=list)
    temporary: list[bool] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    delay: float = 0.0
    max_session: dict[str, int] = field(default_factory=dict)
    default_max_session: int = DEFAULT_MAX_SESSION
    used_codes: set[tuple[str, str]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(self, code: str, action: str = "AssumeRole", times: int | None = None) -> None:
        """Answer `action` calls with the canned fault `code` (`times` times, or always)."""
        status, message = CANNED_FAULTS[code]
        left = [times]

        def fault(form: dict[str, str]) -> Answer | None:
            if form.get("Action") != action or left[0] == 0:
                return None
            if left[0] is not None:
                left[0] -= 1
            return status, sts_error_xml(code, message)

        self.rules.append(fault)

    def max_session_of(self, role_arn: str) -> int:
        """The most DurationSeconds this proxy's STS grants `role_arn` (see the module doc)."""
        from_iam = iam_max_session(role_arn)
        if from_iam is not None:
            return from_iam
        return self.max_session.get(role_arn, self.default_max_session)

    def strict(self, form: dict[str, str], temporary: bool) -> Answer | None:
        """STS's own verdict on a call moto would take as it is; None to forward it."""
        action = form.get("Action")
        refusal: tuple[str, int, str] | None = None
        if action == "AssumeRole":
            duration = int(form.get("DurationSeconds", DEFAULT_DURATION))
            if temporary and duration > CHAINED_MAX_DURATION:
                refusal = ("ValidationError", 400, CHAINING_MESSAGE)
            elif duration > self.max_session_of(form.get("RoleArn", "")):
                refusal = ("ValidationError", 400, MAX_SESSION_MESSAGE)
        elif action == "GetSessionToken" and temporary:
            refusal = ("AccessDenied", 403, SESSION_TOKEN_MESSAGE)
        if refusal is None and "TokenCode" in form:
            code = (form.get("SerialNumber", ""), form["TokenCode"])
            with self.lock:
                if code in self.used_codes:
                    refusal = ("AccessDenied", 403, MFA_REUSED_MESSAGE)
                else:
                    self.used_codes.add(code)  # STS takes a code once it lets the call through
        if refusal is None:
            return None
        self.refused.append(refusal[0])
        return refusal[1], sts_error_xml(refusal[0], refusal[2])

    def count(self, action: str) -> int:
        """How many calls of `action` reached this STS (refused ones included)."""
        return self.calls.count(action)


def serve(upstream: str) -> tuple[StsProxy, Callable[[], None]]:
    """Start a strict STS proxy in front of `upstream` (moto); return it and its stop."""
    state = StsProxy()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
            temporary = bool(self.headers.get("X-Amz-Security-Token"))
            state.calls.append(form.get("Action", "?"))
            state.forms.append(form)
            state.temporary.append(temporary)
            if state.delay:
                time.sleep(state.delay)
            answer = next((a for a in (rule(form) for rule in list(state.rules)) if a), None)
            if answer is None:
                answer = state.strict(form, temporary)
            if answer is None:
                answer = self._forward(body)
            data = answer[1].encode()
            self.send_response(answer[0])
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _forward(self, body: bytes) -> Answer:
            request = urllib.request.Request(upstream + self.path, data=body, method="POST")
            for name in ("Content-Type", "Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
                if self.headers.get(name):
                    request.add_header(name, self.headers[name])
            try:
                with urllib.request.urlopen(request) as reply:
                    return reply.status, reply.read().decode()
            except urllib.error.HTTPError as exc:  # moto's own errors pass through as they are
                return exc.code, exc.read().decode()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return state, stop
