"""The socket API end to end in one process: the real app served by `service.serve` on a real
Unix socket, spoken to in raw HTTP/1.1, with a counting fake STS behind the store."""

import asyncio
import contextlib
import itertools
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rolecache import __version__
from rolecached.api.requestbody import MAX_BODY
from rolecached.core.store import Store
from tests.kit import ACCOUNT, DENIED, THROTTLED, TIMEOUT, FakeSts, Reply, http, no_sleep, serving

ROLE = f"arn:aws:iam::{ACCOUNT}:role/deploy"
DENIED_ROLE = f"arn:aws:iam::{ACCOUNT}:role/forbidden"
GOOD = {"role_arn": ROLE, "role_session_name": "alice"}
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


# -- the daemon --------------------------------------------------------------------------


@dataclass
class Daemon:
    """A served app: its socket, its store and the fake STS behind it."""

    sock: Path
    store: Store
    sts: FakeSts
    cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def call(self, method: str, target: str, body: Any = None, **kw: Any) -> Reply:
        return await http(self.sock, method, target, body, **kw)

    async def credentials(self, body: Any = None, query: str = "") -> Reply:
        return await self.call("POST", f"/v1/credentials{query}", GOOD if body is None else body)

    async def assert_still_serves(self) -> None:
        """A good credentials request right after succeeds."""
        reply = await self.credentials({**GOOD, "role_session_name": "still-serving"})
        assert reply.status == 200, reply.body
        assert reply.json()["AccessKeyId"].startswith("ASIA")


Start = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """Start `service.serve` on a fresh socket in tmp_path; stopped after the test."""
    numbers = itertools.count()
    async with contextlib.AsyncExitStack() as running:

        async def _start(
            sts: FakeSts | None = None, *, sandbox: bool = False, allowed_uid: int | None = None
        ) -> Daemon:
            sts = sts or FakeSts()
            store = Store(sts, sleep=no_sleep)
            path = tmp_path / f"d{next(numbers)}" / "s.sock"
            path = await running.enter_async_context(
                serving(path, store, sandbox=sandbox, allowed_uid=allowed_uid)
            )
            return Daemon(path, store, sts)

        yield _start


@pytest.fixture
async def daemon(start: Start) -> Daemon:
    """A plain (not sandbox) daemon for our own uid with a fake STS that always succeeds."""
    return await start()


def assert_error(reply: Reply, status: int, code: str, message: str = "") -> dict[str, str]:
    """The reply is the API's one error shape, {"error": {"code", "message"}}, as expected."""
    assert reply.status == status, reply.body
    doc = reply.json()
    assert set(doc) == {"error"}
    # code and message always; STS errors add sts_message, MFA errors mfa_serial, and what
    # the AWS CLI would print instead sts_code and sts_message (STS would refuse it) or
    # cli_message (the CLI or botocore refuses it).
    assert {"code", "message"} <= set(doc["error"])
    allowed = {"code", "message", "sts_message", "sts_code", "cli_message", "mfa_serial"}
    assert set(doc["error"]) <= allowed
    assert doc["error"]["code"] == code
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]
    assert message in doc["error"]["message"]
    return doc["error"]


def utc(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- credentials -------------------------------------------------------------------------


async def test_credentials_json_has_the_sdk_shape(daemon: Daemon) -> None:
    """POST /v1/credentials answers 200 JSON with the four credential fields and a Z time."""
    reply = await daemon.credentials()
    assert reply.status == 200
    doc = reply.json()
    issued = daemon.sts.issued[0]
    assert {"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"} <= set(doc)
    assert doc["AccessKeyId"] == issued.access_key_id
    assert re.fullmatch(r"ASIA[A-Z0-9]{16}", doc["AccessKeyId"])
    assert doc["SecretAccessKey"] == issued.secret_access_key
    assert len(doc["SecretAccessKey"]) == 40
    assert doc["SessionToken"] == issued.session_token
    assert ISO.fullmatch(doc["Expiration"]), doc["Expiration"]  # 'Z', no microseconds
    assert doc["Expiration"] == utc(issued.expiration)
    assert doc["RoleArn"] == ROLE and doc["AccountId"] == ACCOUNT
    assert "x-rolecache-sandbox" not in reply.headers


async def test_env_format_gives_bash_export_lines(daemon: Daemon) -> None:
    """format=env answers the four export lines for bash, the default shell, and the expiry
    in epoch seconds as a shell variable that is not exported."""
    reply = await daemon.credentials(query="?format=env")
    assert reply.status == 200
    issued = daemon.sts.issued[0]
    assert reply.text == (
        f"export AWS_ACCESS_KEY_ID='{issued.access_key_id}'\n"
        f"export AWS_SECRET_ACCESS_KEY='{issued.secret_access_key}'\n"
        f"export AWS_SESSION_TOKEN='{issued.session_token}'\n"
        f"export AWS_CREDENTIAL_EXPIRATION='{utc(issued.expiration)}'\n"
        f"ROLECACHE_EXPIRES_AT={int(issued.expiration)}\n"
    )


@pytest.mark.parametrize(
    ("shell", "first"),
    [
        ("sh", "export AWS_ACCESS_KEY_ID='{}'"),
        ("zsh", "export AWS_ACCESS_KEY_ID='{}'"),
        ("fish", "set -gx AWS_ACCESS_KEY_ID '{}';"),
        ("powershell", "$Env:AWS_ACCESS_KEY_ID = '{}'"),
    ],
)
async def test_env_format_follows_the_shell_parameter(
    daemon: Daemon, shell: str, first: str
) -> None:
    """format=env&shell=X renders the lines in that shell's syntax."""
    reply = await daemon.credentials(query=f"?format=env&shell={shell}")
    assert reply.status == 200
    lines = reply.text.splitlines()
    assert len(lines) == 5
    assert lines[0] == first.format(daemon.sts.issued[0].access_key_id)
    assert "ROLECACHE_EXPIRES_AT" in lines[4] and "Env:" not in lines[4]


async def test_process_format_is_the_credential_process_document(daemon: Daemon) -> None:
    """format=process answers Version 1 (a number) and exactly the four credential fields."""
    reply = await daemon.credentials(query="?format=process")
    assert reply.status == 200
    doc = json.loads(reply.body)
    issued = daemon.sts.issued[0]
    assert doc == {
        "Version": 1,
        "AccessKeyId": issued.access_key_id,
        "SecretAccessKey": issued.secret_access_key,
        "SessionToken": issued.session_token,
        "Expiration": utc(issued.expiration),
    }
    assert type(doc["Version"]) is int


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?format=yaml", "unknown format 'yaml'"),
        ("?format=ENV", "unknown format 'ENV'"),
        ("?format=", "unknown format ''"),
        ("?format=env&shell=tcsh", "unknown shell 'tcsh'"),
        ("?format=env&shell=cmd", "unknown shell 'cmd'"),
        ("?shell=Bash", "unknown shell 'Bash'"),
    ],
)
async def test_unknown_format_or_shell_is_400(daemon: Daemon, query: str, message: str) -> None:
    """An unknown format or shell is a 400 InvalidRequest and costs no STS call."""
    assert_error(await daemon.credentials(query=query), 400, "InvalidRequest", message)
    assert len(daemon.sts.calls) == 0
    await daemon.assert_still_serves()


async def test_second_request_is_served_from_memory(daemon: Daemon) -> None:
    """The same request twice calls STS once and answers the same credentials both times."""
    first = (await daemon.credentials()).json()
    second = (await daemon.credentials()).json()
    process = json.loads((await daemon.credentials(query="?format=process")).body)
    assert len(daemon.sts.calls) == 1
    assert first == second
    assert process["AccessKeyId"] == first["AccessKeyId"]


async def test_min_ttl_shares_the_entry_but_other_fields_do_not(daemon: Daemon) -> None:
    """A different min_ttl reuses the cached entry; a different session name calls STS again."""
    await daemon.credentials()
    await daemon.credentials({**GOOD, "min_ttl": 0})
    assert len(daemon.sts.calls) == 1
    other = await daemon.credentials({**GOOD, "role_session_name": "bob"})
    assert other.status == 200
    assert len(daemon.sts.calls) == 2


# -- bad requests ------------------------------------------------------------------------

BAD_BODIES = {
    "malformed JSON": (b'{"role_arn": ', "not valid JSON"),
    "trailing garbage": (json.dumps(GOOD).encode() + b"x", "not valid JSON"),
    "non-UTF-8": (b'{"role_arn": "\xff\xfe"}', "not UTF-8"),
    "latin-1 text": ('{"role_session_name": "b\u00f8b"}'.encode("latin-1"), "not UTF-8"),
    "unknown field": (json.dumps({**GOOD, "serial_nr": "x"}).encode(), "unknown field"),
    "wrong type": (json.dumps({**GOOD, "duration_seconds": "3600"}).encode(), "integer"),
    "string ARN type": (json.dumps({**GOOD, "role_arn": 1}).encode(), "must be a string"),
    "rule broken": (json.dumps({**GOOD, "duration_seconds": 899}).encode(), "out of range"),
    "cannot_prompt type": (
        json.dumps({**GOOD, "cannot_prompt": "yes"}).encode(),
        "cannot_prompt must be true or false",
    ),
    "empty body": (b"", "needs a JSON object body"),
    "JSON list": (b"[]", "must be a JSON object"),
    "JSON null": (b"null", "must be a JSON object"),
    "deeply nested": (b"[" * 60_000, ""),
    "deeply nested, balanced": (b"[" * 30_000 + b"]" * 30_000, ""),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
async def test_bad_bodies_are_400_without_an_sts_call(daemon: Daemon, case: str) -> None:
    """A body that is not a valid request is a 400 in the error shape, and STS is not called."""
    body, message = BAD_BODIES[case]
    assert_error(await daemon.credentials(body), 400, "InvalidRequest", message)
    assert len(daemon.sts.calls) == 0
    await daemon.assert_still_serves()


async def test_post_without_a_body_is_400(daemon: Daemon) -> None:
    """A POST with no body at all (no Content-Length) is a 400 in the error shape."""
    reply = await daemon.call("POST", "/v1/credentials")
    assert_error(reply, 400, "InvalidRequest", "needs a JSON object body")
    assert len(daemon.sts.calls) == 0


async def test_body_over_64_kib_is_413(daemon: Daemon) -> None:
    """A body one byte over 64 KiB is a 413 PayloadTooLarge in the error shape, without STS."""
    body = json.dumps(GOOD).encode()
    body += b" " * (MAX_BODY + 1 - len(body))
    assert MAX_BODY == 64 * 1024 and len(body) == MAX_BODY + 1
    assert_error(await daemon.credentials(body), 413, "PayloadTooLarge", str(MAX_BODY))
    assert len(daemon.sts.calls) == 0
    await daemon.assert_still_serves()


async def test_body_of_exactly_64_kib_is_accepted(daemon: Daemon) -> None:
    """A valid request padded to exactly 64 KiB is still served."""
    body = json.dumps(GOOD).encode()
    body += b" " * (MAX_BODY - len(body))
    assert len(body) == MAX_BODY
    reply = await daemon.credentials(body)
    assert reply.status == 200, reply.body


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/v1/nope"),
        ("POST", "/v2/credentials"),
        ("POST", "/v1/credentials/extra"),
        ("GET", "/latest/meta-data/iam/security-credentials/"),
        ("DELETE", "/v1/sessions/a/b"),
    ],
)
async def test_unknown_path_is_404(daemon: Daemon, method: str, path: str) -> None:
    """An unknown path is a 404 NotFound in the API's error shape."""
    assert_error(await daemon.call(method, path), 404, "NotFound", "/v1/")
    await daemon.assert_still_serves()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/credentials"),
        ("PUT", "/v1/credentials"),
        ("PATCH", "/v1/sessions"),
        ("POST", "/v1/sessions"),
        ("POST", "/v1/status"),
        ("DELETE", "/v1/status"),
        ("GET", "/v1/sessions/forget"),
    ],
)
async def test_wrong_method_is_405(daemon: Daemon, method: str, path: str) -> None:
    """A known path with the wrong method is a 405 MethodNotAllowed in the error shape."""
    body = b"{}" if method in ("PUT", "PATCH", "POST") else None
    assert_error(await daemon.call(method, path, body), 405, "MethodNotAllowed")
    assert len(daemon.sts.calls) == 0
    await daemon.assert_still_serves()


# -- STS failures ------------------------------------------------------------------------


async def test_permanent_sts_error_is_502_with_stss_code_and_message(start: Start) -> None:
    """STS's AccessDenied is a 502 with code AccessDenied and STS's message, after one call."""
    daemon = await start(FakeSts(failure=DENIED))
    error = assert_error(await daemon.credentials(), 502, "AccessDenied", DENIED.message)
    assert ROLE in error["message"]
    assert len(daemon.sts.calls) == 1  # a permanent error is not retried
    daemon.sts.failure = None
    await daemon.assert_still_serves()


async def test_retryable_sts_error_is_503_after_the_retries(start: Start) -> None:
    """STS throttling is a 503 with code Throttling and STS's message, after every retry."""
    daemon = await start(FakeSts(failure=THROTTLED))
    assert_error(await daemon.credentials(), 503, "Throttling", "Rate exceeded")
    assert len(daemon.sts.calls) == daemon.store.settings.cold_attempts
    daemon.sts.failure = None
    await daemon.assert_still_serves()


# -- sessions ----------------------------------------------------------------------------


async def test_sessions_list_shows_state_but_no_secret(daemon: Daemon) -> None:
    """GET /v1/sessions lists role, session name, expiration, renewal, hits and last error,
    and contains no secret key, session token or full access key id."""
    daemon.sts.failures[DENIED_ROLE] = DENIED
    await daemon.credentials()
    await daemon.credentials()
    await daemon.credentials({"role_arn": DENIED_ROLE, "role_session_name": "alice"})
    reply = await daemon.call("GET", "/v1/sessions")
    assert reply.status == 200
    sessions = {s["role_arn"]: s for s in reply.json()["sessions"]}
    assert set(sessions) == {ROLE, DENIED_ROLE}

    issued = daemon.sts.issued[0]
    good = sessions[ROLE]
    assert good["role_session_name"] == "alice"
    assert good["expiration"] == utc(issued.expiration)
    assert ISO.fullmatch(good["next_renewal"])
    assert utc(issued.issued_at) <= good["next_renewal"] < good["expiration"]
    assert good["hits"] == 1
    assert good["sts_calls"] == 1
    assert good["last_error"] is None
    assert good["access_key_id"] == f"{issued.access_key_id[:4]}...{issued.access_key_id[-4:]}"
    assert re.fullmatch(r"[0-9a-f]{16}", good["id"])

    bad = sessions[DENIED_ROLE]
    assert bad["last_error"] == f"AccessDenied: {DENIED.message}"
    assert bad["expiration"] is None and bad["access_key_id"] is None

    assert issued.secret_access_key not in reply.text
    assert issued.session_token not in reply.text
    assert issued.session_token[-60:] not in reply.text
    assert issued.access_key_id not in reply.text


async def test_delete_sessions_forgets_everything(daemon: Daemon) -> None:
    """DELETE /v1/sessions drops every entry, so the next request calls STS again."""
    await daemon.credentials()
    await daemon.credentials({**GOOD, "role_session_name": "bob"})
    reply = await daemon.call("DELETE", "/v1/sessions")
    assert reply.status == 200 and reply.json() == {"forgotten": 2}
    assert (await daemon.call("GET", "/v1/sessions")).json() == {"sessions": []}
    await daemon.credentials()
    assert len(daemon.sts.calls) == 3


async def test_delete_session_by_id(daemon: Daemon) -> None:
    """DELETE /v1/sessions/{id} drops only that entry; the id then, or an unknown one, is 404."""
    await daemon.credentials()
    await daemon.credentials({**GOOD, "role_session_name": "bob"})
    listing = (await daemon.call("GET", "/v1/sessions")).json()["sessions"]
    alice = next(s["id"] for s in listing if s["role_session_name"] == "alice")

    reply = await daemon.call("DELETE", f"/v1/sessions/{alice}")
    assert reply.status == 200 and reply.json() == {"forgotten": 1}
    left = (await daemon.call("GET", "/v1/sessions")).json()["sessions"]
    assert [s["role_session_name"] for s in left] == ["bob"]

    assert_error(await daemon.call("DELETE", f"/v1/sessions/{alice}"), 404, "NotFound", alice)
    assert_error(await daemon.call("DELETE", "/v1/sessions/0000000000000000"), 404, "NotFound")
    await daemon.credentials()
    assert len(daemon.sts.calls) == 3  # alice's entry really was gone


async def test_forget_by_request_body(daemon: Daemon) -> None:
    """POST /v1/sessions/forget drops the entry the body would use, and only that one."""
    await daemon.credentials()
    await daemon.credentials({**GOOD, "role_session_name": "bob"})
    other = {**GOOD, "role_session_name": "carol"}
    reply = await daemon.call("POST", "/v1/sessions/forget", other)
    assert reply.status == 200 and reply.json() == {"forgotten": 0}
    reply = await daemon.call("POST", "/v1/sessions/forget", {**GOOD, "min_ttl": 60})
    assert reply.status == 200 and reply.json() == {"forgotten": 1}
    left = (await daemon.call("GET", "/v1/sessions")).json()["sessions"]
    assert [s["role_session_name"] for s in left] == ["bob"]


@pytest.mark.parametrize(
    "body", [b"", b"{", b"[]", json.dumps({**GOOD, "oops": 1}).encode(), b"[" * 60_000]
)
async def test_forget_with_a_bad_body_is_400(daemon: Daemon, body: bytes) -> None:
    """POST /v1/sessions/forget with an invalid body is a 400 in the error shape."""
    await daemon.credentials()
    reply = await daemon.call("POST", "/v1/sessions/forget", body)
    assert_error(reply, 400, "InvalidRequest")
    assert len((await daemon.call("GET", "/v1/sessions")).json()["sessions"]) == 1


# -- status ------------------------------------------------------------------------------


async def test_status_counts_sessions_calls_and_errors(daemon: Daemon) -> None:
    """GET /v1/status reports version, pid and the session, STS call and STS error counts."""
    doc = (await daemon.call("GET", "/v1/status")).json()
    assert doc["version"] == __version__
    assert doc["pid"] == os.getpid()
    assert doc["sandbox"] is False
    assert (doc["sessions"], doc["sts_calls"], doc["sts_errors"]) == (0, 0, 0)
    assert doc["uptime"] >= 0

    daemon.sts.failures[DENIED_ROLE] = DENIED
    await daemon.credentials()
    await daemon.credentials()
    await daemon.credentials({"role_arn": DENIED_ROLE, "role_session_name": "alice"})
    doc = (await daemon.call("GET", "/v1/status")).json()
    assert (doc["sessions"], doc["sts_calls"], doc["sts_errors"]) == (2, 2, 1)


# -- sandbox -----------------------------------------------------------------------------


async def test_sandbox_marks_every_response(start: Start) -> None:
    """With sandbox=True every response, errors included, carries X-Rolecache-Sandbox: 1."""
    daemon = await start(sandbox=True)
    replies = [
        await daemon.credentials(),
        await daemon.call("GET", "/v1/sessions"),
        await daemon.call("GET", "/v1/status"),
        await daemon.credentials(b"{"),
        await daemon.call("GET", "/v1/nope"),
        await daemon.call("GET", "/v1/credentials"),
    ]
    assert [r.headers.get("x-rolecache-sandbox") for r in replies] == ["1"] * len(replies)
    assert replies[2].json()["sandbox"] is True


async def test_sandbox_env_output_starts_with_a_comment(start: Start) -> None:
    """In sandbox mode format=env begins with a '# rolecache SANDBOX' line; process stays JSON."""
    daemon = await start(sandbox=True)
    for shell in ("bash", "fish", "powershell"):
        lines = (await daemon.credentials(query=f"?format=env&shell={shell}")).text.splitlines()
        assert lines[0].startswith("# rolecache SANDBOX"), lines[0]
        assert len(lines) == 6
    process = await daemon.credentials(query="?format=process")
    assert json.loads(process.body)["Version"] == 1


async def test_no_sandbox_marks_without_sandbox(daemon: Daemon) -> None:
    """A normal daemon sends no sandbox header, even on errors, and no comment in env output."""
    replies = [
        await daemon.credentials(query="?format=env"),
        await daemon.call("GET", "/v1/nope"),
        await daemon.credentials(b"{"),
    ]
    assert all("x-rolecache-sandbox" not in r.headers for r in replies)
    assert not replies[0].text.startswith("#")


# -- peers of another user ---------------------------------------------------------------


async def test_peer_of_another_uid_gets_no_bytes(start: Start) -> None:
    """A connection whose peer uid is not the allowed one is closed without a single byte."""
    daemon = await start(allowed_uid=os.getuid() + 1)
    reader, writer = await asyncio.open_unix_connection(str(daemon.sock))
    request = json.dumps(GOOD).encode()
    received = b""
    with contextlib.suppress(ConnectionError):
        writer.write(
            b"POST /v1/credentials HTTP/1.1\r\nHost: rolecache\r\n"
            + f"Content-Length: {len(request)}\r\n\r\n".encode()
            + request
        )
        await writer.drain()
        received = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    assert received == b""
    assert len(daemon.sts.calls) == 0
    assert daemon.store.entries() == []
