"""The fast lane: byte-identical repeats of a served request are answered from memory
without aiohttp, with the same body, and anything the lane cannot vouch for goes to aiohttp."""

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rolecache.protocol import file_stamp
from rolecached.api.requestbody import MAX_BODY
from rolecached.core.request import RoleRequest
from rolecached.core.store import Store
from rolecached.front import fastlane
from rolecached.front.fastlane import takes
from rolecached.front.httphead import NEED_MORE, Head, parse
from tests.kit import FakeClock, FakeSts, serving

ROLE = "arn:aws:iam::123456789012:role/lane"


@dataclass
class Daemon:
    path: Path
    sts: FakeSts
    clock: FakeClock
    store: Store

    async def send(self, raw: bytes) -> bytes:
        reader, writer = await asyncio.open_unix_connection(str(self.path))
        writer.write(raw)
        answer = await reader.read()
        writer.close()
        return answer


def post(body: dict, query: str = "format=env") -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST /v1/credentials?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def split(answer: bytes) -> tuple[dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    return {k.lower(): v for k, v in headers.items()}, body


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    """The real listener (peer guard, lane, aiohttp app) on a Unix socket, fake STS and clock."""
    clock = FakeClock(time.time())
    sts = FakeSts()
    store = Store(sts, clock=clock)
    async with serving(tmp_path / "run" / "s.sock", store) as path:
        yield Daemon(path, sts, clock, store)


async def test_a_repeat_is_answered_by_the_lane_with_the_same_body(daemon: Daemon) -> None:
    """The first request goes through aiohttp (its Server header shows), a byte-identical
    repeat is answered by the lane: same status, body and content type, one STS call, and
    the hit is counted."""
    request = post({"role_arn": ROLE, "role_session_name": "s1"})
    first_headers, first_body = split(await daemon.send(request))
    second_answer = await daemon.send(request)
    second_headers, second_body = split(second_answer)
    assert second_answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert "server" in first_headers and "server" not in second_headers  # aiohttp, then lane
    assert second_body == first_body and b"export AWS_SESSION_TOKEN=" in second_body
    assert second_headers["content-type"] == first_headers["content-type"]
    assert int(second_headers["content-length"]) == len(second_body)
    assert len(daemon.sts.calls) == 1
    assert daemon.store.entries()[0].hits == 1


async def test_json_answers_match_too(daemon: Daemon) -> None:
    """For the JSON format the lane's answer is the same document aiohttp gave."""
    request = post({"role_arn": ROLE, "role_session_name": "s2"}, query="format=json")
    _, first = split(await daemon.send(request))
    headers, second = split(await daemon.send(request))
    assert "server" not in headers
    assert json.loads(second) == json.loads(first)


async def test_lane_never_serves_credentials_short_of_min_ttl(daemon: Daemon) -> None:
    """When the held credentials fall under the request's minimum lifetime, the lane steps
    aside and aiohttp fetches fresh ones, which the lane then serves."""
    request = post({"role_arn": ROLE, "role_session_name": "s3", "min_ttl": 600})
    _, first = split(await daemon.send(request))
    daemon.clock.now += 3600 - 599  # 599 s left: under the 600 s asked for
    headers, second = split(await daemon.send(request))
    assert "server" in headers and second != first and len(daemon.sts.calls) == 2
    headers, third = split(await daemon.send(request))
    assert "server" not in headers and third == second  # re-rendered once, then served


async def test_profile_requests_take_the_lane_while_their_files_are_unchanged(
    daemon: Daemon, tmp_path: Path
) -> None:
    """A repeat of a profile request is answered by the lane while the config files are as
    they were; once the profile is edited (same size and second, new inode by rename), the
    next request goes through aiohttp and resolves the edited profile."""
    config = tmp_path / "config"
    config.write_text(f"[profile p]\nrole_arn = {ROLE}\ncredential_source = Environment\n")
    body = {"profile": "p", "config_file": str(config), "credentials_file": str(tmp_path / "c")}
    first, repeat = split(await daemon.send(post(body))), split(await daemon.send(post(body)))
    assert "server" in first[0] and "server" not in repeat[0] and repeat[1] == first[1]
    edited = tmp_path / "config.new"
    edited.write_text(f"[profile p]\nrole_arn = {ROLE[:-1]}X\ncredential_source = Environment\n")
    stat = config.stat()
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    edited.rename(config)
    after = split(await daemon.send(post(body)))
    assert "server" in after[0]
    assert [e.request.role_arn for e in daemon.store.entries()] == [ROLE, ROLE[:-1] + "X"]


async def test_a_caller_that_stamps_its_files_is_answered_without_a_stat(
    daemon: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A profile request carrying its files' stamps, as the daemon sees them too, is repeated
    by the lane with no stat(); once the file is edited the caller's new stamps make new bytes,
    which aiohttp resolves afresh."""
    config = tmp_path / "config"
    config.write_text(f"[profile p]\nrole_arn = {ROLE}\ncredential_source = Environment\n")
    paths = {"config_file": str(config), "credentials_file": str(tmp_path / "c")}

    def stamped() -> dict:
        stamps = [file_stamp(paths["config_file"]), file_stamp(paths["credentials_file"])]
        return {"profile": "p", **paths, "file_stamps": [list(s) if s else None for s in stamps]}

    first = split(await daemon.send(post(stamped())))
    checked: list[str] = []
    monkeypatch.setattr(fastlane, "file_stamp", lambda path: checked.append(path))
    repeat = split(await daemon.send(post(stamped())))
    assert "server" in first[0] and "server" not in repeat[0] and repeat[1] == first[1]
    assert checked == []
    config.write_text(f"[profile p]\nrole_arn = {ROLE}-edited\ncredential_source = Environment\n")
    after = split(await daemon.send(post(stamped())))
    assert "server" in after[0]
    assert [e.request.role_arn for e in daemon.store.entries()] == [ROLE, ROLE + "-edited"]


async def test_stamps_the_daemon_does_not_see_leave_the_checks_to_it(
    daemon: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claimed stamps that are not the files' own (stale, or made up) are no promise: the
    lane still checks each file before answering a repeat."""
    config = tmp_path / "config"
    config.write_text(f"[profile p]\nrole_arn = {ROLE}\ncredential_source = Environment\n")
    body = {
        "profile": "p",
        "config_file": str(config),
        "credentials_file": str(tmp_path / "c"),
        "file_stamps": [[1, 2, 3], None],
    }
    await daemon.send(post(body))
    checked: list[str] = []
    real = fastlane.file_stamp
    monkeypatch.setattr(fastlane, "file_stamp", lambda path: checked.append(path) or real(path))
    repeat = split(await daemon.send(post(body)))
    assert "server" not in repeat[0]
    assert checked == [str(config), str(tmp_path / "c")]


@pytest.mark.parametrize(
    "stamps", ["x", [[1, 2]], [[1, 2, "3"]], [[1, 2, -3]], [[1, 2, True]], [{"a": 1}]]
)
async def test_malformed_file_stamps_are_a_clear_400(daemon: Daemon, stamps: object) -> None:
    """file_stamps that are not a list of [mtime_ns, size, inode] or null get a 400 naming
    the field."""
    body = {"role_arn": ROLE, "role_session_name": "s", "file_stamps": stamps}
    answer = await daemon.send(post(body))
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert "file_stamps" in json.loads(split(answer)[1])["error"]["message"]


async def test_errors_and_other_paths_go_through_aiohttp(daemon: Daemon) -> None:
    """Invalid requests keep getting aiohttp's error answer, however often they repeat."""
    bad = post({"role_arn": ROLE, "role_session_name": "x"})
    for _ in range(2):
        answer = await daemon.send(bad)
        assert answer.startswith(b"HTTP/1.1 400")
    status = b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert (await daemon.send(status)).startswith(b"HTTP/1.1 200")


async def test_a_request_in_pieces_is_still_answered(daemon: Daemon) -> None:
    """A repeat that arrives in several writes is put together before the lane answers."""
    request = post({"role_arn": ROLE, "role_session_name": "s4"})
    _, first = split(await daemon.send(request))
    reader, writer = await asyncio.open_unix_connection(str(daemon.path))
    for i in range(0, len(request), 7):
        writer.write(request[i : i + 7])
        await writer.drain()
        await asyncio.sleep(0)
    headers, second = split(await reader.read())
    writer.close()
    assert "server" not in headers and second == first


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"POST /v1/credentials HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", "parts"),
        (b"POST /v1/credentials HTTP/1.1\r\nContent-Length: 5\r\n\r\n{}", NEED_MORE),
        (b"POST /v1/credentials HTTP/1.1\r\nContent-Le", NEED_MORE),
        (b"POST /v1/credentials HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET /", None),
        (b"POST /v1/credentials HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}", None),
        (b"POST /v1/credentials HTTP/1.1\r\n\r\n", None),
        (b"GET /v1/status HTTP/1.1\r\n\r\n", None),
        (b"POST /v1/credentials HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", None),
        (b"POST /v1/credentials HTTP/1.1\r\nContent-Length: 2\r", NEED_MORE),
        (b"x" * (MAX_BODY + 1), None),
    ],
    ids=[
        "complete",
        "body-short",
        "head-short",
        "pipelined",
        "chunked",
        "no-length",
        "get",
        "huge-length",
        "cr-of-a-crlf-to-come",
        "no-end-of-head",
    ],
)
def test_the_lane_takes_only_complete_plain_posts(raw: bytes, expected: object) -> None:
    """Only a complete POST /v1/credentials with a Content-Length and nothing after it is the
    lane's; an incomplete one asks for more bytes; the rest is aiohttp's."""
    head = parse(raw, MAX_BODY)
    result = ((head.line, head.body) if takes(head) else None) if isinstance(head, Head) else head
    if expected == "parts":
        assert result == (b"POST /v1/credentials HTTP/1.1", b"{}")
    else:
        assert result == expected


POST = b"POST /v1/credentials HTTP/1.1\r\n"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"GET /v1/status HTTP/1.1\nHost: x\n\n", "CR LF"),
        (b"POST /v1/credentials HTTP/1.1\rContent-Length: 2\r\n\r\n{}", "CR LF"),
        (b"POST /v1/credentials HTTP/1.1\r\nContent-Length: x2\r\n\r\n{}", "number"),
        (POST + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n", "number"),
        (POST + b"Content-Length: 2\r\ncontent-length: 2\r\n\r\n{}", "one"),
    ],
    ids=["bare-lf", "bare-cr", "not-a-number", "absurd", "two-lengths"],
)  # fmt: skip
async def test_malformed_heads_get_the_apis_json_error(
    daemon: Daemon, raw: bytes, reason: str
) -> None:
    """Heads no HTTP server may accept are answered 400 with the API's JSON error shape by
    the lane itself (aiohttp's own 400 is plain text), at once, not after a timeout."""
    answer = await asyncio.wait_for(daemon.send(raw), 2)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    headers, body = split(answer)
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert error["code"] == "BadRequest" and reason in error["message"]


async def test_forget_leaves_no_rendered_secret_in_the_lane(daemon: Daemon) -> None:
    """After `forget` (all, or the one session), no answer the lane holds contains the
    forgotten credentials' secret; other sessions' answers stay."""
    from rolecached.api import appkeys, routes

    app = routes.make_app(daemon.store, lambda _transport: None)
    lane = app[appkeys.LANE]
    kept, dropped = (
        RoleRequest(role_arn=ROLE, role_session_name=name) for name in ("kept", "dropped")
    )
    for request in (kept, dropped):
        creds = await daemon.store.get(request, 60)
        lane.remember(
            request.role_session_name.encode(),
            fastlane.Route(request, 60, lambda c: ("text/plain", b""), creds, (
                b"HTTP/1.1 200 OK\r\n\r\n" + creds.secret_access_key.encode()
            )),
        )  # fmt: skip
    secrets = [e.credentials.secret_access_key.encode() for e in daemon.store.entries()]
    assert all(any(s in a for a in lane.held_answers()) for s in secrets)
    daemon.store.forget(dropped)
    assert [a.endswith(secrets[0]) for a in lane.held_answers()] == [True]
    daemon.store.forget()
    assert lane.held_answers() == []


async def test_config_stamps_are_read_once_per_loop_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Profile routes checked in one loop turn share one stat() per file; the next turn
    reads it again, so an edit between turns is seen."""
    calls: list[str] = []
    stamps = iter([(1, 1, 1), (2, 1, 1)])
    monkeypatch.setattr(fastlane, "file_stamp", lambda path: calls.append(path) or next(stamps))
    lane = fastlane.FastLane(None)  # type: ignore[arg-type]
    assert lane.stamp("config") == lane.stamp("config") == (1, 1, 1)
    assert calls == ["config"]
    await asyncio.sleep(0)
    assert lane.stamp("config") == (2, 1, 1) and calls == ["config", "config"]
