"""Programs without a terminal waiting for an MFA code, and a desktop session bus whose
notification service records what it is asked to show (for tests/e2e/test_mfa_wait.py)."""

import json
import select
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.daemonkit import BIN, Daemon, run_client

SYSTEM_PYTHON = "/usr/bin/python3"

# The notification service: owns org.freedesktop.Notifications on the bus it is given and
# prints each Notify call as a JSON line (Debian's python3-gi; the daemon itself needs none).
NOTIFICATIONS_SERVICE = r"""
import json, sys
from gi.repository import Gio, GLib
XML = '''<node><interface name="org.freedesktop.Notifications">
<method name="Notify"><arg type="s" direction="in"/><arg type="u" direction="in"/>
<arg type="s" direction="in"/><arg type="s" direction="in"/><arg type="s" direction="in"/>
<arg type="as" direction="in"/><arg type="a{sv}" direction="in"/><arg type="i" direction="in"/>
<arg type="u" direction="out"/></method>
<method name="GetCapabilities"><arg type="as" direction="out"/></method>
<method name="GetServerInformation"><arg type="s" direction="out"/><arg type="s" direction="out"/>
<arg type="s" direction="out"/><arg type="s" direction="out"/></method>
</interface></node>'''
node = Gio.DBusNodeInfo.new_for_xml(XML)
def call(conn, sender, path, iface, method, params, invocation):
    if method == "Notify":
        app, _, _, summary, body = params.unpack()[:5]
        print(json.dumps({"app": app, "summary": summary, "body": body}), flush=True)
        invocation.return_value(GLib.Variant("(u)", (1,)))
    elif method == "GetCapabilities":
        invocation.return_value(GLib.Variant("(as)", (["body"],)))
    else:
        invocation.return_value(GLib.Variant("(ssss)", ("test", "test", "1", "1.2")))
conn = Gio.DBusConnection.new_for_address_sync(
    sys.argv[1],
    Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
    None, None)
conn.register_object("/org/freedesktop/Notifications", node.interfaces[0], call, None, None)
def owned(*_):
    print(json.dumps({"owned": True}), flush=True)
Gio.bus_own_name_on_connection(conn, "org.freedesktop.Notifications", 0, owned, None)
GLib.MainLoop().run()
"""


def gi_missing() -> str | None:
    """Why the session-bus test cannot run here, or None."""
    if shutil.which("dbus-daemon") is None:
        return "dbus-daemon is not installed (Debian's dbus package)"
    if shutil.which("notify-send") is None and shutil.which("gdbus") is None:
        return "neither notify-send (libnotify-bin) nor gdbus (libglib2.0-bin) is installed"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "from gi.repository import Gio"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return "Debian's python3-gi is not installed (the test's notification service)"
    return None


@dataclass
class SessionBus:
    """A private session bus and the notification service on it."""

    address: str
    service: subprocess.Popen

    def next_notification(self, timeout: float = 30.0) -> dict[str, str]:
        """Block until the service reports the next Notify call (it prints one line each),
        for `timeout` s at most."""
        assert self.service.stdout is not None
        ready, _, _ = select.select([self.service.stdout], [], [], timeout)
        assert ready, f"no notification within {timeout} s"
        line = self.service.stdout.readline()
        assert line, "the notification service ended without a notification"
        return json.loads(line)


@pytest.fixture
def session_bus(tmp_path: Path) -> Iterator[SessionBus]:
    """`dbus-daemon --session` on a socket in tmp_path, with org.freedesktop.Notifications
    owned by a recording service; skipped with the reason when a piece is missing."""
    reason = gi_missing()
    if reason:
        pytest.skip(reason)
    bus = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address",
         f"--address=unix:path={tmp_path / 'bus'}"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert bus.stdout is not None
    address = bus.stdout.readline().strip()
    service = subprocess.Popen(
        [SYSTEM_PYTHON, "-c", NOTIFICATIONS_SERVICE, address], stdout=subprocess.PIPE, text=True
    )
    try:
        assert service.stdout is not None
        assert json.loads(service.stdout.readline()) == {"owned": True}
        yield SessionBus(address, service)
    finally:
        for process in (service, bus):
            process.terminate()
            process.wait(timeout=10)


def without_terminal(daemon: Daemon, *args: str) -> subprocess.Popen:
    """Start `rolecache ARGS` as an IDE would: its own session (no controlling terminal),
    stdin /dev/null."""
    return subprocess.Popen(
        ["setsid", str(BIN / "rolecache"), *args],
        env=daemon.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def waiting(daemon: Daemon) -> list[dict]:
    """`rolecache mfa --list --json`: the requests waiting for a code."""
    result = run_client(daemon.env, "mfa", "--list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["waiting"]


def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Ask again until `condition` holds (each try is a round trip to the daemon)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


def wait_for_waiters(daemon: Daemon, count: int) -> list[dict]:
    """Block until `count` requests wait for a code; return them."""
    until(lambda: len(waiting(daemon)) >= count, f"{count} waiting requests")
    return waiting(daemon)
