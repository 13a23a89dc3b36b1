"""The container listener at the docker network's gateway, 169.254.170.2, without docker: the
address is given to a bridge interface (tests/dockerkit.py) after the daemon started, as
`docker network create` does, and requests reach it from this host the way a container's
reach it through the bridge. Every request there needs the binding's token."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemonkit import Daemon, unique_role
from tests.dockerkit import GATEWAY, GATEWAY_FETCH, gateway_address
from tests.e2ekit import PROBE, add
from tests.endpointkit import Rig
from tests.kit import Reply, assumed_arn, http


async def at_gateway(rig: Rig, token: str | None, **headers: str | None) -> Reply:
    """GET dev's credentials at 169.254.170.2 on the container port, Host naming it."""
    port = rig.ecs_port
    sent: dict[str, str | None] = {"Host": f"{GATEWAY}:{port}", "Authorization": token}
    sent.update(headers)
    return await http(port, "GET", "/v1/credentials/dev", headers=sent, address=GATEWAY)


async def test_gateway_serves_once_the_address_appears(rig: Rig) -> None:
    """The listener bound 169.254.170.2 (IP_FREEBIND) before any interface had it, and serves
    there as soon as one does, with no restart: Host with the port, and without it (what
    SDKs send through the port-80 redirect)."""
    await rig.add()
    container = rig.manager.get("dev").container_file.read_text()
    with gateway_address():
        reply = await at_gateway(rig, container)
        assert reply.status == 200 and "AccessKeyId" in reply.json()
        bare = await at_gateway(rig, container, Host=GATEWAY)
        assert bare.status == 200 and bare.body == reply.body
        summary = rig.manager.summary(rig.manager.get("dev"))
        assert summary["docker_url"] == f"http://{GATEWAY}:{rig.ecs_port}/v1/credentials/dev"


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("no token", 401),
        ("wrong token", 403),
        ("another binding's token", 403),
        ("revoked container token", 403),
        ("Origin", 403),
        ("bad Host", 403),
        ("Host with another port", 403),
    ],
)
async def test_gateway_refusals(rig: Rig, case: str, status: int) -> None:
    """At 169.254.170.2 a request without the binding's valid token, with Origin or with a
    Host that does not name the listener gets its refusal and no credentials."""
    await rig.add()
    await rig.add("other")
    dev = rig.manager.get("dev")
    token: str | None = dev.container_file.read_text()
    headers: dict[str, str | None] = {}
    if case == "no token":
        token = None
    elif case == "wrong token":
        token = token[::-1]  # type: ignore[index]
    elif case == "another binding's token":
        token = rig.manager.get("other").container_file.read_text()
    elif case == "revoked container token":
        rig.manager.rotate("dev", containers=True)
    elif case == "Origin":
        headers["Origin"] = "http://evil.example"
    elif case == "bad Host":
        headers["Host"] = "evil.example"
    else:
        headers["Host"] = f"{GATEWAY}:{rig.ecs_port + 1}"
    with gateway_address():
        reply = await at_gateway(rig, token, **headers)
    assert reply.status == status, reply.body
    assert reply.has_no_credentials()


def test_docker_handoff_works_with_botocore(edaemon: Daemon) -> None:
    """`rolecache endpoint env dev --docker --env-file` prints the gateway URL, the container
    token and AWS_EC2_METADATA_DISABLED (no host path), notes on stderr which SDKs take a
    FULL_URI with a port, and boto3's default chain gets the role with exactly that."""
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    with gateway_address():  # the hand-off needs an interface with 169.254.170.2
        out = edaemon.client("endpoint", "env", "dev", "--docker", "--env-file")
        assert out.returncode == 0, out.stderr
        assert "RELATIVE_URI" in out.stderr and "late 2023" in out.stderr
        variables = dict(line.split("=", 1) for line in out.stdout.splitlines())
        assert set(variables) == {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            "AWS_EC2_METADATA_DISABLED",
        }
        assert variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith(f"http://{GATEWAY}:")
        env = {
            k: v
            for k, v in edaemon.env.items()
            if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        }
        env.update(variables)
        result = subprocess.run(
            [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["arn"] == assumed_arn(role, "dev") and report["method"] == "container-role"


@pytest.mark.skipif(os.getuid() != 0 or shutil.which("setpriv") is None, reason="needs root")
def test_another_uid_is_refused_at_the_gateway_even_with_the_token(edaemon: Daemon) -> None:
    """A process of another uid on this host that holds the container token gets nothing at
    169.254.170.2 (its connection is closed unanswered: the address is not loopback, but the
    peer is a host process, and only a peer with no host socket, a container, is admitted on
    its token alone); the owner's same request gets credentials."""
    assert add(edaemon, "dev", unique_role()).returncode == 0
    info = json.loads(edaemon.client("endpoint", "list", "--json").stdout)
    port = info["container_port"]
    dev = next(e for e in info["endpoints"] if e["name"] == "dev")
    token = Path(dev["container_token_file"]).read_text()
    outcomes = {}
    with gateway_address():
        for who, prefix in (
            ("owner", []),
            ("nobody", ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]),
        ):
            result = subprocess.run(
                [*prefix, sys.executable, "-I", "-c", GATEWAY_FETCH, str(port)],
                input=token,
                cwd="/",
                env={"PATH": "/usr/bin:/bin"},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
            outcomes[who] = json.loads(result.stdout)["got"]
    assert outcomes["owner"].startswith("HTTP/1.1 200") and "AccessKeyId" in outcomes["owner"]
    assert outcomes["nobody"] == ""
