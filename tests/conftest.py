"""Shared fixtures: moto's real STS server on loopback, and the real daemon as a process.

Fixtures only: the helpers they use live in kits (daemonkit, strict_sts), which test modules
import; no module imports this one."""

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from tests import strict_sts
from tests.daemonkit import Daemon, Moto, base_env, start_daemon
from tests.imds_sentinel import (  # the IMDS sentinel's hooks and fixture, for every test
    imds_sentinel,
    pytest_configure,
    pytest_unconfigure,
)
from tests.strict_sts import StsProxy

# pytester: the test that proves the IMDS sentinel fails a session runs one of its own. The
# kits' fixtures (the in-process endpoint rig, the real daemon with endpoints, the SDKs on
# the host) are there by name for every test module.
pytest_plugins = [
    "pytester",
    "tests.endpointkit",
    "tests.e2ekit",
    "tests.sdkkit",
    "tests.containerkit",
]

__all__ = ["imds_sentinel", "pytest_configure", "pytest_unconfigure"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the counts tests recorded with record_property (how many fuzz cases ran, how many
    STS calls a fault cost), with the sum of each count several tests record. Reports carry
    their user_properties from xdist's workers, so this sees every test of the run."""
    lines: list[str] = []
    totals: Counter[str] = Counter()
    recorded_by: Counter[str] = Counter()
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for name, value in getattr(report, "user_properties", ()):
                lines.append(f"{report.nodeid}: {name}: {value}")
                if isinstance(value, int):
                    totals[name] += value
                    recorded_by[name] += 1
    if not lines:
        return
    terminalreporter.section("recorded counts")
    for line in sorted(lines):
        terminalreporter.write_line(line)
    for name in sorted(n for n, tests in recorded_by.items() if tests > 1):
        terminalreporter.write_line(f"{name}, all tests: {totals[name]}")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's STS (and IAM) over real HTTP on 127.0.0.1 (never 0.0.0.0), for the session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def sts_proxy(moto_server: str) -> Iterator[StsProxy]:
    """This test's strict STS in front of moto (tests/strict_sts.py): STS's rules, STS's
    errors, and a hook (`rules`, `inject`) for the faults a test needs."""
    proxy, stop = strict_sts.serve(moto_server)
    yield proxy
    stop()


@pytest.fixture
def moto(moto_server: str, sts_proxy: StsProxy) -> Moto:
    """moto behind this test's strict STS proxy: `moto.url` is the proxy."""
    return Moto(url=sts_proxy.url, direct_url=moto_server, proxy=sts_proxy)


@pytest.fixture
def daemon(tmp_path: Path, moto: Moto) -> Iterator[Daemon]:
    """The real rolecached process against moto, with autostart off for its clients."""
    env = base_env(tmp_path, moto.url)
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    d = start_daemon(tmp_path, env)
    yield d
    d.stop()
