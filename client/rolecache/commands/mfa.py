"""`rolecache mfa`: list the requests waiting for an MFA code, and give them one.

Programs without a terminal (IDEs, CDK, GUIs) wait in the daemon; any terminal of the same
user answers them here.
"""

import sys

from rolecache import protocol
from rolecache.ask import Failed, error_of, json_of, send
from rolecache.cmdline import COMMAND_FLAGS, UsageError, parse_options, print_table


def _ask(method: str, body: object, sandbox: bool) -> dict:  # type: ignore[type-arg]
    """One request to /v1/mfa; its error as it is (never a prompt: a refused code is
    reported to the one who gave it, and the requests keep waiting)."""
    response = send(method, "/v1/mfa", body, sandbox)
    if response.status != 200:
        error = error_of(response)
        message = f"{error.get('message')} ({error.get('code')})"
        raise Failed(message, protocol.exit_code_for_status(response.status), error)
    return json_of(response)


def _waiting(sandbox: bool) -> list[dict]:  # type: ignore[type-arg]
    return _ask("GET", None, sandbox)["waiting"]


def _row(w: dict) -> tuple[str, ...]:  # type: ignore[type-arg]
    asker = f"{w['comm'] or '?'} (pid {w['pid']})" if w["pid"] is not None else "?"
    return (w["mfa_serial"], w["role"], asker, f"{w['waiting_for']} s")


def _print_waiting(waiting: list[dict]) -> None:  # type: ignore[type-arg]
    if not waiting:
        print("no request waits for an MFA code")
        return
    print_table(("MFA DEVICE", "ROLE", "ASKED BY", "WAITING FOR"), [_row(w) for w in waiting])


def _code_argument(args: list[str]) -> tuple[str | None, list[str]]:
    """The CODE given as the first argument, if any, and the other arguments."""
    if args and not args[0].startswith("-"):
        return args[0], args[1:]
    return None, args


def run(args: list[str], sandbox: bool) -> int:
    """List (--list), or give the code (CODE, --code CODE|-, else asked on the terminal)."""
    code, args = _code_argument(args)
    fields, flags, rest = parse_options(args, COMMAND_FLAGS["mfa"])
    if fields or rest:
        raise UsageError("mfa takes CODE, --code CODE|-, --device SERIAL, --list and --json only")
    if flags.get("--list") or flags.get("--json"):
        if code is not None or "--code" in flags:
            raise UsageError("--list shows what waits; give a code without it")
        if flags.get("--json"):
            sys.stdout.write(protocol.dumps({"waiting": _waiting(sandbox)}) + "\n")
        else:
            _print_waiting(_waiting(sandbox))
        return protocol.EXIT_OK
    if "--code" in flags:
        if code is not None:
            raise UsageError("give the code once: CODE or --code CODE")
        code = str(flags["--code"])
        if code == "-":
            code = sys.stdin.readline().strip() if sys.stdin is not None else ""
            if not code:
                raise UsageError("--code - reads the MFA code from stdin, but stdin was empty")
    device = flags.get("--device")
    if code is None:
        waiting = [w for w in _waiting(sandbox) if device is None or w["mfa_serial"] == device]
        _print_waiting(waiting)
        if not waiting:
            return protocol.EXIT_ERROR
        from rolecache import prompt

        device = waiting[0]["mfa_serial"]
        try:
            code = prompt.ask_mfa_code(str(device))
        except prompt.NoTerminal:
            raise UsageError(
                "no terminal to ask for the code on: give it as `rolecache mfa CODE` or "
                "`rolecache mfa --code -` (stdin)"
            ) from None
    body: dict[str, object] = {"code": code}
    if device is not None:
        body["mfa_serial"] = device
    answer = _ask("POST", body, sandbox)
    print(answer["message"])
    return protocol.EXIT_OK
