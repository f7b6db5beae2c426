"""Network: each sandbox has its own network namespace (unshared in
:func:`sandbox.namespaces.enter`); this brings its loopback up and nothing else.

No interface but ``lo`` means no route anywhere: not the host's loopback services, not the
daemon, not another sandbox (abstract Unix sockets are per network namespace too).
"""

from __future__ import annotations

import fcntl
import socket
import struct

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFF_RUNNING = 0x40


def loopback_up() -> None:
    """Child half: ``ip link set lo up`` with two ioctls (pyroute2 costs ~ms to import/use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, ifreq))[1]
        ifreq = struct.pack("16sH14x", b"lo", flags | _IFF_UP | _IFF_RUNNING)
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, ifreq)
