"""The benchmark suite still works end to end (quick mode: no speed is asserted here)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemonkit import Daemon, unique_role

ROOT = Path(__file__).resolve().parent.parent.parent


def test_bench_suite_runs_and_writes_its_results(tmp_path: Path, daemon: Daemon) -> None:
    """`python -m bench.run --quick`, started from a shell whose user has their own daemon
    running (with a container binding) and a config.toml and ~/.aws/config of their own, runs
    every benchmark, writes the Markdown table, the JSON and the chart, and the deterministic
    one (B6: one STS call for a cold burst) holds."""
    user = daemon.env
    added = daemon.client(
        "endpoint", "add", "mine", "--role-arn", unique_role(), "--role-session-name", "mine"
    )
    assert added.returncode == 0, added.stderr
    home = Path(user["HOME"])
    (home / ".aws").mkdir()
    (home / ".aws" / "config").write_text("[profile dev]\nrole_arn = " + unique_role() + "\n")
    config = Path(user["XDG_CONFIG_HOME"]) / "rolecache" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[daemon]\nidle_ttl = 60\n\n[endpoints.dev]\nprofile = "dev"\n')
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=user,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = (out / "results.md").read_text()
    for name in ("B1", "B1c", "B2", "B3", "B3c", "B4", "B5", "B6", "B7", "B8"):
        assert f"| {name} |" in table
    results = {r["name"]: r for r in json.loads((out / "results.json").read_text())}
    assert results["B6"]["details"]["sts_calls"] == 1
    assert results["B6"]["met"] is True
    assert (out / "client-latency.png").read_bytes().startswith(b"\x89PNG")
    assert daemon.client("status").returncode == 0  # the user's daemon is still there


def test_the_chart_axis_starts_below_the_fastest_bar(tmp_path: Path) -> None:
    """The chart's log axis starts below its smallest median, so that no bar is hidden (a fast
    machine runs `python -c pass` in under 10 ms)."""
    pytest.importorskip("matplotlib", reason="the chart needs matplotlib (the test extra)")
    from bench.run import write_chart

    chart = {"python -c pass": 6.2, "rolecache env": 7.9, "sts --query": 9.4, "aws": 640.0}
    limits = write_chart(chart, tmp_path)
    assert limits is not None
    low, high = limits
    assert low < min(chart.values()) and high > max(chart.values()), limits
    assert (tmp_path / "client-latency.png").read_bytes().startswith(b"\x89PNG")


def test_bench_compare_runs_both_trees_side_by_side() -> None:
    """`python -m bench.compare HEAD` unpacks the committed tree, runs its daemons beside this
    checkout's and prints a ratio for each of B4, B4b, B5 and B9, with no failed request."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True)
    if head.returncode:
        pytest.skip("bench.compare reads the commit to compare with from git: no git checkout here")
    result = subprocess.run(
        [sys.executable, "-m", "bench.compare", "HEAD", "--rounds", "1", "--total", "200"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| B")]
    assert [row.split("|")[1].strip() for row in rows] == ["B4", "B4b", "B5", "B9"], result.stdout
    assert all(float(row.split("|")[4]) > 0 for row in rows), result.stdout
    assert "; 0 errors" in result.stdout


def test_bench_hops_follows_a_request_through_the_daemon() -> None:
    """`python -m bench.hops --list` records a real daemon: the first credentials request
    reaches the STS caller, and a repeated container request is answered by the container
    lane without the socket API's modules."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.hops", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    recorded = json.loads(result.stdout[result.stdout.index("{") :])["this"]
    assert "sts" in recorded["first credentials request"]["modules"], recorded
    repeated = recorded["container request, repeated"]
    assert "front.site -> endpoints.ecslane" in repeated["hops"], repeated
    assert not [m for m in repeated["modules"] if m.startswith("api.")], repeated
