"""The endpoint ports across restarts, with real daemon processes: another uid racing for them
while the daemon restarts gets nothing (the port keeper holds them), one found holding them at
start makes every container token worthless, a port taken at start is waited for (never is a
binding dropped), and a second daemon of the same user cannot rewrite the bindings."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rolecached.core.bindings import DOCKER_GATEWAY
from tests.daemonkit import BIN, Daemon, Moto, base_env, release_held_ports, start_daemon
from tests.e2ekit import add
from tests.kit import http_request, parse_reply

NOBODY = 65534
AS_NOBODY = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
CONFIG = "[endpoints]\nport = 0\ntick = 0.2\n"
as_root = pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("setpriv") is None,
    reason="the squatter runs as a second uid through setpriv, which needs root",
)

# Another uid racing for the ports: it binds any of them the moment it is free, on the
# addresses clients are given and on all addresses (0.0.0.0), and keeps every byte it is
# sent. Its arguments are "ADDRESS PORT" pairs; it stops when stdin closes.
SQUATTER = """
import json, select, socket, sys, threading
wanted = [(a, int(p)) for a, p in (arg.split() for arg in sys.argv[1:])]
listening, bound, received = [], [], bytearray()
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
print("ready", flush=True)
while not done.is_set():
    for address, port in wanted:
        if [address, port] in bound:
            continue
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IP, 15, 1)  # IP_FREEBIND, as the daemon does
        try:
            s.bind((address, port))
            s.listen(16)
        except OSError:
            s.close()
            continue
        bound.append([address, port])
        listening.append(s)
        print("bound %s %d" % (address, port), flush=True)
    ready, _, _ = select.select(listening, [], [], 0.001)
    for s in ready:
        conn, _ = s.accept()
        conn.settimeout(1)
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except OSError:
            pass
        conn.close()
print(json.dumps({"bound": bound, "received": received.decode("latin-1")}), flush=True)
"""


def squatter(ecs: int, imds: int | None = None) -> "subprocess.Popen[str]":
    """SQUATTER as uid 65534 on the container port (loopback, the docker gateway and all
    addresses) and an IMDS port (loopback, all addresses), once it says it is ready."""
    wanted = [f"{a} {ecs}" for a in ("127.0.0.1", DOCKER_GATEWAY, "0.0.0.0")]
    wanted += [f"{a} {imds}" for a in ("127.0.0.1", "0.0.0.0") if imds is not None]
    process = subprocess.Popen(
        [*AS_NOBODY, sys.executable, "-I", "-c", SQUATTER, *wanted],
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


def squatter_report(process: "subprocess.Popen[str]") -> dict:
    """Stop the squatter; what it bound and received."""
    out, _ = process.communicate("", timeout=60)
    return json.loads(out.splitlines()[-1])


def ecs_get(port: int, token: str) -> int:
    """The status of one container-credentials request with `token`."""
    raw = ecs_request(port, token)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(raw)
        return parse_reply(receive_all(sock)).status


def ecs_request(port: int, token: str) -> bytes:
    """A container-credentials request for `dev` with `token`."""
    host = {"Host": f"127.0.0.1:{port}", "Authorization": token}
    return http_request("GET", "/v1/credentials/dev", headers=host)


def receive_all(sock: socket.socket) -> bytes:
    """Every byte until the other end closes."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


class Caller(threading.Thread):
    """A client asking for container credentials over and over, through the restart."""

    def __init__(self, port: int, token: str) -> None:
        super().__init__(daemon=True)
        self.raw = ecs_request(port, token)
        self.port = port
        self.done = threading.Event()
        self.down = threading.Event()  # the test stopped the daemon
        self.answered = threading.Event()  # a 200 came back
        self.while_down: list[int] = []  # statuses of requests begun while no daemon ran

    def run(self) -> None:
        while not self.done.is_set():
            down = self.down.is_set()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
                    sock.sendall(self.raw)
                    reply = receive_all(sock)
                status = parse_reply(reply).status if reply else 0
            except OSError:
                status = -1
            except AssertionError:
                status = 0  # not HTTP: not the daemon's answer
            if down:
                self.while_down.append(status)
            if status == 200:
                self.answered.set()
            self.done.wait(0.02)  # paced under the endpoint's rate limit


def ask_in_background(port: int, token: str) -> tuple[threading.Event, list[int]]:
    """One container-credentials request in a thread: an event set once it is sent (or
    could not be), and the list its status goes to (-1: no connection)."""
    sent, statuses = threading.Event(), []

    def ask() -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                sock.sendall(ecs_request(port, token))
                sent.set()
                statuses.append(parse_reply(receive_all(sock)).status)
        except (OSError, AssertionError):
            statuses.append(-1)
        finally:
            sent.set()

    threading.Thread(target=ask, daemon=True).start()
    return sent, statuses


def started(tmp_path: Path, moto: Moto) -> tuple[Daemon, Path]:
    """The real daemon with a free container port and a fast tick, and its config file."""
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    env = base_env(tmp_path, moto.url)
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    return start_daemon(tmp_path, env, "--config", str(config)), config


def listing(d: Daemon) -> dict:
    """`rolecache endpoint list --json`."""
    out = d.client("endpoint", "list", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def ports_of(d: Daemon) -> tuple[int, int]:
    """The container port and `dev`'s IMDS port."""
    listed = listing(d)
    imds = next(e for e in listed["endpoints"] if e["name"] == "dev")["imds_url"]
    return listed["container_port"], int(imds.rsplit(":", 1)[1].strip("/"))


def kill(d: Daemon, keeper_too: bool) -> None:
    """SIGKILL the daemon (a crash); with `keeper_too`, its port keeper is gone as well."""
    d.process.send_signal(signal.SIGKILL)
    d.process.wait(timeout=15)
    if keeper_too:
        release_held_ports(d.socket.with_name(f"{d.socket.stem}.ports"))


def until_listening(d: Daemon) -> dict:
    """Nudge the daemon (SIGHUP) until nothing waits for a port; the listing then."""
    for _ in range(300):
        d.process.send_signal(signal.SIGHUP)
        listed = listing(d)
        if not listed["container_waiting"] and not any(e["waiting"] for e in listed["endpoints"]):
            return listed
    raise AssertionError(f"still waiting for a port: {listed}")


def state_of(d: Daemon) -> dict:
    """The endpoints state file."""
    path = Path(d.env["XDG_STATE_HOME"]) / "rolecache" / "rolecache-endpoints.json"
    return json.loads(path.read_text())


@as_root
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_squatter_gets_nothing_while_the_daemon_restarts(
    tmp_path: Path, moto: Moto, how: str
) -> None:
    """Another uid racing for the container and IMDS ports while the daemon is killed (or
    stopped) and started again binds neither and receives not a byte; a request a client
    sent while no daemon ran is answered by the next one."""
    d, config = started(tmp_path, moto)
    try:
        assert add(d, "dev", "arn:aws:iam::123456789012:role/squat").returncode == 0
        ecs, imds = ports_of(d)
        token = Path(listing(d)["endpoints"][0]["container_token_file"]).read_text()
        rival = squatter(ecs, imds)
        caller = Caller(ecs, token)
        caller.start()
        assert caller.answered.wait(60)
        if how == "SIGKILL":
            kill(d, keeper_too=False)
        else:
            d.process.send_signal(signal.SIGTERM)
            assert d.process.wait(timeout=15) == 0
        caller.down.set()  # from now on no daemon runs: what is sent waits for the next one
        sent, answer = ask_in_background(ecs, token)
        assert sent.wait(60)
        caller.answered.clear()
        d = start_daemon(tmp_path, d.env, "--config", str(config))
        assert caller.answered.wait(60)
        caller.done.set()
        caller.join(timeout=60)
        report = squatter_report(rival)
    finally:
        d.stop()
    assert report == {"bound": [], "received": ""}
    assert answer == [200]
    assert set(caller.while_down) <= {200}, caller.while_down  # none refused, none lost


@as_root
def test_a_squatter_found_at_start_makes_container_tokens_worthless(
    tmp_path: Path, moto: Moto
) -> None:
    """When the port keeper is gone too and another uid holds the container port at start,
    the daemon starts anyway, logs an ERROR naming the uid, says so in `status` and
    `endpoint list`, keeps the binding, takes the port back once it is free, and the
    container token the squatter may have seen no longer works."""
    d, config = started(tmp_path, moto)
    try:
        assert add(d, "dev", "arn:aws:iam::123456789012:role/squat").returncode == 0
        ecs, _ = ports_of(d)
        token_file = Path(listing(d)["endpoints"][0]["container_token_file"])
        old_token = token_file.read_text()
        kill(d, keeper_too=True)
        rival = squatter(ecs)
        assert rival.stdout is not None
        assert rival.stdout.readline() == f"bound 127.0.0.1 {ecs}\n"
        d = start_daemon(tmp_path, d.env, "--config", str(config))
        waiting = f"waiting for port {ecs}, held by uid {NOBODY}"
        status = d.client("status").stdout
        assert waiting in status and f"held by uid {NOBODY} (another user)" in status
        table = d.client("endpoint", "list").stdout
        assert waiting in table and "ALERT: " in table
        assert state_of(d)["container_port"] == ecs
        assert [b["name"] for b in state_of(d)["bindings"]] == ["dev"]
        squatter_report(rival)
        listed = until_listening(d)
        assert listed["container_port"] == ecs
        new_token = token_file.read_text()
        assert new_token != old_token
        assert ecs_get(ecs, old_token) == 403
        assert ecs_get(ecs, new_token) == 200
        log = d.log.read_text()
        assert "ERROR" in log and f"held by uid {NOBODY}, another user" in log
    finally:
        d.stop()


def test_a_saved_port_taken_at_start_is_waited_for(tmp_path: Path, moto: Moto) -> None:
    """A binding whose saved IMDS port is taken when the daemon starts is kept (listed as
    waiting, still in the state file) and listens on the same port once it is free."""
    d, config = started(tmp_path, moto)
    try:
        assert add(d, "dev", "arn:aws:iam::123456789012:role/waits").returncode == 0
        _, imds = ports_of(d)
        before = listing(d)["endpoints"][0]["imds_url"]
        kill(d, keeper_too=True)
        taker = socket.socket()
        taker.bind(("127.0.0.1", imds))
        taker.listen()
        with taker:
            d = start_daemon(tmp_path, d.env, "--config", str(config))
            (dev,) = listing(d)["endpoints"]
            assert dev["waiting"] == f"waiting for port {imds}, held by uid {os.getuid()}"
            assert dev["imds_url"] == before
            assert [(b["name"], b["imds_port"]) for b in state_of(d)["bindings"]] == [("dev", imds)]
            assert "endpoint_alerts" not in d.client("status").stdout  # our own program
        (dev,) = until_listening(d)["endpoints"]
        assert dev["imds_url"] == before
        reply = parse_reply(
            _exchange(
                imds,
                http_request(
                    "PUT",
                    "/latest/api/token",
                    headers={
                        "Host": f"127.0.0.1:{imds}",
                        "X-aws-ec2-metadata-token-ttl-seconds": "60",
                    },
                ),
            )
        )
        assert reply.status == 200
    finally:
        d.stop()


def _exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(raw)
        return receive_all(sock)


def test_a_second_daemon_of_the_user_refuses_to_start(tmp_path: Path, moto: Moto) -> None:
    """A second daemon of the same user, started with another XDG_RUNTIME_DIR (cron, su -,
    ssh), refuses to start, naming the first one's socket, and the bindings stay saved."""
    d, config = started(tmp_path, moto)
    try:
        assert add(d, "dev", "arn:aws:iam::123456789012:role/first").returncode == 0
        other = dict(d.env)
        run = tmp_path / "run2"
        run.mkdir(mode=0o700)
        other.update(
            XDG_RUNTIME_DIR=str(run), ROLECACHE_SOCKET=str(run / "rolecache" / "rolecache.sock")
        )
        second = subprocess.run(
            [str(BIN / "rolecached"), "--config", str(config)],
            env=other,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert f"on the socket {d.socket}" in second.stderr
        assert [b["name"] for b in state_of(d)["bindings"]] == ["dev"]
        assert [e["name"] for e in listing(d)["endpoints"]] == ["dev"]
    finally:
        d.stop()


def test_a_daemon_on_another_socket_adopts_the_ports_held_for_it(
    tmp_path: Path, moto: Moto
) -> None:
    """The next daemon of the user, started with another XDG_RUNTIME_DIR (so another socket)
    after the first one stopped, adopts the ports the first one's keeper holds: its binding
    is served at once on the same ports, nothing waits."""
    first, config = started(tmp_path, moto)
    second = None
    try:
        assert add(first, "dev", "arn:aws:iam::123456789012:role/moved").returncode == 0
        before = ports_of(first)
        first.process.send_signal(signal.SIGTERM)
        assert first.process.wait(timeout=15) == 0
        run = tmp_path / "run2"
        run.mkdir(mode=0o700)
        env = dict(first.env)
        env.update(
            XDG_RUNTIME_DIR=str(run), ROLECACHE_SOCKET=str(run / "rolecache" / "rolecache.sock")
        )
        second = start_daemon(tmp_path, env, "--config", str(config))
        listed = listing(second)
        assert listed["container_waiting"] is None and listed["endpoints"][0]["waiting"] is None
        assert ports_of(second) == before
        # Its token files are in its own runtime folder: new ones, served on the same port.
        token = Path(listed["endpoints"][0]["container_token_file"]).read_text()
        assert ecs_get(before[0], token) == 200
    finally:
        if second is not None:
            second.stop()
        first.stop()  # and the first one's keeper, which the second one talked to
