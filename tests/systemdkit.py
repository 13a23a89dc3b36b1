"""Test helpers for the shipped systemd units: their settings as systemd reads them, and
`systemd-analyze security`'s overall exposure score."""

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
# systemd-analyze's verdict is 0.0 (best) to 10.0; this is the most the shipped service may
# score as a user unit.
MOST_EXPOSURE = 5.0
_OVERALL = re.compile(r"Overall exposure level for (\S+): (\d+\.\d+) ")


def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """Each section's settings, every value of a key in order (systemd allows repeats)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def exposure(output: str, unit: str = "rolecached.service") -> float:
    """The overall exposure level that `systemd-analyze security UNIT` printed for `unit`."""
    for name, level in _OVERALL.findall(output):
        if name == unit:
            return float(level)
    raise AssertionError(f"no overall exposure level for {unit} in:\n{output[-2000:]}")


def offline_security_unavailable() -> str | None:
    """Why `systemd-analyze security --offline=yes` cannot run here, or None when it can."""
    if shutil.which("systemd-analyze") is None:
        return "no systemd-analyze on this host (Debian's systemd package has it)"
    probe = subprocess.run(
        ["systemd-analyze", "security", "--help"], capture_output=True, text=True, timeout=60
    )
    if "--offline" not in probe.stdout:
        return "this systemd-analyze has no --offline (systemd 250 and later do)"
    return None


def offline_security(unit: Path, runtime_dir: Path) -> subprocess.CompletedProcess:
    """`systemd-analyze security --offline=yes --user UNIT`, as a user manager would load it
    (it wants an XDG_RUNTIME_DIR, which `runtime_dir` stands in for)."""
    runtime_dir.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--user", "--no-pager", str(unit)],
        env={"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(runtime_dir), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=120,
    )
