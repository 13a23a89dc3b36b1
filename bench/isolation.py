"""The environment every benchmark daemon and client runs in: the caller's, without anything of
the user's own rolecache or AWS set-up (their daemon, config.toml, ~/.aws, AWS_* variables)."""

import os
from pathlib import Path


def isolated_env(tmp: Path, run: Path) -> dict[str, str]:
    """This process's environment with a home, config, cache, state and runtime folder (`run`,
    0700) under `tmp` in place of the user's, and no AWS_*, ROLECACHE_* or XDG_* of theirs."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROLECACHE_", "XDG_"))}
    env.update(
        HOME=str(home),
        XDG_RUNTIME_DIR=str(run),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_STATE_HOME=str(tmp / "state"),
    )
    return env
