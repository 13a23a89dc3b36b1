"""Fixtures for tests that run real containers: the shared --internal test network (skipping
with dockerd's reason when it does not answer), moto's STS at its gateway for the containers,
and the docker hand-off as a mapping. Loaded as a plugin by conftest.py."""

import hashlib
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemonkit import Daemon
from tests.dockerkit import GATEWAY, docker_unavailable, run_container, shared_network
from tests.sdkkit import JS_PROBE

ROOT = Path(__file__).resolve().parent.parent
# The test venv's interpreter, mounted read-only into containers (tests/dockerkit.py).
VENV_PYTHON = str(Path(sys.executable).parent / "python")


@pytest.fixture(scope="session")
def network() -> str:
    """The shared test network, once dockerd is known to answer (else the tests skip)."""
    reason = docker_unavailable()
    if reason:
        pytest.skip(reason)
    return shared_network()


@pytest.fixture(scope="session")
def moto_at_gateway(network: str) -> Iterator[str]:
    """moto's STS on 169.254.170.2, for containers; it shares the in-process backend with the
    loopback moto the daemon calls, so it knows the credentials the daemon hands out."""
    from tests.motokit import moto_at

    with moto_at(GATEWAY) as url:
        yield url


def docker_env(d: Daemon, name: str = "dev") -> dict[str, str]:
    """What `rolecache endpoint env NAME --docker --env-file` prints, as a mapping."""
    out = d.client("endpoint", "env", name, "--docker", "--env-file")
    assert out.returncode == 0, out.stderr
    return dict(line.split("=", 1) for line in out.stdout.splitlines())


def doc_block(doc: str, language: str, marker: str) -> str:
    """The fenced `language` block of the Markdown file `doc` (relative to the checkout) that
    contains `marker`."""
    text = (ROOT / doc).read_text()
    for block in text.split(f"```{language}\n")[1:]:
        body = block.split("```", 1)[0]
        if marker in body:
            return body
    raise AssertionError(f"no {language} block with {marker!r} in {doc}")


def sts_env(moto_url: str) -> dict[str, str]:
    """STS at moto on the gateway, and a region: what a container's app would configure."""
    return {"AWS_ENDPOINT_URL_STS": moto_url, "AWS_DEFAULT_REGION": "us-east-1"}


def js_sdk_in_container(
    network: str, env: dict[str, str], moto_url: str, js_sdk: Path
) -> subprocess.CompletedProcess:
    """The JS SDK v3 probe (its default chain, then GetCallerIdentity at `moto_url`) in a
    container on `network` with the hand-off `env`."""
    js_env = {**env, **sts_env(moto_url), "MOTO_URL": moto_url}
    js_env["NODE_PATH"] = str(js_sdk / "node_modules")
    return run_container(network, js_env, ["/usr/bin/node", "-e", JS_PROBE])


def served_key_digest(d: Daemon) -> str:
    """The SHA-256 of the access key id dev serves, fetched on loopback with its token."""
    listing = json.loads(d.client("endpoint", "list", "--json").stdout)["endpoints"]
    info = next(e for e in listing if e["name"] == "dev")
    token = docker_env(d)["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    request = urllib.request.Request(info["ecs_url"], headers={"Authorization": token})
    with urllib.request.urlopen(request, timeout=10) as answer:
        key = json.load(answer)["AccessKeyId"]
    return hashlib.sha256(key.encode()).hexdigest()
