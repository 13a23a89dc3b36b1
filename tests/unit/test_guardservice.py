"""The guard's service runs rolecache's code as root: `open_to_others` finds what of that code
another user could change, on real files with real modes."""

import os
import sys
from pathlib import Path

import pytest

from rolecache.commands.guardservice import code_root_runs, open_to_others


def tree(tmp_path: Path) -> Path:
    """A venv-like folder with one module, closed to group and others."""
    venv = tmp_path / "venv"
    (venv / "lib").mkdir(parents=True)
    (venv / "lib" / "mod.py").write_text("")
    for place in (tmp_path, venv, venv / "lib"):
        place.chmod(0o755)
    return venv / "lib" / "mod.py"


def test_a_closed_tree_is_fine(tmp_path: Path) -> None:
    """Files and folders only their owner can write are not reported."""
    assert open_to_others([tree(tmp_path)], os.getuid()) == []


def test_group_or_world_writable_code_or_folders_are_reported(tmp_path: Path) -> None:
    """A group-writable folder above the code and a world-writable module are each named
    with their mode."""
    module = tree(tmp_path)
    module.parent.parent.chmod(0o775)
    module.chmod(0o666)
    assert open_to_others([module], os.getuid()) == [
        f"{module} (mode 0666)",
        f"{module.parent.parent} (mode 0775)",
    ]


def test_a_sticky_folder_above_is_fine(tmp_path: Path) -> None:
    """A world-writable folder with the sticky bit (like /tmp) lets no one replace what is
    not theirs, so it is not reported."""
    module = tree(tmp_path)
    tmp_path.chmod(0o1777)
    assert open_to_others([module], os.getuid()) == []


def test_code_owned_by_another_user_is_reported(tmp_path: Path) -> None:
    """A module owned by a uid other than root and the installing user is named with it."""
    if os.geteuid() != 0:
        pytest.skip("giving a file to another uid needs root")
    module = tree(tmp_path)
    os.chown(module, 65534, 65534)
    assert open_to_others([module], 1001) == [f"{module} (owned by uid 65534)"]
    assert open_to_others([module], 65534) == []


def test_the_code_root_would_run_includes_this_package_and_interpreter() -> None:
    """The checked paths are this client's modules, the interpreter and its site-packages."""
    paths = code_root_runs()
    assert any(p.name == "cli.py" and p.parent.name == "rolecache" for p in paths)
    assert Path(sys.executable) in paths
