"""Every benchmark in one command, against the real daemon and a local moto STS.

    python -m bench.run [--quick] [--out bench/results]

Builds what it needs (the C load generator, compiled client modules), runs B1-B8, prints
each result and writes a Markdown table (results.md) and a chart of client latency
(client-latency.png) to --out. Baselines are measured in the same run and compared commands
alternate run by run: on these noisy 2-core machines only ratios from one run mean much.
--quick runs few iterations, to prove the suite works end to end (CI), not to measure.
"""

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.latency import BIN, QUERY, ROLE, ROOT, alternate, start_world, stats, timed
from bench.throughput import http_request
from rolecache.cmdline import build_request


@dataclass
class Result:
    """One benchmark: what was measured, against what, the target and whether it is met."""

    name: str
    what: str
    baseline: str
    measured: str
    target: str
    met: bool | None  # None: not measured
    details: dict = field(default_factory=dict)


def build_loadgen(tmp: Path) -> Path:
    """Compile bench/loadgen.c (gcc is on every machine of this kind)."""
    binary = tmp / "loadgen"
    subprocess.run(
        ["gcc", "-O2", "-pthread", "-o", str(binary), str(ROOT / "bench" / "loadgen.c")],
        check=True,
    )
    return binary


def run_loadgen(
    loadgen: Path, target: str, clients: int, total: int, request: bytes, tmp: Path
) -> dict:
    """Run the C load generator; return its numbers."""
    path = tmp / f"request-{clients}-{total}"
    path.write_bytes(request)
    out = subprocess.run(
        [str(loadgen), target, str(clients), str(total), str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    keys = ["requests", "seconds", "rps", "p50_ms", "p99_ms", "max_ms", "errors"]
    return {k: float(v) for k, v in zip(keys, out, strict=True)}


def credentials_request(session: str, fmt: str = "env") -> bytes:
    body = json.dumps({"role_arn": ROLE, "role_session_name": session}).encode()
    return http_request("POST", f"/v1/credentials?format={fmt}", body)


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def moto_assume_calls(role_arn: str) -> int:
    from moto.sts.models import sts_backends

    account = role_arn.split(":")[4]
    return sum(1 for r in sts_backends[account]["aws"].assumed_roles if r.role_arn == role_arn)


async def fill_sessions(sock: str, count: int, prefix: str, concurrency: int = 50) -> int:
    """Create `count` distinct cached sessions through the socket API; return failures."""
    queue = list(range(count))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while queue:
            i = queue.pop()
            reader, writer = await asyncio.open_unix_connection(sock)
            writer.write(credentials_request(f"{prefix}-{i}", "json"))
            answer = await reader.read()
            writer.close()
            failures += not answer.startswith(b"HTTP/1.1 200")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


def start_daemon(env: dict[str, str]) -> tuple[subprocess.Popen, float]:
    """Start a daemon; return it and the seconds until its socket accepted a connection."""
    path = env["ROLECACHE_SOCKET"]
    if os.path.exists(path):
        os.unlink(path)
    start = time.perf_counter()
    daemon = subprocess.Popen(
        [str(BIN / "rolecached"), "--log-level", "warning"], env=env, stderr=subprocess.DEVNULL
    )
    wait_for(path, daemon)
    return daemon, time.perf_counter() - start


def wait_for(path: str, daemon: subprocess.Popen) -> None:
    """Return once something accepts connections on the Unix socket at `path`."""
    import socket

    while True:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(path)
                return
            except OSError:
                if daemon.poll() is not None:
                    raise RuntimeError("rolecached exited") from None
                time.sleep(0.002)


def stop(daemon: subprocess.Popen) -> None:
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=15)


AWS_QUERY = "aws sts assume-role --query"


def vs(rows: dict, ours: str, base: str) -> str:
    """'A vs B ms': two medians side by side."""
    return f"{rows[ours]['median']:.1f} vs {rows[base]['median']:.1f} ms"


# The client with its test hook set: no check of the socket's folder and server. Benchmarks
# only (B1c); no option or variable of the client turns the checks off.
UNCHECKED_CLIENT = f"""#!{sys.executable}
import sys
from rolecache import transport
transport.check_folder = transport.check_peer = lambda *args: None
from rolecache.cli import main
sys.exit(main())
"""


def bench_latency(env: dict[str, str], runs: int, tmp: Path) -> tuple[list[Result], dict]:
    """B1-B3: whole client commands on a cache hit against their baselines; B1c: B1 with the
    client's checks of the socket against B1 without them."""
    selector = ["--role-arn", ROLE, "--role-session-name", "bench"]
    sts_args = ["sts", "assume-role", *selector, "--output", "text", "--query", QUERY]
    env_cmd = [str(BIN / "rolecache"), "env", *selector]
    unchecked = tmp / "rolecache-unchecked"
    unchecked.write_text(UNCHECKED_CLIENT)
    unchecked.chmod(0o755)
    for warm in (["env", *selector], sts_args):
        timed([str(BIN / "rolecache"), *warm], env)
    b1 = alternate(
        {
            "python -c pass": [sys.executable, "-c", "pass"],
            "rolecache env": env_cmd,
            "rolecache env, no checks": [str(unchecked), "env", *selector],
            "rolecache sts assume-role --query": [str(BIN / "rolecache"), *sts_args],
        },
        env,
        runs,
    )
    slow_runs = max(1, runs // 2)  # the AWS CLI takes half a second a run
    b2 = alternate(
        {"aws sts assume-role": [str(BIN / "aws"), *sts_args[:-4]], "rolecache env": env_cmd},
        env,
        slow_runs,
    )
    b3 = alternate(
        {
            "aws sts assume-role --query": [str(BIN / "aws"), *sts_args],
            "rolecache sts assume-role --query": [str(BIN / "rolecache"), *sts_args],
        },
        env,
        slow_runs,
    )
    r1 = b1["rolecache env"]["median"] / b1["python -c pass"]["median"]
    r1c = b1["rolecache env"]["median"] / b1["rolecache env, no checks"]["median"]
    r3c = b1["rolecache sts assume-role --query"]["median"] / b1["rolecache env"]["median"]
    r2 = b2["aws sts assume-role"]["median"] / b2["rolecache env"]["median"]
    r3 = (
        b3["aws sts assume-role --query"]["median"]
        / b3["rolecache sts assume-role --query"]["median"]
    )
    results = [
        Result(
            "B1",
            "`rolecache env` cache hit, whole process",
            "`python -c pass`",
            f"{r1:.2f}x ({vs(b1, 'rolecache env', 'python -c pass')})",
            "<= 1.5x",
            r1 <= 1.5,
            b1,
        ),
        Result(
            "B1c",
            "`rolecache env` cache hit with the client's socket checks",
            "the same without them (test hook)",
            f"{r1c:.3f}x ({vs(b1, 'rolecache env', 'rolecache env, no checks')})",
            "<= 1.05x",
            r1c <= 1.05,
            b1,
        ),
        Result(
            "B3c",
            "`rolecache sts assume-role --output text --query` cache hit, whole process",
            "`rolecache env` cache hit (B1, same run)",
            f"{r3c:.2f}x ({vs(b1, 'rolecache sts assume-role --query', 'rolecache env')})",
            "<= 1.15x",
            r3c <= 1.15,
            b1,
        ),
        Result(
            "B2",
            "`rolecache env` cache hit",
            "`aws sts assume-role` (CLI v1, moto)",
            f"{r2:.1f}x faster ({vs(b2, 'rolecache env', 'aws sts assume-role')})",
            ">= 25x faster",
            r2 >= 25,
            b2,
        ),
        Result(
            "B3",
            "`rolecache sts assume-role --output text --query` cache hit",
            "the same `aws` command",
            f"{r3:.1f}x faster ({vs(b3, 'rolecache sts assume-role --query', AWS_QUERY)})",
            ">= 15x faster",
            r3 >= 15,
            b3,
        ),
    ]
    chart = {
        "python -c pass": b1["python -c pass"]["median"],
        "rolecache env": b1["rolecache env"]["median"],
        "rolecache sts assume-role\n--query": b3["rolecache sts assume-role --query"]["median"],
        "aws sts assume-role\n--query": b3["aws sts assume-role --query"]["median"],
    }
    return results, chart


def alternated(
    loadgen: Path, loads: dict[str, tuple[str, bytes]], total: int, tmp: Path, rounds: int
) -> tuple[dict[str, float], dict[str, float], int]:
    """Run each (target, request) of `loads` once to warm up, then `rounds` times in turn;
    the median requests/s and p99 of each, and the errors of all."""
    runs: dict[str, list[dict]] = {name: [] for name in loads}
    for target, request in loads.values():
        run_loadgen(loadgen, target, 50, min(total, 2000), request, tmp)  # warm-up
    for _ in range(rounds):
        for name, (target, request) in loads.items():
            runs[name].append(run_loadgen(loadgen, target, 50, total, request, tmp))
    rps = {n: statistics.median(r["rps"] for r in rs) for n, rs in runs.items()}
    p99 = {n: statistics.median(r["p99_ms"] for r in rs) for n, rs in runs.items()}
    return rps, p99, int(sum(r["errors"] for rs in runs.values() for r in rs))


def hooked_daemon(importing: str, hook: str) -> str:
    """`python -c` code that starts the daemon with test hook `hook` (a module attribute that
    the statement `importing` binds) set to False: how a benchmark measures a cost against its
    absence (no setting turns these off). Whole statements, so moving a module rewrites them."""
    return (
        f"import sys\n{importing}\n{hook} = False\n"
        "from rolecached.main import main\nsys.exit(main(sys.argv[1:]))\n"
    )


# The daemon with its audit cache off, at the default log level: every request then costs
# what a new pid's does (a /proc read and an audit line), as a shell loop's requests do, each
# from a new `rolecache` process.
NEW_PID_DAEMON = hooked_daemon("from rolecached.observe import audit", "audit.CACHE_DESCRIPTIONS")


def bench_new_pids(
    loadgen: Path, env: dict[str, str], total: int, tmp: Path, rounds: int
) -> Result:
    """B4b: B4 as a new pid per request would cost it, at the default log level, against
    B4 on the bench daemon; alternated round by round, medians of the rounds."""
    run = tmp / "run-new-pids"
    run.mkdir(mode=0o700)
    fresh = {
        **env,
        "ROLECACHE_SOCKET": str(run / "rolecache.sock"),
        "XDG_STATE_HOME": str(tmp / "state-new-pids"),
    }
    daemon = subprocess.Popen(
        [sys.executable, "-c", NEW_PID_DAEMON, "--log-level", "info"],
        env=fresh,
        stderr=subprocess.DEVNULL,
    )
    request = credentials_request("bench")
    loads = {
        "B4": (f"unix:{env['ROLECACHE_SOCKET']}", request),
        "B4b": (f"unix:{fresh['ROLECACHE_SOCKET']}", request),
    }
    try:
        wait_for(fresh["ROLECACHE_SOCKET"], daemon)
        rps, p99, errors = alternated(loadgen, loads, total, tmp, rounds)
    finally:
        stop(daemon)
    share = rps["B4b"] / rps["B4"]
    return Result(
        "B4b",
        f"socket API as new pids (audit uncached, log level info), {rounds} rounds of {total}",
        "B4 in the same rounds",
        f"{share:.0%} of B4 ({rps['B4b']:.0f} vs {rps['B4']:.0f} req/s; p99 "
        f"{p99['B4b']:.1f} vs {p99['B4']:.1f} ms), {int(errors)} errors",
        ">= 80 % of B4",
        share >= 0.8 and errors == 0,
        {"rps": rps, "p99_ms": p99},
    )


def client_body(fields: dict[str, object], env: dict[str, str]) -> bytes:
    """The JSON body the client sends for `fields` in a shell whose environment is `env`."""
    saved = dict(os.environ)
    os.environ.update({k: env[k] for k in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")})
    try:
        return json.dumps(build_request(fields)).encode()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def bench_profile_requests(
    loadgen: Path, env: dict[str, str], total: int, tmp: Path, rounds: int
) -> Result:
    """B9: B4 with the body `rolecache env --profile P` sends (its files stamped by the
    client, so the lane answers with no stat()) against B4's explicit role bodies, on one
    daemon, alternated; and, for other callers of the API, the body without stamps (the
    lane then stat()s each file)."""
    config = Path(env["AWS_CONFIG_FILE"])
    config.write_text(f"[profile benchrole]\nrole_arn = {ROLE}\nsource_profile = base\n")
    stamped = client_body({"profile": "benchrole"}, env)
    unstamped = json.loads(stamped)
    del unstamped["file_stamps"]
    requests = {
        "B4": credentials_request("bench"),
        "B9": http_request("POST", "/v1/credentials?format=env", stamped),
        "B9 unstamped": http_request(
            "POST", "/v1/credentials?format=env", json.dumps(unstamped).encode()
        ),
    }
    target = f"unix:{env['ROLECACHE_SOCKET']}"
    loads = {name: (target, request) for name, request in requests.items()}
    rps, p99, errors = alternated(loadgen, loads, total, tmp, rounds)
    share, bare = rps["B9"] / rps["B4"], rps["B9 unstamped"] / rps["B4"]
    return Result(
        "B9",
        f"socket API with the client's `--profile` requests, {rounds} rounds of {total}",
        "B4 in the same rounds",
        f"{share:.0%} of B4 ({rps['B9']:.0f} vs {rps['B4']:.0f} req/s; p99 "
        f"{p99['B9']:.1f} vs {p99['B4']:.1f} ms); without the client's stamps {bare:.0%} "
        f"({rps['B9 unstamped']:.0f} req/s); {int(errors)} errors",
        ">= 90 % of B4",
        share >= 0.9 and errors == 0,
        {"rps": rps, "p99_ms": p99},
    )


def bench_socket_api(loadgen: Path, env: dict[str, str], total: int, tmp: Path) -> Result:
    """B4: the socket API under 50 concurrent clients, a new connection per request."""
    request = credentials_request("bench")
    target = f"unix:{env['ROLECACHE_SOCKET']}"
    run_loadgen(loadgen, target, 50, min(total, 2000), request, tmp)  # warm-up
    r = run_loadgen(loadgen, target, 50, total, request, tmp)
    met = r["rps"] >= 8000 and r["p99_ms"] <= 10 and r["errors"] == 0
    return Result(
        "B4",
        f"socket API, 50 clients, new connection each, {int(r['requests'])} requests",
        "-",
        f"{r['rps']:.0f} req/s, p99 {r['p99_ms']:.1f} ms, {int(r['errors'])} errors",
        ">= 8,000 req/s, p99 <= 10 ms",
        met,
        r,
    )


def endpoint_target(
    env: dict[str, str], name: str, client: tuple[str, ...] = (str(BIN / "rolecache"),)
) -> tuple[str, bytes] | str:
    """Add (or replace) binding `name` on the daemon of `env` with the `client` command; the
    load generator's target and request for its container endpoint, or why it could not be
    added."""
    added = subprocess.run(
        [*client, "endpoint", "add", name, "--replace", "--role-arn", ROLE,
         "--role-session-name", "bench-ecs"],
        env=env,
        capture_output=True,
        text=True,
    )  # fmt: skip
    if added.returncode != 0:
        return added.stderr.strip()[:80]
    exported = subprocess.run(
        [*client, "endpoint", "env", name, "--env-file"], env=env, capture_output=True, text=True
    ).stdout
    variables = dict(line.split("=", 1) for line in exported.splitlines() if "=" in line)
    url = variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    token = Path(variables["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]).read_text()
    hostport, _, path = url.removeprefix("http://").partition("/")
    request = (
        f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: {token}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return f"tcp:{hostport}", request


def bench_ecs_endpoint(loadgen: Path, env: dict[str, str], total: int, tmp: Path) -> Result:
    """B5: the ECS-style endpoint under 50 concurrent clients."""
    target = endpoint_target(env, "bench")
    if isinstance(target, str):
        return Result(
            "B5", "ECS endpoint", "-", f"not measured: {target}", ">= 5,000 req/s, p99 <= 20 ms",
            None,
        )  # fmt: skip
    run_loadgen(loadgen, target[0], 50, min(total, 1000), target[1], tmp)  # warm-up
    r = run_loadgen(loadgen, target[0], 50, total, target[1], tmp)
    met = r["rps"] >= 5000 and r["p99_ms"] <= 20 and r["errors"] == 0
    return Result(
        "B5",
        f"ECS endpoint, 50 clients, {int(r['requests'])} requests",
        "-",
        f"{r['rps']:.0f} req/s, p99 {r['p99_ms']:.1f} ms, {int(r['errors'])} errors",
        ">= 5,000 req/s, p99 <= 20 ms",
        met,
        r,
    )


# The daemon without the netlink lookup of TCP peers: every TCP peer is taken for our own
# uid, as the lookup finds the bench's. A patch made here, in the launcher, so no switch in
# the daemon can turn its peer check off.
UNCHECKED_DAEMON = (
    "import os, sys\nfrom rolecached.host import peers\n"
    "peers.tcp_peer_uid = lambda ours, theirs, family: os.getuid()\n"
    "from rolecached.main import main\nsys.exit(main(sys.argv[1:]))\n"
)


def bench_peer_check(
    loadgen: Path, env: dict[str, str], total: int, tmp: Path, rounds: int
) -> Result:
    """B5u: B5 with the peer-uid check against B5 without it, on two daemons of one run,
    alternated round by round; medians of the rounds."""
    run = tmp / "run-unchecked"
    run.mkdir(mode=0o700)
    plain = {
        **env,
        "ROLECACHE_SOCKET": str(run / "rolecache.sock"),
        "XDG_STATE_HOME": str(tmp / "state-unchecked"),  # its bindings are its own
    }
    config = tmp / "rolecached.toml"
    daemon = subprocess.Popen(
        [sys.executable, "-c", UNCHECKED_DAEMON, "--log-level", "warning", "--config", str(config)],
        env=plain,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(plain["ROLECACHE_SOCKET"], daemon)
        found = {
            "with check": endpoint_target(env, "bench"),
            "without": endpoint_target(plain, "bench"),
        }
        targets = {n: t for n, t in found.items() if not isinstance(t, str)}
        if len(targets) < 2:
            why = next(t for t in found.values() if isinstance(t, str))
            return Result("B5u", "peer-uid check", "-", f"not measured: {why}", "", None)
        rps, p99, errors = alternated(loadgen, targets, total, tmp, rounds)
    finally:
        stop(daemon)
    share = rps["with check"] / rps["without"]
    slower = p99["with check"] / p99["without"]
    return Result(
        "B5u",
        f"ECS endpoint with the peer-uid check, {rounds} rounds of {total}",
        "the same without it (test hook)",
        f"{share:.0%} of the throughput ({rps['with check']:.0f} vs {rps['without']:.0f} "
        f"req/s), p99 {slower:.2f}x ({p99['with check']:.1f} vs {p99['without']:.1f} ms), "
        f"{int(errors)} errors",
        ">= 70 % of the throughput, p99 <= 2x",
        share >= 0.7 and slower <= 2 and errors == 0,
        {"rps": rps, "p99_ms": p99},
    )


def bench_cold_burst(loadgen: Path, env: dict[str, str], clients: int, tmp: Path) -> Result:
    """B6: a burst of concurrent cold requests for one key makes exactly one STS call."""
    session = f"cold-{int(time.time() * 1000)}"
    role = f"{ROLE}-{session}"
    body = json.dumps({"role_arn": role, "role_session_name": session}).encode()
    r = run_loadgen(
        loadgen,
        f"unix:{env['ROLECACHE_SOCKET']}",
        clients,
        clients,
        http_request("POST", "/v1/credentials?format=env", body),
        tmp,
    )
    calls = moto_assume_calls(role)
    met = calls == 1 and r["errors"] == 0 and int(r["requests"]) == clients
    return Result(
        "B6",
        f"{clients} concurrent cold requests for one key",
        "-",
        f"{calls} STS call, {int(r['requests']) - int(r['errors'])}/{clients} answered",
        "exactly 1 STS call, all answered",
        met,
        {**r, "sts_calls": calls},
    )


def bench_memory(env: dict[str, str], sizes: list[int]) -> Result:
    """B7: daemon RSS right after start and with N cached sessions: a daemon of its own
    state folder, so it restores none of the bindings earlier benchmarks added."""
    env = {**env, "XDG_STATE_HOME": env["XDG_STATE_HOME"] + "-memory"}
    daemon, _ = start_daemon(env)
    try:
        time.sleep(0.5)
        rows = {"start": rss_mib(daemon.pid)}
        done = 0
        for size in sizes:
            failures = asyncio.run(
                fill_sessions(env["ROLECACHE_SOCKET"], size - done, f"mem{size}")
            )
            if failures:
                raise RuntimeError(f"{failures} requests failed while filling the cache")
            done = size
            rows[str(size)] = rss_mib(daemon.pid)
    finally:
        stop(daemon)
    limits = {1000: 64, 10000: 96}
    met = all(rows[str(n)] <= limits.get(n, 96) for n in sizes)
    shown = ", ".join(f"{k}: {v:.0f} MiB" for k, v in rows.items())
    return Result(
        "B7",
        "daemon RSS by cached sessions",
        "RSS right after start",
        shown,
        "<= 64 MiB at 1,000, <= 96 MiB at 10,000",
        met,
        rows,
    )


def bench_startup(env: dict[str, str], runs: int) -> Result:
    """B8: daemon start to ready (socket accepting) against importing boto3 and aiohttp."""
    ready, imports = [], []
    for _ in range(runs):
        imports.append(timed([sys.executable, "-c", "import boto3, aiohttp"], env))
        daemon, seconds = start_daemon(env)
        ready.append(seconds)
        stop(daemon)
    ratio = statistics.median(ready) / statistics.median(imports)
    return Result(
        "B8",
        "daemon start to ready",
        '`python -c "import boto3, aiohttp"`',
        f"{ratio:.2f}x ({vs({'d': stats(ready), 'i': stats(imports)}, 'd', 'i')})",
        "<= 1.3x",
        ratio <= 1.3,
        {"ready": stats(ready), "imports": stats(imports)},
    )


def write_markdown(results: list[Result], out: Path, quick: bool) -> str:
    verdict = {True: "met", False: "NOT met", None: "not measured"}
    lines = [
        f"# rolecache benchmarks{' (quick mode: not a measurement)' if quick else ''}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| # | benchmark | baseline (same run) | measured | target | |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.name} | {r.what} | {r.baseline} | {r.measured} | {r.target} | {verdict[r.met]} |"
        for r in results
    ]
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(
        json.dumps([r.__dict__ for r in results], indent=2, default=str)
    )
    return text


# The chart's ticks, in ms: a 1-3-10 ladder, as a log axis reads best.
LOG_TICKS = [m * 10.0**e for e in range(-1, 6) for m in (1, 3)]


def chart_axis(values: list[float]) -> tuple[float, float]:
    """The chart's axis limits in ms: from the ladder's tick below the smallest value (so a
    fast machine's shortest bar still shows) to three times the largest (room for labels)."""
    low = max((t for t in LOG_TICKS if t < min(values) / 1.5), default=LOG_TICKS[0])
    return low, max(values) * 3


def write_chart(chart: dict[str, float], out: Path) -> tuple[float, float] | None:
    """A bar chart of client latency medians (log scale); returns its axis' limits in ms, or
    None (no chart) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("matplotlib is not installed: no chart (pip install 'rolecache[bench]')")
        return None
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(chart)
    bars = ax.barh(names, [chart[n] for n in names], color=["#999", "#2a7", "#2a7", "#c44"])
    ax.set_xscale("log")
    low, high = chart_axis(list(chart.values()))
    ticks = [t for t in LOG_TICKS if low <= t <= high]
    ax.set_xlim(low, high)
    ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("median wall time per command, ms (log scale)")
    ax.bar_label(bars, labels=[f"{chart[n]:.0f} ms" for n in names], padding=3)
    ax.invert_yaxis()
    ax.set_title("Client latency on a cache hit (same run)")
    fig.tight_layout()
    fig.savefig(out / "client-latency.png", dpi=120)
    low, high = ax.get_xlim()
    plt.close(fig)
    return low, high


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few iterations: prove it works")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    runs, total, burst = (2, 500, 100) if args.quick else (20, 20000, 1000)
    sizes = [50, 100] if args.quick else [1000, 10000]
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "client")], check=True)
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        loadgen = build_loadgen(tmp)
        env, daemon, moto = start_world(tmp)
        try:
            latency, chart = bench_latency(env, runs, tmp)
            results += latency
            results.append(bench_socket_api(loadgen, env, total, tmp))
            results.append(bench_new_pids(loadgen, env, total, tmp, 1 if args.quick else 5))
            results.append(bench_profile_requests(loadgen, env, total, tmp, 1 if args.quick else 5))
            results.append(bench_ecs_endpoint(loadgen, env, total, tmp))
            results.append(bench_peer_check(loadgen, env, total, tmp, 1 if args.quick else 5))
            results.append(bench_cold_burst(loadgen, env, burst, tmp))
        finally:
            stop(daemon)
        try:
            results.append(bench_memory(env, sizes))
            results.append(bench_startup(env, max(1, runs // 2)))
        finally:
            moto.stop()  # type: ignore[attr-defined]
    print(write_markdown(results, args.out, args.quick))
    write_chart(chart, args.out)
    print(f"written: {args.out / 'results.md'}, {args.out / 'client-latency.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
