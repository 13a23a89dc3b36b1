"""Who took which credentials: every credential handed out is logged with its requester.

On the socket that is the peer process (pid and uid from SO_PEERCRED, its command name from
/proc); on the container endpoints, the binding, the client address (and uid when it is a
process of this host) and the SDK's User-Agent, cleaned. No secret is logged: the access key
id is masked.
"""

import functools
import logging
import time
import unicodedata

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


# A User-Agent is the client's to choose: cut so a line stays a line, and cleaned of control
# and format characters (escape sequences, bidi overrides) that would rewrite a terminal or a
# log viewer. SDK agents are 60-200 characters.
AGENT_MAX = 200


@functools.lru_cache(maxsize=256)
def clean_agent(agent: str) -> str:
    """`agent` without control or format characters, cut to AGENT_MAX (with "..." when cut);
    cached, because a client sends the same one with every request."""
    text = "".join(
        ch for ch in agent[: AGENT_MAX * 2] if unicodedata.category(ch) not in ("Cc", "Cf", "Cs")
    ).strip()
    return text if len(text) <= AGENT_MAX else text[: AGENT_MAX - 3] + "..."


def endpoint_requester(peer: Peer | None, listener: str, agent: str | None) -> str:
    """Who took credentials from a container endpoint: the peer, the listener (with the
    binding) and the SDK's User-Agent, as the audit line and `rolecache list` show it."""
    shown = clean_agent(agent) if agent else ""
    return f"{describe_peer(peer)} via {listener} ({shown or 'no User-Agent'})"
