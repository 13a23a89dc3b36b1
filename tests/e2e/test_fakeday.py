"""The simulated-day kit (tests/fakeday.py) on the host, without docker: one offset file moves
a running process's wall clock, leaves its monotonic clock and sleeps alone, and the kit's
moto issues and enforces Expiration on that clock. Skipped, loudly, without libfaketime."""

import json
import subprocess
import sys
from pathlib import Path

import boto3
import botocore.exceptions
import pytest

from tests.fakeday import Lines, fake_day, moto_on

# For each line on stdin: the wall clock and the monotonic clock, after a short real sleep.
CLOCKS = """
import json, sys, time
for _ in sys.stdin:
    time.sleep(0.01)
    print(json.dumps({"wall": time.time(), "monotonic": time.monotonic()}), flush=True)
"""


def test_the_offset_moves_a_running_process(tmp_path: Path) -> None:
    """Writing the offset moves the wall clock of a process already running by that much,
    at once; its monotonic clock stays real, and time.sleep (a monotonic deadline, which
    libfaketime alone breaks) keeps working."""
    import time

    day = fake_day(tmp_path / "day")
    process = subprocess.Popen(
        [sys.executable, "-c", CLOCKS],
        env={"PATH": "/usr/bin:/bin", **day.env()},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    lines = Lines(process.stdout, "the clock probe")
    try:
        process.stdin.write("\n")
        process.stdin.flush()
        before = json.loads(lines.next())
        day.advance(6 * 3600)
        real = time.time()
        process.stdin.write("\n")
        process.stdin.flush()
        after = json.loads(lines.next())
    finally:
        process.stdin.close()
        process.wait(timeout=60)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    assert before["wall"] <= real and after["wall"] >= real + 6 * 3600
    assert after["monotonic"] - before["monotonic"] < 3600


def test_moto_refuses_credentials_past_their_expiration(tmp_path: Path) -> None:
    """The kit's moto issues an hour's credentials on the offset's clock and, like STS,
    refuses GetCallerIdentity with them once the offset passes their Expiration."""
    day = fake_day(tmp_path / "day")
    with moto_on(day, "127.0.0.1") as url:
        source = boto3.client(
            "sts",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="AKIASOURCEKEY0000001",
            aws_secret_access_key="source-secret-not-for-logs",
        )
        issued = source.assume_role(
            RoleArn="arn:aws:iam::123456789012:role/day", RoleSessionName="day"
        )["Credentials"]
        caller = boto3.client(
            "sts",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=issued["AccessKeyId"],
            aws_secret_access_key=issued["SecretAccessKey"],
            aws_session_token=issued["SessionToken"],
        )
        assert caller.get_caller_identity()["Arn"].endswith(":assumed-role/day/day")
        day.advance(3600)
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            caller.get_caller_identity()
        assert refused.value.response["Error"]["Code"] == "ExpiredToken"
        later = source.assume_role(
            RoleArn="arn:aws:iam::123456789012:role/day", RoleSessionName="day"
        )["Credentials"]
    assert (later["Expiration"] - issued["Expiration"]).total_seconds() >= 3600
