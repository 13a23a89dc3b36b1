"""`rolecache endpoint env NAME --env-file PATH`: the env file holds the container token, so it
is written 0600, and never through a symlink or into a file another user planted. The
attacker is uid 65534 (setpriv) in a shared sticky folder like /tmp, against the real daemon
and client. Needs root and setpriv; skips saying why otherwise."""

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemonkit import Daemon, unique_role
from tests.e2ekit import add

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

pytestmark = pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run the attacker as another uid",
)


@pytest.fixture
def sticky() -> Iterator[Path]:
    """A world-writable sticky folder both users reach (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="rc-envfile-"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def as_nobody(*command: str) -> subprocess.CompletedProcess:
    """`command` run as uid 65534."""
    return subprocess.run([*NOBODY, *command], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("docker", [True, False])
def test_the_env_file_is_readable_by_its_owner_alone(
    edaemon: Daemon, sticky: Path, docker: bool
) -> None:
    """With --env-file PATH the lines `--env-file` prints go to PATH, mode 0600 whatever the
    umask: uid 65534 cannot read the token in it."""
    assert add(edaemon, "dev", unique_role()).returncode == 0
    kind = ("--docker",) if docker else ()
    printed = edaemon.client("endpoint", "env", "dev", *kind, "--env-file")
    path = sticky / "dev.env"
    wrote = edaemon.client("endpoint", "env", "dev", *kind, "--env-file", str(path))
    assert wrote.returncode == 0, wrote.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (
        path.read_text() == printed.stdout
        and "AWS_CONTAINER_AUTHORIZATION_TOKEN=" in printed.stdout
    )
    stolen = as_nobody("cat", str(path))
    assert stolen.returncode != 0 and stolen.stdout == "", stolen.stdout


def test_an_own_file_is_made_private_before_it_is_written(edaemon: Daemon, sticky: Path) -> None:
    """An existing env file of ours, 0644 from an earlier `> dev.env`, is made 0600 and then
    rewritten with the current lines."""
    assert add(edaemon, "dev", unique_role()).returncode == 0
    path = sticky / "dev.env"
    path.write_text("OLD=1\n")
    path.chmod(0o644)
    wrote = edaemon.client("endpoint", "env", "dev", "--docker", "--env-file", str(path))
    assert wrote.returncode == 0, wrote.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (
        "OLD=1" not in path.read_text() and "AWS_CONTAINER_AUTHORIZATION_TOKEN=" in path.read_text()
    )


@pytest.mark.parametrize("plant", ["symlink", "file", "fifo"])
def test_a_planted_path_is_refused(edaemon: Daemon, sticky: Path, plant: str) -> None:
    """A symlink, a world-writable file or a fifo uid 65534 put at PATH first is refused:
    exit 1 naming the path, no token written anywhere, the planted thing untouched."""
    assert add(edaemon, "dev", unique_role()).returncode == 0
    path, target = sticky / "dev.env", sticky / "loot"
    if plant == "symlink":
        made = as_nobody("sh", "-c", f"umask 0; : > {target} && ln -s {target} {path}")
    elif plant == "file":
        made = as_nobody("sh", "-c", f"umask 0; : > {path}")
    else:
        made = as_nobody("mkfifo", "-m", "666", str(path))
    assert made.returncode == 0, made.stderr
    wrote = edaemon.client("endpoint", "env", "dev", "--docker", "--env-file", str(path))
    assert wrote.returncode == 1 and str(path) in wrote.stderr, wrote.stderr
    assert "Traceback" not in wrote.stderr
    if plant == "symlink":
        assert path.is_symlink() and target.read_text() == ""
    elif plant == "file":
        assert path.stat().st_uid == 65534 and path.read_text() == ""
    else:
        assert stat.S_ISFIFO(path.stat().st_mode)
