"""`rolecache docker setup`: the docker network whose containers reach the daemon at
169.254.170.2. Standard library only; it runs the docker CLI, never talks to dockerd itself."""

import json
import os
import shlex
import shutil
import subprocess
import sys

from rolecache import ask, cmdline, protocol
from rolecache.commands import dockerguard, guardservice
from rolecache.commands.dockercli import (
    DEFAULT_NETWORK,
    SUBNET,
    DockerError,
    as_root,
    docker,
    reachable,
    run_as_root,
)

USAGE = """\
usage: rolecache docker setup [--network NAME] [--print | --apply] [--no-guard]
       rolecache docker setup [--network NAME] --port-80 [--apply]
       rolecache docker setup [--network NAME] --remove [--apply]
       rolecache docker guard [--network NAME] | --undo

Create (once; later runs check it) a user-defined bridge network, default name "rolecache",
with subnet 169.254.170.0/24 and gateway 169.254.170.2: the host's bridge interface then has
169.254.170.2, where the daemon's container listener serves containers on that network.
A network that already has that subnet and gateway is accepted as it is. Then isolate the
network's containers from one another (a container holding NET_RAW, as docker gives by
default, could otherwise answer ARP for 169.254.170.2 and read the next container's token):
ebtables rules, which need root, that drop every frame of 169.254.170.0/24 one container
sends to another, for containers started later too; without --apply they are printed.
Last, the guard (unless --no-guard): a systemd service, rolecache-docker-guard@NAME, that
runs `rolecache docker guard` as root.

`rolecache docker guard` ties each container's bridge port to the MAC and address dockerd
gave it (ebtables, table nat), so no container, even with NET_RAW, can claim another's
address to the host or pose as its MAC; frames from a port it has not registered yet may
not use any address of the subnet. It follows docker's events, so it must keep running; it
drops IPv6 from the network's containers. --undo removes its rules.

  --network NAME   the network's name (default: rolecache)
  --print          print the docker and ebtables commands instead of running them
  --apply          also run the ebtables rules (as root, else through sudo); with --port-80
                   or --remove, run that line
  --port-80        for SDKs that know only RELATIVE_URI (169.254.170.2, port 80): print the
                   iptables rule (the ECS agent's own) that redirects port 80 of
                   169.254.170.2 on the network's bridge to your daemon's container port,
                   and the line that removes it; tell the daemon, so `endpoint env --docker`
                   hands out RELATIVE_URI. Port 80 can serve one user's daemon only.
  --remove         print (with --apply: run) the removal, and tell the daemon
  --no-guard       do not install the guard's service
  --undo           (guard) remove the guard's rules

then: rolecache endpoint env NAME --docker --env-file NAME.env
      docker run --network rolecache --cap-drop NET_RAW --env-file NAME.env IMAGE ...
"""

GATEWAY = "169.254.170.2"
# The bridge interface's name, fixed instead of docker's br-<id>, so iptables rules and
# `ip addr` can name it; at most 15 characters (IFNAMSIZ).
BRIDGE = "rolecache0"


def create_command(network: str) -> list[str]:
    """The one docker command that makes the network."""
    command = ["docker", "network", "create", "--driver", "bridge"]
    command += ["--subnet", SUBNET, "--gateway", GATEWAY]
    if network == DEFAULT_NETWORK:
        command += ["--opt", f"com.docker.network.bridge.name={BRIDGE}"]
    return [*command, network]


def networks() -> list[dict]:  # type: ignore[type-arg]
    """Every docker network, as `docker network inspect` describes them."""
    ids = docker("network", "ls", "--quiet", "--no-trunc")
    if ids.returncode != 0:
        raise DockerError(f"docker network ls failed: {ids.stderr.strip()}")
    if not ids.stdout.split():
        return []
    inspected = docker("network", "inspect", *ids.stdout.split())
    if inspected.returncode != 0:
        raise DockerError(f"docker network inspect failed: {inspected.stderr.strip()}")
    return json.loads(inspected.stdout)  # type: ignore[no-any-return]


def has_our_address(network: dict) -> bool:  # type: ignore[type-arg]
    """True when `network` has subnet 169.254.170.0/24 with gateway 169.254.170.2."""
    configs = (network.get("IPAM") or {}).get("Config") or []
    return any(c.get("Subnet") == SUBNET and c.get("Gateway") == GATEWAY for c in configs)


def setup(network: str) -> str:
    """Make `network` unless it exists with our subnet and gateway; what was done."""
    reachable()
    existing = networks()
    named = next((n for n in existing if n.get("Name") == network), None)
    if named is not None:
        if has_our_address(named):
            return f"docker network {network} exists with gateway {GATEWAY}; nothing to do"
        raise DockerError(
            f"docker network {network} exists but is not {SUBNET} with gateway {GATEWAY}; "
            "remove it (docker network rm) or choose another name with --network"
        )
    other = next((n for n in existing if has_our_address(n)), None)
    if other is not None:
        raise DockerError(
            f"docker network {other.get('Name')} already has {SUBNET} with gateway {GATEWAY}: "
            f"use it, with `rolecache docker setup --network {other.get('Name')}` and "
            f"`docker run --network {other.get('Name')}`"
        )
    created = docker(*create_command(network)[1:])
    if created.returncode != 0:
        raise DockerError(f"docker network create failed: {created.stderr.strip()}")
    return f"created docker network {network}: {SUBNET}, gateway {GATEWAY}"


def bridge_of(network: str) -> str:
    """The host interface of `network`'s bridge: its fixed name, else docker's br-<id>."""
    reachable()
    named = next((n for n in networks() if n.get("Name") == network), None)
    if named is None:
        raise DockerError(f"no docker network {network}: run `rolecache docker setup` first")
    if not has_our_address(named):
        raise DockerError(f"docker network {network} is not {SUBNET} with gateway {GATEWAY}")
    options = named.get("Options") or {}
    return str(options.get("com.docker.network.bridge.name") or f"br-{named['Id'][:12]}")


def redirect_rule(action: str, bridge: str, port: int) -> list[str]:
    """The iptables command that adds (-A), checks (-C) or deletes (-D) the redirect."""
    return [
        "iptables", "-t", "nat", action, "PREROUTING", "-i", bridge, "-d", GATEWAY,
        "-p", "tcp", "--dport", "80", "-j", "REDIRECT", "--to-ports", str(port),
    ]  # fmt: skip


def port_80(network: str, on: bool, apply: bool, sandbox: bool) -> int:
    """--port-80 (on) or --remove (off): print the rule, optionally run it, tell the daemon."""
    bridge = bridge_of(network)
    port = int(ask.json_of(ask.call("GET", "/v1/docker", None, sandbox))["container_port"])
    add, remove = redirect_rule("-A", bridge, port), redirect_rule("-D", bridge, port)
    print(f"{'add' if on else 'remove'}: {shlex.join(['sudo', *(add if on else remove)])}")
    if on:
        print(f"remove it later with: {shlex.join(['sudo', *remove])}")
    if apply:
        present = (
            subprocess.run(
                as_root(redirect_rule("-C", bridge, port)), capture_output=True, timeout=60
            ).returncode
            == 0
        )
        if on != present:
            run_as_root(add if on else remove, "iptables")
    ask.call("PUT", "/v1/docker", {"port_80": on}, sandbox)
    print(
        "the daemon now hands containers RELATIVE_URI (endpoint env --docker)"
        if on
        else "the daemon now hands containers FULL_URI with the port (endpoint env --docker)"
    )
    return protocol.EXIT_OK


def isolation_rules(action: str) -> list[list[str]]:
    """The ebtables commands that add (-A) or delete (-D) the isolation of the network's
    containers: every ARP and IPv4 frame of 169.254.170.0/24 one bridge port forwards to
    another is dropped. The FORWARD chain never sees frames to or from the host, so
    containers still reach 169.254.170.2, and it holds for ports docker adds later."""
    matches = (
        ("-p", "ARP", "--arp-ip-src"),
        ("-p", "ARP", "--arp-ip-dst"),
        ("-p", "IPv4", "--ip-src"),
        ("-p", "IPv4", "--ip-dst"),
    )
    return [["ebtables", action, "FORWARD", *m, SUBNET, "-j", "DROP"] for m in matches]


def isolate(apply: bool) -> str:
    """Print the isolation rules; with `apply`, add those missing (as root or through sudo)
    and say so."""
    if not apply:
        lines = "\n".join(f"  {shlex.join(['sudo', *rule])}" for rule in isolation_rules("-A"))
        return (
            "isolate the network's containers from one another (needs root): "
            f"`rolecache docker setup --apply`, or\n{lines}"
        )
    if shutil.which("ebtables") is None and os.geteuid() == 0:
        raise DockerError("ebtables is not installed: install it (Debian: apt install ebtables)")
    listed = run_as_root(["ebtables", "-L", "FORWARD"], "ebtables -L")
    present = {line.strip() for line in listed.splitlines()}
    for rule in isolation_rules("-A"):
        if shlex.join(rule[3:]) not in present:
            run_as_root(rule, "ebtables")
    removal = "; ".join(shlex.join(["sudo", *rule]) for rule in isolation_rules("-D"))
    return f"containers on {SUBNET} are isolated from one another; undo with: {removal}"


def cmd_setup(args: list[str], sandbox: bool = False) -> int:
    """rolecache docker setup [--network NAME] [--print | --port-80 | --remove] [--apply]."""
    _, flags, extra = cmdline.parse_options(args, cmdline.DOCKER_FLAGS)
    if extra:
        raise cmdline.UsageError(f"unexpected arguments after --: {' '.join(extra)}")
    if flags.get("--undo"):
        raise cmdline.UsageError("--undo is for `rolecache docker guard`")
    network = str(flags.get("--network", DEFAULT_NETWORK))
    if not network or network.startswith("-"):
        raise cmdline.UsageError("--network takes a network name")
    if sum(bool(flags.get(f)) for f in ("--print", "--port-80", "--remove")) > 1:
        raise cmdline.UsageError("--print, --port-80 and --remove go one at a time")
    if flags.get("--port-80") or flags.get("--remove"):
        return port_80(network, bool(flags.get("--port-80")), bool(flags.get("--apply")), sandbox)
    if flags.get("--print"):
        if flags.get("--apply"):
            raise cmdline.UsageError("--print runs nothing: it does not go with --apply")
        print(shlex.join(create_command(network)))
        for rule in isolation_rules("-A"):
            print(shlex.join(["sudo", *rule]))
        if not flags.get("--no-guard"):
            print(f"sudo rolecache docker guard --network {shlex.quote(network)}  # kept running")
        return protocol.EXIT_OK
    print(setup(network))
    print(isolate(bool(flags.get("--apply"))))
    if not flags.get("--no-guard"):
        print(guardservice.install_service(network, bool(flags.get("--apply"))))
    return protocol.EXIT_OK


def run(args: list[str], sandbox: bool) -> int:
    """Dispatch `rolecache docker SUBCOMMAND ...`."""
    if not args or args[0] in ("-h", "--help", "help") or "--help" in args:
        sys.stdout.write(USAGE)
        return protocol.EXIT_OK if args else protocol.EXIT_USAGE
    if args[0] == "guard":
        return dockerguard.cmd_guard(args[1:])
    if args[0] != "setup":
        raise cmdline.UsageError(f"unknown docker command {args[0]!r}; see rolecache docker --help")
    return cmd_setup(args[1:], sandbox)
