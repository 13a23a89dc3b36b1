"""The service manager, systemd: the listening socket it hands over (LISTEN_FDS) and the
notifications it hears (NOTIFY_SOCKET, READY=1)."""

import os
import socket

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
