"""Who may hold a connection: the peer's uid first, then caps that neighbours cannot exhaust.

Every listener asks the one `Gate` when a connection arrives, before a byte is read. A peer
of another uid is refused (root is allowed: it can read our memory anyway); a peer no socket
of this host owns (a container on a docker network) is admitted only where its token alone
may decide. Admitted connections count against caps per listener and per peer, within a
total kept below the process's file-descriptor limit, so a flood from one peer leaves room
for the others, for the Unix socket and for STS. Refusals are logged as one line per
interval, so a neighbour cannot flood the log either.
"""

import logging
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rolecached.host.peers import Peer, allowed_uid

log = logging.getLogger("rolecached")

# Descriptors kept back from the listeners: STS connections (one per call in flight), the
# thread pool, config files, the log, netlink.
FD_RESERVE = 128


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (systemd gives user units 1024 soft);
    return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


@dataclass(frozen=True)
class Caps:
    """Open connections allowed: on the Unix socket, over all TCP listeners, on one TCP
    listener, and from one peer on one listener."""

    unix: int
    tcp_total: int
    per_listener: int
    per_peer: int

    @classmethod
    def for_fd_limit(cls, fd_limit: int) -> "Caps":
        """Caps that leave FD_RESERVE descriptors free, split between the Unix socket and
        the TCP listeners; one listener or one peer can never take all of them."""
        usable = max(64, fd_limit - FD_RESERVE)
        unix = min(1024, usable // 2)
        tcp = usable - unix
        per_listener = max(16, tcp * 3 // 4)
        return cls(unix, tcp, per_listener, max(8, per_listener // 2))


class RefusalLog:
    """Refusals as one line per interval: the first of a kind at once, then a count."""

    def __init__(
        self,
        logger: logging.Logger = log,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._interval = interval
        self._clock = clock
        self._since = clock()
        self._seen: set[str] = set()
        self._held: Counter[str] = Counter()

    def refused(self, what: str) -> None:
        """Note one refusal described by `what` (no secret in it)."""
        self.flush()
        if what in self._seen:
            self._held[what] += 1
            return
        self._seen.add(what)
        self._log.warning("refused %s", what)

    def flush(self, force: bool = False) -> None:
        """Write the counts held back, once the interval is over (or now, with `force`)."""
        now = self._clock()
        if not force and now - self._since < self._interval:
            return
        for what, count in sorted(self._held.items()):
            self._log.warning(
                "refused %d more: %s (in the last %.0f s)", count, what, now - self._since
            )
        self._held.clear()
        self._seen.clear()
        self._since = now


@dataclass
class Gate:
    """Admits connections by peer and counts them against the caps."""

    owner: int  # the daemon's uid
    caps: Caps
    refusals: RefusalLog = field(default_factory=RefusalLog)
    _per_listener: Counter[str] = field(default_factory=Counter)
    _per_peer: Counter[tuple[str, str]] = field(default_factory=Counter)
    _tcp: int = 0
    _unix: int = 0
    _peers: dict[Any, tuple[str, Peer]] = field(default_factory=dict)

    def admit(
        self,
        transport: Any,
        listener: str,
        peer: Peer | None,
        token_only: bool = False,
        allow_root: bool = True,
    ) -> bool:
        """Count `transport` in if `peer` may connect to `listener` and the caps allow it.

        A peer with a host uid must be ours (or root's, with `allow_root`). A peer without
        one is admitted only when `token_only` (a non-loopback address where the token
        decides); a failed lookup on loopback is always a refusal.
        """
        if peer is None or (peer.uid is None and not token_only):
            self.refusals.refused(f"connections on the {listener} from an unknown peer")
            return False
        if peer.uid is not None and not (
            peer.uid == self.owner or (allow_root and allowed_uid(peer.uid, self.owner))
        ):
            self.refusals.refused(f"connections on the {listener} from uid {peer.uid}")
            return False
        key = peer_key(peer)
        if listener == "socket":
            if self._unix >= self.caps.unix:
                self.refusals.refused(f"connections on the socket beyond {self.caps.unix}")
                return False
            self._unix += 1
        else:
            if (
                self._tcp >= self.caps.tcp_total
                or self._per_listener[listener] >= self.caps.per_listener
                or self._per_peer[(listener, key)] >= self.caps.per_peer
            ):
                self.refusals.refused(f"connections on the {listener} from {key}: cap reached")
                return False
            self._tcp += 1
            self._per_listener[listener] += 1
            self._per_peer[(listener, key)] += 1
        self._peers[transport] = (listener, peer)
        return True

    def release(self, transport: Any) -> None:
        """Count `transport` out (once; unknown transports are ignored)."""
        entry = self._peers.pop(transport, None)
        if entry is None:
            return
        listener, peer = entry
        if listener == "socket":
            self._unix -= 1
            return
        self._tcp -= 1
        self._per_listener[listener] -= 1
        key = (listener, peer_key(peer))
        self._per_peer[key] -= 1
        if self._per_peer[key] <= 0:
            del self._per_peer[key]

    def peer_of(self, transport: Any) -> Peer | None:
        """The admitted peer of `transport`, for rate limits and the audit trail."""
        entry = self._peers.get(transport)
        return entry[1] if entry is not None else None

    @property
    def open_connections(self) -> int:
        """Connections admitted and not yet released, over every listener."""
        return self._tcp + self._unix


def default_gate(owner: int) -> Gate:
    """The gate of a daemon run by `owner`: caps for this process's descriptor limit, which
    it raises first."""
    return Gate(owner, Caps.for_fd_limit(raise_fd_limit()))


def peer_key(peer: Peer) -> str:
    """What caps and rate limits count a peer by: its uid, else its address."""
    return f"uid {peer.uid}" if peer.uid is not None else f"address {peer.address}"
