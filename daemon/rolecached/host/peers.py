"""Who is on the other end of a connection, and who listens on a port: the uid the kernel
reports (SO_PEERCRED for a Unix socket, netlink SOCK_DIAG for TCP). Linux only."""

# The trust boundary is the uid, so every connection's owner must be known before a byte of it
# is read. For a loopback TCP connection it is the owner of the *client's* socket, which the
# kernel reports through one netlink `SOCK_DIAG_BY_FAMILY` request for that exact connection
# (`inet_diag`, `idiag_uid`): a cost that does not grow with the number of open connections,
# unlike a scan of /proc/net/tcp. Elsewhere `tcp_peer_uid` answers None and the callers refuse
# the connection. A port to another system replaces the modules of host/ (getpeereid,
# proc_pidpath...) and nothing else.

import logging
import socket
import struct
import sys
import threading
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Where host/ has an implementation; elsewhere the daemon refuses to start, saying so.
SUPPORTED = sys.platform.startswith("linux")

_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x01
_NLM_F_DUMP = 0x300
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_TCP_LISTEN = 10
# The states of a full socket in a live connection (ESTABLISHED, FIN_WAIT1, FIN_WAIT2,
# CLOSE_WAIT, LAST_ACK, CLOSING). Not LISTEN: when no socket has the exact addresses, the
# kernel answers with whatever listens on the client's ip:port, which another uid may own.
# Not TIME_WAIT or a request socket either: the kernel reports those as uid 0.
_CONNECTED = frozenset({1, 4, 5, 8, 9, 11})
_NOCOOKIE = 0xFFFFFFFF
# struct nlmsghdr, then struct inet_diag_req_v2: family, protocol, ext, pad, states, and the
# sockid (sport, dport big-endian; src, dst 16 bytes each; interface; cookie).
_HEADER = struct.Struct("=IHHII")
_REQUEST = struct.Struct("=BBBxI")
_SOCKID = struct.Struct(">HH16s16s")
_SOCKID_TAIL = struct.Struct("=III")
# struct inet_diag_msg: family, state, timer, retrans, sockid (48 bytes), expires, rqueue,
# wqueue, uid, inode.
_MSG = struct.Struct("=BBBB48sIIIII")
_MSG_SPORT = struct.Struct(">H")


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a connection: a uid on this host, or only an address."""

    uid: int | None  # None: no socket of this host owns the other end (a container's)
    pid: int | None = None  # known for Unix sockets only
    address: str = ""  # the client's IP address, for TCP


def unix_peer(transport: Any) -> Peer | None:
    """The pid and uid of a Unix-socket peer (SO_PEERCRED), or None if unknown."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", raw)
    return Peer(uid, pid)


def _packed(family: int, address: str) -> bytes:
    return socket.inet_pton(family, address).ljust(16, b"\0")


class _Diag:
    """One netlink socket for inet_diag requests, kept open; one request at a time."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._seq = 0

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(
                socket.AF_NETLINK,
                socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                4,  # NETLINK_SOCK_DIAG
            )
            sock.settimeout(1.0)
            self._sock = sock
        return self._sock

    def ask(self, request: bytes, dump: bool) -> list[bytes]:
        """Send one inet_diag request; the inet_diag_msg payloads of the answer."""
        with self._lock:
            sock = self._socket()
            self._seq += 1
            flags = _NLM_F_REQUEST | (_NLM_F_DUMP if dump else 0)
            sock.send(
                _HEADER.pack(_HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY, flags, self._seq, 0)
                + request
            )
            messages: list[bytes] = []
            while True:
                data = sock.recv(65536)
                offset = 0
                while offset + _HEADER.size <= len(data):
                    length, kind, _, seq, _ = _HEADER.unpack_from(data, offset)
                    if length < _HEADER.size:
                        return messages
                    payload = data[offset + _HEADER.size : offset + length]
                    offset += (length + 3) & ~3
                    if seq != self._seq:
                        continue  # an answer to an earlier request that timed out
                    if kind in (_NLMSG_DONE, _NLMSG_ERROR):
                        return messages
                    messages.append(payload)
                    if not dump:
                        return messages


_DIAG = _Diag()


def _sockid(family: int, local: tuple[Any, ...], remote: tuple[Any, ...]) -> bytes:
    return _SOCKID.pack(
        local[1], remote[1], _packed(family, local[0]), _packed(family, remote[0])
    ) + _SOCKID_TAIL.pack(0, _NOCOOKIE, _NOCOOKIE)


def tcp_peer_uid(ours: tuple[Any, ...], theirs: tuple[Any, ...], family: int) -> int | None:
    """The uid owning the client end of the TCP connection from `theirs` to `ours` (as
    getsockname/getpeername give them), or None when no socket of this host's network
    namespace is that end (a container's) or the kernel cannot say."""
    if not sys.platform.startswith("linux"):
        return None
    # The socket we ask about is the client's: its local end is `theirs`.
    sockid = _sockid(family, theirs, ours)
    request = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0xFFFFFFFF) + sockid
    try:
        messages = _DIAG.ask(request, dump=False)
    except OSError as exc:
        log.warning("cannot look up a TCP peer's uid: %s", exc.strerror or exc)
        return None
    for payload in messages:
        if len(payload) >= _MSG.size:
            _, state, _, _, found, _, _, _, uid, _ = _MSG.unpack_from(payload)
            # Only the client's own socket counts: both addresses and ports, connected.
            if state in _CONNECTED and found[: _SOCKID.size] == sockid[: _SOCKID.size]:
                return uid
    return None


def listener_uid(port: int, family: int = socket.AF_INET) -> int | None:
    """The uid of whoever listens on TCP `port` on this host, if the kernel says; None else."""
    if not sys.platform.startswith("linux"):
        return None
    request = (
        _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 1 << _TCP_LISTEN)
        + _SOCKID.pack(0, 0, bytes(16), bytes(16))
        + _SOCKID_TAIL.pack(0, _NOCOOKIE, _NOCOOKIE)
    )
    try:
        messages = _DIAG.ask(request, dump=True)
    except OSError:
        return None
    for payload in messages:
        if len(payload) >= _MSG.size:
            sockid = _MSG.unpack_from(payload)[4]
            if _MSG_SPORT.unpack_from(sockid)[0] == port:
                return _MSG.unpack_from(payload)[8]
    return None


def tcp_peer(transport: Any) -> Peer | None:
    """Who is on the other end of a TCP transport: the uid when a socket of this host owns
    the client end, else a Peer with only the address; None when the transport is gone."""
    sock = transport.get_extra_info("socket")
    theirs = transport.get_extra_info("peername")
    if sock is None or not isinstance(theirs, (list, tuple)):
        return None
    ours = sock.getsockname()
    uid = tcp_peer_uid(tuple(ours), tuple(theirs), sock.family)
    return Peer(uid, address=str(theirs[0]))


def allowed_uid(uid: int | None, owner: int) -> bool:
    """True for our own uid and for root (who can read the daemon's memory anyway)."""
    return uid is not None and uid in (owner, 0)
