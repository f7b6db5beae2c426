"""Network, child half: each sandbox has its own network namespace (unshared in
:func:`sandbox.namespaces.enter`); at pool time this brings its loopback up and nothing else.

No interface but ``lo`` means no route anywhere: not the host's loopback services, not the
daemon, not another sandbox (abstract Unix sockets are per network namespace too).

For ``network = "egress"`` functions the daemon's parent half (:mod:`sandbox.egress`) creates a
veth pair whose inner end it moves into the sandbox's namespace; :func:`configure_egress` gives
that end its address and a default route, at specialization. Both use plain ioctls: pyroute2
would cost milliseconds to import per cold start, and the zygote does not import it.
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


# <linux/sockios.h>, <linux/route.h>
_SIOCSIFADDR = 0x8916
_SIOCSIFNETMASK = 0x891C
_SIOCADDRT = 0x890B
_RTF_UP = 0x1
_RTF_GATEWAY = 0x2
# struct rtentry (x86_64/aarch64 LP64 layout); "0L" pads the end to its alignment (120 bytes).
_RTENTRY = struct.Struct("@L16s16s16sHhLPhPLLH0L")


def _sockaddr_in(address: str) -> bytes:
    """``struct sockaddr_in`` (16 bytes) for an IPv4 address, port 0."""
    return struct.pack("=HH4s8x", socket.AF_INET, 0, socket.inet_aton(address))


def _ifreq(ifname: str, payload: bytes) -> bytes:
    """``struct ifreq`` (40 bytes): the interface name, then the union (here a sockaddr)."""
    return struct.pack("16s24s", ifname.encode(), payload)


def configure_egress(cfg: dict[str, str]) -> None:
    """Child half of ``network = "egress"``, run as root of the sandbox's network namespace
    while it still holds CAP_NET_ADMIN there (before credentials and seccomp).

    ``cfg`` comes from :meth:`sandbox.egress.Egress.attach`: ``ifname`` (the veth end the daemon
    moved in), ``address`` (``"10.200.x.y/30"``) and ``gateway`` (the host end). Equivalent of
    ``ip addr add ADDRESS dev IFNAME; ip link set IFNAME up; ip route add default via GATEWAY``,
    done with five ioctls: no pyroute2 here (it costs milliseconds to import, per cold start).

    IP only: no resolver is configured. Handlers reach outside addresses, not names, unless
    they bring their own resolution.

    Raises:
        OSError: naming the failing ioctl, or ValueError for a malformed ``cfg``.
    """
    ifname = cfg["ifname"]
    address, _, prefix = cfg["address"].partition("/")
    gateway = cfg["gateway"]
    prefixlen = int(prefix or "32")
    if not 0 < prefixlen <= 32 or len(ifname.encode()) > 15:
        raise ValueError(f"configure_egress: bad address or interface name in {cfg!r}")
    netmask = socket.inet_ntoa(struct.pack("!I", (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fd = s.fileno()
        _ioctl(fd, _SIOCSIFADDR, _ifreq(ifname, _sockaddr_in(address)), "SIOCSIFADDR", address)
        _ioctl(
            fd, _SIOCSIFNETMASK, _ifreq(ifname, _sockaddr_in(netmask)), "SIOCSIFNETMASK", netmask
        )
        flags = struct.unpack_from(
            "16sH", _ioctl(fd, _SIOCGIFFLAGS, _ifreq(ifname, b""), "SIOCGIFFLAGS", ifname)
        )[1]
        up = _ifreq(ifname, struct.pack("H", flags | _IFF_UP | _IFF_RUNNING))
        _ioctl(fd, _SIOCSIFFLAGS, up, "SIOCSIFFLAGS", f"{ifname} up")
        route = _RTENTRY.pack(
            0,
            _sockaddr_in("0.0.0.0"),  # rt_dst: default
            _sockaddr_in(gateway),  # rt_gateway
            _sockaddr_in("0.0.0.0"),  # rt_genmask
            _RTF_UP | _RTF_GATEWAY,
            0, 0, 0, 0, 0, 0, 0, 0,
        )  # fmt: skip
        _ioctl(fd, _SIOCADDRT, route, "SIOCADDRT", f"default via {gateway}")


def _ioctl(fd: int, request: int, arg: bytes, name: str, detail: str) -> bytes:
    try:
        return fcntl.ioctl(fd, request, arg)
    except OSError as exc:
        raise OSError(exc.errno, f"{name}({detail}): {exc.strerror}") from exc
