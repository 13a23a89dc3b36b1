"""The real daemon and client as processes, for the end-to-end tests: the daemon with a
config-file endpoint binding (the `edaemon` fixture), the `endpoint add` command, a boto3
program that knows nothing of rolecache, and a probe of what the client imports."""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemonkit import BIN, Daemon, Moto, base_env, start_daemon

CONFIG_ROLE = "arn:aws:iam::123456789012:role/from-config"

# A program that knows nothing of rolecache: boto3's default chain, environment only.
PROBE = """
import boto3, json, os
session = boto3.Session()
arn = session.client("sts").get_caller_identity()["Arn"]
print(json.dumps({"arn": arn, "method": session.get_credentials().method,
                  "env": sorted(k for k in os.environ if k.startswith("AWS_"))}))
"""


# config.toml of `edaemon`: a free port and one binding, cfg.
CONFIG = (
    "[endpoints]\nport = 0\n\n[endpoints.cfg]\n"
    f'role_arn = "{CONFIG_ROLE}"\nrole_session_name = "cfg-session"\n'
)


def start_configured(tmp_path: Path, moto: Moto, config_text: str) -> Daemon:
    """The real daemon with tmp_path/config.toml holding `config_text`, autostart off."""
    config = tmp_path / "config.toml"
    config.write_text(config_text)
    env = base_env(tmp_path, moto.url)
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    return start_daemon(tmp_path, env, "--config", str(config))


def endpoints_config(folder: Path) -> Path:
    """A config.toml in `folder` with endpoints on a free port and one binding, "cfg"."""
    config = folder / "config.toml"
    config.write_text(CONFIG)
    return config


@pytest.fixture
def edaemon(tmp_path: Path, moto: Moto) -> Iterator[Daemon]:
    """The real daemon with a config that binds one endpoint and uses a free port."""
    d = start_configured(tmp_path, moto, CONFIG)
    yield d
    d.stop()


def add(d: Daemon, name: str, role: str, *extra: str) -> subprocess.CompletedProcess:
    """`rolecache endpoint add NAME --role-arn ROLE --role-session-name NAME ...`."""
    return d.client(
        "endpoint", "add", name, "--role-arn", role, "--role-session-name", name, *extra
    )


# Runs the client's main() after noting what the interpreter loaded by itself; prints the
# difference without importing anything more (no json here: it would hide the client's own).
# `exec` is caught at os.execvpe, which would otherwise replace the probe.
IMPORTS_PROBE = """
import os, sys
before = set(sys.modules)
def report(*_, status=0):
    sys.stderr.write("\\nMODULES " + " ".join(sorted(set(sys.modules) - before)) + "\\n")
    sys.stderr.flush()
    os._exit(status)
os.execvpe = report
from rolecache import cli
report(status=cli.main(sys.argv[1:]))
"""


def loaded_modules(daemon: Daemon, *args: str) -> tuple[int, set[str]]:
    """Run the client with `args` in a fresh interpreter; return its exit status and the
    modules it imported beyond the interpreter's own start-up."""
    result = subprocess.run(
        [str(BIN / "python"), "-c", IMPORTS_PROBE, *args],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "MODULES " in result.stderr, result.stderr
    return result.returncode, set(result.stderr.rsplit("MODULES ", 1)[1].split())
