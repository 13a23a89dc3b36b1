"""B4, B4b, B5 and B9 of this checkout against another commit's, alternated round by round.

    python -m bench.compare REV [--rounds 5] [--total 20000]

How a change that should not change speed (a refactor) is shown not to: REV's daemon and
client are unpacked from git into a temporary folder, both daemons run side by side against
one moto, and every load runs against one then the other in each round, so the machine's
drift falls on both alike. Prints each load's median req/s and p99 for both and the ratio.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.latency import ROLE, ROOT, start_world
from bench.run import (
    alternated,
    build_loadgen,
    client_body,
    credentials_request,
    endpoint_target,
    stop,
    wait_for,
)
from bench.throughput import http_request

# Starts the daemon of whichever tree PYTHONPATH names, after `hook` (Python statements that
# may switch a test hook off): both trees start through `python -m rolecached`.
LAUNCHER = "import runpy\n{hook}\nrunpy.run_module('rolecached', run_name='__main__')\n"

# The audit cache's test hook, wherever the tree keeps the audit module.
AUDIT_MODULES = ("rolecached.observe.audit", "rolecached.audit")


def unpack(rev: str, into: Path) -> Path:
    """REV's daemon/ and client/ under `into`; the folder."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "daemon", "client"],
        capture_output=True,
        check=True,
    ).stdout
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def tree_env(env: dict[str, str], tree: Path, run: Path) -> dict[str, str]:
    """`env` for a daemon and client of `tree`, with its own socket and state."""
    run.mkdir(mode=0o700)
    return {
        **env,
        "PYTHONPATH": f"{tree / 'daemon'}{os.pathsep}{tree / 'client'}",
        "ROLECACHE_SOCKET": str(run / "rolecache.sock"),
        "XDG_STATE_HOME": str(run / "state"),
    }


def audit_hook(tree: Path) -> str:
    """The statements that switch `tree`'s audit cache off (B4b: every request a new pid)."""
    for module in AUDIT_MODULES:
        if (tree / "daemon" / Path(*module.split("."))).with_suffix(".py").exists():
            return f"import {module} as audit\naudit.CACHE_DESCRIPTIONS = False"
    raise SystemExit(f"no audit module in {tree}")


def start(env: dict[str, str], hook: str, config: Path, level: str) -> subprocess.Popen:
    """A daemon of the tree `env` names, started and accepting on its socket."""
    log = Path(env["ROLECACHE_SOCKET"]).with_name("daemon.log")
    with log.open("wb") as stderr:
        daemon = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER.format(hook=hook), "--log-level", level,
             "--config", str(config)],
            env=env,
            stderr=stderr,
        )  # fmt: skip
    try:
        wait_for(env["ROLECACHE_SOCKET"], daemon)
    except RuntimeError:
        raise SystemExit(f"a daemon did not start:\n{log.read_text()[-2000:]}") from None
    return daemon


def ecs_load(env: dict[str, str]) -> tuple[str, bytes]:
    """Add binding `bench` with the client of `env`'s tree; its container endpoint's load."""
    target = endpoint_target(env, "bench", (sys.executable, "-m", "rolecache"))
    if isinstance(target, str):
        raise SystemExit(f"the binding could not be added: {target}")
    return target


def report(rps: dict[str, float], p99: dict[str, float], rev: str) -> str:
    """A Markdown table: each load's medians for REV and this checkout, and their ratio."""
    lines = [
        f"| load | {rev} req/s | this req/s | this / {rev} | p99 {rev} | p99 this |",
        "|---|---|---|---|---|---|",
    ]
    for load in ("B4", "B4b", "B5", "B9"):
        base, head = f"{load} {rev}", f"{load} this"
        lines.append(
            f"| {load} | {rps[base]:.0f} | {rps[head]:.0f} | {rps[head] / rps[base]:.3f} "
            f"| {p99[base]:.1f} ms | {p99[head]:.1f} ms |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="the commit to compare with (e.g. main~10)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--total", type=int, default=20000, help="requests per load and round")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        loadgen = build_loadgen(tmp)
        env, first, moto = start_world(tmp)
        stop(first)  # this tree's daemon is started below, like REV's, for the same footing
        config = tmp / "rolecached.toml"
        (tmp / "config").write_text(
            f"[profile benchrole]\nrole_arn = {ROLE}\nsource_profile = base\n"
        )
        trees = {args.rev: unpack(args.rev, tmp / "base"), "this": ROOT}
        daemons: list[subprocess.Popen] = []
        loads: dict[str, tuple[str, bytes]] = {}
        try:
            for i, (name, tree) in enumerate(trees.items()):  # short paths: sockets' limit
                plain = tree_env(env, tree, tmp / f"r{i}")
                fresh = tree_env(env, tree, tmp / f"r{i}n")
                daemons.append(start(plain, "", config, "warning"))
                daemons.append(start(fresh, audit_hook(tree), config, "info"))
                request = credentials_request("bench")
                loads[f"B4 {name}"] = (f"unix:{plain['ROLECACHE_SOCKET']}", request)
                loads[f"B4b {name}"] = (f"unix:{fresh['ROLECACHE_SOCKET']}", request)
                loads[f"B5 {name}"] = ecs_load(plain)
                body = client_body({"profile": "benchrole"}, env)
                loads[f"B9 {name}"] = (
                    f"unix:{plain['ROLECACHE_SOCKET']}",
                    http_request("POST", "/v1/credentials?format=env", body),
                )
            ordered = {k: loads[k] for load in ("B4", "B4b", "B5", "B9") for k in loads
                       if k.split()[0] == load}  # fmt: skip
            rps, p99, errors = alternated(loadgen, ordered, args.total, tmp, args.rounds)
        finally:
            for daemon in daemons:
                stop(daemon)
            moto.stop()  # type: ignore[attr-defined]
    print(report(rps, p99, args.rev))
    print(f"{args.rounds} rounds of {args.total} requests per load, 50 clients; {errors} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
