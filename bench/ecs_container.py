"""B5d: the container endpoint measured from inside a container, through 169.254.170.2.

    python bench/ecs_container.py [--rounds 3] [--requests 20000] [--clients 50] [--against REV]

Starts the real daemon in --sandbox mode (as bench/ecs_endpoint.py does), adds a binding, and
runs bench/loadgen.c (compiled statically here, so it runs in the tests' empty image) with 50
clients and a new connection per request, alternately on loopback from the host (B5 of the
same run) and from a container on the tests' --internal docker network through the gateway
169.254.170.2, with the container token. Prints both, medians of the rounds, and whether the
container figure meets its target: at least half of loopback's requests/s, p99 <= 20 ms.
Needs a reachable dockerd.

With --against REV, a change is measured before and after in one run: a second daemon runs
the code of git revision REV, and the container rounds alternate between the two daemons;
as root, `rolecache docker setup --apply`'s isolation rules and `rolecache docker guard` are
in place for this code's rounds and taken out for REV's (which had no guard), so each side
runs as it would be set up. A guarded round's container waits 2 s before its first request,
for the guard to register its port (until then its frames are dropped).
"""

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ecs_endpoint import client, start_daemon  # noqa: E402
from tests.dockerkit import (  # noqa: E402
    GATEWAY,
    base_image,
    docker_unavailable,
    isolation_held,
    remove_isolation,
    shared_network,
)

ROLE = "arn:aws:iam::123456789012:role/bench"
KEYS = ["requests", "seconds", "rps", "p50_ms", "p99_ms", "max_ms", "errors"]


def build_static_loadgen(tmp: Path) -> Path:
    """bench/loadgen.c, linked statically: the container image has no C library."""
    binary = tmp / "loadgen"
    subprocess.run(
        ["gcc", "-O2", "-static", "-pthread", "-o", str(binary), str(ROOT / "bench" / "loadgen.c")],
        check=True,
    )
    return binary


def request(hostport: str, path: str, token: str) -> bytes:
    """One plain credentials request, closing its connection (as SDK refreshes do)."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: {token}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


def parse(out: str) -> dict[str, float]:
    return {k: float(v) for k, v in zip(KEYS, out.split(), strict=True)}


def on_host(loadgen: Path, port: int, raw: Path, clients: int, total: int) -> dict[str, float]:
    """loadgen on this host against 127.0.0.1."""
    command = [str(loadgen), f"tcp:127.0.0.1:{port}", str(clients), str(total), str(raw)]
    return parse(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def in_container(
    loadgen: Path,
    network: str,
    port: int,
    raw: Path,
    clients: int,
    total: int,
    guarded: bool = False,
) -> dict[str, float]:
    """loadgen in a container on `network` against 169.254.170.2 (`guarded`: after the 2 s
    a guard needs to register the container's port; the host's sh, through /usr)."""
    load = ["/loadgen", f"tcp:{GATEWAY}:{port}", str(clients), str(total), "/request"]
    if guarded:
        load = ["/usr/bin/sh", "-c", 'sleep 2 && exec "$@"', "sh", *load]
    command = [
        "docker", "run", "--rm", "--network", network, "-e", "AWS_EC2_METADATA_DISABLED=true",
        "-v", "/usr:/usr:ro", "-v", f"{loadgen}:/loadgen:ro", "-v", f"{raw}:/request:ro",
        base_image(), *load,
    ]  # fmt: skip
    return parse(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def checkout(rev: str, tmp: Path) -> Path:
    """The daemon and client sources of git revision `rev`, unpacked under `tmp`."""
    folder = tmp / "before"
    folder.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "daemon", "client"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def isolation(on: bool) -> None:
    """Add (all of) or delete (all of) the network's isolation rules, as root; else nothing."""
    import os

    from rolecache.commands.docker import isolation_rules

    if os.geteuid() != 0:
        return
    remove_isolation()
    if on:
        for rule in isolation_rules("-A"):
            subprocess.run(rule, capture_output=True, check=True)


@contextlib.contextmanager
def guarded(network: str, on: bool) -> Iterator[bool]:
    """`rolecache docker guard` on `network` while inside, when `on` and this is root with
    the guard's tools; whether it runs."""
    from tests.guardkit import Guard, guard_unavailable

    if not on or guard_unavailable() is not None:
        yield False
        return
    guard = Guard(network)
    try:
        guard.wait_for([])  # its first sync is done
        yield True
    finally:
        guard.stop()


def target(env: dict[str, str], tmp: Path, name: str) -> tuple[int, Path]:
    """Add the binding; (container port, the raw request at the gateway, written under tmp)."""
    client(env, "endpoint", "add", "bench", "--role-arn", ROLE, "--role-session-name", "bench")
    lines = client(env, "endpoint", "env", "bench", "--docker", "--env-file")
    variables = dict(line.split("=", 1) for line in lines.splitlines())
    url = variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    hostport, _, path = url.removeprefix("http://").partition("/")
    raw = tmp / f"gateway-{name}"
    raw.write_bytes(request(hostport, f"/{path}", variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"]))
    return int(hostport.rpartition(":")[2]), raw


def before_after(args: argparse.Namespace, network: str, tmp: Path) -> None:
    """B5d of REV's daemon and of this one, container rounds alternated; prints both."""
    loadgen = build_static_loadgen(tmp)
    sides = {"before": checkout(args.against, tmp), "after": None}
    daemons, targets = [], {}
    try:
        for name, code in sides.items():
            folder = tmp / name / "home" if code else tmp / name
            folder.mkdir(parents=True)
            daemon, env = start_daemon(folder, code)
            daemons.append(daemon)
            targets[name] = target(env, tmp, name)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
        for round_ in range(args.rounds + 1):  # the first round warms up, uncounted
            for name, (port, raw) in targets.items():
                isolation(name == "after")
                total = 1000 if round_ == 0 else args.requests
                with guarded(network, name == "after") as on:
                    result = in_container(loadgen, network, port, raw, args.clients, total, on)
                if round_:
                    runs[name].append(result)
    finally:
        isolation(False)
        for daemon in daemons:
            daemon.terminate()
            daemon.wait(timeout=15)
    for name, rs in runs.items():
        rps = statistics.median(r["rps"] for r in rs)
        p99 = statistics.median(r["p99_ms"] for r in rs)
        errors = sum(r["errors"] for r in rs)
        what = args.against if name == "before" else "this checkout"
        print(
            f"B5d {name} ({what}): {rps:,.0f} req/s, p99 {p99:.2f} ms, {int(errors)} errors "
            f"({args.clients} clients in a container, new connection per request, median of "
            f"{args.rounds})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--against", metavar="REV", help="also measure git revision REV")
    args = parser.parse_args(argv)
    why = docker_unavailable()
    if why:
        print(f"B5d not measured: {why}")
        return 1
    network = shared_network()
    if args.against:
        # The isolation rules are the test network's: held as the test that toggles them does.
        with tempfile.TemporaryDirectory(prefix="rolecache-bench-") as folder, isolation_held():
            before_after(args, network, Path(folder))
        return 0
    with tempfile.TemporaryDirectory(prefix="rolecache-bench-") as folder:
        tmp = Path(folder)
        loadgen = build_static_loadgen(tmp)
        daemon, env = start_daemon(tmp)
        try:
            client(
                env, "endpoint", "add", "bench", "--role-arn", ROLE, "--role-session-name", "bench"
            )
            lines = client(env, "endpoint", "env", "bench", "--docker", "--env-file")
            variables = dict(line.split("=", 1) for line in lines.splitlines())
            url = variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
            token = variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
            hostport, _, path = url.removeprefix("http://").partition("/")
            port = int(hostport.rpartition(":")[2])
            loopback_raw, gateway_raw = tmp / "loopback", tmp / "gateway"
            loopback_raw.write_bytes(request(f"127.0.0.1:{port}", f"/{path}", token))
            gateway_raw.write_bytes(request(hostport, f"/{path}", token))
            on_host(loadgen, port, loopback_raw, args.clients, 1000)  # warm-up
            in_container(loadgen, network, port, gateway_raw, args.clients, 1000)
            runs: dict[str, list[dict[str, float]]] = {"loopback": [], "container": []}
            for _ in range(args.rounds):
                runs["loopback"].append(
                    on_host(loadgen, port, loopback_raw, args.clients, args.requests)
                )
                runs["container"].append(
                    in_container(loadgen, network, port, gateway_raw, args.clients, args.requests)
                )
        finally:
            daemon.terminate()
            daemon.wait(timeout=15)
    medians = {
        name: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p99_ms")}
        for name, rs in runs.items()
    }
    errors = sum(r["errors"] for rs in runs.values() for r in rs)
    for name, m in medians.items():
        print(
            f"{name}: {m['rps']:,.0f} req/s, p99 {m['p99_ms']:.2f} ms "
            f"({args.clients} clients, new connection per request, median of {args.rounds})"
        )
    share = medians["container"]["rps"] / medians["loopback"]["rps"]
    met = share >= 0.5 and medians["container"]["p99_ms"] <= 20 and errors == 0
    print(
        f"B5d: the container gets {share:.0%} of loopback's throughput, {int(errors)} errors; "
        f"target >= 50 % and p99 <= 20 ms: {'met' if met else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
