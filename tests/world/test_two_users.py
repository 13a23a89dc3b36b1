"""Two users on one host: each runs the real daemon with the default container port (derived
from the uid) and serves its own binding, on loopback and on 169.254.170.2, with no collision.
The users are uids 65534 and 65533 through `setpriv`, each with a home of its own."""

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rolecached.core.bindings import default_ecs_port
from tests.daemonkit import BIN, Moto, base_env, unique_role
from tests.dockerkit import has_address

USERS = (65534, 65533)
pytestmark = pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("setpriv") is None,
    reason="two users need root to become them through setpriv",
)


def as_user(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


# The owner's own request with its binding's token file, as an SDK on the host makes it.
FETCH = """
import json, sys, urllib.request
url, token_file = sys.argv[1], sys.argv[2]
request = urllib.request.Request(url, headers={"Authorization": open(token_file).read()})
with urllib.request.urlopen(request, timeout=10) as reply:
    print(json.dumps({"status": reply.status, "arn": json.load(reply)["RoleArn"]}))
"""


@pytest.fixture
def homes() -> Iterator[dict[int, Path]]:
    """A private home for each user, outside root's temporary folders (they cannot enter
    those), removed afterwards."""
    made = {}
    try:
        for uid in USERS:
            home = Path(tempfile.mkdtemp(prefix=f"rolecache-user{uid}-"))
            os.chown(home, uid, uid)
            made[uid] = home
        yield made
    finally:
        for home in made.values():
            shutil.rmtree(home, ignore_errors=True)


def start_as(uid: int, home: Path, moto_url: str) -> tuple[subprocess.Popen, dict[str, str]]:
    """The daemon as `uid`, with no config file (the default container port)."""
    env = base_env(home, moto_url)
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    for path in [home, *home.rglob("*")]:
        os.chown(path, uid, uid)
    log = open(home / "daemon.log", "wb")  # noqa: SIM115 - handed to the process
    process = subprocess.Popen(
        [*as_user(uid), str(BIN / "rolecached"), "--log-level", "debug"],
        env=env,
        stdout=log,
        stderr=log,
        cwd=home,
    )
    sock = Path(env["ROLECACHE_SOCKET"])
    deadline = time.monotonic() + 30  # a guard against hanging, never a wait for an outcome
    while not sock.exists():
        assert process.poll() is None, (home / "daemon.log").read_text()
        assert time.monotonic() < deadline, "the daemon did not start"
        time.sleep(0.02)
    return process, env


def client_as(uid: int, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*as_user(uid), str(BIN / "rolecache"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )


def test_two_users_daemons_serve_side_by_side(homes: dict[int, Path], moto: Moto) -> None:
    """Each user's daemon takes its own default container port (10000 + 2 x (uid mod
    11000)), binds it on loopback and 169.254.170.2, and serves its owner's binding; neither
    collides with the other."""
    running: list[subprocess.Popen] = []
    try:
        outcomes = {}
        for uid, home in homes.items():
            process, env = start_as(uid, home, moto.url)
            running.append(process)
            role = unique_role(f"user{uid}")
            added = client_as(
                uid, env, "endpoint", "add", "dev", "--role-arn", role, "--role-session-name", "dev"
            )
            assert added.returncode == 0, added.stderr
            listing = json.loads(client_as(uid, env, "endpoint", "list", "--json").stdout)
            dev = listing["endpoints"][0]
            fetched = subprocess.run(
                [*as_user(uid), str(BIN / "python"), "-I", "-c", FETCH, dev["ecs_url"],
                 dev["token_file"]],
                capture_output=True,
                text=True,
                timeout=60,
                cwd="/",
            )  # fmt: skip
            assert fetched.returncode == 0, fetched.stderr
            outcomes[uid] = (
                listing["container_port"],
                dev["docker_url"],
                json.loads(fetched.stdout),
            )
        for uid, (port, docker_url, fetched) in outcomes.items():
            assert port == default_ecs_port(uid, sandbox=False)
            # Handed out only while an interface has the address (a docker network here).
            held = has_address("169.254.170.2")
            assert docker_url == (
                f"http://169.254.170.2:{port}/v1/credentials/dev" if held else None
            )
            assert fetched["status"] == 200 and fetched["arn"].startswith(
                "arn:aws:iam::123456789012:role/user"
            )
        assert len({port for port, _, _ in outcomes.values()}) == 2
        assert all(p.poll() is None for p in running)
    finally:
        for process in running:
            process.terminate()
            process.wait(timeout=15)
