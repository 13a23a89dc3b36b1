"""Who reaches the container listener at 169.254.170.2, and when it is handed out: only a
docker network's containers (a LAN neighbour that routes 169.254.170.2 to this host gets no
answer, even with a token), and only while an interface has the address (otherwise a
container's request would leave by the default route, token included). Real daemon, real
namespaces; root only, skipping saying why otherwise."""

import json
import subprocess
import sys

from tests.containerkit import docker_env
from tests.daemonkit import Daemon, Moto, base_env, unique_role
from tests.dockerkit import GATEWAY, GATEWAY_FETCH, gateway_address
from tests.e2ekit import add, endpoints_config
from tests.netnskit import daemon_in_namespace, in_namespace_of, lan_neighbour


def test_a_lan_neighbour_gets_no_answer_even_with_a_token(edaemon: Daemon) -> None:
    """A namespace on a veth pair with this host, routing 169.254.170.2 here, connects to the
    container port with dev's container token: the connection is closed, not one byte sent
    back; a program of this host (the same request on loopback's side) is still served."""
    assert add(edaemon, "dev", unique_role()).returncode == 0
    with gateway_address(), lan_neighbour() as neighbour:
        env = docker_env(edaemon)
        port = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].split(":")[2].split("/")[0]
        token = env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
        outcomes = {}
        for who, prefix in (("neighbour", ["ip", "netns", "exec", neighbour]), ("host", [])):
            fetched = subprocess.run(
                [*prefix, sys.executable, "-I", "-c", GATEWAY_FETCH, port],
                input=token,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert fetched.returncode == 0, fetched.stderr
            outcomes[who] = json.loads(fetched.stdout)["got"]
    assert outcomes["neighbour"] == ""  # closed unanswered
    assert "AccessKeyId" in outcomes["host"]
    assert "did not come from a docker network" in edaemon.log.read_text()


def test_no_handoff_while_no_interface_has_the_gateway(tmp_path, moto: Moto) -> None:
    """In a namespace where no interface has 169.254.170.2, `endpoint env --docker` exits 1
    saying why and prints no variable (the daemon lists no docker URL and logs a warning);
    once a bridge there has the address, the same command hands out the URL."""
    config = endpoints_config(tmp_path)
    env = base_env(tmp_path, moto.url)
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    d = daemon_in_namespace(tmp_path, env, "--config", str(config))
    try:
        refused = d.client("endpoint", "env", "cfg", "--docker", "--env-file")
        assert refused.returncode == 1, refused.stderr
        assert f"no interface of this host has {GATEWAY}" in refused.stderr
        assert "default route" in refused.stderr and refused.stdout == ""
        listing = json.loads(d.client("endpoint", "list", "--json").stdout)["endpoints"]
        assert [e["docker_url"] for e in listing] == [None]
        assert f"no interface of this host has {GATEWAY}" in d.log.read_text()
        pid = d.process.pid
        in_namespace_of(pid, "ip", "link", "add", "rcgw0", "type", "bridge")
        in_namespace_of(pid, "ip", "addr", "add", f"{GATEWAY}/24", "dev", "rcgw0")
        handed = d.client("endpoint", "env", "cfg", "--docker", "--env-file")
        assert handed.returncode == 0, handed.stderr
        assert f"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://{GATEWAY}:" in handed.stdout
    finally:
        d.stop()
