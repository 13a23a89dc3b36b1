"""The real daemon and client as processes, and the moto they talk to: the isolated
environments they run in, starting the daemon and waiting for its socket, running the client,
and unique role names so moto's call counts stay per test."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from moto.sts.models import sts_backends

from tests.imds_sentinel import HERMETIC_VARIABLES
from tests.strict_sts import StsProxy

BIN = Path(sys.executable).parent
ACCOUNT = "123456789012"


@dataclass
class Moto:
    """moto's STS as the tests see it: `url` is the strict STS proxy in front of moto (what
    every daemon, client and SDK in a test talks to), `direct_url` moto itself. moto runs in
    this process, so its STS backend is readable for call counts."""

    url: str
    direct_url: str
    proxy: StsProxy

    def assume_role_calls(self, role_arn: str) -> int:
        """How many AssumeRole calls moto answered for `role_arn`."""
        account = role_arn.split(":")[4]
        return sum(1 for r in sts_backends[account]["aws"].assumed_roles if r.role_arn == role_arn)


def unique_role(name: str = "role") -> str:
    """A role ARN no other test uses, so moto's call counts stay per test."""
    return f"arn:aws:iam::{ACCOUNT}:role/{name}-{uuid.uuid4().hex[:8]}"


def wait_for_socket(
    path: Path, timeout: float = 20.0, process: subprocess.Popen | None = None
) -> None:
    """Block until something accepts connections at `path`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"daemon exited early with {process.returncode}")
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(path))
                return
            except OSError:
                time.sleep(0.02)
    raise AssertionError(f"nothing answered on {path} within {timeout} s")


def outside_env() -> dict[str, str]:
    """This session's environment without the developer's AWS and rolecache settings, but with
    the variables that keep every process away from the real instance metadata service."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "ROLECACHE_")) or k in HERMETIC_VARIABLES
    }


def base_env(tmp: Path, moto_url: str) -> dict[str, str]:
    """An environment isolated from the developer's own AWS set-up, pointing STS at moto."""
    env = outside_env()
    # No test's daemon notifies the developer's own desktop of an MFA wait: the one test
    # that checks notifications gives its daemon a session bus of its own.
    for name in ("DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "WAYLAND_DISPLAY"):
        env.pop(name, None)
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    run = tmp / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    env.update(
        HOME=str(home),
        XDG_RUNTIME_DIR=str(run),
        XDG_STATE_HOME=str(home / "state"),
        XDG_CONFIG_HOME=str(home / "config"),
        AWS_CONFIG_FILE=str(home / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "aws-credentials"),
        AWS_ACCESS_KEY_ID="AKIASOURCEKEY0000001",
        AWS_SECRET_ACCESS_KEY="source-secret-not-for-logs",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_STS=moto_url,
        ROLECACHE_SOCKET=str(run / "rolecache" / "rolecache.sock"),
    )
    return env


def autostart_env(tmp: Path, moto_url: str) -> dict[str, str]:
    """base_env for a client that starts the daemon itself: an autostarted daemon never
    inherits AWS_ACCESS_KEY_ID and friends, so the source keys are in the credentials file
    that AWS_SHARED_CREDENTIALS_FILE names (which it does inherit)."""
    env = base_env(tmp, moto_url)
    key_id = env.pop("AWS_ACCESS_KEY_ID")
    secret = env.pop("AWS_SECRET_ACCESS_KEY")
    Path(env["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    )
    return env


def stop_autostarted_daemon(env: dict[str, str]) -> None:
    """SIGTERM the daemon a client with `env` autostarted, if one answers."""
    result = run_client(dict(env, ROLECACHE_NO_AUTOSTART="1"), "status")
    for line in result.stdout.splitlines():
        if line.startswith("pid: "):
            os.kill(int(line[5:]), signal.SIGTERM)


def run_client(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run the installed `rolecache` console script, as a shell would."""
    return subprocess.run(
        [str(BIN / "rolecache"), *args], env=env, capture_output=True, text=True, timeout=60
    )


@dataclass
class Daemon:
    """A running rolecached process and how to talk to it."""

    process: subprocess.Popen
    env: dict[str, str]
    socket: Path
    log: Path
    tmp: Path
    outputs: list[str] = field(default_factory=list)

    def client(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run the installed `rolecache` console script against this daemon."""
        result = run_client(env or self.env, *args)
        self.outputs.extend([result.stdout, result.stderr])
        return result

    def stop(self) -> int:
        """SIGTERM the daemon and return its exit status; its port keeper, which would hold
        the ports for the next start, lets them go too."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=15)
        release_held_ports(self.socket.with_name(f"{self.socket.stem}.ports"))
        return self.process.returncode


def release_held_ports(path: Path) -> None:
    """Tell the port keeper at `path`, if one runs, to release its ports and leave."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
        conn.settimeout(10)
        try:
            conn.connect(str(path))
            conn.send(b'{"op": "release"}')
            conn.recv(16)  # its end of the connection closes as it leaves
        except OSError:
            pass


def start_daemon(tmp: Path, env: dict[str, str], *args: str) -> Daemon:
    """Start rolecached with `env` at debug level, logging to tmp/daemon.log."""
    sock = Path(env["ROLECACHE_SOCKET"])
    log = tmp / "daemon.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [str(BIN / "rolecached"), "--log-level", "debug", *args],
            env=env,
            stdout=out,
            stderr=out,
        )
    wait_for_socket(sock, process=process)
    return Daemon(process, env, sock, log, tmp)
