"""Network attacks: reach another sandbox (abstract Unix socket, loopback TCP) or the host
(its loopback TCP and UDP, an abstract socket, the daemon's socket path, its other addresses).

``listen`` runs in one sandbox and blocks for a bounded window; ``connect`` runs in another
sandbox meanwhile. Times are CLOCK_MONOTONIC, which is host-wide (no time namespace), so the
test can check that every connection attempt happened while the listener was listening.
"""

import json
import os
import select
import socket
import time

from common import attempt, failed

TIMEOUT_S = 2.0


def _connect(family, kind, address):
    s = socket.socket(family, kind)
    s.settimeout(TIMEOUT_S)
    try:
        s.connect(address)
        if kind == socket.SOCK_DGRAM:
            s.send(b"pwned")
        return "connected"
    finally:
        s.close()


def listen(event):
    listeners = []
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind("\0" + event["abstract"])
    listeners.append(unix)
    tcp4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp4.bind(("127.0.0.1", 0))
    listeners.append(tcp4)
    ports = {"tcp4": tcp4.getsockname()[1]}
    try:
        tcp6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        tcp6.bind(("::1", 0))
    except OSError:
        tcp6 = None
    else:
        listeners.append(tcp6)
        ports["tcp6"] = tcp6.getsockname()[1]
    for s in listeners:
        s.listen(16)
    # Control: the listeners work for a client in this sandbox.
    self_ok = True
    for s in listeners:
        c = socket.socket(s.family, socket.SOCK_STREAM)
        c.settimeout(TIMEOUT_S)
        try:
            c.connect(s.getsockname())
            s.accept()[0].close()
        except OSError:
            self_ok = False
        finally:
            c.close()
    start = time.monotonic()
    print("LISTENING " + json.dumps({"ports": ports, "token": event["token"]}), flush=True)
    deadline = start + event["window_s"]
    accepted = []
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(listeners, [], [], left)
        for s in ready:
            conn, peer = s.accept()
            accepted.append(repr(peer))
            conn.close()
    end = time.monotonic()
    for s in listeners:
        s.close()
    return {"ports": ports, "self_ok": self_ok, "accepted": accepted, "window": [start, end]}


def connect(event):
    out = {}
    t0 = time.monotonic()
    if "abstract" in event:
        out["abstract unix"] = attempt(
            _connect, socket.AF_UNIX, socket.SOCK_STREAM, "\0" + event["abstract"])
    for host, port in event.get("tcp", []):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        out[f"tcp {host}:{port}"] = attempt(_connect, family, socket.SOCK_STREAM, (host, port))
    for path in event.get("unix_paths", []):
        out[f"unix {path}"] = attempt(_connect, socket.AF_UNIX, socket.SOCK_STREAM, path)
        out[f"stat {path}"] = attempt(os.stat, path)
    t1 = time.monotonic()
    # UDP "succeeds" locally (no handshake); the host side checks that nothing arrived.
    for host, port in event.get("udp", []):
        try:
            _connect(socket.AF_INET, socket.SOCK_DGRAM, (host, port))
        except OSError as exc:
            out[f"udp {host}:{port}"] = failed(exc)
    return {"attempts": out, "window": [t0, t1], "interfaces": socket.if_nameindex()}


def handler(event, context):
    return globals()[event["mode"]](event)
