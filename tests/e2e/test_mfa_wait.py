"""Programs without a terminal (IDEs, CDK, credential_process) wait for an MFA code that
`rolecache mfa` gives from any terminal: real daemon, real client, strict STS."""

import signal
import subprocess
from pathlib import Path

from tests.daemonkit import ACCOUNT, BIN, Daemon, start_daemon, unique_role
from tests.mfakit import SessionBus, session_bus, until, wait_for_waiters, waiting, without_terminal
from tests.profilekit import on_terminal, role_profile, write_config
from tests.strict_sts import StsProxy

__all__ = ["session_bus"]

MFA = f"arn:aws:iam::{ACCOUNT}:mfa/alice"


def sent_codes(proxy: StsProxy) -> list[tuple[str, str]]:
    """Every (Action, TokenCode) STS received, in order."""
    return [(f["Action"], f["TokenCode"]) for f in proxy.forms if "TokenCode" in f]


def test_a_process_without_terminal_is_served_once_rolecache_mfa_gives_the_code(
    daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """`rolecache process` with no terminal waits; `rolecache mfa 123456` in another process
    lists nothing secret, and the waiting process prints credentials."""
    role = unique_role("ide")
    write_config(daemon.env, role_profile("ide", role, "base", mfa_serial=MFA))
    ide = without_terminal(daemon, "process", "--profile", "ide")
    (listed,) = wait_for_waiters(daemon, 1)
    assert listed["mfa_serial"] == MFA and role in listed["role"]
    assert listed["pid"] == ide.pid and listed["comm"]
    table = daemon.client("mfa", "--list").stdout
    assert MFA in table and f"pid {ide.pid}" in table

    answer = daemon.client("mfa", "123456")
    assert answer.returncode == 0, answer.stderr
    stdout, stderr = ide.communicate(timeout=60)
    assert ide.returncode == 0, stderr
    assert '"SessionToken"' in stdout and "rolecache mfa" in stderr
    assert sent_codes(sts_proxy) == [("GetSessionToken", "123456")]
    assert sts_proxy.refused == []
    assert waiting(daemon) == []


def test_rolecache_mfa_lists_and_asks_for_the_code_on_its_terminal(
    daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """`rolecache mfa --device SERIAL` on a terminal shows who waits and reads the code there;
    the waiting request is served."""
    write_config(daemon.env, role_profile("t", unique_role("tty"), "base", mfa_serial=MFA))
    ide = without_terminal(daemon, "process", "--profile", "t")
    wait_for_waiters(daemon, 1)
    status, stdout, screen = on_terminal(daemon.env, ["mfa", "--device", MFA], ["888888"])
    assert status == 0, screen
    assert f"pid {ide.pid}" in stdout and "1 waiting request served" in stdout
    assert screen.count("MFA code for") == 1
    assert ide.wait(timeout=60) == 0
    assert sent_codes(sts_proxy) == [("GetSessionToken", "888888")]


def test_a_code_typed_at_a_terminal_prompt_also_serves_the_waiting(
    daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """A request waits; the user runs the same role's command in a terminal and types the
    code at its prompt: the waiting request is served too, the code sent once."""
    write_config(daemon.env, role_profile("p", unique_role("prompt"), "base", mfa_serial=MFA))
    ide = without_terminal(daemon, "process", "--profile", "p")
    wait_for_waiters(daemon, 1)
    status, _, screen = on_terminal(daemon.env, ["env", "--profile", "p"], ["999999"])
    assert status == 0, screen
    assert ide.wait(timeout=60) == 0
    assert sent_codes(sts_proxy) == [("GetSessionToken", "999999")]


def test_one_code_serves_three_waiting_requests_with_one_get_session_token(
    daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """Three 1-hour roles of one device wait; one code (read from stdin) serves all three
    with a single GetSessionToken, the code sent to STS once."""
    roles = {f"r{i}": unique_role(f"r{i}") for i in range(3)}
    write_config(
        daemon.env,
        "".join(role_profile(name, arn, "base", mfa_serial=MFA) for name, arn in roles.items()),
    )
    waiters = [without_terminal(daemon, "process", "--profile", name) for name in roles]
    wait_for_waiters(daemon, 3)
    answer = subprocess.run(
        [str(BIN / "rolecache"), "mfa", "--code", "-"],
        input="234567\n",
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 0, answer.stderr
    assert "3 waiting requests served" in answer.stdout
    for process in waiters:
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        assert '"AccessKeyId"' in stdout
    assert sent_codes(sts_proxy) == [("GetSessionToken", "234567")]
    assert [f["Action"] for f in sts_proxy.forms].count("GetSessionToken") == 1
    assert sts_proxy.refused == []


def test_a_wrong_code_is_reported_to_rolecache_mfa_and_the_request_keeps_waiting(
    daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """A code STS refuses is reported to `rolecache mfa` (exit 2), the request still waits,
    and the next code serves it."""
    write_config(
        daemon.env,
        role_profile("w", unique_role("wrong"), "base", mfa_serial=MFA)
        + role_profile(
            "used", unique_role("used"), "base", mfa_serial=MFA, duration_seconds="7200"
        ),
    )
    # The code is spent on another role first: STS refuses it as reused (a wrong code's
    # answer: AccessDenied, MultiFactorAuthentication failed).
    assert daemon.client("env", "--profile", "used", "--token-code", "111111").returncode == 0
    ide = without_terminal(daemon, "process", "--profile", "w")
    wait_for_waiters(daemon, 1)
    refused = daemon.client("mfa", "111111")
    assert refused.returncode == 2 and "MfaCodeRejected" in refused.stderr, refused.stderr
    assert len(waiting(daemon)) == 1 and ide.poll() is None
    assert daemon.client("mfa", "222222").returncode == 0
    _, stderr = ide.communicate(timeout=60)
    assert ide.returncode == 0, stderr
    assert sts_proxy.refused == ["AccessDenied"]


def test_long_roles_of_one_device_take_a_fresh_code_each(
    daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """Two 12-hour roles wait on one device: a code serves the oldest only (a code goes to
    STS once), the message says the other waits, and a second code serves it."""
    first, second = unique_role("long1"), unique_role("long2")
    write_config(
        daemon.env,
        role_profile("l1", first, "base", mfa_serial=MFA, duration_seconds="43200")
        + role_profile("l2", second, "base", mfa_serial=MFA, duration_seconds="43200"),
    )
    one = without_terminal(daemon, "process", "--profile", "l1")
    wait_for_waiters(daemon, 1)
    two = without_terminal(daemon, "process", "--profile", "l2")
    wait_for_waiters(daemon, 2)
    answer = daemon.client("mfa", "333333")
    assert answer.returncode == 0, answer.stderr
    assert "1 request for roles over an hour still wait" in answer.stdout
    assert one.wait(timeout=60) == 0
    assert [w["role"].split(" as ")[0] for w in waiting(daemon)] == [second]
    assert daemon.client("mfa", "444444").returncode == 0
    assert two.wait(timeout=60) == 0
    assert sent_codes(sts_proxy) == [("AssumeRole", "333333"), ("AssumeRole", "444444")]
    assert sts_proxy.refused == []


def test_a_code_goes_to_the_session_when_hour_and_longer_roles_wait_together(
    daemon: Daemon, sts_proxy: StsProxy
) -> None:
    """A 12-hour and a 1-hour role wait on one device: the code opens the session (serving
    the 1-hour role), the 12-hour role keeps waiting with a message, and takes the next code."""
    write_config(
        daemon.env,
        role_profile("long", unique_role("long"), "base", mfa_serial=MFA, duration_seconds="43200")
        + role_profile("hour", unique_role("hour"), "base", mfa_serial=MFA),
    )
    long = without_terminal(daemon, "process", "--profile", "long")
    wait_for_waiters(daemon, 1)
    hour = without_terminal(daemon, "process", "--profile", "hour")
    wait_for_waiters(daemon, 2)
    answer = daemon.client("mfa", "121212")
    assert answer.returncode == 0, answer.stderr
    assert "MFA session" in answer.stdout and "1 request for roles over an hour" in answer.stdout
    assert hour.wait(timeout=60) == 0
    assert [w["uses_session"] for w in waiting(daemon)] == [False] and long.poll() is None
    assert daemon.client("mfa", "232323").returncode == 0
    assert long.wait(timeout=60) == 0
    assert sent_codes(sts_proxy) == [("GetSessionToken", "121212"), ("AssumeRole", "232323")]
    assert sts_proxy.refused == []


def test_two_codes_given_at_once_open_one_session(daemon: Daemon, sts_proxy: StsProxy) -> None:
    """Two `rolecache mfa` race for one waiting request: both return, one GetSessionToken
    is made, and the request is served."""
    write_config(daemon.env, role_profile("race", unique_role("race"), "base", mfa_serial=MFA))
    ide = without_terminal(daemon, "process", "--profile", "race")
    wait_for_waiters(daemon, 1)
    givers = [
        subprocess.Popen(
            [str(BIN / "rolecache"), "mfa", code], env=daemon.env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        for code in ("343434", "454545")
    ]  # fmt: skip
    results = [giver.communicate(timeout=60) for giver in givers]
    assert all(g.returncode in (0, 2) for g in givers), results
    assert ide.wait(timeout=60) == 0
    assert [a for a, _ in sent_codes(sts_proxy)] == ["GetSessionToken"]


def test_a_caller_that_gives_up_leaves_no_waiting_entry(daemon: Daemon) -> None:
    """A waiting `rolecache process` killed by its IDE disappears from `rolecache mfa --list`,
    and a code given afterwards finds nothing to answer."""
    write_config(daemon.env, role_profile("k", unique_role("killed"), "base", mfa_serial=MFA))
    ide = without_terminal(daemon, "process", "--profile", "k")
    wait_for_waiters(daemon, 1)
    ide.send_signal(signal.SIGKILL)
    ide.wait(timeout=10)
    until(lambda: waiting(daemon) == [], "the entry of the killed caller to go")
    late = daemon.client("mfa", "555555")
    assert late.returncode == 2 and "no request waits" in late.stderr


def test_a_stopping_daemon_lets_the_waiting_go(daemon: Daemon) -> None:
    """SIGTERM while a request waits: the daemon stops (it does not wait out the 300 s) and
    the waiting process exits 1 saying the daemon is stopping."""
    write_config(daemon.env, role_profile("s", unique_role("stop"), "base", mfa_serial=MFA))
    ide = without_terminal(daemon, "process", "--profile", "s")
    wait_for_waiters(daemon, 1)
    assert daemon.stop() == 0
    _, stderr = ide.communicate(timeout=60)
    assert ide.returncode == 1 and "DaemonStopping" in stderr, stderr


def test_a_request_nobody_answers_fails_after_its_wait_saying_what_to_run(
    daemon: Daemon,
) -> None:
    """`--mfa-wait 1` and no code: exit 1 naming `rolecache mfa` and the wait, nothing left
    waiting; an out-of-range wait is refused as bad usage (exit 2)."""
    write_config(daemon.env, role_profile("o", unique_role("none"), "base", mfa_serial=MFA))
    late = without_terminal(daemon, "env", "--profile", "o", "--mfa-wait", "1")
    _, stderr = late.communicate(timeout=60)
    assert late.returncode == 1, stderr
    assert "was given within 1 s" in stderr and "rolecache mfa" in stderr
    assert waiting(daemon) == []
    too_long = daemon.client("env", "--profile", "o", "--mfa-wait", "901")
    assert too_long.returncode == 2 and "mfa_wait must be 0 to 900" in too_long.stderr


def test_env_without_terminal_fails_at_once_unless_it_asks_to_wait(daemon: Daemon) -> None:
    """`rolecache env` with no terminal fails at once (the old behaviour, naming --mfa-wait);
    with --mfa-wait it shows up as waiting."""
    write_config(daemon.env, role_profile("e", unique_role("env"), "base", mfa_serial=MFA))
    quick = daemon.client("env", "--profile", "e")
    assert quick.returncode == 1 and "--mfa-wait" in quick.stderr
    assert waiting(daemon) == []
    patient = without_terminal(daemon, "env", "--profile", "e", "--mfa-wait", "60")
    wait_for_waiters(daemon, 1)
    assert daemon.client("mfa", "666666").returncode == 0
    stdout, stderr = patient.communicate(timeout=60)
    assert patient.returncode == 0 and "export AWS_SESSION_TOKEN=" in stdout, stderr


def test_a_waiting_request_is_announced_on_the_desktop(
    tmp_path: Path, daemon: Daemon, session_bus: SessionBus
) -> None:
    """With a session bus in its environment, the daemon sends a freedesktop notification
    (through the real dbus-daemon) naming the device and the command to run."""
    daemon.stop()
    env = {**daemon.env, "DBUS_SESSION_BUS_ADDRESS": session_bus.address}
    desktop = start_daemon(tmp_path, env)
    try:
        write_config(env, role_profile("d", unique_role("desk"), "base", mfa_serial=MFA))
        ide = without_terminal(desktop, "process", "--profile", "d")
        shown = session_bus.next_notification()
        assert shown["app"] == "rolecache"
        assert MFA in shown["summary"]
        assert "rolecache mfa" in shown["body"] and f"pid {ide.pid}" in shown["body"]
        assert desktop.client("mfa", "777777").returncode == 0
        assert ide.wait(timeout=60) == 0
    finally:
        desktop.stop()
