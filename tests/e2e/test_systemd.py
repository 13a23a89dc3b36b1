"""systemd integration: socket activation (LISTEN_FDS) and readiness (NOTIFY_SOCKET), with a
listening socket and a notify socket made here the way systemd makes them."""

import configparser
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.daemonkit import BIN, Moto, base_env, unique_role
from tests.systemdkit import (
    MOST_EXPOSURE,
    UNITS,
    exposure,
    offline_security,
    offline_security_unavailable,
    unit_settings,
)

ROOT = Path(__file__).resolve().parent.parent.parent


def test_socket_activation_and_readiness(tmp_path: Path, moto: Moto) -> None:
    """The daemon adopts the listening socket passed as fd 3, sends READY=1 once it serves,
    answers on that socket, and leaves the socket file to systemd at exit."""
    env = base_env(tmp_path, moto.url)
    folder = Path(env["ROLECACHE_SOCKET"]).parent
    folder.mkdir(mode=0o700)
    path = folder / "rolecache.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    env.update(LISTEN_FDS="1", NOTIFY_SOCKET=str(tmp_path / "notify"))

    def as_fd_3() -> None:
        os.dup2(listener.fileno(), 3)

    # LISTEN_PID must be the daemon's own pid: let the shell set it to $$ and exec.
    process = subprocess.Popen(
        ["sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", str(BIN / "rolecached")],
        env=env,
        pass_fds=(3,),
        preexec_fn=as_fd_3,
        stderr=subprocess.PIPE,
        text=True,
    )
    listener.close()  # only the daemon holds it now
    try:
        assert notify.recv(4096) == b"READY=1"
        # Ready means serving: the very next request is answered.
        result = subprocess.run(
            [
                str(BIN / "rolecache"),
                "env",
                "--role-arn",
                unique_role(),
                "--role-session-name",
                "sd",
            ],
            env=dict(env, ROLECACHE_NO_AUTOSTART="1"),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert path.exists(), "the daemon removed systemd's socket"


def test_no_notify_socket_no_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NOTIFY_SOCKET (no systemd), sd_notify does nothing and says it sent nothing."""
    from rolecached.host.systemd import notify as sd_notify

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False


def test_units_declare_socket_activation_and_notify() -> None:
    """The shipped units: a 0600 socket in a 0700 folder under %t, and a Type=notify service."""
    socket_unit = configparser.ConfigParser(strict=False, interpolation=None)
    socket_unit.read(ROOT / "systemd" / "rolecached.socket")
    assert socket_unit["Socket"]["ListenStream"] == "%t/rolecache/rolecache.sock"
    assert socket_unit["Socket"]["SocketMode"] == "0600"
    assert socket_unit["Socket"]["DirectoryMode"] == "0700"
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.read(ROOT / "systemd" / "rolecached.service")
    assert service["Service"]["Type"] == "notify"
    assert "--socket %t/rolecache/rolecache.sock" in service["Service"]["ExecStart"]


def test_an_unsupported_platform_is_refused_at_start(tmp_path: Path, moto: Moto) -> None:
    """Where host/ has no implementation, rolecached says so and exits 1 instead of
    serving peers it cannot check."""
    script = (
        "import sys\n"
        "from rolecached.host import peers\n"
        "peers.SUPPORTED = False\n"
        "from rolecached.main import main\n"
        "sys.exit(main())\n"
    )
    result = subprocess.run(
        [str(BIN / "python"), "-c", script],
        env=base_env(tmp_path, moto.url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "only on Linux" in result.stderr


def test_service_comes_back_after_a_crash_and_can_start_at_login() -> None:
    """The service restarts after a crash (so endpoints come back) and can be enabled on its
    own at login (default.target), bringing its socket along."""
    service = unit_settings(UNITS / "rolecached.service")
    assert service["Service"]["Restart"] == ["on-failure"]
    assert service["Install"]["WantedBy"] == ["default.target"]
    assert service["Install"]["Also"] == ["rolecached.socket"]
    socket_unit = unit_settings(UNITS / "rolecached.socket")
    assert socket_unit["Install"]["WantedBy"] == ["sockets.target"]


def test_service_allows_only_the_address_families_it_uses() -> None:
    """Unix, IPv4/IPv6 and netlink (sock_diag peer lookups): nothing else, so the hardening
    cannot silently lose a family the daemon needs or gain one it does not."""
    service = unit_settings(UNITS / "rolecached.service")["Service"]
    families = " ".join(service["RestrictAddressFamilies"]).split()
    assert sorted(families) == ["AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX"]


def test_service_exposure_is_at_most_five_as_a_user_unit(tmp_path: Path) -> None:
    """`systemd-analyze security --offline=yes --user` rates the shipped service at most 5.0."""
    reason = offline_security_unavailable()
    if reason:
        pytest.skip(reason)
    result = offline_security(UNITS / "rolecached.service", tmp_path / "runtime")
    assert result.returncode == 0, result.stderr
    level = exposure(result.stdout)
    assert level <= MOST_EXPOSURE, result.stdout


def test_bounding_set_is_emptied_only_inside_a_user_namespace() -> None:
    """A user manager has no CAP_SETPCAP: it can empty the bounding set only in a user
    namespace of the unit's own, so CapabilityBoundingSet= comes with PrivateUsers=yes (else
    the daemon fails at step CAPABILITIES and never starts)."""
    service = unit_settings(UNITS / "rolecached.service")["Service"]
    assert service["CapabilityBoundingSet"] == [""]
    assert service["PrivateUsers"] == ["yes"]
