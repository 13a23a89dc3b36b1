"""Hostile neighbours: another uid on the same host, attacking the real daemon as it would.

The daemon runs as the test's user (root here, which is allowed everywhere); the attacker
runs as `nobody` (uid 65534) through `setpriv`, with nothing but the address it can see.
Each test also shows the owner's side of the same request working, so a refusal is the
daemon's decision and not a broken rig.
"""

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.containerkit import VENV_PYTHON, docker_env
from tests.daemonkit import BIN, Daemon, Moto, base_env, start_daemon, unique_role
from tests.dockerkit import run_container
from tests.e2ekit import add

NOBODY = 65534
pytestmark = pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("setpriv") is None,
    reason="attacks run as a second uid through setpriv, which needs root",
)


def as_nobody(script: str, *args: str, nofile: int | None = None) -> "subprocess.Popen[str]":
    """Start `script` (Python source) as uid 65534, isolated (-I), in /; stdin and stdout
    are pipes, so the test can wait for its lines and tell it to stop."""
    command = [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        sys.executable,
        "-I",
        "-c",
        script,
        *args,
    ]
    if nofile is not None:
        command = ["prlimit", f"--nofile={nofile}:{nofile}", *command]
    return subprocess.Popen(
        command,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_as_nobody(script: str, *args: str) -> dict:
    """Run `script` as uid 65534 to the end; the JSON it printed last."""
    process = as_nobody(script, *args)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out.splitlines()[-1])


# Shared by the attack scripts: one HTTP exchange, returning whatever bytes came back.
EXCHANGE = """
import json, socket, sys, time
def exchange(port, raw):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return b""
    data = b""
    try:
        s.sendall(raw)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    finally:
        s.close()
    return data
"""

IMDS_THEFT = (
    EXCHANGE
    + """
port, name = int(sys.argv[1]), sys.argv[2]
host = b"Host: 127.0.0.1:%d\\r\\nConnection: close\\r\\n" % port
token_reply = exchange(port, b"PUT /latest/api/token HTTP/1.1\\r\\n" + host
    + b"X-aws-ec2-metadata-token-ttl-seconds: 60\\r\\n\\r\\n")
token = token_reply.partition(b"\\r\\n\\r\\n")[2]
creds_reply = exchange(port, b"GET /latest/meta-data/iam/security-credentials/%s HTTP/1.1\\r\\n"
    % name.encode() + host + b"X-aws-ec2-metadata-token: " + token + b"\\r\\n\\r\\n")
print(json.dumps({"token_reply": token_reply.decode("latin-1"),
                  "creds_reply": creds_reply.decode("latin-1")}))
"""
)

FLOOD = (
    EXCHANGE
    + """
port, count = int(sys.argv[1]), int(sys.argv[2])
raw = b"GET /v1/credentials/dev HTTP/1.1\\r\\nHost: 127.0.0.1:%d\\r\\n\\r\\n" % port
answered = closed = 0
deadline = time.monotonic() + 60
for i in range(count):
    if exchange(port, raw):
        answered += 1
    else:
        closed += 1
    if i == 200:
        print("flooding", flush=True)
    if time.monotonic() > deadline:
        break
print(json.dumps({"answered": answered, "closed": closed}), flush=True)
"""
)

HOLD = """
import json, socket, sys
ports, count = [int(p) for p in sys.argv[1].split(",")], int(sys.argv[2])
held = []
for i in range(count):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", ports[i % len(ports)]))
    except OSError:
        s.close()
        continue
    held.append(s)
print(json.dumps({"held": len(held)}), flush=True)
sys.stdin.read()  # hold them until the test is done
"""

SQUAT = """
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""

# The same on [::1], where Debian's /etc/hosts sends `localhost` first.
SQUAT_IPV6_LOOPBACK = SQUAT.replace("socket.socket()", "socket.socket(socket.AF_INET6)").replace(
    '"127.0.0.1"', '"::1"'
)

# Tries to listen on [::1] at each port given, as a squatter would (SO_REUSEADDR and
# SO_REUSEPORT on); what each attempt got.
LISTEN_IPV6_LOOPBACK = """
import errno, json, socket, sys
out = {}
for port in sys.argv[1:]:
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        s.bind(("::1", int(port)))
        s.listen()
        out[port] = "listening"
    except OSError as exc:
        out[port] = errno.errorcode[exc.errno]
print(json.dumps(out))
"""

# Listens on every address at a port the kernel picks: the port a container's connection
# will come from, so the kernel has a LISTEN socket of this uid for the container's ip:port.
LISTEN_ANYWHERE = """
import socket, sys
s = socket.socket()
s.bind(("0.0.0.0", 0))
s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""

# In a container: one request to the container URL from source port argv[3]; the status.
FROM_PORT = """
import json, socket, sys, urllib.parse
url, token, port = urllib.parse.urlsplit(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.socket()
s.bind(("0.0.0.0", port))
s.settimeout(10)
s.connect((url.hostname, url.port))
s.sendall(("GET %s HTTP/1.1\\r\\nHost: %s\\r\\nAuthorization: %s\\r\\n"
           "Connection: close\\r\\n\\r\\n" % (url.path, url.netloc, token)).encode())
data = b""
try:
    while chunk := s.recv(65536):
        data += chunk
except OSError:
    pass
print(json.dumps({"status": data.split(b" ", 2)[1].decode() if data else None}))
"""


@dataclass
class Served:
    """A daemon serving two bindings from its config, and their URLs and tokens."""

    daemon: Daemon
    ecs_port: int
    imds_port: int
    token: str
    info: dict


def endpoint_config(path: Path, port: str = "port = 0\n") -> Path:
    """A config.toml binding `dev` and `prod` to two roles."""
    path.write_text(
        f"[endpoints]\n{port}\n"
        + "".join(
            f'[endpoints.{name}]\nrole_arn = "{unique_role(name)}"\n'
            f'role_session_name = "{name}"\n\n'
            for name in ("dev", "prod")
        )
    )
    return path


def describe(daemon: Daemon) -> Served:
    """Read the ports and the token file of `dev` from `rolecache endpoint list --json`."""
    listed = json.loads(daemon.client("endpoint", "list", "--json").stdout)["endpoints"]
    dev = next(e for e in listed if e["name"] == "dev")
    ecs_port = int(dev["ecs_url"].split(":")[2].split("/")[0])
    imds_port = int(dev["imds_url"].rsplit(":", 1)[1].strip("/"))
    return Served(daemon, ecs_port, imds_port, Path(dev["token_file"]).read_text(), dev)


@pytest.fixture
def served(tmp_path: Path, moto: Moto) -> Iterator[Served]:
    """The real daemon at debug level with bindings `dev` and `prod` on free ports."""
    env = base_env(tmp_path, moto.url)
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    daemon = start_daemon(tmp_path, env, "--config", str(endpoint_config(tmp_path / "c.toml")))
    yield describe(daemon)
    daemon.stop()


def fetch(served: Served, token: str | None = None) -> tuple[int, dict]:
    """The owner's own container request, as an SDK makes it."""
    request = urllib.request.Request(
        served.info["ecs_url"], headers={"Authorization": token or served.token}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def test_imds_gives_another_uid_nothing(served: Served) -> None:
    """As nobody, a PUT for an IMDSv2 session token and a GET of the credentials both get a
    closed connection and no byte; the same two requests by the owner get credentials."""
    stolen = run_as_nobody(IMDS_THEFT, str(served.imds_port), "dev")
    assert stolen == {"token_reply": "", "creds_reply": ""}
    owner = subprocess.run(
        [sys.executable, "-I", "-c", IMDS_THEFT, str(served.imds_port), "dev"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    mine = json.loads(owner.stdout)
    assert mine["token_reply"].startswith("HTTP/1.1 200")
    assert '"AccessKeyId"' in mine["creds_reply"]
    assert f"from uid {NOBODY}" in served.daemon.log.read_text()


def test_token_less_flood_from_another_uid_throttles_nobody(served: Served) -> None:
    """While nobody floods the container port with token-less requests, every one of the
    owner's 150 requests succeeds, nobody gets not one answer, and the log holds one line
    for the whole flood rather than one per request."""
    flood = as_nobody(FLOOD, str(served.ecs_port), "20000")
    assert flood.stdout is not None
    assert flood.stdout.readline().strip() == "flooding"
    statuses = [fetch(served)[0] for _ in range(150)]
    out, _ = flood.communicate(timeout=120)
    counts = json.loads(out.splitlines()[-1])
    assert statuses == [200] * 150
    assert counts["answered"] == 0 and counts["closed"] > 200, counts
    refusals = [
        line for line in served.daemon.log.read_text().splitlines() if f"uid {NOBODY}" in line
    ]
    assert 1 <= len(refusals) <= 3, refusals[:5]


def test_held_connections_from_another_uid_starve_nothing(tmp_path: Path, moto: Moto) -> None:
    """With the daemon limited to 1024 descriptors, nobody holding 1,100 connections to its
    ports leaves the owner's env, status and container fetch working, and the daemon holds
    none of those connections open."""
    env = base_env(tmp_path, moto.url)
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    config = endpoint_config(tmp_path / "c.toml")
    with open(tmp_path / "daemon.log", "ab") as log:
        process = subprocess.Popen(
            ["prlimit", "--nofile=1024:1024", str(BIN / "rolecached"), "--config", str(config)],
            env=env,
            stdout=log,
            stderr=log,
        )
    from tests.daemonkit import wait_for_socket

    wait_for_socket(Path(env["ROLECACHE_SOCKET"]), process=process)
    daemon = Daemon(process, env, Path(env["ROLECACHE_SOCKET"]), tmp_path / "daemon.log", tmp_path)
    try:
        served = describe(daemon)
        ports = f"{served.ecs_port},{served.imds_port}"
        holder = as_nobody(HOLD, ports, "1100", nofile=4096)
        assert holder.stdout is not None
        held = json.loads(holder.stdout.readline())
        assert held["held"] >= 1100
        role = ["--role-arn", unique_role("starve"), "--role-session-name", "starve"]
        env_result = daemon.client("env", *role)
        status = daemon.client("status")
        code, doc = fetch(served)
        daemon_fds = len(os.listdir(f"/proc/{process.pid}/fd"))
        holder.communicate("", timeout=30)
        assert env_result.returncode == 0, env_result.stderr
        assert "AWS_SESSION_TOKEN" in env_result.stdout
        assert status.returncode == 0, status.stderr
        assert code == 200 and doc["AccessKeyId"]
        assert daemon_fds < 200, daemon_fds
    finally:
        daemon.stop()


def test_each_binding_has_a_token_folder_of_its_own(served: Served) -> None:
    """The token files of `dev` and `prod` sit in separate 0700 folders holding nothing but
    that binding's secrets, so mounting dev's folder into a container gives it dev's
    tokens and no other."""
    listed = json.loads(served.daemon.client("endpoint", "list", "--json").stdout)["endpoints"]
    folders = {e["name"]: Path(e["token_file"]).parent for e in listed}
    assert folders["dev"] != folders["prod"]
    for name, folder in folders.items():
        assert sorted(os.listdir(folder)) == ["capability", "container-token", "token"], name
        assert folder.stat().st_mode & 0o777 == 0o700
    assert (folders["dev"] / "token").read_text() != (folders["prod"] / "token").read_text()
    assert fetch(served, (folders["prod"] / "token").read_text())[0] == 403


def test_malformed_requests_leave_no_bearer_token_in_a_debug_log(served: Served) -> None:
    """Requests aiohttp refuses as malformed, each carrying the binding's real token, leave
    no trace of the token in the daemon's debug-level log."""
    token = served.token.encode()
    head = b"GET /v1/credentials/dev HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % served.ecs_port
    malformed = [
        head + b"Authorization: " + token + b"\r\nBad\x01Header: x\r\n\r\n",
        head + b"Authorization: " + token + b"\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
        head + b"Connection: close\r\n\r\nAuthorization: " + token + b"\r\n\r\n",
        head + b"Authorization: " + token + b"\r\n X-Folded: continued\r\n\r\n",
        b"GET /v1/credentials/dev\x00 HTTP/1.1\r\nAuthorization: " + token + b"\r\n\r\n",
    ]
    answers = []
    for raw in malformed:
        with socket.create_connection(("127.0.0.1", served.ecs_port), timeout=10) as sock:
            sock.sendall(raw)
            answers.append(sock.recv(65536))  # aiohttp answers 400 and closes
    assert all(b" 400 Bad Request" in a.partition(b"\r\n")[0] for a in answers), answers
    assert served.daemon.stop() == 0
    log = served.daemon.log.read_text()
    assert served.token not in log
    assert "malformed request" in log  # aiohttp's lines are there, stripped


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_a_squatted_container_port_names_the_squatter(
    tmp_path: Path, moto: Moto, address: str
) -> None:
    """When another uid already listens on this user's container port, on 127.0.0.1 or on
    [::1] (where localhost may resolve), the daemon starts anyway, keeps its bindings waiting
    for the port, and says which uid holds it: an ERROR in its log and "waiting for port N,
    held by uid U" in `endpoint list`. (The port is one the squatter got free from the kernel
    and the config names, so parallel tests never hold it: the default port's rule is
    test_bindings'.)"""
    squatter = as_nobody(SQUAT if address == "127.0.0.1" else SQUAT_IPV6_LOOPBACK)
    try:
        assert squatter.stdout is not None
        port = int(squatter.stdout.readline())
        env = base_env(tmp_path, moto.url)
        env["ROLECACHE_NO_AUTOSTART"] = "1"
        config = endpoint_config(tmp_path / "c.toml", port=f"port = {port}\n")
        d = start_daemon(tmp_path, env, "--config", str(config))
        try:
            listed = d.client("endpoint", "list").stdout
        finally:
            d.stop()
    finally:
        squatter.communicate("", timeout=30)
    assert listed.count(f"waiting for port {port}, held by uid {NOBODY}") == 3  # port, dev, prod
    log = d.log.read_text()
    assert "ERROR" in log and f"port {port} is held by uid {NOBODY}, another user" in log


def test_another_uids_listener_on_a_containers_port_does_not_shut_it_out(
    edaemon: Daemon, network: str
) -> None:
    """A container whose connection comes from a port another uid listens on (on every host
    address) still gets the binding's credentials: only the container's own socket could
    say who it is, and no socket of this host is that."""
    assert add(edaemon, "dev", unique_role()).returncode == 0
    env = docker_env(edaemon)
    url = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    token = env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    listener = as_nobody(LISTEN_ANYWHERE)
    try:
        assert listener.stdout is not None
        port = listener.stdout.readline().strip()
        result = run_container(network, {}, [VENV_PYTHON, "-c", FROM_PORT, url, token, port])
    finally:
        listener.communicate("", timeout=30)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"status": "200"}


def test_another_uid_cannot_listen_where_localhost_urls_go(served: Served) -> None:
    """Requests to localhost:PORT go to [::1]:PORT first (Debian's /etc/hosts): another uid
    cannot listen there on the container or IMDS port, because the daemon holds it, and the
    owner's request to [::1] gets credentials from the daemon."""
    ports = [str(served.ecs_port), str(served.imds_port)]
    attempts = run_as_nobody(LISTEN_IPV6_LOOPBACK, *ports)
    assert attempts == {port: "EADDRINUSE" for port in ports}
    url = served.info["ecs_url"].replace("127.0.0.1", "[::1]")
    status, answer = fetch(dataclasses.replace(served, info={**served.info, "ecs_url": url}))
    assert status == 200 and "AccessKeyId" in answer


SANDBOX_PROBE = (
    EXCHANGE
    + """
port, count = int(sys.argv[1]), int(sys.argv[2])
host = b"Host: 127.0.0.1:%d\\r\\nConnection: close\\r\\n\\r\\n" % port
listing = exchange(port, b"GET /moto-api/data.json HTTP/1.1\\r\\n" + host)
bad = sum(1 for _ in range(count) if exchange(port, b"NOT HTTP AT ALL\\r\\n\\r\\n"))
print(json.dumps({"listing": listing.decode("latin-1"), "answered_bad": bad}))
"""
)


def test_the_sandbox_fake_sts_serves_its_owner_alone(tmp_path: Path, moto: Moto) -> None:
    """The embedded moto of `rolecached --sandbox` gives another uid nothing: no listing of
    the credentials it issued, no answer to 200 bad requests, and at most two log lines for
    them all; the owner's own client gets sandbox credentials through it."""
    env = base_env(tmp_path, moto.url)
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    daemon = start_daemon(tmp_path, env, "--sandbox")
    try:
        role = ("--role-arn", unique_role(), "--role-session-name", "sandbox")
        assert daemon.client("env", *role).returncode == 0
        found = re.search(r"embedded fake STS at http://127\.0\.0\.1:(\d+)", daemon.log.read_text())
        assert found is not None
        before = len(daemon.log.read_text().splitlines())
        attack = run_as_nobody(SANDBOX_PROBE, found[1], "200")
        after = daemon.log.read_text().splitlines()[before:]
    finally:
        daemon.stop()
    assert attack == {"listing": "", "answered_bad": 0}
    assert 1 <= len([line for line in after if "fake STS" in line]) <= 2
    assert len(after) <= 2, after
