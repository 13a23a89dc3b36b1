"""The ECS-style container endpoint under 50 concurrent clients: requests/s and latency.

    python bench/ecs_endpoint.py [--quick] [--clients 50] [--requests 20000] [--seconds 5]

Starts the real daemon in --sandbox mode (embedded moto STS) in a private temporary runtime
folder, adds a binding with the real `rolecache endpoint add`, reads its URL and token file
from `rolecache endpoint env --env-file`, then measures two ways:

- new connection per request (what SDK refreshes do): the thread-per-client load generator
  of bench/throughput.py, in 2 processes so it is not the bottleneck of a 2-core machine;
- keep-alive: an aiohttp client session with 50 concurrent requests in flight.

Every answer is checked to be a 200 with credentials. The daemon's rate limit is raised in
its config for the run (its default, 100 req/s per client address, would answer 429: every
client here is 127.0.0.1). --quick runs briefly, to prove the script works (tests), not to
measure.
"""

import argparse
import asyncio
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ROLE = "arn:aws:iam::123456789012:role/bench"
sys.path.insert(0, str(ROOT))

from bench.isolation import isolated_env  # noqa: E402
from bench.throughput import Target, load  # noqa: E402


def start_daemon(tmp: Path, code: Path | None = None) -> tuple[subprocess.Popen, dict[str, str]]:
    """rolecached --sandbox in a private runtime folder, with a config for the benchmark; with
    `code`, the daemon and client packages of that source tree (a checkout of another
    revision) are imported instead of the installed ones."""
    run = tmp / "run"
    run.mkdir(mode=0o700)
    config = tmp / "config.toml"
    settings = "[endpoints]\nport = 0\nrate_limit = 1000000\nrate_burst = 1000000\n"
    if code is None:  # the port keeper leaves as the benchmark's daemon does (older trees
        settings += "hold_ports = 0.1\n"  # had no keeper, and refuse the setting)
    config.write_text(settings)
    env = isolated_env(tmp, run)
    env.update(
        ROLECACHE_SANDBOX="1",
        ROLECACHE_NO_AUTOSTART="1",
    )
    if code is not None:
        env["PYTHONPATH"] = f"{code / 'daemon'}:{code / 'client'}"  # ahead of site-packages
    # -m, not the rolecached script: older trees had another entry point.
    command = [str(BIN / "python"), "-m", "rolecached", "--sandbox", "--log-level", "warning"]
    daemon = subprocess.Popen(
        [*command, "--config", str(config)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    sock = run / "rolecache" / "sandbox.sock"
    deadline = time.monotonic() + 30
    while not sock.exists():
        if time.monotonic() > deadline or daemon.poll() is not None:
            raise SystemExit("rolecached did not start")
        time.sleep(0.02)
    return daemon, env


def client(env: dict[str, str], *args: str) -> str:
    """Run the real `rolecache` command; its stdout."""
    result = subprocess.run(
        [str(BIN / "rolecache"), *args], env=env, capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise SystemExit(f"rolecache {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


async def keepalive(url: str, token: str, clients: int, seconds: float) -> dict[str, float]:
    """`clients` concurrent requests in flight over kept-alive connections for `seconds`."""
    import aiohttp

    latencies: list[float] = []
    errors = 0

    async def worker(session: aiohttp.ClientSession, deadline: float) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            async with session.get(url, headers={"Authorization": token}) as response:
                body = await response.read()
            latencies.append(time.perf_counter() - start)
            if response.status != 200 or b'"AccessKeyId"' not in body:
                errors += 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session, time.perf_counter() + 0.2) for _ in range(clients)))
        latencies.clear()  # warm-up done
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(worker(session, deadline) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "seconds": elapsed,
        "rps": n / elapsed,
        "p50_ms": latencies[n // 2] * 1000,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000,
        "max_ms": latencies[-1] * 1000,
        "errors": errors,
    }


def show(label: str, r: dict[str, float]) -> None:
    print(
        f"{label}: {r['rps']:,.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
        f"max {r['max_ms']:.1f} ms, {int(r['requests'])} requests, {int(r['errors'])} errors"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run, not a measurement")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20000, help="new-connection requests")
    parser.add_argument("--seconds", type=float, default=5.0, help="keep-alive duration")
    args = parser.parse_args(argv)
    total, seconds = (500, 0.5) if args.quick else (args.requests, args.seconds)

    with tempfile.TemporaryDirectory(prefix="rolecache-bench-") as folder:
        daemon, env = start_daemon(Path(folder))
        try:
            client(
                env, "endpoint", "add", "bench", "--role-arn", ROLE, "--role-session-name", "bench"
            )
            lines = client(env, "endpoint", "env", "bench", "--env-file").splitlines()
            variables = dict(line.split("=", 1) for line in lines)
            url = variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
            token = Path(variables["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]).read_text()
            hostport, _, path = url.removeprefix("http://").partition("/")
            host, _, port = hostport.rpartition(":")
            request = (
                f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: {token}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            target = Target(host=host, port=int(port))
            print(
                f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
                f"Python {platform.python_version()}; daemon: rolecached --sandbox, "
                f"{'uvloop' if _has_uvloop() else 'asyncio'} event loop; {args.clients} clients"
            )
            load(target, request, args.clients, min(total, 1000))  # warm-up
            show("new connection per request", load(target, request, args.clients, total))
            show("keep-alive", asyncio.run(keepalive(url, token, args.clients, seconds)))
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=15)
    return 0


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return os.environ.get("ROLECACHE_EVENT_LOOP") != "asyncio"


if __name__ == "__main__":
    raise SystemExit(main())
