"""Who took which credentials: every credential handed out is logged with its requester.

On the socket that is the peer process (pid and uid from SO_PEERCRED) and, from /proc, its
command name and its parent's: the peer is almost always the `rolecache` client, and a
reader wants the program that ran it (the script, terraform, the shell). On the container
endpoints it is the binding, the client address (and uid when it is a process of this host)
and the SDK's User-Agent, cleaned. No secret is logged: the access key id is masked.
"""

import functools
import logging
import time
import unicodedata

from rolecached.core.cache import Credentials
from rolecached.host import process
from rolecached.host.peers import Peer
from rolecached.observe import logsink

log = logging.getLogger("rolecached.audit")


# Descriptions of recent peers by (pid, start time): a reused pid has another start time, so
# an entry is never stale. (A switch for benchmarks only: B4b turns it off to cost every
# request as a new pid of a known parent would.)
_DESCRIBED: dict[tuple[int, int], str] = {}
CACHE_DESCRIPTIONS = True
_MAX_DESCRIBED = 4096
# Parents' names for one second: a shell loop makes a new pid per call but has one parent,
# and a pid is not reused within a second, so a name is never another process's.
_PARENTS: dict[int, tuple[float, str]] = {}
_PARENT_TTL = 1.0


def parent_name(ppid: int) -> str:
    """The command name of process `ppid`, read at most once a second."""
    now = time.monotonic()
    cached = _PARENTS.get(ppid)
    if cached is not None and now - cached[0] < _PARENT_TTL:
        return cached[1]
    stat = process.process_stat(ppid)
    name = stat[0] if stat else "?"
    if len(_PARENTS) >= _MAX_DESCRIBED:
        _PARENTS.clear()
    _PARENTS[ppid] = (now, name)
    return name


# The description last given for a pid, for one second: a process asking again and again (a
# program reusing its connection, a load test) costs no /proc read, and within a second a
# pid is not reused (pid_max is at least 32768). Past it, the start time decides again.
_RECENT: dict[int, tuple[float, str]] = {}


def describe_process(pid: int, uid: int | None) -> str:
    """'pid 1234 uid 1000 (rolecache, from deploy.sh pid 1200)': the process, its command
    and its parent's, from one /proc read (two when the pair is new, none for a repeat
    within a second)."""
    now = time.monotonic()
    recent = _RECENT.get(pid) if CACHE_DESCRIPTIONS else None
    if recent is not None and now - recent[0] < _PARENT_TTL:
        return recent[1]
    text = _describe(pid, uid)
    if len(_RECENT) >= _MAX_DESCRIBED:
        _RECENT.clear()
    _RECENT[pid] = (now, text)
    return text


def _describe(pid: int, uid: int | None) -> str:
    stat = process.process_stat(pid)
    if stat is None:
        return f"pid {pid} uid {uid} (?)"
    name, ppid, started = stat
    key = (pid, started)
    text = _DESCRIBED.get(key) if CACHE_DESCRIPTIONS else None
    if text is None:
        text = f"pid {pid} uid {uid} ({name}, from {parent_name(ppid)} pid {ppid})"
        if len(_DESCRIBED) >= _MAX_DESCRIBED:
            _DESCRIBED.clear()
        _DESCRIBED[key] = text
    return text


def describe_peer(peer: Peer | None) -> str:
    """The requester as logs and listings show it: a local process (describe_process), or
    a TCP peer's address and uid."""
    if peer is None:
        return "unknown peer"
    if peer.pid is None:
        uid = f" uid {peer.uid}" if peer.uid is not None else ""
        return f"{peer.address}{uid}"
    return describe_process(peer.pid, peer.uid)


def served(what: str, credentials: Credentials, requester: str, now: float) -> None:
    """Log one hand-out of credentials (in the daemon, straight to its log sink)."""
    if not log.isEnabledFor(logging.INFO):
        return
    left = credentials.expiration - now
    message = f"served {what} (key {credentials.masked_key_id}, {left:.0f} s left) to {requester}"
    if logsink.SINK is not None:
        logsink.SINK.write_message("INFO", log.name, message)
    else:
        log.info("%s", message)


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
