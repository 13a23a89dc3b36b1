"""What the daemon asks of the operating system: who is on the other end of a connection,
what a process is called, how to make this process hard to read, and how the service
manager (systemd) hands over its socket and hears that the daemon is ready.

The trust boundary is the uid, so every connection's owner must be known before a byte of it
is read. For a Unix socket that is `SO_PEERCRED`. For a loopback TCP connection it is the
owner of the *client's* socket, which the kernel reports through one netlink
`SOCK_DIAG_BY_FAMILY` request for that exact connection (`inet_diag`, `idiag_uid`): a cost
that does not grow with the number of open connections, unlike a scan of /proc/net/tcp.
Linux only; elsewhere `tcp_peer_uid` answers None and the callers refuse the connection.
A port to another system replaces this module (getpeereid, proc_pidpath...) and nothing else.
"""

import contextlib
import ctypes
import fcntl
import logging
import os
import resource
import socket
import struct
import sys
import threading
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Where this module has an implementation; elsewhere the daemon refuses to start, saying so.
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


# Linux's IP_PKTINFO and IP_PKTOPTIONS (not in Python 3.11's socket module): with IP_PKTINFO
# set on a listener, getsockopt(IP_PKTOPTIONS) on an accepted TCP socket gives the index of
# the interface its connection arrived on (recorded from the SYN: mc_index).
IP_PKTINFO = 8
_IP_PKTOPTIONS = 9
_CMSG = struct.Struct("@Nii")  # struct cmsghdr: len, level, type; data aligned after it
_SIOCGIFNAME = 0x8910
_SIOCGIFADDR = 0x8915
_IFREQ_INDEX = struct.Struct("16si20x")  # struct ifreq (40 bytes): the name, an index
_IFREQ_ADDR = struct.Struct("16s4x4s16x")  # the name, a sockaddr_in: family, port, address
_ioctl_socket: socket.socket | None = None  # one, kept open: asked on every connection


def arrival_interface(sock: Any) -> int | None:
    """The index of the interface an accepted TCP connection arrived on, when its listener
    set IP_PKTINFO; None when the kernel does not say."""
    try:
        data = sock.getsockopt(socket.IPPROTO_IP, _IP_PKTOPTIONS, 64)
    except OSError:
        return None
    offset = 0
    while offset + _CMSG.size + 4 <= len(data):
        length, level, kind = _CMSG.unpack_from(data, offset)
        if length < _CMSG.size:
            return None
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            return int(struct.unpack_from("=i", data, offset + _CMSG.size)[0])
        offset += (length + 7) & ~7  # CMSG_ALIGN
    return None


def interface_address(index: int) -> tuple[str, str | None]:
    """The name of interface `index` and its (primary) IPv4 address, None when it has none:
    two ioctls on one socket kept open (if_indextoname would open a socket each time)."""
    global _ioctl_socket
    if _ioctl_socket is None:
        _ioctl_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    fd = _ioctl_socket.fileno()
    try:
        named = fcntl.ioctl(fd, _SIOCGIFNAME, _IFREQ_INDEX.pack(b"", index))
    except OSError:
        return f"interface {index}", None
    raw = _IFREQ_INDEX.unpack(named)[0]
    name = raw.split(b"\0", 1)[0].decode(errors="replace")
    try:
        answer = fcntl.ioctl(fd, _SIOCGIFADDR, _IFREQ_ADDR.pack(raw, b""))
    except OSError:
        return name, None
    return name, socket.inet_ntoa(_IFREQ_ADDR.unpack(answer)[1])


def holds_address(address: str) -> bool:
    """True when an interface of this host has the IPv4 `address` now: binding it succeeds
    without IP_FREEBIND."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        probe.bind((address, 0))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def allowed_uid(uid: int | None, owner: int) -> bool:
    """True for our own uid and for root (who can read the daemon's memory anyway)."""
    return uid is not None and uid in (owner, 0)


# -- processes -----------------------------------------------------------------------------

_PR_SET_DUMPABLE = 4


def process_stat(pid: int) -> tuple[str, int, int] | None:
    """(command name, parent pid, start time in clock ticks since boot) of process `pid`,
    from one read of /proc/PID/stat; None once it is gone."""
    # os-level calls: io.open's buffered file object costs ~40 us, a third of a fast-lane hit.
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 1024)
    except OSError:
        return None
    finally:
        os.close(fd)
    # The name is in parentheses and may itself hold spaces and parentheses: the fields
    # after it start at the last ")". Then: state, ppid, ... starttime (field 22).
    opened, closed = data.find(b"("), data.rfind(b")")
    fields = data[closed + 2 :].split(maxsplit=20)  # starttime is the 20th after the name
    if opened < 0 or closed < opened or len(fields) < 20:
        return None
    name = data[opened + 1 : closed].decode(errors="replace")
    return name, int(fields[1]), int(fields[19])


def harden_process() -> None:
    """No core dumps, no ptrace by other processes of the user, private files by default."""
    os.umask(0o077)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


# -- the service manager --------------------------------------------------------------------

_LISTEN_FDS_START = 3


def activation_socket() -> socket.socket | None:
    """The listening socket systemd passed us (LISTEN_FDS/LISTEN_PID), if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    count = os.environ.get("LISTEN_FDS", "")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for our children
    if not (count.isascii() and count.isdigit() and int(count) >= 1):
        return None
    sock = socket.socket(fileno=_LISTEN_FDS_START)
    sock.setblocking(False)
    return sock


def notify(message: str) -> bool:
    """Send `message` to systemd's NOTIFY_SOCKET, if there is one; True when sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
    return True
