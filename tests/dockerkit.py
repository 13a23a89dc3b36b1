"""Test helpers for the docker network side: 169.254.170.2 on this host without docker.

The daemon listens on the docker network's gateway, 169.254.170.2. On a host where docker is
not running, a test gives that address to a bridge interface of its own (one per test process,
so parallel workers do not share one), as docker's bridge has it: packets to it
stay on this machine, like loopback's.
"""

import contextlib
import ipaddress
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rolecached.host.interfaces import holds_address

GATEWAY = "169.254.170.2"
# True when an interface of this host has an address (binding it needs no IP_FREEBIND).
has_address = holds_address


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def gateway_address() -> Iterator[str]:
    """169.254.170.2 on a bridge interface of its own (as docker's) for the duration, removed
    afterwards; skips when this host cannot have one (not root, no `ip`)."""
    if os.getuid() != 0 or shutil.which("ip") is None:
        pytest.skip("giving 169.254.170.2 to an interface needs root and iproute2")
    link = f"rct{os.getpid() % 100000}"  # at most 15 characters, one per test process
    added = _ip("link", "add", link, "type", "bridge")
    if added.returncode != 0:
        pytest.skip(f"cannot make a bridge interface: {added.stderr.strip()}")
    try:
        network = ipaddress.ip_network(f"{GATEWAY}/32")
        for args in (
            ("addr", "add", str(network), "dev", link),
            ("link", "set", link, "up"),
        ):
            result = _ip(*args)
            assert result.returncode == 0, result.stderr
        yield GATEWAY
    finally:
        _ip("link", "del", link)


# One request to 169.254.170.2 with the token read from stdin; prints what came back.
GATEWAY_FETCH = """
import json, socket, sys
port, token = int(sys.argv[1]), sys.stdin.read()
data = b""
try:
    s = socket.create_connection(("169.254.170.2", port), timeout=5)
    s.sendall((f"GET /v1/credentials/dev HTTP/1.1\\r\\nHost: 169.254.170.2:{port}\\r\\n"
               f"Authorization: {token}\\r\\nConnection: close\\r\\n\\r\\n").encode())
    while chunk := s.recv(65536):
        data += chunk
except OSError:
    pass
print(json.dumps({"got": data.decode("latin-1")}))
"""


# A stand-in for the docker CLI, for `rolecache docker setup` where no dockerd runs: networks
# live in a JSON file ($FAKE_DOCKER_STATE), every call is appended to $FAKE_DOCKER_STATE.calls,
# and $FAKE_DOCKER_DOWN makes it answer as docker does when dockerd is not running.
FAKE_DOCKER = r"""#!PYTHON
import json, os, sys
state = os.environ["FAKE_DOCKER_STATE"]
args = sys.argv[1:]
with open(state + ".calls", "a") as f:
    f.write(json.dumps(args) + "\n")
if os.environ.get("FAKE_DOCKER_DOWN"):
    sys.stderr.write("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                     "Is the docker daemon running?\n")
    sys.exit(1)
nets = json.load(open(state)) if os.path.exists(state) else []
if args[0] == "version":
    print("20.10.24")
elif args[:2] == ["network", "ls"]:
    print("\n".join(n["Id"] for n in nets))
elif args[:2] == ["network", "inspect"]:
    print(json.dumps([n for n in nets if n["Id"] in args[2:]]))
elif args[:2] == ["network", "create"]:
    opts = dict(zip(args[2:-1:2], args[3:-1:2]))
    name = args[-1]
    if any(n["Name"] == name for n in nets):
        sys.stderr.write(f"Error response from daemon: network with name {name} already exists\n")
        sys.exit(1)
    nets.append({"Name": name, "Id": f"{len(nets) + 1:064x}",
                 "IPAM": {"Config": [{"Subnet": opts["--subnet"], "Gateway": opts["--gateway"]}]},
                 "Options": {k.split("=")[0]: k.split("=")[1] for k in [opts.get("--opt", "x=y")]}})
    json.dump(nets, open(state, "w"))
    print(nets[-1]["Id"])
else:
    sys.exit(f"fake docker: unexpected {args}")
"""


def fake_docker(folder: "os.PathLike[str] | str", networks: list[dict] | None = None) -> str:
    """Install the fake docker CLI in `folder` (put it first on PATH) with `networks`; returns
    the state file's path."""
    import json
    import sys

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    script = path / "docker"
    script.write_text(FAKE_DOCKER.replace("PYTHON", sys.executable, 1))
    script.chmod(0o755)
    state = path / "networks.json"
    state.write_text(json.dumps(networks or []))
    return str(state)


# -- a real dockerd -----------------------------------------------------------------------------

# Test containers run an image made here (no registry is reachable): an empty root with the
# usual symlinks into /usr, and the host's /usr, Python install and this worktree mounted
# read-only, so botocore, node with the JS SDK and the AWS CLI are the host's own.
BASE_IMAGE = "rolecache-test-base:1"
# The tests' network: --internal, 169.254.170.0/24, gateway 169.254.170.2 (on this host's bridge).
TEST_NETWORK = "rolecache-test"
ROOT = Path(__file__).resolve().parent.parent


def docker_unavailable() -> str | None:
    """Why docker tests cannot run here, or None when dockerd answers."""
    if shutil.which("docker") is None:
        return "docker tests skipped: no docker CLI (.ci/run installs docker.io)"
    result = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no answer"])[-1]
        if "permission denied" in last.lower():
            return (
                f"docker tests skipped: uid {os.getuid()} may not use dockerd's socket"
                f" (run as root or as a member of the docker group): {last}"
            )
        return f"docker tests skipped: dockerd is not reachable ({last})"
    return None


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
    return result


class UnsafeLockFolder(Exception):
    """The tests' lock folder is not this uid's own 0700 folder."""


def lock_folder(parent: Path = Path("/tmp")) -> Path:
    """This uid's folder for the tests' lock files, PARENT/rolecache-tests-UID (0700): per uid,
    so another user's earlier run cannot leave files this one cannot open, and checked, so
    nobody else can put a folder or a symlink of their own in its place."""
    folder = parent / f"rolecache-tests-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    found = folder.lstat()  # lstat: a symlink is refused, never followed
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise UnsafeLockFolder(
            f"{folder} is not a 0700 folder of uid {os.getuid()}: remove it and run again"
        )
    return folder


@contextlib.contextmanager
def _locked(what: str = "setup") -> Iterator[None]:
    """One test process at a time does `what` (sets up the shared image and network; holds
    port 80 of the test network, which can redirect to one daemon only)."""
    import fcntl

    path = lock_folder() / f"docker-{what}.lock"
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with open(descriptor, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def base_image() -> str:
    """The test image, imported once from a tarball made here."""
    import io
    import tarfile

    with _locked():
        if _docker("image", "inspect", BASE_IMAGE, check=False).returncode == 0:
            return BASE_IMAGE
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:

            def add(name: str, kind: bytes, mode: int, target: str = "", data: bytes = b"") -> None:
                info = tarfile.TarInfo(name)
                info.type, info.mode, info.linkname, info.size = kind, mode, target, len(data)
                tar.addfile(info, io.BytesIO(data) if data else None)

            for folder in ("etc", "root", "proc", "sys", "dev", "usr", "work"):
                add(folder, tarfile.DIRTYPE, 0o755)
            add("tmp", tarfile.DIRTYPE, 0o1777)
            for link in ("bin", "lib", "lib64", "sbin"):
                add(link, tarfile.SYMTYPE, 0o777, f"usr/{link}")
            add("etc/passwd", tarfile.REGTYPE, 0o644, data=b"root:x:0:0::/root:/bin/sh\n")
            add("etc/group", tarfile.REGTYPE, 0o644, data=b"root:x:0:\n")
        result = subprocess.run(
            ["docker", "import", "-", BASE_IMAGE],
            input=buffer.getvalue(),
            capture_output=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
    return BASE_IMAGE


def shared_network() -> str:
    """The tests' internal network at 169.254.170.0/24, made once (kept for later runs: two
    networks cannot share the subnet, so parallel test processes share this one)."""
    with _locked():
        found = _docker("network", "inspect", TEST_NETWORK, check=False)
        if found.returncode != 0:
            _docker(
                "network", "create", "--internal", "--subnet", "169.254.170.0/24",
                "--gateway", GATEWAY, TEST_NETWORK,
            )  # fmt: skip
    return TEST_NETWORK


def python_mounts(host_usr: bool = True) -> list[str]:
    """Read-only mounts that give a container this host's Python, node, AWS CLI and worktree
    (without the host's /usr when `host_usr` is false: an image with its own, e.g. systemd's)."""
    import sys

    prefix = Path(sys.base_prefix)  # the interpreter the venv was made from
    mounts = ["-v", "/usr:/usr:ro"] if host_usr else []
    if host_usr or not prefix.is_relative_to("/usr"):
        mounts += ["-v", f"{prefix}:{prefix}:ro"]
    return [*mounts, "-v", f"{ROOT}:{ROOT}:ro"]


def run_container(
    network: str,
    env: dict[str, str],
    command: list[str],
    *,
    timeout: float = 120,
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """`docker run --rm` on `network` with `env` (AWS_EC2_METADATA_DISABLED=true unless it
    says otherwise), the host's tools mounted read-only, running `command`."""
    return subprocess.run(
        container_command(network, env, command, extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def container_command(
    network: str, env: dict[str, str], command: list[str], extra: tuple[str, ...] = ()
) -> list[str]:
    """The `docker run --rm` command line of run_container."""
    env = {"AWS_EC2_METADATA_DISABLED": "true", **env}
    args = ["docker", "run", "--rm", "--network", network, *python_mounts(), *extra]
    for name, value in env.items():
        args += ["-e", f"{name}={value}"]
    return [*args, base_image(), *command]


def start_container(
    network: str, env: dict[str, str], command: list[str], extra: tuple[str, ...] = ()
) -> subprocess.Popen:
    """run_container's container, started and left running with its stdin open (`docker run
    -i`): the caller reads its stdout while it runs, and closing stdin tells it to end."""
    return subprocess.Popen(
        container_command(network, env, command, ("-i", *extra)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def port_80_held() -> "contextlib.AbstractContextManager[None]":
    """Hold port 80 of the test network for one test (see _locked)."""
    return _locked("port-80")


@contextlib.contextmanager
def port_80_redirect(
    client: Callable[..., subprocess.CompletedProcess], network: str
) -> Iterator[subprocess.CompletedProcess]:
    """`rolecache docker setup --network NETWORK --port-80 --apply` run by `client` (a daemon's
    client method) for the duration, holding port 80 of the test network, and `--remove
    --apply` afterwards; yields what the set-up printed."""
    setup = ["docker", "setup", "--network", network]
    with port_80_held():
        applied = client(*setup, "--port-80", "--apply")
        assert applied.returncode == 0, applied.stderr
        try:
            yield applied
        finally:
            removed = client(*setup, "--remove", "--apply")
        assert removed.returncode == 0, removed.stderr


def loopback_80_held() -> "contextlib.AbstractContextManager[None]":
    """Hold port 80 of 127.0.0.1 for one test (see _locked): a test listening there."""
    return _locked("loopback-80")


def isolation_held() -> "contextlib.AbstractContextManager[None]":
    """Hold the test network's isolation for one test (see _locked): a test that turns it off
    to show the attack it stops."""
    return _locked("isolation")


def remove_isolation() -> None:
    """Delete the ebtables rules `rolecache docker setup --apply` adds (those present)."""
    from rolecache.commands.docker import isolation_rules

    for rule in isolation_rules("-D"):
        while subprocess.run(rule, capture_output=True, timeout=60).returncode == 0:
            pass  # a rule added twice is deleted twice
