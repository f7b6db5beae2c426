"""What one sandbox may leave in its network namespace for the next (issue 12, point 1).

``leave`` makes TCP connections on loopback and closes them first (TIME_WAIT sockets outlive
the process) and queues UDP datagrams on a bound port; ``observe`` looks for any of it from a
later sandbox: the namespace's SNMP counters (never reset), TIME_WAIT entries, socket counts,
and datagrams waiting on the same port. ``die`` ends the sandbox, so that the next invocation
gets a fresh one.
"""

import os
import socket


def _netns():
    return os.stat("/proc/self/ns/net").st_ino


def _snmp():
    """{"Udp": {"OutDatagrams": n, ...}, "Tcp": {...}} from /proc/net/snmp."""
    with open("/proc/net/snmp") as f:
        lines = f.read().splitlines()
    out = {}
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        proto = names.split(":")[0]
        out[proto] = dict(zip(names.split()[1:], (int(v) for v in values.split()[1:]), strict=True))
    return out


def _tcp_entries():
    entries = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                entries += [line.split()[1:4] for line in f.read().splitlines()[1:]]
        except FileNotFoundError:
            pass
    return entries


def _sockstat():
    with open("/proc/net/sockstat") as f:
        return f.read()


def leave(event):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    for _ in range(event["connections"]):
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.connect(listener.getsockname())  # (create_connection needs the idna codec)
        server, _addr = listener.accept()
        client.close()  # the active close: this end goes to TIME_WAIT
        server.close()
    listener.close()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    udp.bind(("127.0.0.1", event["udp_port"]))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(event["datagrams"]):
        sender.sendto(f"{event['token']} {i}".encode(), ("127.0.0.1", event["udp_port"]))
    globals()["_kept"] = (udp, sender)  # queued until the sandbox dies
    return {"netns": _netns(), "pidns": os.stat("/proc/self/ns/pid").st_ino,
            "snmp": _snmp(), "tcp": _tcp_entries()}


def observe(event):
    received = []
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        udp.bind(("127.0.0.1", event["udp_port"]))
    except OSError as exc:
        received.append(f"bind: {exc}")
    else:
        udp.setblocking(False)
        while True:
            try:
                received.append(udp.recv(256).decode(errors="replace"))
            except BlockingIOError:
                break
    udp.close()
    return {"netns": _netns(), "snmp": _snmp(), "tcp": _tcp_entries(),
            "sockstat": _sockstat(), "received": received[:5]}


def die(event):
    os._exit(0)


def handler(event, context):
    return globals()[event["mode"]](event)
