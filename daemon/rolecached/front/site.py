"""The front of every listener: who may connect, how long a request may take, and the lanes.

`FrontGuard` stands in front of aiohttp's protocol for each connection, on the Unix socket
and on every TCP listener alike. When a connection arrives it asks the `Gate` (peer uid and
caps) before a byte is read; a refused peer is cut off with no answer at all. The request's
bytes are then parsed (httphead.py) and offered to the listener's lane, if it has one
(fastlane.py, ecslane.py), which answers repeats from memory; a head that is not HTTP gets the
listener's JSON 400 here. Only when the lane cannot answer is aiohttp's protocol created and
given the bytes, and every later byte. A connection whose request is not whole within the
listener's timeout, or that stays idle that long after a kept-alive answer, is closed (a
client dribbling headers holds no slot). aiohttp's handler has __slots__, hence a wrapper
rather than a patch.
"""

import asyncio
import socket
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from aiohttp import web

from rolecached.front import httphead
from rolecached.front.gate import Gate
from rolecached.front.httphead import Head, Malformed, NeedMore
from rolecached.host.peers import Peer


class Reply(NamedTuple):
    """A lane's answer: the whole HTTP response, and whether the connection stays open."""

    response: bytes
    keep_alive: bool


@dataclass(frozen=True)
class Lane:
    """What a listener answers before aiohttp: `answer` gives the Reply to a parsed request
    from a peer, or None for aiohttp to handle it; `bad_request` renders the listener's
    JSON 400 for a Malformed head; bodies over `max_body` bytes are aiohttp's."""

    answer: Callable[[Head, Peer], Reply | None]
    bad_request: Callable[[str], bytes]
    max_body: int = 0


def no_answers(_head: Head, _peer: Peer) -> None:
    """A lane's `answer` for a listener with nothing remembered: every request is aiohttp's."""
    return None


@dataclass
class Door:
    """One listener's policy: its name in logs and caps, how to identify a peer, whether a
    peer without a host uid may connect (its token alone decides), whether root may, the
    timeout, the lane, and `arrival`: why a connection is refused for the way it came (the
    interface it arrived on), or None."""

    name: str
    gate: Gate
    identify: Callable[[Any], Peer | None]
    token_only: bool = False
    allow_root: bool = True
    timeout: float = 5.0
    lane: Lane | None = None
    arrival: Callable[[Any, Peer], str | None] | None = None


class FrontGuard(asyncio.Protocol):
    """Admits a connection through the door's gate, then offers its bytes to the lane."""

    def __init__(self, make_inner: Callable[[], asyncio.Protocol], door: Door) -> None:
        self._make_inner = make_inner
        self._door = door
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._peer: Peer | None = None
        self._buffer = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        door = self._door
        peer = door.identify(transport)
        why = door.arrival(transport, peer) if door.arrival and peer is not None else None
        if why is not None:
            door.gate.refusals.refused(f"connections on the {door.name} {why}")
            transport.abort()
            return
        if not door.gate.admit(transport, door.name, peer, door.token_only, door.allow_root):
            transport.abort()
            return
        self._transport = transport  # type: ignore[assignment]
        self._peer = peer
        if door.lane is None:
            self._hand_over()
        else:
            self._start_timer()

    def _start_timer(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._door.timeout, self._too_slow)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        self.close_if_ours()

    def close_if_ours(self) -> None:
        """Close the connection unless aiohttp has it (then aiohttp's shutdown closes it)."""
        if self._inner is None and self._transport is not None:
            self._transport.close()

    def _hand_over(self) -> None:
        if self._inner is not None or self._transport is None or self._transport.is_closing():
            return
        self._stop_timer()  # aiohttp's own timeouts take over
        self._inner = self._make_inner()
        self._inner.connection_made(self._transport)
        if self._buffer:
            data, self._buffer = self._buffer, b""
            self._inner.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)
            return
        if self._transport is None or self._transport.is_closing():
            return
        self._buffer += data
        lane = self._door.lane
        assert lane is not None and self._peer is not None
        head = httphead.parse(self._buffer, lane.max_body)
        if isinstance(head, NeedMore):
            return
        if isinstance(head, Malformed):
            answer: Reply | None = Reply(lane.bad_request(head.reason), False)
        else:
            answer = None if head is None else lane.answer(head, self._peer)
        if answer is None:
            self._hand_over()
            return
        self._stop_timer()
        self._buffer = b""
        self._transport.write(answer.response)
        if answer.keep_alive:
            self._start_timer()
        else:
            self._transport.close()

    def eof_received(self) -> bool | None:
        self._hand_over()
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        if self._transport is not None:
            self._door.gate.release(self._transport)
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class FrontSite(web.SockSite):
    """aiohttp's SockSite with each connection's protocol a FrontGuard for `door`. On stop,
    the connections the guard still holds (kept alive, between requests) are closed too:
    aiohttp's shutdown knows only those handed to it."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, door: Door) -> None:
        super().__init__(runner, sock)
        self._door = door
        self._guards: weakref.WeakSet[FrontGuard] = weakref.WeakSet()

    def _protocol(self) -> FrontGuard:
        assert self._runner.server is not None
        guard = FrontGuard(self._runner.server, self._door)
        self._guards.add(guard)
        return guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers with the runner, as SockSite.start does
        loop = asyncio.get_running_loop()
        if self._sock.family == socket.AF_UNIX:
            self._server = await loop.create_unix_server(self._protocol, sock=self._sock)
        else:
            self._server = await loop.create_server(
                self._protocol, sock=self._sock, backlog=self._backlog
            )

    async def stop(self) -> None:
        await super().stop()
        for guard in list(self._guards):
            guard.close_if_ours()
