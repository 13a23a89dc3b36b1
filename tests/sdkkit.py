"""The SDKs on the host that tests run against the endpoints: the JS SDK v3 (installed before
the run by .ci/js-sdk, never during it) and Debian's AWS CLI v2 2.9; each skips the test when it
is missing."""

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The JS SDK v3 at the versions tests/js-sdk pins, installed into JS_SDK by .ci/js-sdk before
# a run (a test run fetches nothing from the network).
JS_SDK = ROOT / ".cache" / "js-sdk"
JS_PINS = ROOT / "tests" / "js-sdk" / "package.json"
# The default provider chain, as an application gets it, and STS at moto.
JS_PROBE = """
const { STSClient, GetCallerIdentityCommand } = require("@aws-sdk/client-sts");
const client = new STSClient({ region: "us-east-1", endpoint: process.env.MOTO_URL });
client.send(new GetCallerIdentityCommand({})).then(
  (out) => console.log(JSON.stringify({ arn: out.Arn })),
  (err) => { console.error(String(err)); process.exit(1); },
);
"""
DEBIAN_AWS = Path("/usr/bin/aws")


def js_sdk_missing(folder: Path, pins: Path = JS_PINS) -> str | None:
    """Why the JS SDK v3 in `folder` cannot be used (absent, or not the pinned versions), or
    None when it can."""
    fix = "run .ci/js-sdk to install it (npm, before the test run)"
    if shutil.which("node") is None:
        return "node is needed for the JS SDK v3 tests (.ci/run installs Debian's nodejs)"
    for package, pinned in json.loads(pins.read_text())["dependencies"].items():
        manifest = folder / "node_modules" / package / "package.json"
        if not manifest.is_file():
            return f"{package} is not installed in {folder}: {fix}"
        found = json.loads(manifest.read_text()).get("version")
        if found != pinned:
            return f"{package} in {folder} is {found}, not the pinned {pinned}: {fix}"
    return None


@pytest.fixture(scope="session")
def js_sdk() -> Path:
    """The folder with the pinned JS SDK v3's node_modules (and the probe), or skip."""
    reason = js_sdk_missing(JS_SDK)
    if reason is not None:
        pytest.skip(reason)
    (JS_SDK / "probe.js").write_text(JS_PROBE)
    return JS_SDK


def debian_aws_cli() -> Path:
    """Debian's AWS CLI v2 (2.9), or skip."""
    if not DEBIAN_AWS.exists():
        pytest.skip("Debian's awscli package (AWS CLI v2 2.9) is not installed")
    version = subprocess.run(
        [str(DEBIAN_AWS), "--version"], capture_output=True, text=True, timeout=60
    ).stdout
    if not version.startswith("aws-cli/2."):
        pytest.skip(f"{DEBIAN_AWS} is not the AWS CLI v2: {version.strip()}")
    return DEBIAN_AWS


def refused(url: str, token: str) -> bool:
    """True when the container endpoint refuses `token` with 403."""
    request = urllib.request.Request(url, headers={"Authorization": token})
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as exc:
        return exc.code == 403
    return False
