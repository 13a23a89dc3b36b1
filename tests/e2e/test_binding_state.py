"""Bindings that last, with the real daemon: a binding added at run time is served again after
SIGKILL and after a clean stop, on the same URLs, and the environment handed out before keeps
working in a fresh botocore process (container endpoint and IMDS)."""

import json
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemonkit import Daemon, Moto, base_env, start_daemon, unique_role
from tests.e2ekit import PROBE, add
from tests.kit import assumed_arn

CONFIG = "[endpoints]\nport = 0\n"


def handed(d: Daemon, *flags: str) -> dict[str, str]:
    """`rolecache endpoint env dev --env-file [flags]` applied to the daemon's environment,
    without the caller's own keys."""
    out = d.client("endpoint", "env", "dev", "--env-file", *flags)
    assert out.returncode == 0, out.stderr
    # What the hand-off unsets goes too: the keys, and (for IMDS) the suite's own
    # AWS_EC2_METADATA_DISABLED, which an env file cannot unset.
    dropped = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    if "--imds" in flags:
        dropped.add("AWS_EC2_METADATA_DISABLED")
    env = {k: v for k, v in d.env.items() if k not in dropped}
    env.update(line.split("=", 1) for line in out.stdout.splitlines())
    return env


def urls(d: Daemon) -> list[tuple[str, ...]]:
    """Each binding's name, origin, URLs and token files, as `endpoint list --json` shows."""
    listed = json.loads(d.client("endpoint", "list", "--json").stdout)["endpoints"]
    keys = ("name", "origin", "ecs_url", "imds_url", "token_file", "container_token_file")
    return [tuple(e[k] for k in keys) for e in listed]


def probe(env: dict[str, str]) -> dict:
    """PROBE (boto3's default chain) in a fresh process with `env`; its report."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_runtime_binding_survives_a_restart(tmp_path: Path, moto: Moto, how: str) -> None:
    """A binding added with `rolecache endpoint add` is served after the daemon is killed
    (or stopped) and started again: the same URLs, and the container and IMDS environments
    handed out before the restart still get the role in new botocore processes."""
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    env = base_env(tmp_path, moto.url)
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    d = start_daemon(tmp_path, env, "--config", str(config))
    try:
        role = unique_role()
        assert add(d, "dev", role).returncode == 0
        container, imds = handed(d), handed(d, "--imds")
        assert probe(container)["arn"] == assumed_arn(role, "dev")
        listed = urls(d)
        if how == "SIGKILL":
            d.process.send_signal(signal.SIGKILL)
            d.process.wait(timeout=15)
        else:
            assert d.stop() == 0
        token_file = Path(container["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"])
        assert token_file.exists()  # kept on a clean stop too, for the next start
        d = start_daemon(tmp_path, env, "--config", str(config))
        assert urls(d) == listed
        for handed_env, method in ((container, "container-role"), (imds, "iam-role")):
            report = probe(handed_env)
            assert report["arn"] == assumed_arn(role, "dev") and report["method"] == method
        # The variable alone (SDKs from before late 2023) works after the restart too.
        alone = {k: v for k, v in container.items() if not k.endswith("TOKEN_FILE")}
        assert probe(alone)["arn"] == assumed_arn(role, "dev")
    finally:
        d.stop()
    state = Path(env["XDG_STATE_HOME"]) / "rolecache" / "rolecache-endpoints.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    text = state.read_text()
    assert container["AWS_CONTAINER_AUTHORIZATION_TOKEN"] not in text
    assert token_file.read_text() not in text
