"""rolecache-assume keeps a real interactive bash, zsh and fish fresh: on one libfaketime
clock with the daemon and a moto that refuses expired credentials, the shell's `aws sts
get-caller-identity` (AWS CLI v1) keeps working across renewals the user never asks for,
and a prompt with nothing due starts no process (strace counts every execve)."""

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import strict_sts
from tests.daemonkit import BIN, Daemon, base_env, start_daemon, unique_role
from tests.fakeday import FakeDay, fake_day, moto_on
from tests.profilekit import role_profile, write_config
from tests.shellkit import STATUS, TerminalShell, shell_or_skip

SESSION = 900  # the shortest session STS grants
STEP = SESSION + 60  # each jump outlives the whole session: stale credentials would fail
RENEWALS = 3
PROFILE = "fresh"


@dataclass
class Rig:
    """The daemon, the moto it reaches (through the strict STS) and the clock they share."""

    day: FakeDay
    daemon: Daemon
    moto_url: str


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """A daemon and moto on one libfaketime offset, and a role profile of 900 s sessions."""
    day = fake_day(tmp_path / "day")
    with moto_on(day, "127.0.0.1") as moto_url:
        proxy, stop_proxy = strict_sts.serve(moto_url)
        env = {**base_env(tmp_path, proxy.url), **day.env(), "ROLECACHE_NO_AUTOSTART": "1"}
        daemon = start_daemon(tmp_path, env)
        write_config(
            env, role_profile(PROFILE, unique_role("fresh"), "base", duration_seconds=str(SESSION))
        )
        try:
            yield Rig(day, daemon, moto_url)
        finally:
            daemon.stop()
            stop_proxy()


def shell_env(rig: Rig) -> dict[str, str]:
    """The daemon's environment for the shell, on the same clock, with no AWS keys of its
    own, the venv's `rolecache` and AWS CLI v1 first on PATH, and STS at moto itself."""
    env = {k: v for k, v in rig.daemon.env.items() if not k.startswith("AWS_ACCESS_KEY")}
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    env["AWS_ENDPOINT_URL_STS"] = rig.moto_url
    return env


def init_line(shell: str) -> str:
    """How the README has each shell load rolecache's functions."""
    if shell == "fish":
        return "rolecache shell-init fish | source"
    return f'eval "$(rolecache shell-init {shell})"'


def call_line(shell: str, report: Path) -> str:
    """Ask STS who we are; report the exit status, the key used and the prompt segment."""
    segment = "(rolecache_prompt)" if shell == "fish" else '"$(rolecache_prompt)"'
    return (
        "aws sts get-caller-identity --query Arn --output text; "
        f"echo {STATUS[shell]} $AWS_ACCESS_KEY_ID {segment} > '{report}'"
    )


def executions(trace: str) -> list[str]:
    """The execve lines of an strace log, in order."""
    return [line for line in trace.splitlines() if " execve(" in line]


def between(trace: str, start: Path, end: Path) -> list[str]:
    """The execve lines between the shell opening `start` and opening `end`."""
    lines = trace.splitlines()
    first = next(i for i, line in enumerate(lines) if f'"{start}"' in line)
    last = next(i for i, line in enumerate(lines) if f'"{end}"' in line)
    return executions("\n".join(lines[first:last]))


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_assumed_shell_stays_fresh_across_renewals(rig: Rig, shell: str, tmp_path: Path) -> None:
    """After `rolecache-assume`, the AWS CLI in bash, zsh and fish keeps working while the
    clock jumps past three whole sessions, each time on newly exported keys; idle prompts
    start no process; `rolecache-assume --off` unsets the credentials and its hooks."""
    argv = shell_or_skip(shell)
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (.ci/run installs it): cannot count processes")
    trace = tmp_path / "strace.log"
    report = tmp_path / "report"
    idle_start, idle_end = tmp_path / "idle-start", tmp_path / "idle-end"
    strace = ["strace", "-f", "-qq", "-e", "trace=execve,openat", "-e", "signal=none"]
    term = TerminalShell([*strace, "-o", str(trace), "--", *argv], shell_env(rig), report)
    try:
        if shell == "fish":  # fish's own prompt runs git; ours must be all the prompt does
            term.type("function fish_prompt; echo '> '; end")
        term.type(init_line(shell))
        term.type(f"rolecache-assume {PROFILE}")
        term.type(call_line(shell, report))
        keys = []
        for step in range(RENEWALS + 1):
            if step:
                rig.day.advance(STEP)
                term.type(call_line(shell, report))
            status, key, segment = term.reports.next().split(" ")
            assert status == "0", term.seen()
            assert re.fullmatch(f"{PROFILE}:1[45]m", segment), segment
            keys.append(key)
        assert len(set(keys)) == RENEWALS + 1, keys  # a new session each time
        assert all(key.startswith("ASIA") for key in keys), keys

        # Idle prompts: Enter on an empty line, and a builtin, with nothing due.
        term.type(f"echo > '{idle_start}'")
        for _ in range(3):
            term.type("")
        term.type(f"echo > '{idle_end}'; echo idle > '{report}'")
        assert term.reports.next() == "idle"

        term.type("rolecache-assume --off")
        hooks = {
            "bash": '"$PROMPT_COMMAND$(trap -p DEBUG)"',
            "zsh": '"$precmd_functions$preexec_functions"',
            "fish": "(functions -q __rolecache_fresh; and echo hooked; or echo)",
        }[shell]
        term.type(f"echo \"[$AWS_ACCESS_KEY_ID$ROLECACHE_EXPIRES_AT]\" {hooks}x > '{report}'")
        assert term.reports.next() == "[] x"
    finally:
        term.close()
    log = trace.read_text()
    assert any("/aws" in line for line in executions(log))  # strace saw the processes
    assert between(log, idle_start, idle_end) == []
