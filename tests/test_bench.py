"""The benchmark suite still works end to end (quick mode: no speed is asserted here)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_suite_runs_and_writes_its_results(tmp_path: Path) -> None:
    """`python -m bench.run --quick` runs every benchmark, writes the Markdown table, the
    JSON and the chart, and the deterministic one (B6: one STS call for a cold burst) holds."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = (tmp_path / "results.md").read_text()
    for name in ("B1", "B1c", "B2", "B3", "B3c", "B4", "B5", "B6", "B7", "B8"):
        assert f"| {name} |" in table
    results = {r["name"]: r for r in json.loads((tmp_path / "results.json").read_text())}
    assert results["B6"]["details"]["sts_calls"] == 1
    assert results["B6"]["met"] is True
    assert (tmp_path / "client-latency.png").read_bytes().startswith(b"\x89PNG")
