"""The suite never reaches the real instance metadata service: every process runs with IMDS
disabled, and a session in which anything reached the IMDS sentinel fails (proved here by
running small pytest sessions in a subprocess, with and without pytest-xdist)."""

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemonkit import BIN, base_env
from tests.imds_sentinel import DISABLED, ENDPOINT

ROOT = Path(__file__).resolve().parent.parent.parent

LEAKY_TEST = """
import os, urllib.error, urllib.request

def test_asks_imds_for_a_token():
    request = urllib.request.Request(
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] + "latest/api/token", method="PUT"
    )
    try:
        urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError:
        pass  # the sentinel answers 404; reaching it is what counts
"""

BOTOCORE_LEAK_TEST = """
import botocore.session

def test_default_chain_without_the_disabling_variable(monkeypatch):
    for name in ("AWS_EC2_METADATA_DISABLED", "AWS_ACCESS_KEY_ID", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    assert botocore.session.get_session().get_credentials() is None
"""

QUIET_TEST = """
import os

def test_sees_imds_disabled_and_the_sentinel():
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"].startswith("http://127.0.0.1:")
"""


@pytest.fixture
def run_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., pytest.RunResult]:
    """Runs a test file's source in a fresh pytest process that loads the sentinel plugin."""
    pytester.makeini("[pytest]\n")  # not this repository's addopts
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", python_path)

    def run(source: str, *args: str) -> pytest.RunResult:
        pytester.makepyfile(test_inner=source)
        return pytester.runpytest_subprocess(
            "-p", "tests.imds_sentinel", "-p", "no:cacheprovider", *args
        )

    return run


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_a_session_that_reaches_the_sentinel_fails(run_session, workers) -> None:
    """A test whose process sends one request to the IMDS endpoint passes itself, yet its
    session exits non-zero with an error naming the sentinel (also under pytest-xdist)."""
    result = run_session(LEAKY_TEST, *workers)
    assert result.ret != 0
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 1 and outcomes.get("errors") == 1, outcomes
    result.stdout.fnmatch_lines(
        ["*1 request(s) reached the IMDS sentinel (PUT /latest/api/token)*"]
    )


def test_botocore_without_the_disabling_variable_is_caught(run_session) -> None:
    """botocore's own credential chain, with IMDS no longer disabled, asks the sentinel (not
    169.254.169.254) and the session fails."""
    result = run_session(BOTOCORE_LEAK_TEST)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*reached the IMDS sentinel (PUT /latest/api/token*"])


def test_a_quiet_session_passes(run_session) -> None:
    """The control: a session where nothing reaches the sentinel exits 0, and its tests see
    IMDS disabled and the endpoint on loopback."""
    result = run_session(QUIET_TEST)
    assert result.ret == 0, result.stdout.str()
    assert result.parseoutcomes() == {"passed": 1}


def test_this_session_is_hermetic() -> None:
    """This process runs with IMDS disabled and the metadata endpoint on the loopback
    sentinel, so botocore here never tries 169.254.169.254."""
    assert os.environ[DISABLED] == "true"
    assert os.environ[ENDPOINT].startswith("http://127.0.0.1:")


def test_processes_started_from_base_env_are_hermetic(tmp_path: Path) -> None:
    """A process started with base_env (every daemon and client in the suite) sees IMDS
    disabled and the sentinel as the metadata endpoint."""
    env = base_env(tmp_path, "http://127.0.0.1:9")
    code = f"import os; print(os.environ[{DISABLED!r}], os.environ[{ENDPOINT!r}])"
    result = subprocess.run(
        [str(BIN / "python"), "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["true", os.environ[ENDPOINT]]
