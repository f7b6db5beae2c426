"""``network = "egress"`` end to end: a real daemon, real sandboxes, a stand-in outside world.

The host has no internet, so the "outside" is a network namespace joined to the host by a veth
pair (198.51.100.1 host side, 198.51.100.2 outside) with a TCP server that tells each client the
address it sees it as (see ``tests/sandbox/test_egress.py``). Handlers *try* each connection and
return the outcome as data; the tests assert what worked and what must not have: the host's
loopback, anything the host listens on through the sandbox's gateway or its other addresses,
another sandbox. Every attempt has a timeout; waiting is polling with a deadline.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lambdad.client import Client
from tests.conftest import DaemonProcess, wait_for, write_function
from tests.sandbox.test_egress import (
    OUTSIDE_HOST_IP,
    OUTSIDE_IP,
    OutsideHost,
    host_addresses,
    outside_host,
)

pytestmark = pytest.mark.root

CALL_TIMEOUT_S = 60.0

# Every handler tries things and reports; nothing here raises on a failed attempt.
PROBE = r'''
import errno, socket, struct, time

CONNECT_TIMEOUT_S = 1.0


def addresses():
    """(own address, gateway) from the sandbox's own view of its network."""
    gateway = None
    with open("/proc/net/route") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == "00000000":
                gateway = socket.inet_ntoa(struct.pack("<I", int(fields[2], 16)))
    own = None
    if gateway:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((gateway, 9))
            own = s.getsockname()[0]
    return own, gateway


def attempt(host, port, line="PEER"):
    s = socket.socket()
    s.settimeout(CONNECT_TIMEOUT_S)
    try:
        s.connect((host, port))
    except socket.timeout:
        s.close()
        return {"connected": False, "error": "timeout"}
    except OSError as exc:
        s.close()
        return {"connected": False, "error": errno.errorcode.get(exc.errno, str(exc))}
    try:
        s.sendall(line.encode() + b"\n")
        return {"connected": True, "reply": s.makefile().readline().strip()}
    except OSError as exc:
        return {"connected": True, "reply": None, "error": repr(exc)}
    finally:
        s.close()


def probe(event, context):
    """Try every target of the event; the gateway may be named "GATEWAY"."""
    own, gateway = addresses()
    results = {}
    for host, port in event["targets"]:
        host = gateway if host == "GATEWAY" else host
        results[f"{host}:{port}"] = attempt(host, port) if host else {"connected": False}
    return {
        "links": [name for _, name in socket.if_nameindex()],
        "address": own,
        "gateway": gateway,
        "results": results,
    }


def listen(event, context):
    """Listen on the egress address, announce it outside, serve until STOP or the deadline."""
    own, gateway = addresses()
    srv = socket.socket()
    srv.bind(("0.0.0.0", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    outside_ip, outside_port = event["outside"]
    announced = attempt(outside_ip, outside_port, f"PUT {event['key']} {own}:{port}")
    peers = []
    deadline = time.monotonic() + event["deadline_s"]
    while time.monotonic() < deadline:
        srv.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            conn, peer = srv.accept()
        except socket.timeout:
            break
        peers.append(peer[0])
        conn.settimeout(CONNECT_TIMEOUT_S)
        try:
            conn.sendall(b"hello\n")
            if conn.makefile().readline().strip() == "STOP":
                break
        except OSError:
            pass
        finally:
            conn.close()
    srv.close()
    return {"address": own, "gateway": gateway, "announced": announced, "peers": peers}
'''


@pytest.fixture(scope="module")
def outside() -> Iterator[OutsideHost]:
    with outside_host() as o:
        yield o


@pytest.fixture(scope="module")
def client(shared_daemon: DaemonProcess) -> Iterator[Client]:
    with shared_daemon.client(timeout=CALL_TIMEOUT_S) as c:
        yield c


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_function(tmp_path_factory.mktemp("egress"), PROBE, module="net")


def deploy(c: Client, name: str, code: Path, handler: str, network: str = "egress") -> None:
    c.deploy(name, code, handler=f"net.{handler}", network=network, timeout_s=30)


def invoke(c: Client, name: str, event: Any) -> Any:
    inv = c.invoke(name, event)
    assert inv.error is None, f"{name}: {inv.error}"
    return inv


def test_egress_reaches_the_outside_through_nat(
    client: Client, outside: OutsideHost, code: Path
) -> None:
    deploy(client, "egress-out", code, "probe")
    event = {"targets": [[OUTSIDE_IP, outside.port]]}
    cold = invoke(client, "egress-out", event)
    out = cold.result
    assert out["links"] == ["lo", "eth0"]
    assert out["address"] and out["address"].startswith("10.200.")
    got = out["results"][f"{OUTSIDE_IP}:{outside.port}"]
    assert got == {"connected": True, "reply": OUTSIDE_HOST_IP}, "masqueraded as the host"
    assert cold.report.cold and "egress" in cold.report.phases_us
    print(f"cold start phases (us): {cold.report.phases_us}")
    warm = invoke(client, "egress-out", event)  # the same sandbox, still wired
    assert not warm.report.cold
    assert warm.result["results"] == out["results"]


def test_egress_cannot_reach_the_host(client: Client, outside: OutsideHost, code: Path) -> None:
    with contextlib.ExitStack() as stack:
        loopback = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        anywhere = stack.enter_context(socket.create_server(("0.0.0.0", 0)))
        lo_port, any_port = loopback.getsockname()[1], anywhere.getsockname()[1]
        targets = [
            ["127.0.0.1", lo_port],  # the sandbox's own loopback: nothing there
            ["GATEWAY", lo_port],
            ["GATEWAY", any_port],
            [OUTSIDE_HOST_IP, any_port],  # the host's address on the outside link
            *([addr, any_port] for addr in host_addresses()),
        ]
        # Control: the host's listeners work, for the host.
        with socket.create_connection(("127.0.0.1", lo_port), timeout=5):
            pass
        with socket.create_connection((OUTSIDE_HOST_IP, any_port), timeout=5):
            pass
        for listener in (loopback, anywhere):
            listener.accept()[0].close()
        deploy(client, "egress-host", code, "probe")
        out = invoke(client, "egress-host", {"targets": targets}).result
        assert out["gateway"], out
        reached = {t: r for t, r in out["results"].items() if r["connected"]}
        assert reached == {}, f"a sandbox reached the host: {reached}"
        for listener in (loopback, anywhere):
            listener.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                conn, peer = listener.accept()
                conn.close()
                raise AssertionError(f"a connection from {peer} reached a host listener")


def test_egress_sandboxes_cannot_reach_each_other(
    shared_daemon: DaemonProcess, client: Client, outside: OutsideHost, code: Path
) -> None:
    deploy(client, "egress-listen", code, "listen")
    deploy(client, "egress-knock", code, "probe")
    key = uuid.uuid4().hex
    event = {"outside": [OUTSIDE_IP, outside.port], "key": key, "deadline_s": 20}

    def serve() -> Any:
        with shared_daemon.client(timeout=CALL_TIMEOUT_S) as c:
            return invoke(c, "egress-listen", event).result

    host, port = "", "0"
    with ThreadPoolExecutor(1) as pool:
        listening = pool.submit(serve)
        try:
            where = str(wait_for(lambda: outside.ask(f"GET {key}") or listening.done(), 30))
            assert not listening.done(), listening.result()
            host, port = where.rsplit(":", 1)
            # Control: the host can open a connection into the sandbox.
            with socket.create_connection((host, int(port)), timeout=5) as s:
                assert s.makefile().readline() == "hello\n"
            knock = invoke(client, "egress-knock", {"targets": [[host, int(port)]]}).result
            assert knock["address"] != host, "two different sandboxes"
            assert not knock["results"][where]["connected"], f"sandbox reached sandbox: {knock}"
        finally:
            if host:  # end the listener now rather than at its deadline
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection((host, int(port)), timeout=5) as s,
                ):
                    s.sendall(b"STOP\n")
            served = listening.result(timeout=CALL_TIMEOUT_S)
    assert served["announced"]["reply"] == "ok"
    # Only the host came in (the control and the STOP), never the other sandbox.
    assert served["peers"] and set(served["peers"]) == {served["gateway"]}, served


def test_network_none_sees_only_loopback(client: Client, outside: OutsideHost, code: Path) -> None:
    deploy(client, "egress-none", code, "probe", network="none")
    out = invoke(client, "egress-none", {"targets": [[OUTSIDE_IP, outside.port]]}).result
    assert out["links"] == ["lo"] and out["gateway"] is None
    got = out["results"][f"{OUTSIDE_IP}:{outside.port}"]
    assert got == {"connected": False, "error": "ENETUNREACH"}, got
