"""Who took which credentials: every credential handed out is logged with its requester.

On the socket that is the peer process (pid and uid from SO_PEERCRED, its command name from
/proc); on the container endpoints, the binding and the client address. No secret is logged:
the access key id is masked.
"""

import logging
import time

from rolecached import host
from rolecached.cache import Credentials
from rolecached.host import Peer

log = logging.getLogger("rolecached.audit")


# Command names of recent peers, for one second: a shell loop calling rolecache is one pid
# per call anyway, and a pid is not reused within a second, so a hit is never stale; it
# spares the /proc read on bursts from one process (bench B4).
_NAMES: dict[int, tuple[float, str]] = {}
_NAME_TTL = 1.0


def command_name(pid: int) -> str:
    """The process's command name, or '?' once it is gone."""
    now = time.monotonic()
    cached = _NAMES.get(pid)
    if cached is not None and now - cached[0] < _NAME_TTL:
        return cached[1]
    name = host.process_name(pid)
    if len(_NAMES) > 4096:
        _NAMES.clear()
    _NAMES[pid] = (now, name)
    return name


def describe_peer(peer: Peer | None) -> str:
    """'pid 1234 uid 1000 (bash)', the requester as logs and listings show it; a TCP peer is
    its address and uid."""
    if peer is None:
        return "unknown peer"
    if peer.pid is None:
        uid = f" uid {peer.uid}" if peer.uid is not None else ""
        return f"{peer.address}{uid}"
    return f"pid {peer.pid} uid {peer.uid} ({command_name(peer.pid)})"


def served(what: str, credentials: Credentials, requester: str, now: float) -> None:
    """Log one hand-out of credentials."""
    if log.isEnabledFor(logging.INFO):
        log.info(
            "served %s (key %s, %.0f s left) to %s",
            what,
            credentials.masked_key_id,
            credentials.expiration - now,
            requester,
        )
