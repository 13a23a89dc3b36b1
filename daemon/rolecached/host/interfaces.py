"""The interfaces of this host: binding an address before any interface has it (IP_FREEBIND),
the one an accepted TCP connection arrived on (IP_PKTINFO), an interface's name and IPv4
address, and whether an address is held by one now."""

import fcntl
import socket
import struct
from typing import Any

# Linux's IP_PKTINFO and IP_PKTOPTIONS (not in Python 3.11's socket module): with IP_PKTINFO
# set on a listener, getsockopt(IP_PKTOPTIONS) on an accepted TCP socket gives the index of
# the interface its connection arrived on (recorded from the SYN: mc_index).
IP_PKTINFO = 8
# Linux's IP_FREEBIND (not in Python 3.11's socket module either).
IP_FREEBIND = 15
_IP_PKTOPTIONS = 9
_CMSG = struct.Struct("@Nii")  # struct cmsghdr: len, level, type; data aligned after it
_SIOCGIFNAME = 0x8910
_SIOCGIFADDR = 0x8915
_IFREQ_INDEX = struct.Struct("16si20x")  # struct ifreq (40 bytes): the name, an index
_IFREQ_ADDR = struct.Struct("16s4x4s16x")  # the name, a sockaddr_in: family, port, address
_ioctl_socket: socket.socket | None = None  # one, kept open: asked on every connection


def bind_before_address(sock: socket.socket) -> None:
    """Let IPv4 listener `sock` bind an address no interface has yet (it serves once one
    has: the docker network's gateway before the network exists), and have each connection
    it accepts know the interface it arrived on (`arrival_interface`)."""
    sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)


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
