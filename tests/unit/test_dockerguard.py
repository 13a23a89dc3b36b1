"""The docker guard's pieces that need no host: which events it acts on, where it finds a
container's network namespace, and its command line."""

import json

import pytest

from rolecache import cmdline
from rolecache.commands.dockerguard import cmd_guard, concerns, namespace_of


def test_only_events_of_the_guarded_network_count() -> None:
    """A network event counts for its own network only; container events and lines that
    cannot be read always count (reading the network again is the safe side)."""
    connect = {"Type": "network", "Action": "connect", "Actor": {"Attributes": {"name": "rc"}}}
    assert concerns(json.dumps(connect), "rc")
    assert not concerns(json.dumps(connect), "other")
    assert concerns(json.dumps({"Type": "container", "Action": "start"}), "rc")
    assert concerns("not json", "rc")


def test_the_namespace_is_dockerds_sandbox_else_the_process() -> None:
    """dockerd's sandbox file first (it exists before the process does), else /proc/PID."""
    sandbox = {"NetworkSettings": {"SandboxKey": "/var/run/docker/netns/abc"}, "State": {"Pid": 7}}
    assert namespace_of(sandbox) == "/var/run/docker/netns/abc"
    assert namespace_of({"NetworkSettings": {"SandboxKey": ""}, "State": {"Pid": 7}}) == (
        "/proc/7/ns/net"
    )
    assert namespace_of({"State": {"Pid": 0}}) is None


@pytest.mark.parametrize(
    "args", [["--apply"], ["--network"], ["--network", "-x"], ["--", "extra"], ["--no-guard"]]
)
def test_the_guard_refuses_other_arguments(args: list[str]) -> None:
    """Anything but --network NAME or --undo is a usage error, before anything runs."""
    with pytest.raises(cmdline.UsageError):
        cmd_guard(args)
