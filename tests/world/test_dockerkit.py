"""The docker kit's lock files: in a 0700 folder of the running uid, which nobody else can
replace with a folder or a symlink of their own."""

import os
import stat
from pathlib import Path

import pytest

from tests.dockerkit import UnsafeLockFolder, lock_folder


def test_the_lock_folder_is_the_uids_own_and_0700(tmp_path: Path) -> None:
    """The folder is made 0700, named for the uid, and found again on the next call."""
    folder = lock_folder(tmp_path)
    assert folder == tmp_path / f"rolecache-tests-{os.getuid()}"
    found = folder.lstat()
    assert stat.S_ISDIR(found.st_mode) and stat.S_IMODE(found.st_mode) == 0o700
    assert found.st_uid == os.getuid()
    assert lock_folder(tmp_path) == folder


def test_a_symlink_in_its_place_is_refused(tmp_path: Path) -> None:
    """A symlink where the folder belongs (an attacker's, in /tmp) is refused, not followed."""
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / f"rolecache-tests-{os.getuid()}").symlink_to(target)
    with pytest.raises(UnsafeLockFolder, match="not a 0700 folder"):
        lock_folder(tmp_path)


def test_a_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    """A folder in its place that others may enter or write is refused."""
    folder = tmp_path / f"rolecache-tests-{os.getuid()}"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(UnsafeLockFolder, match="remove it and run again"):
        lock_folder(tmp_path)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a folder owned by another uid")
def test_another_uids_folder_is_refused(tmp_path: Path) -> None:
    """A 0700 folder of another uid (made before this user's run) is refused."""
    folder = tmp_path / f"rolecache-tests-{os.getuid()}"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    with pytest.raises(UnsafeLockFolder, match="not a 0700 folder"):
        lock_folder(tmp_path)
