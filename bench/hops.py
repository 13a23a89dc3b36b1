"""How far one request travels in the daemon: the modules a first credentials request on the
socket and a container request pass through, counted in a real daemon.

    python -m bench.hops [--against REV]

A launcher records, while asked to, every call into a function of `rolecached`: the module
called and the nearest `rolecached` module below it on the stack. Reported per request:
- modules: the daemon's modules that ran;
- hops: distinct module-to-module calls (A calls into B, A != B);
- back-calls: hops into a module already on the stack below the caller (A -> B -> A: a
  lower part calling back up into the one that called it).
Each is what three requests of the kind all made, so that background work (a timer's tick)
falling into one record is not counted.
With --against REV the same requests run against REV's daemon (unpacked from git) as well.
"""

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.compare import tree_env, unpack
from bench.latency import ROLE, ROOT, start_world
from bench.run import stop, wait_for

SAMPLES = 3

# Runs the daemon on asyncio's loop (whose signal handlers are Python's) with a profiler in
# every thread: SIGUSR1 starts a record, SIGUSR2 writes it to $HOPS_OUT as JSON.
LAUNCHER = r"""
import json, os, runpy, signal, sys, threading
calls = set()
recording = False

def module_of(frame):
    # The nearest daemon module below, up to the event loop: what the loop runs (a task, a
    # callback) was called by nobody, not by the module that started the loop.
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name.startswith("rolecached"):
            return name
        if name == "asyncio.events" and frame.f_code.co_name == "_run":
            return None
        frame = frame.f_back
    return None

def profile(frame, event, arg):
    if not recording or event != "call":
        return
    callee = frame.f_globals.get("__name__", "")
    if not callee.startswith("rolecached"):
        return
    caller = module_of(frame.f_back)
    below = set()
    f = frame.f_back
    while f is not None:
        below.add(f.f_globals.get("__name__", ""))
        f = f.f_back
    calls.add((caller, callee, callee in below))

def start(*_):
    global recording
    calls.clear()
    recording = True
    open(os.environ["HOPS_OUT"] + ".on", "w").close()

def dump(*_):
    global recording
    recording = False
    with open(os.environ["HOPS_OUT"], "w") as out:
        json.dump(sorted(calls, key=str), out)

signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, dump)
threading.setprofile(profile)
sys.setprofile(profile)
runpy.run_module("rolecached", run_name="__main__")
"""


def recorded(daemon: subprocess.Popen, out: Path, request: list[str], env: dict) -> set:
    """Record the daemon while `request` (a client command) runs; the calls."""
    out.unlink(missing_ok=True)
    daemon.send_signal(signal.SIGUSR1)
    wait_for_file(Path(f"{out}.on"))
    subprocess.run(request, env=env, check=True, capture_output=True)
    daemon.send_signal(signal.SIGUSR2)
    wait_for_file(out)
    Path(f"{out}.on").unlink()
    return {tuple(call) for call in json.loads(out.read_text())}


def wait_for_file(path: Path) -> None:
    """Return once `path` exists with content or was created empty on purpose."""
    deadline = time.monotonic() + 30
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"the recording daemon did not answer ({path.name})")
        time.sleep(0.01)
    time.sleep(0.05)  # the writer closes right after creating it


def counts(samples: list[set]) -> dict:
    """Modules, hops and back-calls of the (caller, callee, callee below) calls every sample
    made, each count with its list: what only some made was background work (a tick)."""
    calls = set.intersection(*samples)
    modules = {callee for _, callee, _ in calls} | {c for c, _, _ in calls if c}
    hops = {f"{a} -> {b}" for a, b, _ in calls if a and a != b}
    back = {f"{a} -> {b}" for a, b, below in calls if a and a != b and below}
    return {"modules": sorted(modules), "hops": sorted(hops), "back-calls": sorted(back)}


def measure(tree: Path, env: dict[str, str], config: Path, run: Path) -> dict[str, dict]:
    """The counts of a first credentials request and of a container request (first and
    repeated) against a daemon of `tree`, each a sample of SAMPLES requests."""
    env = {**tree_env(env, tree, run), "HOPS_OUT": str(run / "hops.json")}
    env["ROLECACHE_EVENT_LOOP"] = "asyncio"
    client = [sys.executable, "-m", "rolecache"]
    daemon = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, "--log-level", "warning", "--config", str(config)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    out = run / "hops.json"
    samples: dict[str, list[set]] = {"first credentials request": [], "container request": []}
    samples["container request, repeated"] = []
    try:
        wait_for(env["ROLECACHE_SOCKET"], daemon)
        for i in range(SAMPLES):
            first = [*client, "env", "--role-arn", ROLE, "--role-session-name", f"hops-{i}"]
            samples["first credentials request"].append(recorded(daemon, out, first, env))
            fetch = container_fetch(client, env, f"hops{i}")
            samples["container request"].append(recorded(daemon, out, fetch, env))
            samples["container request, repeated"].append(recorded(daemon, out, fetch, env))
    finally:
        stop(daemon)
    return {request: counts(calls) for request, calls in samples.items()}


def container_fetch(client: list[str], env: dict[str, str], name: str) -> list[str]:
    """Add binding `name`; the command that asks its container endpoint once."""
    subprocess.run(
        [*client, "endpoint", "add", name, "--role-arn", ROLE, "--role-session-name", name],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    exported = subprocess.run(
        [*client, "endpoint", "env", name, "--env-file"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    found = dict(line.split("=", 1) for line in exported.splitlines() if "=" in line)
    return [sys.executable, "-c", FETCH, found["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
            found["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]]  # fmt: skip


# A container's request, to the URL with the token in the file given.
FETCH = (
    "import sys, urllib.request\n"
    "token = open(sys.argv[2]).read()\n"
    "request = urllib.request.Request(sys.argv[1], headers={'Authorization': token})\n"
    "urllib.request.urlopen(request, timeout=10).read()\n"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", metavar="REV", help="also measure git revision REV")
    parser.add_argument("--list", action="store_true", help="also list each request's hops")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env, first, moto = start_world(tmp)
        stop(first)
        trees = {"this": ROOT}
        if args.against:
            trees = {args.against: unpack(args.against, tmp / "base"), **trees}
        try:
            results = {
                name: measure(tree, env, tmp / "rolecached.toml", tmp / f"r{i}")
                for i, (name, tree) in enumerate(trees.items())
            }
        finally:
            moto.stop()  # type: ignore[attr-defined]
    print("| request | tree | modules | hops | back-calls |")
    print("|---|---|---|---|---|")
    for request in next(iter(results.values())):
        for name, result in results.items():
            n = {k: len(v) for k, v in result[request].items()}
            print(f"| {request} | {name} | {n['modules']} | {n['hops']} | {n['back-calls']} |")
    if args.list:
        print(json.dumps(results, indent=1).replace("rolecached.", ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
