"""The client's dependency rule, checked in a fresh interpreter: standard library only, never
the daemon, and on a cache hit none of the heavy modules a shell command should not pay for."""

import sys

from tests.daemonkit import Daemon, unique_role
from tests.e2ekit import loaded_modules

# What a cache hit may not import: each costs a visible share of the client's start-up.
HEAVY = {"re", "json", "argparse", "socket", "subprocess", "http", "http.client", "email", "ssl"}
# All that a cache hit of `rolecache env` loads.
HIT_MODULES = {
    "rolecache",
    "rolecache.cli",
    "rolecache.cmdline",
    "rolecache.ask",
    "rolecache.protocol",
    "rolecache.transport",
    "_socket",
}


def with_packages(modules: set[str]) -> set[str]:
    """`modules` and every package they are in (importing a.b.c loads a and a.b too)."""
    return {".".join(m.split(".")[:i]) for m in modules for i in range(1, m.count(".") + 2)}


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
    assert modules <= with_packages(HIT_MODULES)


def test_drop_in_cache_hit_imports_nothing_heavy(daemon: Daemon) -> None:
    """A cache hit of `rolecache sts assume-role --output text --query ...` (the shell
    idiom) loads no json, re or argparse, asks the daemon nothing but the credentials (no
    version lookup), and loads only the drop-in's own modules beyond `env`'s."""
    role = unique_role()
    args = ["sts", "assume-role", "--role-arn", role, "--role-session-name", "imports"]
    args += ["--output", "text", "--query", "Credentials.AccessKeyId"]
    status, _ = loaded_modules(daemon, *args)  # the miss: assumes the role
    assert status == 0
    status, modules = loaded_modules(daemon, *args)
    assert status == 0
    assert modules & HEAVY == set()
    assert modules <= with_packages(
        HIT_MODULES
        | {"rolecache.commands.assume", "rolecache.commands.assumeargs", "rolecache.awsconfig"}
    )
