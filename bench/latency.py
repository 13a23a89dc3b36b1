"""Client latency on a cache hit, against baselines measured in the same run (B1-B3).

    python bench/latency.py [--runs 20] [--json FILE]

Starts moto's STS on loopback and a real rolecached against it, warms the cache, then times
whole commands, alternating them run by run so drift hits all alike:

  B1  rolecache env (cache hit)                  vs  python -c pass (same interpreter)
  B2  rolecache env (cache hit)                  vs  aws sts assume-role (AWS CLI v1)
  B3  rolecache sts assume-role --output text --query ...  vs  the same aws command

These machines are noisy: only ratios from one run mean much.
"""

import argparse
import json
import logging
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as `python bench/latency.py` too

from bench.isolation import isolated_env  # noqa: E402

ROLE = "arn:aws:iam::123456789012:role/bench"
QUERY = "Credentials.[AccessKeyId,SecretAccessKey,SessionToken]"


def timed(command: list[str], env: dict[str, str]) -> float:
    """Wall time of one run of `command`, which must succeed."""
    start = time.perf_counter()
    subprocess.run(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    return time.perf_counter() - start


def stats(samples: list[float]) -> dict[str, float]:
    """Median, p90, min and max in milliseconds."""
    ms = sorted(s * 1000 for s in samples)
    return {
        "median": statistics.median(ms),
        "p90": ms[min(len(ms) - 1, int(len(ms) * 0.9))],
        "min": ms[0],
        "max": ms[-1],
    }


def alternate(commands: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, dict]:
    """Run each command `runs` times, in turn; return the stats of each."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            samples[name].append(timed(command, env))
    return {name: stats(values) for name, values in samples.items()}


def start_world(tmp: Path) -> tuple[dict[str, str], subprocess.Popen, object]:
    """moto on loopback, a daemon against it, and the environment both commands share."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per STS call otherwise

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    run = tmp / "run"
    run.mkdir(mode=0o700)
    (tmp / "credentials").write_text(
        "[base]\naws_access_key_id = AKIABENCH00000000001\naws_secret_access_key = bench\n"
    )
    env = isolated_env(tmp, run)
    env.update(
        ROLECACHE_SOCKET=str(run / "rolecache.sock"),
        ROLECACHE_NO_AUTOSTART="1",
        AWS_ENDPOINT_URL_STS=f"http://{host}:{port}",
        AWS_CONFIG_FILE=str(tmp / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "credentials"),
        AWS_DEFAULT_REGION="us-east-1",
        AWS_PROFILE="base",
    )
    # Every load client is 127.0.0.1: lift the endpoints' per-client rate limit for B5, and let
    # the system pick the port so runs never collide.
    config = tmp / "rolecached.toml"
    # hold_ports: the port keeper leaves as the benchmark's daemon does.
    config.write_text(
        "[endpoints]\nport = 0\nrate_limit = 1000000\nrate_burst = 1000000\nhold_ports = 0.1\n"
    )
    # Also the default config of the daemons started without --config (B7, B8).
    (tmp / "xdg-config" / "rolecache").mkdir(parents=True)
    (tmp / "xdg-config" / "rolecache" / "config.toml").write_text(config.read_text())
    env["XDG_CONFIG_HOME"] = str(tmp / "xdg-config")
    daemon = subprocess.Popen(
        [str(BIN / "rolecached"), "--log-level", "warning", "--config", str(config)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not Path(env["ROLECACHE_SOCKET"]).exists():
        if time.monotonic() > deadline or daemon.poll() is not None:
            raise SystemExit("rolecached did not start")
        time.sleep(0.02)
    return env, daemon, moto


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    # Measure what users run: compiled modules (PYTHONDONTWRITEBYTECODE would otherwise leave
    # every run compiling the client from source).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "client")], check=True)
    selector = ["--role-arn", ROLE, "--role-session-name", "bench"]
    sts_args = ["sts", "assume-role", *selector, "--output", "text", "--query", QUERY]
    with tempfile.TemporaryDirectory() as tmp:
        env, daemon, moto = start_world(Path(tmp))
        try:
            for warm in (["env", *selector], sts_args):
                timed([str(BIN / "rolecache"), *warm], env)
            env_cmd = [str(BIN / "rolecache"), "env", *selector]
            results = {
                "B1": alternate(
                    {"python -c pass": [sys.executable, "-c", "pass"], "rolecache env": env_cmd},
                    env,
                    args.runs,
                ),
                "B2": alternate(
                    {
                        "aws sts assume-role": [str(BIN / "aws"), *sts_args[:-4]],
                        "rolecache env": env_cmd,
                    },
                    env,
                    max(3, args.runs // 2),  # the CLI takes ~0.5 s a run
                ),
                "B3": alternate(
                    {
                        "aws sts assume-role --query": [str(BIN / "aws"), *sts_args],
                        "rolecache sts assume-role --query": [str(BIN / "rolecache"), *sts_args],
                    },
                    env,
                    max(3, args.runs // 2),
                ),
            }
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=10)
            moto.stop()  # type: ignore[attr-defined]
    for bench, rows in results.items():
        (base_name, base), (name, ours) = rows.items()
        ratio = ours["median"] / base["median"]
        for row_name, row in rows.items():
            print(
                f"{bench} {row_name:<36} median {row['median']:7.1f} ms  p90 {row['p90']:7.1f} ms"
                f"  min-max {row['min']:.1f}-{row['max']:.1f} ms"
            )
        verdict = f"{ratio:.2f}x {base_name}" if bench == "B1" else f"{1 / ratio:.1f}x faster"
        print(f"{bench} {name}: {verdict}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
