"""The JS SDK v3 the tests drive comes from .ci/js-sdk, before the run: the kit only checks
what is installed (the pinned versions) and skips with a reason otherwise, fetching nothing."""

import json
import shutil
from pathlib import Path

import pytest

from tests.sdkkit import JS_PINS, js_sdk_missing

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="needs node")


def install(folder: Path, versions: dict[str, str]) -> None:
    """Lay out node_modules in `folder` as npm would, with these package versions."""
    for package, version in versions.items():
        manifest = folder / "node_modules" / package / "package.json"
        manifest.parent.mkdir(parents=True)
        manifest.write_text(json.dumps({"name": package, "version": version}))


def pins() -> dict[str, str]:
    """The pinned package versions, by package name."""
    return json.loads(JS_PINS.read_text())["dependencies"]


@needs_node
def test_an_absent_sdk_is_a_reason_that_names_the_set_up_step(tmp_path: Path) -> None:
    """With nothing installed, the reason names the missing package and .ci/js-sdk."""
    reason = js_sdk_missing(tmp_path)
    assert reason is not None and ".ci/js-sdk" in reason and "@aws-sdk/" in reason


@needs_node
def test_other_versions_than_the_pinned_ones_are_a_reason(tmp_path: Path) -> None:
    """An install of other versions (an older run's npm install of the latest) is not used."""
    install(tmp_path, dict.fromkeys(pins(), "3.0.1"))
    reason = js_sdk_missing(tmp_path)
    assert reason is not None and "not the pinned" in reason


@needs_node
def test_the_pinned_versions_are_used(tmp_path: Path) -> None:
    """The pinned versions in place: nothing is missing."""
    install(tmp_path, pins())
    assert js_sdk_missing(tmp_path) is None


def test_the_lock_file_pins_what_package_json_names() -> None:
    """tests/js-sdk/package-lock.json (what `npm ci` installs) holds the pinned versions."""
    lock = json.loads((JS_PINS.parent / "package-lock.json").read_text())["packages"]
    for package, version in pins().items():
        assert lock[f"node_modules/{package}"]["version"] == version
