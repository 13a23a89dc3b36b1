"""`rolecache docker guard`: ties each bridge port of the docker network to its container's MAC
and address (guardrules), following `docker events` so containers started later are guarded
too. Standard library only; it runs the docker CLI, ebtables, ip and nsenter (as root, else
through sudo)."""

import json
import os
import shutil
import signal
import subprocess
import sys

from rolecache import ask, cmdline, protocol
from rolecache.commands import guardrules
from rolecache.commands.dockercli import (
    DEFAULT_NETWORK,
    DockerError,
    as_root,
    docker,
    reachable,
    run_as_root,
)

# The container events after which the network's ports are read again.
EVENTS = ("start", "die", "connect", "disconnect")
TOOLS = ("ebtables", "ip", "nsenter")


class GuardError(ask.Failed):
    """The guard cannot read the network or set its rules; the rules in force stay."""

    def __init__(self, message: str) -> None:
        super().__init__(message, protocol.EXIT_ERROR)


def listing() -> str:
    """The nat table of ebtables, as `ebtables -t nat -L` lists it."""
    return run_as_root([*guardrules.TABLE, "-L"], "ebtables -t nat -L")


def apply(commands: list[list[str]]) -> None:
    """Run ebtables commands in order, stopping at the first that fails."""
    for command in commands:
        run_as_root(command, " ".join(command))


def inspect(*args: str) -> list[dict]:  # type: ignore[type-arg]
    """`docker ... inspect ARGS` as JSON (those found, when some are gone already); GuardError
    when docker refuses."""
    done = docker(*args)
    if done.returncode != 0 and not done.stdout.strip().startswith("["):
        raise GuardError(f"docker {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def bridge_ports(bridge: str) -> dict[int, str]:
    """The host's interfaces enslaved to `bridge`, by interface index."""
    links = json.loads(run_as_root(["ip", "-j", "link", "show", "master", bridge], "ip link"))
    return {int(link["ifindex"]): str(link["ifname"]) for link in links}


def host_veth(netns: str, ports: dict[int, str]) -> str | None:
    """The bridge port whose veth peer is in the network namespace at `netns`, read from the
    kernel (the peer's link index), never from what the container or the bridge could forge;
    None when the namespace is gone or has no such link."""
    done = subprocess.run(
        as_root(["nsenter", f"--net={netns}", "ip", "-j", "link", "show"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        return None
    peers = {link.get("link_index") for link in json.loads(done.stdout or "[]")}
    found = [ports[index] for index in peers if index in ports]
    return found[0] if len(found) == 1 else None


def namespace_of(container: dict) -> str | None:  # type: ignore[type-arg]
    """The path of a container's network namespace: dockerd's sandbox file, which exists from
    the moment the network is connected, else the process's."""
    sandbox = (container.get("NetworkSettings") or {}).get("SandboxKey")
    if sandbox:
        return str(sandbox)
    pid = (container.get("State") or {}).get("Pid")
    return f"/proc/{pid}/ns/net" if pid else None


def current_ports(network: str) -> tuple[str, list[guardrules.Port], list[str]]:
    """The network's bridge, its ports as dockerd assigned them (MAC, address) with the host
    veth of each, and a note for each container left unregistered (so still dropped)."""
    net = inspect("network", "inspect", network)[0]
    options = net.get("Options") or {}
    bridge = str(options.get("com.docker.network.bridge.name") or f"br-{net['Id'][:12]}")
    members = net.get("Containers") or {}
    if not members:
        return bridge, [], []
    ports_by_index = bridge_ports(bridge)
    found, skipped = [], []
    for container in inspect("container", "inspect", *members):
        member = members.get(container["Id"]) or {}
        netns = namespace_of(container)
        veth = host_veth(netns, ports_by_index) if netns else None
        try:
            if veth is None:
                raise ValueError("its host-side interface was not found")
            ip = str(member.get("IPv4Address", "")).split("/")[0]
            found.append(guardrules.port(veth, str(member.get("MacAddress", "")), ip))
        except ValueError as error:
            skipped.append(f"{container.get('Name', container['Id'][:12])}: {error}")
    return bridge, found, skipped


def forget_claims(bridge: str) -> None:
    """Make the host forget which MAC has which address, and the bridge which port has which
    MAC (learned entries): what a container claimed before the guard's rules held."""
    for command in (
        ["ip", "neigh", "flush", "dev", bridge],
        ["ip", "link", "set", "dev", bridge, "type", "bridge", "fdb_flush"],
    ):
        try:
            run_as_root(command, " ".join(command))
        except DockerError as error:  # the rules hold anyway; an old claim ages out
            print(f"rolecache: {error}", file=sys.stderr, flush=True)


def sync(network: str, first: bool = False) -> list[guardrules.Port]:
    """Replace the rules in force with rules for the network's ports as they are now: the new
    generation is built and put first, then the old one removed. On an error the old rules
    stay and this raises, so no port is ever left open. The `first` time, claims made before
    are forgotten (later ones cannot pass the rules)."""
    bridge, ports, skipped = current_ports(network)
    before = listing()
    new = guardrules.next_generation(before)
    apply(guardrules.removal_commands(before, keep=guardrules.active_generation(before)))
    apply(guardrules.install_commands(ports, new))
    apply(guardrules.removal_commands(listing(), keep=new))
    if first:
        forget_claims(bridge)
    shown = ", ".join(f"{p.ip} ({p.ifname})" for p in ports) or "none yet"
    print(f"guarding {len(ports)} container(s) on {network}: {shown}", flush=True)
    for note in skipped:
        print(f"not registered, its frames are dropped: {note}", flush=True)
    return ports


def events(network: str) -> subprocess.Popen[str]:
    """`docker events` for containers starting or dying and connections to networks, as JSON
    lines, from now on."""
    command = ["docker", "events", "--format", "{{json .}}"]
    command += ["--filter", "type=container", "--filter", "type=network"]
    for event in EVENTS:
        command += ["--filter", f"event={event}"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def concerns(line: str, network: str) -> bool:
    """True when the event on `line` may change the network's ports."""
    try:
        event = json.loads(line)
    except ValueError:
        return True  # unreadable: read the network again, to be safe
    if event.get("Type") == "network":
        return (event.get("Actor") or {}).get("Attributes", {}).get("name") == network
    return True


def follow(network: str) -> int:
    """Guard `network` until docker's event stream ends (dockerd stopped): then exit 1, so
    the service manager starts the guard again; the rules in force stay meanwhile."""
    for tool in TOOLS if os.geteuid() == 0 else ():  # else sudo's PATH decides
        if shutil.which(tool) is None:
            raise GuardError(f"{tool} is not installed: install it (Debian: ebtables, "
                             "iproute2, util-linux)")  # fmt: skip
    reachable()
    # SIGTERM (systemctl stop, a test) ends the guard through its finally: docker events too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(protocol.EXIT_OK))
    stream = events(network)  # first, so no change between the first sync and it is missed
    assert stream.stdout is not None
    try:
        sync(network, first=True)
        for line in stream.stdout:
            if concerns(line, network):
                sync(network)
    finally:
        stream.kill()
        stream.wait()
    print("docker's event stream ended; the rules in force stay", file=sys.stderr)
    return protocol.EXIT_ERROR


def undo() -> int:
    """Remove every rule and chain the guard added."""
    apply(guardrules.removal_commands(listing()))
    print("the docker guard's ebtables rules are removed")
    return protocol.EXIT_OK


def cmd_guard(args: list[str]) -> int:
    """rolecache docker guard [--network NAME] | --undo."""
    _, flags, extra = cmdline.parse_options(args, cmdline.DOCKER_FLAGS)
    wrong = set(flags) - {"--network", "--undo"}
    if extra or wrong:
        raise cmdline.UsageError(f"docker guard takes --network or --undo, not {sorted(wrong)}")
    if flags.get("--undo"):
        return undo()
    network = str(flags.get("--network", DEFAULT_NETWORK))
    if not network or network.startswith("-"):
        raise cmdline.UsageError("--network takes a network name")
    try:
        return follow(network)
    except DockerError as error:
        raise GuardError(str(error)) from error
