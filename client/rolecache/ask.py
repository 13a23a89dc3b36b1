"""Asking the daemon: one request, the MFA code when it needs one, and its errors.

Every command talks to the daemon through here; `transport` moves the bytes.
"""

import os
import sys

from rolecache import protocol, transport

# An MFA code given in the environment: a command line is readable by every local user
# (/proc/PID/cmdline), a process's environment only by its owner.
TOKEN_CODE_ENV = "ROLECACHE_TOKEN_CODE"


class Failed(Exception):
    """The daemon answered with an error; carries the exit code."""

    def __init__(self, message: str, code: int, error: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.error = error or {}


def send(
    method: str, target: str, body: object, sandbox: bool, autostart: bool = True, wait: float = 0
) -> transport.Response:
    """One request to the daemon (started first if needed and `autostart`; its answer may
    take `wait` s longer than usual); a sandbox daemon's answer is labelled on stderr."""
    encoded = None if body is None else protocol.dumps(body)
    response = transport.request(
        method, target, encoded, sandbox=sandbox, autostart=autostart, wait=wait
    )
    if response.headers.get(protocol.SANDBOX_HEADER.lower()) == "1":
        sys.stderr.write(
            "rolecache: SANDBOX daemon: its credentials come from a fake STS, not from AWS\n"
        )
    return response


def _without_terminal(
    method: str, target: str, body: dict, sandbox: bool, serial: str, mfa_wait: int
) -> transport.Response:
    """No terminal to ask for a code on: say so (others may be waiting for this caller's
    code, which nobody will type) and return the answer if one of them typed a code
    meanwhile, or one came with `rolecache mfa` while this request waited (mfa_wait)."""
    if mfa_wait:
        sys.stderr.write(
            f"rolecache: an MFA code from {serial} is needed: run `rolecache mfa` in a "
            f"terminal (waiting up to {mfa_wait} s)\n"
        )
        sys.stderr.flush()
    waiting = {"mfa_wait": mfa_wait} if mfa_wait else {}
    response = send(
        method, target, {**body, "cannot_prompt": True, **waiting}, sandbox, wait=mfa_wait
    )
    if response.status == 200:
        return response
    if mfa_wait:  # the daemon's message says how long it waited
        error = error_of(response)
        message = f"{error.get('message')} ({error.get('code')})"
        status = protocol.EXIT_USAGE if response.status == 400 else protocol.EXIT_ERROR
        raise Failed(message, status, error) from None
    raise Failed(
        f"an MFA code from {serial} is needed, but there is no terminal to ask on; "
        "run the command in a terminal, pass --token-code - with the code on stdin, "
        f"set {TOKEN_CODE_ENV}, or pass --mfa-wait SECONDS and give the code with "
        "`rolecache mfa` in another terminal",
        protocol.EXIT_ERROR,
    ) from None


def call(method: str, target: str, body: object, sandbox: bool) -> transport.Response:
    """One request to the daemon; when it needs an MFA code, ask on the terminal and retry.
    With no terminal, a body's `mfa_wait` seconds are spent waiting for `rolecache mfa`."""
    mfa_wait = 0
    if isinstance(body, dict) and "mfa_wait" in body:
        body = dict(body)
        mfa_wait = body.pop("mfa_wait")  # only once there is no terminal to ask on
    response = send(method, target, body, sandbox)
    serial = ""
    tries = 0
    while response.status in (401, 403) and isinstance(body, dict):
        error = error_of(response)
        code = error.get("code")
        serial = error.get("mfa_serial") or serial
        if code == "MfaCodeRejected" and "token_code" not in body and tries < 3:
            sys.stderr.write(f"rolecache: {error.get('message')}; try again\n")
        elif code != "MfaRequired" or "token_code" in body:
            break
        elif os.environ.get(TOKEN_CODE_ENV, "").strip():
            # Sent only when the daemon asks, and only once: a refused code ends here
            # rather than being retried or followed by a prompt.
            body = {**body, "token_code": os.environ[TOKEN_CODE_ENV].strip()}
            response = send(method, target, body, sandbox)
            continue
        from rolecache import prompt  # only when a code is needed

        try:
            token = prompt.ask_mfa_code(serial)
        except KeyboardInterrupt:
            # Ctrl-C at the prompt: nobody types this code either (see below).
            send(method, target, {**body, "cannot_prompt": True}, sandbox)
            raise
        except prompt.NoTerminal:
            return _without_terminal(method, target, body, sandbox, serial, mfa_wait)
        tries += 1
        response = send(method, target, {**body, "token_code": token}, sandbox)
    if response.status != 200:
        error = error_of(response)
        message = f"{error.get('message')} ({error.get('code')})"
        raise Failed(message, protocol.exit_code_for_status(response.status), error)
    return response


def error_of(response: transport.Response) -> dict[str, str]:
    """The daemon's error object: {"code", "message", ...}."""
    import json  # error path only

    try:
        error = json.loads(response.body)["error"]
        if isinstance(error, dict):
            return error
    except (ValueError, KeyError, TypeError):
        pass
    return {"code": "HttpError", "message": f"the daemon answered HTTP {response.status}"}


def json_of(response: transport.Response) -> dict:  # type: ignore[type-arg]
    """The body of a daemon answer, decoded."""
    import json  # not on the env/process hot path

    return json.loads(response.body)
