"""`rolecache docker setup` against a stand-in docker CLI (tests/dockerkit.py): the network it
makes, idempotence, networks it accepts or refuses, and its errors when docker is missing or
unreachable."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.daemonkit import BIN
from tests.dockerkit import fake_docker

# The rules that isolate the network's containers from one another, as setup prints them.
ISOLATION = [
    f"sudo ebtables -A FORWARD -p {proto} --{field} 169.254.170.0/24 -j DROP"
    for proto, field in (
        ("ARP", "arp-ip-src"), ("ARP", "arp-ip-dst"), ("IPv4", "ip-src"), ("IPv4", "ip-dst")
    )
]  # fmt: skip


def setup(
    tmp_path: Path, *args: str, docker: bool = True, down: bool = False
) -> subprocess.CompletedProcess:
    """Run `rolecache docker setup ARGS` with the fake docker first on PATH (or none)."""
    bin_dir = tmp_path / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_DOCKER")}
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin" if docker else "/nonexistent"
    env["FAKE_DOCKER_STATE"] = str(tmp_path / "bin" / "networks.json")
    if down:
        env["FAKE_DOCKER_DOWN"] = "1"
    return subprocess.run(
        [str(BIN / "python"), "-m", "rolecache", "docker", "setup", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def calls(tmp_path: Path) -> list[list[str]]:
    """The docker commands the fake CLI was run with."""
    path = tmp_path / "bin" / "networks.json.calls"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def network(name: str, subnet: str, gateway: str) -> dict:
    """A network as `docker network inspect` describes it (the fields setup reads)."""
    return {
        "Name": name,
        "Id": name.encode().hex().ljust(64, "0"),
        "IPAM": {"Config": [{"Subnet": subnet, "Gateway": gateway}]},
    }


def test_setup_creates_the_network_once(tmp_path: Path) -> None:
    """The first run creates a bridge network "rolecache", 169.254.170.0/24 with gateway
    169.254.170.2 and a fixed bridge name; the second finds it and creates nothing."""
    fake_docker(tmp_path / "bin")
    first = setup(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "created docker network rolecache" in first.stdout
    creates = [c for c in calls(tmp_path) if c[:2] == ["network", "create"]]
    assert creates == [[
        "network", "create", "--driver", "bridge", "--subnet", "169.254.170.0/24",
        "--gateway", "169.254.170.2", "--opt", "com.docker.network.bridge.name=rolecache0",
        "rolecache",
    ]]  # fmt: skip
    again = setup(tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert len([c for c in calls(tmp_path) if c[:2] == ["network", "create"]]) == 1


def test_an_existing_network_with_the_gateway_is_accepted(tmp_path: Path) -> None:
    """A network of another name with 169.254.170.0/24 and gateway 169.254.170.2 (an
    --internal one, say) is accepted under --network, and named when setup would make a
    second one that could not coexist."""
    ours = network("ci-net", "169.254.170.0/24", "169.254.170.2")
    fake_docker(tmp_path / "bin", [ours])
    named = setup(tmp_path, "--network", "ci-net")
    assert named.returncode == 0 and "nothing to do" in named.stdout
    default = setup(tmp_path)
    assert default.returncode == 1 and "--network ci-net" in default.stderr
    assert not [c for c in calls(tmp_path) if c[:2] == ["network", "create"]]


def test_a_network_of_that_name_with_other_addresses_is_an_error(tmp_path: Path) -> None:
    """A network called rolecache with another subnet is not touched: exit 1, saying why."""
    other = network("rolecache", "172.30.0.0/16", "172.30.0.1")
    fake_docker(tmp_path / "bin", [other])
    result = setup(tmp_path)
    assert result.returncode == 1 and "is not 169.254.170.0/24" in result.stderr


@pytest.mark.parametrize(("docker", "down", "says"), [
    (False, False, "docker is not installed"),
    (True, True, "its daemon cannot be reached: Cannot connect to the Docker daemon"),
])  # fmt: skip
def test_missing_or_unreachable_docker_is_a_clear_error(
    tmp_path: Path, docker: bool, down: bool, says: str
) -> None:
    """Without docker on PATH, or with dockerd not answering, setup exits 1 and says which."""
    fake_docker(tmp_path / "bin")
    result = setup(tmp_path, docker=docker, down=down)
    assert result.returncode == 1 and says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_print_shows_the_command_and_runs_nothing(tmp_path: Path) -> None:
    """--print prints the docker command for the named network, the ebtables rules that
    isolate its containers and the guard's command (not with --no-guard), needing no docker
    at all."""
    result = setup(tmp_path, "--print", "--network", "mine", docker=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "docker network create --driver bridge --subnet 169.254.170.0/24 "
        "--gateway 169.254.170.2 mine",
        *ISOLATION,
        "sudo rolecache docker guard --network mine  # kept running",
    ]
    assert calls(tmp_path) == []
    quiet = setup(tmp_path, "--print", "--network", "mine", "--no-guard", docker=False)
    assert quiet.stdout.splitlines()[1:] == ISOLATION


def test_setup_without_apply_prints_the_isolation_it_needs(tmp_path: Path) -> None:
    """Without --apply, setup makes the network and prints the ebtables rules that need root
    and how to run the guard (not with --no-guard), running none of them."""
    fake_docker(tmp_path / "bin")
    result = setup(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "`rolecache docker setup --apply`" in result.stdout
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert lines[2:6] == ISOLATION
    assert "rolecache docker guard --network rolecache" in "\n".join(lines[6:])
    assert all(c[0] != "ebtables" for c in calls(tmp_path))
    unguarded = setup(tmp_path, "--no-guard")
    assert [line.strip() for line in unguarded.stdout.splitlines()[2:]] == ISOLATION
