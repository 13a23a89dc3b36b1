"""The desktop notification's command and the mfa_wait field: pure logic, no bus."""

import pytest

from rolecached.errors import InvalidRequest
from rolecached.host import desktop
from rolecached.sources import mfawait


def test_notify_send_is_preferred_and_gdbus_gets_typed_literals() -> None:
    """notify-send when installed; else gdbus with GVariant literals whose quotes are
    escaped (a role name cannot end the string); None with neither."""
    both = desktop.notify_command("S", "B", which=lambda name: f"/usr/bin/{name}")
    assert both is not None and both[0] == "notify-send" and both[-2:] == ["S", "B"]
    gdbus = desktop.notify_command("it's", "a\\b", which=lambda n: "/x" if n == "gdbus" else None)
    assert gdbus is not None and gdbus[:2] == ["gdbus", "call"]
    assert "'it\\'s'" in gdbus and "'a\\\\b'" in gdbus
    assert gdbus[-3:] == ["@as []", "@a{sv} {}", "int32 -1"]
    assert desktop.notify_command("S", "B", which=lambda name: None) is None


@pytest.mark.parametrize(
    ("environ", "present"),
    [
        ({}, False),
        ({"DISPLAY": ""}, False),
        ({"DISPLAY": ":0"}, True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, True),
        ({"DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus"}, True),
    ],
)
def test_a_desktop_session_is_recognised(environ: dict[str, str], present: bool) -> None:
    """A session bus or a display means a desktop to notify; none (or empty) means none."""
    assert desktop.session_present(environ) is present


@pytest.mark.parametrize("value", [-1, 901, 1.5, True, "60"])
def test_mfa_wait_refuses_what_is_no_whole_number_of_seconds_in_range(value: object) -> None:
    """mfa_wait is 0 to 900 whole seconds; anything else is an InvalidRequest."""
    with pytest.raises(InvalidRequest, match="mfa_wait"):
        mfawait.parse_mfa_wait(value)


def test_mfa_wait_defaults_to_no_wait() -> None:
    """An absent mfa_wait is 0 (fail at once, as before); 900 is allowed."""
    assert mfawait.parse_mfa_wait(None) == 0
    assert mfawait.parse_mfa_wait(900) == 900
