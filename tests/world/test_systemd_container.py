"""The shipped user units under a real systemd: a container with systemd as PID 1, a lingering
user `dev` whose user manager runs rolecached.socket and rolecached.service as shipped (a
drop-in adds only --sandbox: moto's fake STS inside the daemon, no AWS, no network)."""

import shlex
import subprocess
from collections.abc import Iterator

import pytest

from tests.containerkit import doc_block
from tests.daemonkit import BIN
from tests.systemdkit import (
    DEV_UID,
    MOST_EXPOSURE,
    UNITS,
    Machine,
    exposure,
    systemd_machine,
    systemd_machine_unavailable,
)

ROLE = "arn:aws:iam::123456789012:role/deploy"
# As the docs say to give the unit its environment: environment.d and set-environment.
ENVIRONMENT_D = "AWS_CONFIG_FILE=${HOME}/.aws/rolecache-config\n"
SANDBOX_DROP_IN = (
    "[Service]\nExecStart=\n"
    "ExecStart=%h/.local/bin/rolecached --sandbox --socket %t/rolecache/rolecache.sock\n"
)
# A program fetching from the binding's container endpoint, as an SDK does.
FETCH = (
    "import json, os, urllib.request\n"
    "token = open(os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE']).read()\n"
    "request = urllib.request.Request(os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI'],"
    " headers={'Authorization': token})\n"
    "print(json.load(urllib.request.urlopen(request, timeout=10))['Expiration'])\n"
)


@pytest.fixture(scope="module")
def machine() -> Iterator[Machine]:
    """A booted systemd container with dev's units installed and dev lingering."""
    reason = systemd_machine_unavailable()
    if reason:
        pytest.skip(reason)
    with systemd_machine() as machine:
        units = "~/.config/systemd/user"
        installed = machine.dev(
            f"mkdir -p {units}/rolecached.service.d ~/.config/environment.d ~/.local/bin && "
            f"cp {UNITS}/rolecached.socket {UNITS}/rolecached.service {units}/ && "
            f"printf %s {shlex.quote(SANDBOX_DROP_IN)} > {units}/rolecached.service.d/sandbox.conf"
            f" && printf %s {shlex.quote(ENVIRONMENT_D)} > ~/.config/environment.d/aws.conf"
            f" && ln -s {BIN / 'rolecached'} ~/.local/bin/rolecached"
        )
        assert installed.returncode == 0, installed.stderr
        lingering = machine.root(
            f"loginctl enable-linger dev && systemctl start user@{DEV_UID}.service"
        )
        assert lingering.returncode == 0, lingering.stderr
        yield machine


def client(machine: Machine, *args: str) -> str:
    """`rolecache ARGS` as dev (never autostarting: only systemd may start the daemon)."""
    result = machine.dev(
        f"ROLECACHE_NO_AUTOSTART=1 {BIN / 'rolecache'} {shlex.join(args)}", timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr + machine.journal()
    return result.stdout


def service(machine: Machine, *properties: str) -> dict[str, str]:
    """rolecached.service's `properties` as dev's user manager reports them."""
    shown = machine.dev(f"systemctl --user show rolecached.service -p {','.join(properties)}")
    assert shown.returncode == 0, shown.stderr
    return dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)


def test_socket_activation_serves_a_client_and_the_unit_environment(machine: Machine) -> None:
    """Enabling only the socket starts nothing; the first client call starts the daemon
    through it, is served, and the daemon has the environment environment.d and
    set-environment gave the user manager."""
    enabled = machine.dev(
        "systemctl --user set-environment AWS_DEFAULT_REGION=eu-west-1 && "
        "systemctl --user enable --now rolecached.socket"
    )
    assert enabled.returncode == 0, enabled.stderr
    assert service(machine, "ActiveState")["ActiveState"] == "inactive"
    out = client(machine, "env", "--role-arn", ROLE, "--role-session-name", "sd")
    assert "AWS_SESSION_TOKEN=" in out
    state = service(machine, "ActiveState", "MainPID", "TriggeredBy")
    assert state["ActiveState"] == "active", state
    assert "rolecached.socket" in state["TriggeredBy"]
    # The daemon is not dumpable, so only root may read its environment.
    environ = machine.root(f"tr '\\0' '\\n' < /proc/{state['MainPID']}/environ")
    assert environ.returncode == 0, environ.stderr
    assert "AWS_CONFIG_FILE=/home/dev/.aws/rolecache-config" in environ.stdout.splitlines()
    assert "AWS_DEFAULT_REGION=eu-west-1" in environ.stdout.splitlines()


def test_sigkill_restarts_the_daemon_and_its_endpoints(machine: Machine) -> None:
    """With the service enabled, a SIGKILLed daemon is restarted by systemd (Restart=
    on-failure) and its endpoint answers again with no rolecache command run in between."""
    socket = machine.dev("systemctl --user enable --now rolecached.socket")
    assert socket.returncode == 0, socket.stderr
    client(machine, "endpoint", "add", "dev", "--role-arn", ROLE, "--role-session-name", "me")
    handoff = client(machine, "endpoint", "env", "dev", "--env-file")
    env = " ".join(shlex.quote(line) for line in handoff.splitlines())
    fetch = f"env {env} {BIN / 'python'} -c {shlex.quote(FETCH)}"
    assert machine.dev(fetch).returncode == 0
    enabled = machine.dev("systemctl --user enable rolecached.service")
    assert enabled.returncode == 0, enabled.stderr
    assert machine.dev("systemctl --user is-enabled rolecached.service").stdout.strip() == (
        "enabled"
    )
    before = service(machine, "MainPID", "NRestarts")
    killed = machine.dev(f"kill -KILL {before['MainPID']}")
    assert killed.returncode == 0, killed.stderr
    machine.wait_until(
        'test "$(systemctl --user show rolecached.service -p NRestarts --value)" = '
        f"{int(before['NRestarts']) + 1} && systemctl --user is-active --quiet rolecached.service"
    )
    after = service(machine, "MainPID")
    assert after["MainPID"] not in ("0", before["MainPID"]), after
    # Ready (READY=1) means the restored binding's listener is up: the very next fetch works.
    fetched = machine.dev(fetch)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert fetched.stdout.startswith("20"), fetched.stdout  # an ISO 8601 Expiration


def fetch_as_root(machine: Machine, name: str) -> subprocess.CompletedProcess:
    """A program running as root fetching binding `name`'s credentials on loopback."""
    handoff = client(machine, "endpoint", "env", name, "--env-file")
    env = " ".join(shlex.quote(line) for line in handoff.splitlines())
    return machine.root(f"env {env} {BIN / 'python'} -c {shlex.quote(FETCH)}")


def test_root_is_refused_unless_the_docs_drop_in_turns_the_namespace_off(
    machine: Machine,
) -> None:
    """In the unit's user namespace root is nobody, so the loopback endpoint refuses it; the
    docs' drop-in (no user namespace, full bounding set) starts the daemon, and root is
    served again."""
    socket = machine.dev("systemctl --user enable --now rolecached.socket")
    assert socket.returncode == 0, socket.stderr
    client(machine, "endpoint", "add", "root", "--role-arn", ROLE, "--role-session-name", "rt")
    refused = fetch_as_root(machine, "root")
    assert refused.returncode != 0 and "Expiration" not in refused.stdout, refused.stdout
    # Refused for who it is: root, seen from the daemon's user namespace, is nobody.
    why = machine.root("journalctl --no-pager _SYSTEMD_USER_UNIT=rolecached.service")
    assert "refused connections on the container endpoint from uid 65534" in why.stdout
    drop_in = doc_block("docs/operations.md", "ini", "PrivateUsers=no")
    path = drop_in.splitlines()[0].removeprefix("# ").replace("~", "/home/dev", 1)
    restarted = machine.dev(
        f"printf %s {shlex.quote(drop_in)} > {path} && systemctl --user daemon-reload && "
        "systemctl --user restart rolecached.service"
    )
    try:
        assert restarted.returncode == 0, restarted.stderr
        assert service(machine, "PrivateUsers")["PrivateUsers"] == "no"
        served = fetch_as_root(machine, "root")
        assert served.returncode == 0, served.stdout + served.stderr
        assert served.stdout.startswith("20"), served.stdout
    finally:
        machine.dev(
            f"rm -f {path} && systemctl --user daemon-reload && "
            "systemctl --user restart rolecached.service"
        )


def test_enabled_service_starts_with_the_user_manager(machine: Machine) -> None:
    """Enabled, the service starts when the user manager does (login, or boot with linger),
    before anything connects: endpoints are up without a rolecache command."""
    enabled = machine.dev("systemctl --user enable rolecached.service")
    assert enabled.returncode == 0, enabled.stderr
    restarted = machine.root(f"systemctl restart user@{DEV_UID}.service")
    assert restarted.returncode == 0, restarted.stderr
    # Nothing connects to the socket here: only default.target can start it.
    machine.wait_until("systemctl --user is-active --quiet rolecached.service")


def test_security_exposure_under_the_user_manager(machine: Machine) -> None:
    """`systemd-analyze security --user` rates the loaded service at most 5.0, and the kernel
    shows the sandbox applied to the running daemon (no new privileges, a seccomp filter,
    an empty bounding set), not only written in the unit."""
    result = machine.dev("systemd-analyze security --user --no-pager rolecached.service")
    assert result.returncode == 0, result.stderr
    assert exposure(result.stdout) <= MOST_EXPOSURE, result.stdout
    started = machine.dev(
        "systemctl --user enable --now rolecached.socket && "
        "systemctl --user start rolecached.service"
    )
    assert started.returncode == 0, started.stderr + machine.journal()
    pid = service(machine, "MainPID")["MainPID"]
    status = machine.root(f"cat /proc/{pid}/status").stdout
    fields = dict(line.split(":", 1) for line in status.splitlines())
    applied = {name: fields[name].strip() for name in ("NoNewPrivs", "Seccomp", "CapBnd")}
    assert applied == {"NoNewPrivs": "1", "Seccomp": "2", "CapBnd": "0000000000000000"}
