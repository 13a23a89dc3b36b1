"""The SDKs on the host that tests run against the endpoints: the JS SDK v3 (installed with
npm on first use) and Debian's AWS CLI v2 2.9; each skips the test when it cannot be had."""

import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The JS SDK is installed once, here, by the tests themselves (npm; not a project dependency).
JS_SDK = ROOT / ".cache" / "js-sdk"
JS_PACKAGES = ("@aws-sdk/credential-providers", "@aws-sdk/client-sts")
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


@pytest.fixture(scope="session")
def js_sdk() -> Path:
    """A folder with the JS SDK v3's node_modules, installed with npm on first use."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the JS SDK v3 tests")
    if not (JS_SDK / "node_modules" / "@aws-sdk" / "client-sts").is_dir():
        JS_SDK.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(JS_SDK), *JS_PACKAGES],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            pytest.skip(f"npm could not install the JS SDK v3: {result.stderr[-500:]}")
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
