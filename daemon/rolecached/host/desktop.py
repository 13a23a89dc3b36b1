"""Desktop notifications (freedesktop Notifications over the session D-Bus), sent with the
tools the desktop has: `notify-send`, else `gdbus`. No Python D-Bus library is needed, and the
daemon never waits for the desktop: each notification runs in a thread, with a timeout."""

import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

NOTIFY_TIMEOUT = 5.0  # seconds a notification may take before it is given up
APP_NAME = "rolecache"
ICON = "dialog-password"


def session_present(environ: Mapping[str, str]) -> bool:
    """True when a desktop session is there to notify (a session bus, or a display)."""
    return any(
        environ.get(name) for name in ("DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "WAYLAND_DISPLAY")
    )


def _gvariant_string(text: str) -> str:
    """`text` as a GVariant string literal, which gdbus parses its arguments as."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def notify_command(
    summary: str, body: str, which: Callable[[str], str | None] = shutil.which
) -> list[str] | None:
    """The command that shows the notification, or None when no tool for it is installed."""
    if which("notify-send"):
        return ["notify-send", f"--app-name={APP_NAME}", f"--icon={ICON}", summary, body]
    if which("gdbus"):
        return [
            "gdbus", "call", "--session", "--timeout", str(int(NOTIFY_TIMEOUT)),
            "--dest", "org.freedesktop.Notifications",
            "--object-path", "/org/freedesktop/Notifications",
            "--method", "org.freedesktop.Notifications.Notify",
            _gvariant_string(APP_NAME), "uint32 0", _gvariant_string(ICON),
            _gvariant_string(summary), _gvariant_string(body),
            "@as []", "@a{sv} {}", "int32 -1",
        ]  # fmt: skip
    return None


def _run(command: list[str]) -> None:
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=NOTIFY_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("desktop notification failed: %s", exc)
        return
    if done.returncode != 0:
        log.warning("desktop notification failed: %s", done.stderr.decode(errors="replace").strip())


def notify(summary: str, body: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Show a notification when a desktop session is there; return whether one was sent
    off (it is shown, or fails, in a thread of its own)."""
    if not session_present(environ):
        return False
    command = notify_command(summary, body)
    if command is None:
        log.info("no notify-send or gdbus: no desktop notification")
        return False
    threading.Thread(target=_run, args=(command,), name="notify", daemon=True).start()
    return True
