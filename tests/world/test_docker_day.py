"""A simulated day in real containers: a `docker run` container with a modern SDK (botocore's
default chain, in one Python process that never restarts) and a `docker-compose` service with
an SDK from before 2023 (Debian's AWS CLI v2 2.9), both on the tests' network with the
docs' hand-off, keep calling GetCallerIdentity for 24 simulated hours while the real
daemon renews underneath.

Every process that decides anything about expiry shares one wall-clock offset (libfaketime,
tests/fakeday.py): the daemon, a moto server of this test's own that issues Expiration and
refuses expired credentials as STS does, and the SDKs in the containers. The test moves the
offset, then waits for each container's next result. Skipped, saying why, without dockerd,
docker-compose, the AWS CLI v2 2.9, libfaketime or gcc."""

import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from rolecached.core.bindings import ECS_MIN_TTL
from tests import strict_sts
from tests.containerkit import VENV_PYTHON, doc_block, docker_env
from tests.daemonkit import Daemon, base_env, start_daemon, unique_role
from tests.dockerkit import GATEWAY, base_image, python_mounts
from tests.e2ekit import add
from tests.fakeday import FakeDay, Lines, fake_day, moto_on
from tests.kit import assumed_arn as assumed
from tests.sdkkit import debian_aws_cli

DAY = 24 * 3600
# Simulated minutes per step, in turn: 35 passes the daemon's renewal time (30 min before
# expiry, minus jitter) with the old credentials still over the floor, so either may be served;
# 50 leaves an hour's credentials under the floor and botocore's own refresh windows. 34 steps
# make the day, about as many AWS CLI runs (a second or more each) as the test can afford.
STEP_MINUTES = (35, 50)
# Where a container sees the offset's folder and the compose service its loop.
DAY_MOUNT = Path("/day")
LOOP_MOUNT = Path("/loop")

# The modern SDK: botocore's default chain, one session for the whole day. For each step on
# stdin: one GetCallerIdentity, then what it was made with (a digest of the key, never the
# key; the seconds left on botocore's clock), its pid and a digest of its AWS_* environment.
PROBE = """
import hashlib, json, os, sys
from datetime import datetime, timezone
import boto3
session = boto3.Session()
sts = session.client("sts")
env = sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))
env = hashlib.sha256(json.dumps(env).encode()).hexdigest()[:16]
for step in sys.stdin:
    report = {"step": int(step), "pid": os.getpid(), "env": env}
    try:
        report["arn"] = sts.get_caller_identity()["Arn"]
    except Exception as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
    else:
        held = session.get_credentials()
        report["method"] = held.method
        report["key"] = hashlib.sha256(held.access_key.encode()).hexdigest()[:12]
        now = datetime.now(timezone.utc)
        report["left"] = (held._expiry_time - now).total_seconds()
    print(json.dumps(report), flush=True)
"""
# The SDK from before 2023, in the compose service: a new AWS CLI process per step read from
# the FIFO, printing "step N rc STATUS OUTPUT" (its JSON on one line).
CLI_LOOP = """
while read step; do
  out=$(aws sts get-caller-identity --output json --endpoint-url "$MOTO_URL" 2>&1)
  echo "step $step rc $? $(echo $out)"
done < /loop/steps
"""
# Which container, since when, restarted how often: the same three at the end mean one run.
RUN_STATE = "{{.Id}} {{.State.StartedAt}} {{.RestartCount}}"
SERVED = re.compile(r"served (.+) \(key \S+, (-?\d+) s left\) to (.*)$")


def day_steps() -> list[int]:
    """The steps, in seconds, that add up to exactly a day."""
    steps: list[int] = []
    while sum(steps) < DAY:
        steps.append(min(STEP_MINUTES[len(steps) % len(STEP_MINUTES)] * 60, DAY - sum(steps)))
    return steps


@dataclass
class DayRig:
    """The daemon, the STS it calls and the offset they share, for one simulated day."""

    day: FakeDay
    daemon: Daemon
    moto_url: str  # moto itself on the gateway, where containers reach it
    proxy: strict_sts.StsProxy  # the strict STS on loopback that the daemon calls


@pytest.fixture
def day_rig(tmp_path: Path, network: str) -> Iterator[DayRig]:
    """A daemon and moto on one libfaketime offset; moto listens on the gateway and the
    daemon reaches it through the strict STS proxy, which counts its calls."""
    day = fake_day(tmp_path / "day")
    with moto_on(day, GATEWAY) as moto_url:
        proxy, stop_proxy = strict_sts.serve(moto_url)
        config = tmp_path / "config.toml"
        # The renewer looks at the clock every 0.5 s (5 s by default), so that waiting for a
        # renewal it is due to make costs a step little real time.
        config.write_text("[daemon]\ntick = 0.5\n\n[endpoints]\nport = 0\n")
        env = {**base_env(tmp_path, proxy.url), **day.env(), "ROLECACHE_NO_AUTOSTART": "1"}
        daemon = start_daemon(tmp_path, env, "--config", str(config))
        try:
            yield DayRig(day, daemon, moto_url, proxy)
        finally:
            daemon.stop()
            stop_proxy()


def inspect(name: str, template: str) -> str:
    """`docker inspect --format TEMPLATE NAME`, stripped."""
    result = subprocess.run(
        ["docker", "inspect", "--format", template, name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def container_env(name: str) -> list[str]:
    """The environment docker holds for container `name`."""
    return json.loads(inspect(name, "{{json .Config.Env}}"))


def address(name: str) -> str:
    """Container `name`'s address on its network."""
    return inspect(name, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")


def cli_result(line: str) -> tuple[int, int, str]:
    """(step, exit status, output) from the compose service's "NAME | step N rc S OUTPUT"."""
    words = line.split("|", 1)[1].split(maxsplit=4)
    return int(words[1]), int(words[3]), words[4] if len(words) == 5 else ""


def not_handed(container: str, handed: dict[str, str]) -> list[str]:
    """The names of the handed variables that `container`'s environment lacks or has with
    another value (names only: the token is one of the values)."""
    env = set(container_env(container))
    return [k for k, v in handed.items() if f"{k}={v}" not in env]


def wait_for_log(daemon: Daemon, text: str, times: int = 1, timeout: float = 60) -> None:
    """Block until the daemon's log has `text` at least `times` times."""
    deadline = time.monotonic() + timeout
    while daemon.log.read_text().count(text) < times:
        assert time.monotonic() < deadline, f"the daemon never logged {text!r}"
        time.sleep(0.1)


def compose_project(rig: DayRig, env_file: Path, loop: Path, network: str, aws: Path) -> list[str]:
    """The docs' compose.yaml in `loop`'s parent, with the test's network and image, its
    service running CLI_LOOP (the AWS CLI on the day's clock) on steps from the FIFO
    `loop`/steps; returns the `docker-compose -p PROJECT -f compose.yaml` to run it with."""
    folder = loop.parent
    loop.mkdir(parents=True)
    (loop / "loop.sh").write_text(CLI_LOOP)
    os.mkfifo(loop / "steps")
    shutil.copy(env_file, folder / "dev.env")
    compose = yaml.safe_load(doc_block("docs/endpoints.md", "yaml", "services:"))
    app = compose["services"]["app"]
    assert app["env_file"] == "dev.env" and app["networks"] == ["rolecache"]
    mounts = python_mounts()
    app.update(
        image=base_image(),
        command=["/bin/sh", str(LOOP_MOUNT / "loop.sh")],
        environment={
            **rig.day.env(DAY_MOUNT),
            "PATH": str(aws.parent),
            "MOTO_URL": rig.moto_url,
            "AWS_DEFAULT_REGION": "us-east-1",
            "HOME": "/tmp",
            "AWS_EC2_METADATA_DISABLED": "true",
        },
        volumes=[
            *(mounts[i + 1] for i in range(0, len(mounts), 2)),
            f"{rig.day.folder}:{DAY_MOUNT}:ro",
            f"{loop}:{LOOP_MOUNT}:ro",
        ],
    )
    compose["networks"]["rolecache"]["name"] = network  # the docs' network is the test's
    (folder / "compose.yaml").write_text(yaml.safe_dump(compose))
    return ["docker-compose", "-p", f"rcday{rig.daemon.process.pid}", "-f", "compose.yaml"]


def docker_run_command(rig: DayRig, env_file: Path, name: str, network: str) -> list[str]:
    """The docs' `docker run --rm --network ... --env-file dev.env IMAGE` line, with the
    test's network and image, kept open on stdin (-i), PROBE on the day's clock."""
    run = ["docker", "run", "--rm", "-i", "--name", name, "--network", network]
    run += ["--env-file", str(env_file), *python_mounts()]
    run += ["-v", f"{rig.day.folder}:{DAY_MOUNT}:ro"]
    for key, value in {
        **rig.day.env(DAY_MOUNT),
        "AWS_ENDPOINT_URL_STS": rig.moto_url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        run += ["-e", f"{key}={value}"]
    return [*run, base_image(), VENV_PYTHON, "-u", "-c", PROBE]


def test_containers_keep_calling_sts_for_a_simulated_day(day_rig: DayRig, network: str) -> None:
    """With the docs' `endpoint env --docker --env-file` hand-off, a `docker run` container
    (botocore, one process) and a `docker-compose -f compose.yaml` service (the AWS CLI v2 2.9,
    a process per call) call GetCallerIdentity as the role at every step of 24 simulated hours
    and once more after the daemon's daily token rotation: the daemon assumed the role again
    and again underneath (one-hour sessions), never served a container under the floor, and
    neither container's environment changed."""
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (.ci/run installs it)")
    aws = debian_aws_cli()
    rig, d = day_rig, day_rig.daemon
    role = unique_role("day")
    assert add(d, "dev", role).returncode == 0
    renewed = f"renewed {role} as dev:"  # the store's line for each renewal of the session
    handed = docker_env(d)
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in handed  # the docs' default hand-off
    env_file = d.tmp / "dev.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in handed.items()))
    loop = d.tmp / "compose" / "loop"
    compose_cmd = compose_project(rig, env_file, loop, network, aws)
    name = f"rctest-day-{d.process.pid}"
    run = docker_run_command(rig, env_file, name, network)
    steps_fd = os.open(loop / "steps", os.O_RDWR)  # never blocks; closing it ends the loop
    modern = subprocess.Popen(
        run,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    service = subprocess.Popen(
        [*compose_cmd, "up", "--no-color"],
        cwd=loop.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert modern.stdin is not None and modern.stdout and service.stdout
    modern_lines = Lines(modern.stdout, "the docker run container")
    service_lines = Lines(service.stdout, "the compose service")
    reports: list[dict] = []
    cli_results: list[tuple[int, int, str]] = []
    service_container = ""

    def call(step: int) -> None:
        """Ask both containers for one call and wait for both results."""
        modern.stdin.write(f"{step}\n")
        modern.stdin.flush()
        os.write(steps_fd, f"{step}\n".encode())
        while not (line := modern_lines.next()).startswith("{"):
            pass  # anything botocore says on stderr
        reports.append(json.loads(line))
        while not (line := service_lines.next()).split("|", 1)[-1].strip().startswith("step "):
            pass  # compose's own lines: creating, attaching
        cli_results.append(cli_result(line))

    try:
        call(0)
        service_container = subprocess.run(
            [*compose_cmd, "ps", "-q", "app"], cwd=loop.parent, capture_output=True, text=True
        ).stdout.strip()
        containers = (name, service_container)
        started = [inspect(c, RUN_STATE) for c in containers]
        modern_at, service_at = address(name), address(service_container)
        steps = day_steps()
        for number, seconds in enumerate(steps, start=1):
            rig.day.advance(seconds)
            if seconds == STEP_MINUTES[0] * 60:
                # Due, and still over the floor: the renewer renews before anyone asks. After
                # a 50-minute step the containers ask at once, racing it.
                wait_for_log(d, renewed, times=number)
            call(number)
        assert rig.day.seconds == DAY
        wait_for_log(d, "rotated the token of endpoint dev")  # due a day after the add
        call(len(steps) + 1)
        ended = [inspect(c, RUN_STATE) for c in containers]
        lacking = [not_handed(c, handed) for c in containers]
    finally:
        modern.stdin.close()
        os.close(steps_fd)  # the last writer: the service's loop reads the end and exits
        for process in (modern, service):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=60)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
        subprocess.run([*compose_cmd, "down"], cwd=loop.parent, capture_output=True, timeout=120)
        for process in (modern, service):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=60)

    arn = assumed(role, "dev")
    assert len(reports) == len(steps) + 2
    failed = [r for r in reports if r.get("arn") != arn or r.get("method") != "container-role"]
    assert failed == []
    assert [r["step"] for r in reports] == list(range(len(steps) + 2))
    assert {(r["pid"], r["env"]) for r in reports} == {(reports[0]["pid"], reports[0]["env"])}
    # botocore refreshed in-process: no key of an hour's session served it for calls an hour
    # or more apart on the shared clock, and it never called with credentials inside its own
    # last-ten-minutes window.
    offsets = [0, *itertools.accumulate(steps), DAY]  # the offset at each call
    spans: dict[str, list[int]] = {}
    for report in reports:
        spans.setdefault(report["key"], []).append(offsets[report["step"]])
    assert len(spans) > 1
    assert max(max(at) - min(at) for at in spans.values()) < 3600
    assert min(r["left"] for r in reports) > 600
    cli_failed = [(n, status, out) for n, status, out in cli_results if status != 0]
    assert cli_failed == []
    assert [n for n, _, _ in cli_results] == list(range(len(steps) + 2))
    assert {json.loads(out)["Arn"] for _, _, out in cli_results} == {arn}
    # The same containers, never restarted, with the hand-off they started with: the env of
    # the botocore process never changed (same pid, same AWS_* digest at every step above).
    assert ended == started and all(i.endswith(" 0") for i in ended)
    assert lacking == [[], []]
    # Underneath: the daemon assumed the role over and over, and every hand-out to a
    # container had at least the endpoint's floor left on the shared clock.
    # Each step leaves the held credentials due (35 min) or under the floor (50 min), so each
    # one renewed the session, on the renewer's tick or for the asking container.
    assume_calls = [f for f in rig.proxy.forms if f.get("Action") == "AssumeRole"]
    assert len([f for f in assume_calls if f.get("RoleArn") == role]) >= len(steps) + 1
    log = d.log.read_text()
    assert log.count(renewed) >= len(steps)
    served = [SERVED.search(line) for line in log.splitlines()]
    to_containers = [m for m in served if m and "via container endpoint dev" in m.group(3)]
    by_cli = [m for m in to_containers if m.group(3).startswith(f"{service_at} ")]
    by_modern = [m for m in to_containers if m.group(3).startswith(f"{modern_at} ")]
    assert len(by_cli) >= len(cli_results) and len(by_modern) >= len(spans)
    assert min(int(m.group(2)) for m in to_containers) >= ECS_MIN_TTL
