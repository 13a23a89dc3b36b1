"""The client's dependency rule, checked in a fresh interpreter: standard library only, never
the daemon, and on a cache hit none of the heavy modules a shell command should not pay for."""

import subprocess
import sys

from tests.conftest import BIN, Daemon, unique_role

# Runs the client's main() after noting what the interpreter loaded by itself; prints the
# difference without importing anything more (no json here: it would hide the client's own).
# `exec` is caught at os.execvpe, which would otherwise replace the probe.
PROBE = """
import os, sys
before = set(sys.modules)
def report(*_, status=0):
    sys.stderr.write("\\nMODULES " + " ".join(sorted(set(sys.modules) - before)) + "\\n")
    sys.stderr.flush()
    os._exit(status)
os.execvpe = report
from rolecache import cli
report(status=cli.main(sys.argv[1:]))
"""

# What a cache hit may not import: each costs a visible share of the client's start-up.
HEAVY = {"re", "json", "argparse", "socket", "subprocess", "http", "http.client", "email", "ssl"}


def loaded_modules(daemon: Daemon, *args: str) -> tuple[int, set[str]]:
    """Run the client with `args` in a fresh interpreter; return its exit status and the
    modules it imported beyond the interpreter's own start-up."""
    result = subprocess.run(
        [str(BIN / "python"), "-c", PROBE, *args],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "MODULES " in result.stderr, result.stderr
    return result.returncode, set(result.stderr.rsplit("MODULES ", 1)[1].split())


def test_client_imports_only_the_standard_library(daemon: Daemon) -> None:
    """Every module the client imports, on every command, is stdlib or rolecache itself."""
    role = unique_role()
    allowed = set(sys.stdlib_module_names) | {"rolecache"}
    for args in (
        ["env", "--role-arn", role, "--role-session-name", "imports"],
        ["exec", "--role-arn", role, "--role-session-name", "imports", "--", "true"],
        ["list"],
        ["status"],
        ["env", "--role-arn", role, "--role-session-name", "x"],  # the error path
    ):
        _, modules = loaded_modules(daemon, *args)
        assert "rolecache.cli" in modules, args  # the probe really saw the client load
        assert {m for m in modules if m.split(".")[0] not in allowed} == set(), args


def test_cache_hit_imports_nothing_heavy(daemon: Daemon) -> None:
    """A cache hit of `rolecache env` loads no json, re, argparse, socket or subprocess."""
    role = unique_role()
    args = ["env", "--role-arn", role, "--role-session-name", "imports"]
    status, _ = loaded_modules(daemon, *args)  # the miss: assumes the role
    assert status == 0
    status, modules = loaded_modules(daemon, *args)
    assert status == 0
    assert modules & HEAVY == set()
    assert modules <= {
        "rolecache",
        "rolecache.cli",
        "rolecache.cmdline",
        "rolecache.daemon",
        "rolecache.protocol",
        "rolecache.transport",
        "_socket",
    }
