"""`rolecache login PROFILE | --sso-session NAME`: sign in to IAM Identity Center (SSO).

The daemon runs the OIDC device authorization flow and writes the token where botocore and
the AWS CLI read it (~/.aws/sso/cache); this shows the user the URL and code, opens a
browser where there is a display, and waits for the daemon to say the sign-in is done.
"""

import contextlib
import os
import sys

from rolecache import protocol
from rolecache.ask import call, json_of
from rolecache.cmdline import LOGIN_FLAGS, UsageError, parse_options

USAGE = """\
usage: rolecache login PROFILE | --profile PROFILE | --sso-session NAME [--no-browser]

Sign in to IAM Identity Center (SSO), as `aws sso login` does: open the URL shown (a browser
opens where there is a display) and confirm the code. The token goes to ~/.aws/sso/cache,
where the daemon, botocore and the AWS CLI find it.
"""


def _request(args: list[str]) -> tuple[dict[str, object], bool]:
    """The login request the arguments name, and whether a browser may be opened."""
    if args and not args[0].startswith("-"):  # `login PROFILE`, as `--profile PROFILE`
        args = ["--profile", *args]
    fields, flags, rest = parse_options(args, LOGIN_FLAGS)
    if rest or set(fields) - {"profile"}:
        raise UsageError("login takes one profile, or --sso-session NAME")
    body: dict[str, object] = dict(protocol.aws_config_paths())
    if "profile" in fields and "--sso-session" in flags:
        raise UsageError("login takes a profile or --sso-session NAME, not both")
    if "profile" in fields:
        body["profile"] = fields["profile"]
    elif "--sso-session" in flags:
        body["sso_session"] = flags["--sso-session"]
    else:
        raise UsageError("login needs a profile or --sso-session NAME")
    return body, not flags.get("--no-browser")


def _open_browser(url: str) -> None:
    """Open `url` where there is a display to show it on; never without one."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return
    import webbrowser  # only for a sign-in with a display

    with contextlib.suppress(webbrowser.Error):  # the URL is printed: it can be opened by hand
        webbrowser.open_new_tab(url)


def run(args: list[str], sandbox: bool) -> int:
    """Start a sign-in, show its URL and code, and wait until it is confirmed."""
    if args[:1] in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return protocol.EXIT_OK
    body, browser = _request(args)
    started = json_of(call("POST", "/v1/sso/login", body, sandbox))
    print(
        f"Signing in to {started['sso_session']}.\n"
        f"Open {started['verification_uri']} and confirm the code {started['user_code']}\n"
        f"(or open {started['verification_uri_complete']})",
        flush=True,
    )
    if browser:
        _open_browser(str(started["verification_uri_complete"]))
    while True:
        answer = json_of(call("POST", f"/v1/sso/login/{started['login_id']}", {}, sandbox))
        if answer.get("done"):
            print(f"Signed in; the token is valid until {answer['expires_at']}.")
            return protocol.EXIT_OK
