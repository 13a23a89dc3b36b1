"""Wall time of `rolecache env` on a cache hit next to `python -c pass`, alternated run by run.

    python bench/cache_hit.py [--runs 20]

Starts a sandbox daemon on a private socket, warms the cache once, then times both commands
in turn and prints median, p90 and min-max of each and the ratio of the medians. These
machines are noisy: only the ratio from one run means much.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ROLE = ["--role-arn", "arn:aws:iam::123456789012:role/bench", "--role-session-name", "bench"]


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    return time.perf_counter() - start


def summary(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    return (
        f"{name:<28} median {statistics.median(ms):7.1f} ms  p90 {p90:7.1f} ms  "
        f"min-max {ms[0]:.1f}-{ms[-1]:.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    # Measure what users run: compiled modules. (PYTHONDONTWRITEBYTECODE would otherwise
    # leave every run compiling the client from source.)
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "client")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "run" / "bench.sock"
        sock.parent.mkdir(mode=0o700)
        env = dict(os.environ, ROLECACHE_SOCKET=str(sock), ROLECACHE_NO_AUTOSTART="1")
        daemon = subprocess.Popen(
            [str(BIN / "rolecached"), "--sandbox", "--log-level", "warning"],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while subprocess.run(
                [str(BIN / "rolecache"), "env", *ROLE], env=env, capture_output=True
            ).returncode:
                if time.monotonic() > deadline:
                    raise SystemExit("the sandbox daemon did not start")
                time.sleep(0.1)
            commands = {
                "python -c pass": [sys.executable, "-c", "pass"],
                "rolecache env (cache hit)": [str(BIN / "rolecache"), "env", *ROLE],
            }
            samples: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.runs):
                for name, command in commands.items():  # alternate: drift hits both alike
                    samples[name].append(timed(command, env))
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=10)
    for name, values in samples.items():
        print(summary(name, values))
    base, hit = (statistics.median(v) for v in samples.values())
    print(f"ratio rolecache env / python -c pass: {hit / base:.2f}x  ({args.runs} runs each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
