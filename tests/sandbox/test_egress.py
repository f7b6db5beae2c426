"""Tests for sandbox.egress (parent half) and sandbox.netns.configure_egress (child half).

As root, against the real kernel: a "sandbox" here is a child process in its own network
namespace (``unshare --net``) that obeys one-line JSON commands, so it can run the child half and
then try to connect somewhere. The "outside world" is another network namespace joined to the
host by a veth pair (198.51.100.1 on the host, 198.51.100.2 outside) with a TCP server that
answers each connection with the address it sees the client as. The host has no internet, so
this is the only outside there is.

A distinct table and address range (``lambdad_test``, 10.201.0.0/16) keep these tests off the
state of any daemon running on the same host. Every namespace, veth and table is removed even
when a test fails. Nothing sleeps to wait: conditions are polled with a deadline, and every
connection attempt has a timeout.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox.egress import PREFIX, Egress

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
TEST_CIDR = "10.201.0.0/16"
TEST_TABLE = "lambdad_test"
OUTSIDE_HOST_IP = "198.51.100.1"  # the host's end of the link to the outside namespace
OUTSIDE_IP = "198.51.100.2"
DEADLINE_S = 10.0
CONNECT_TIMEOUT_S = 1.0  # a dropped SYN shows up as a timeout: how long a doomed attempt waits


def wait_for(cond: Callable[[], object], what: str, timeout: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.005)


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=DEADLINE_S, check=check)


def link_exists(name: str) -> bool:
    return run("ip", "link", "show", "dev", name, check=False).returncode == 0


def nft_table_exists(table: str) -> bool:
    return run("nft", "list", "table", "inet", table, check=False).returncode == 0


def read_ip_forward() -> str:
    return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()


def other_egress_users(table: str | None = None) -> list[dict[str, Any]]:
    """Live egress users registered by *other* processes (e.g. a daemon someone runs)."""
    from sandbox.egress import _alive

    try:
        reg = json.loads(Path("/run/lambdad/egress.json").read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [
        u
        for u in reg.get("users", [])
        if _alive(u) and u["pid"] != os.getpid() and (table is None or u["table"] == table)
    ]


# -- the outside world ---------------------------------------------------------------------------

# Runs inside the outside namespace. TCP, one line per connection: "PEER" -> the client's address
# as seen here; "PUT k v" -> stores; "GET k" -> the value or an empty line; "SEEN" -> the source
# addresses of the UDP datagrams received on the same port number, comma-separated.
OUTSIDE_SERVER = r"""
import selectors, socket
store, seen = {}, []
srv = socket.socket()
srv.bind(("0.0.0.0", 0))
srv.listen(64)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", srv.getsockname()[1]))
sel = selectors.DefaultSelector()
sel.register(srv, selectors.EVENT_READ)
sel.register(udp, selectors.EVENT_READ)
print(srv.getsockname()[1], flush=True)
while True:
    for key, _ in sel.select():
        if key.fileobj is udp:
            seen.append(udp.recvfrom(2048)[1][0])
            continue
        conn, peer = srv.accept()
        conn.settimeout(5)
        try:
            words = conn.makefile().readline().split()
            if words[:1] == ["PUT"]:
                store[words[1]] = words[2]
                reply = "ok"
            elif words[:1] == ["GET"]:
                reply = store.get(words[1], "")
            elif words[:1] == ["SEEN"]:
                reply = ",".join(seen)
            else:
                reply = peer[0]
            conn.sendall(reply.encode() + b"\n")
        except (OSError, IndexError):
            pass
        finally:
            conn.close()
"""


@dataclass
class OutsideHost:
    """A network namespace standing in for the internet, and its TCP server."""

    netns: str
    host_ifname: str
    port: int
    server: subprocess.Popen[str]

    def ask(self, line: str) -> str:
        """One request to the server, from the host."""
        with socket.create_connection((OUTSIDE_IP, self.port), timeout=DEADLINE_S) as s:
            s.sendall(line.encode() + b"\n")
            return s.makefile().readline().strip()


@contextlib.contextmanager
def outside_host() -> Iterator[OutsideHost]:
    tag = str(os.getpid())
    netns, host_if, peer_if = f"ldt-out-{tag}", f"ldto{tag}", f"ldti{tag}"
    server: subprocess.Popen[str] | None = None
    try:
        run("ip", "netns", "add", netns)
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if, "netns", netns)
        run("ip", "addr", "add", f"{OUTSIDE_HOST_IP}/24", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run("ip", "-n", netns, "addr", "add", f"{OUTSIDE_IP}/24", "dev", peer_if)
        run("ip", "-n", netns, "link", "set", peer_if, "up")
        run("ip", "-n", netns, "link", "set", "lo", "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", OUTSIDE_SERVER],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        port = int(read_line(server.stdout.fileno(), DEADLINE_S))
        outside = OutsideHost(netns, host_if, port, server)
        wait_for(lambda: _reachable(outside), "the outside server answers the host")
        yield outside
    finally:
        if server is not None:
            server.kill()
            server.wait(DEADLINE_S)
            if server.stdout is not None:
                server.stdout.close()
        run("ip", "link", "del", host_if, check=False)
        run("ip", "netns", "del", netns, check=False)


def _reachable(outside: OutsideHost) -> bool:
    try:
        return outside.ask("PEER") == OUTSIDE_HOST_IP  # the host itself: no NAT involved
    except OSError:
        return False


def read_line(fd: int, timeout: float) -> str:
    """One line from a pipe, or AssertionError after ``timeout`` (never blocks longer)."""
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"no line within {timeout} s (got {buf!r})")
            chunk = os.read(fd, 1)
            if not chunk:
                raise AssertionError(f"pipe closed (got {buf!r})")
            buf += chunk
    return buf.decode().strip()


# -- a stand-in sandbox: a process in its own network namespace ----------------------------------

SANDBOX_CHILD = r"""
import errno, json, socket, subprocess, sys, threading, time
from sandbox import netns

def connect(host, port, connect_timeout, line="PEER", source=None, family=socket.AF_INET):
    # "ok" means the TCP handshake completed, whether or not the listener ever answers.
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.settimeout(connect_timeout)
        if source:
            s.bind((source, 0))
        s.connect(socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)[0][4])
    except socket.timeout:
        s.close()
        return {"ok": False, "error": "timeout"}
    except OSError as exc:
        s.close()
        return {"ok": False, "error": errno.errorcode.get(exc.errno, str(exc))}
    try:
        s.sendall(line.encode() + b"\n")
        return {"ok": True, "reply": s.makefile().readline().strip()}
    except OSError as exc:
        return {"ok": True, "reply": None, "error": repr(exc)}
    finally:
        s.close()

def datagram(host, port, source=None):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        if source:
            s.bind((source, 0))
        s.sendto(b"hello", (host, port))
    return {"ok": True}

listeners = {}
def listen(port):
    srv = socket.socket()
    srv.bind(("0.0.0.0", port))
    srv.listen(8)
    peers = listeners[srv.getsockname()[1]] = []
    def serve():
        while True:
            conn, peer = srv.accept()
            peers.append(peer[0])
            conn.sendall(b"hello\n")
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    return {"port": srv.getsockname()[1]}

for line in sys.stdin:
    req = json.loads(line)
    op = req.pop("op")
    try:
        if op == "configure":
            t = time.perf_counter_ns()
            netns.configure_egress(req["cfg"])
            out = {"us": (time.perf_counter_ns() - t) // 1000}
        elif op == "connect":
            out = connect(**req)
        elif op == "datagram":
            out = datagram(**req)
        elif op == "links":
            out = {"links": [name for _, name in socket.if_nameindex()]}
        elif op == "listen":
            out = listen(req["port"])
        elif op == "peers":
            out = {"peers": listeners[req["port"]]}
        elif op == "sh":
            p = subprocess.run(req["argv"], capture_output=True, text=True, timeout=10)
            out = {"rc": p.returncode, "out": p.stdout + p.stderr}
        else:
            out = {"error": "unknown op " + op}
    except Exception as exc:
        out = {"exception": repr(exc)}
    print(json.dumps(out), flush=True)
"""


class NetnsChild:
    """A process in a new network namespace that runs commands for the test."""

    def __init__(self) -> None:
        self.cfg: dict[str, str] = {}  # what attach() returned, once configured
        self.proc = subprocess.Popen(
            ["unshare", "--net", sys.executable, "-c", SANDBOX_CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.pid = self.proc.pid  # unshare execs python: the same process, in its new netns
        # It is ours to attach to once its netns differs from ours.
        own = os.stat("/proc/self/ns/net").st_ino
        wait_for(lambda: self._netns_inode() not in (None, own), "the child unshared its netns")
        assert self.request("links")["links"] == ["lo"]

    def _netns_inode(self) -> int | None:
        try:
            return os.stat(f"/proc/{self.pid}/ns/net").st_ino
        except FileNotFoundError:
            return None

    def request(self, op: str, timeout: float = DEADLINE_S, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        out: dict[str, Any] = json.loads(read_line(self.proc.stdout.fileno(), timeout))
        assert "exception" not in out, out
        return out

    def connect(
        self, host: str, port: int, timeout: float = CONNECT_TIMEOUT_S, **args: Any
    ) -> dict[str, Any]:
        """Try a TCP connection from inside; the outcome as data. ``timeout`` bounds an attempt
        expected to fail (a dropped SYN); pass a longer one for an attempt expected to work."""
        return self.request("connect", host=host, port=port, connect_timeout=timeout, **args)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(DEADLINE_S)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def egress() -> Iterator[Egress]:
    e = Egress(TEST_CIDR, TEST_TABLE)
    try:
        e.setup_host()
        yield e
    finally:
        e.teardown_host()


@pytest.fixture(scope="module")
def outside() -> Iterator[OutsideHost]:
    with outside_host() as o:
        yield o


@pytest.fixture
def children() -> Iterator[Callable[[], NetnsChild]]:
    made: list[NetnsChild] = []

    def make() -> NetnsChild:
        child = NetnsChild()
        made.append(child)
        return child

    try:
        yield make
    finally:
        for child in made:
            child.close()


def attached_child(egress: Egress, make: Callable[[], NetnsChild], sid: str) -> NetnsChild:
    child = make()
    cfg = egress.attach(sid, child.pid)
    child.request("configure", cfg=cfg)
    child.cfg = cfg
    return child


# -- host set-up ---------------------------------------------------------------------------------


def test_host_setup_and_teardown_are_idempotent() -> None:
    before = read_ip_forward()
    e = Egress(TEST_CIDR, TEST_TABLE)
    try:
        e.setup_host()
        e.setup_host()  # re-applies the same table, atomically
        assert read_ip_forward() == "1"
        listing = run("nft", "list", "table", "inet", TEST_TABLE).stdout
        assert listing.count("masquerade") == 1
        assert f"ip saddr {TEST_CIDR}" in listing
        assert 'iifname "lde*" oifname "lde*" drop' in listing
    finally:
        e.teardown_host()
    e.teardown_host()
    assert not nft_table_exists(TEST_TABLE)
    if not other_egress_users():  # a daemon running meanwhile keeps forwarding on, rightly
        assert read_ip_forward() == before


def test_teardown_keeps_the_table_while_another_daemon_uses_it() -> None:
    first, second = Egress(TEST_CIDR, TEST_TABLE), Egress(TEST_CIDR, TEST_TABLE)
    try:
        first.setup_host()
        second.setup_host()
        first.teardown_host()
        assert nft_table_exists(TEST_TABLE)
        assert read_ip_forward() == "1"
    finally:
        first.teardown_host()
        second.teardown_host()
    assert not nft_table_exists(TEST_TABLE)


def test_setup_removes_the_veths_of_a_dead_daemon() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"{PREFIX}fff0"  # beyond this test's blocks: the allocator never makes it
    try:
        run("ip", "link", "add", name, "group", str(dead.pid), "type", "veth",
            "peer", "name", "ldtleft")  # fmt: skip
        e = Egress(TEST_CIDR, TEST_TABLE)
        try:
            e.setup_host()
            assert not link_exists(name)
        finally:
            e.teardown_host()
    finally:
        run("ip", "link", "del", name, check=False)


def test_setup_keeps_the_veths_of_a_live_daemon() -> None:
    name = f"{PREFIX}fff1"
    try:
        run("ip", "link", "add", name, "group", str(os.getppid()), "type", "veth",
            "peer", "name", "ldtlive")  # fmt: skip
        e = Egress(TEST_CIDR, TEST_TABLE)
        try:
            e.setup_host()
            assert link_exists(name)
        finally:
            e.teardown_host()
    finally:
        run("ip", "link", "del", name, check=False)


# -- attach, the child half, and what gets through -----------------------------------------------


def test_attach_and_configure_give_the_sandbox_a_working_egress(
    egress: Egress, outside: OutsideHost, children: Callable[[], NetnsChild]
) -> None:
    child = children()
    t = time.perf_counter()
    cfg = egress.attach("sb-one", child.pid)
    attach_ms = (time.perf_counter() - t) * 1000
    host_if = egress.attached["sb-one"]
    assert len(host_if) <= 15 and host_if.startswith(PREFIX)
    net = ipaddress.ip_network(TEST_CIDR)
    address = ipaddress.ip_interface(cfg["address"])
    assert address.network.prefixlen == 30 and address.network.subnet_of(net)  # type: ignore[arg-type]
    assert ipaddress.ip_address(cfg["gateway"]) in address.network
    assert child.request("links")["links"] == ["lo", cfg["ifname"]]

    configure_us = child.request("configure", cfg=cfg)["us"]
    print(f"attach {attach_ms:.2f} ms, configure_egress {configure_us} us")
    routes = child.request("sh", argv=["ip", "-4", "route"])["out"]
    assert f"default via {cfg['gateway']} dev {cfg['ifname']}" in routes
    assert str(address.network) in routes

    got = child.connect(OUTSIDE_IP, outside.port, timeout=DEADLINE_S / 2)
    assert got == {"ok": True, "reply": OUTSIDE_HOST_IP}, "masqueraded as the host"


def test_a_sandbox_cannot_reach_the_host(
    egress: Egress, outside: OutsideHost, children: Callable[[], NetnsChild]
) -> None:
    child = attached_child(egress, children, "sb-host")
    gateway = child.cfg["gateway"]
    with (
        socket.create_server(("0.0.0.0", 0)) as v4,
        socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True) as v6,
    ):
        v4.settimeout(0)
        port4, port6 = v4.getsockname()[1], v6.getsockname()[1]
        eth0 = host_addresses()
        targets = {gateway, OUTSIDE_HOST_IP, "127.0.0.1", *eth0}
        for target in sorted(targets):
            for port in (port4, port6):
                got = child.connect(target, port)
                assert not got["ok"], f"sandbox reached the host at {target}:{port}"
        # IPv6 to the host end's link-local address (the host listens dual-stack on ::), once
        # both ends have finished duplicate address detection, so the attempt is a real one.
        host_if, inner_if = egress.attached["sb-host"], child.cfg["ifname"]
        ll = wait_for(lambda: link_local(host_if), f"{host_if} has a link-local address")
        wait_for(
            lambda: link_local(inner_if, child),
            f"the sandbox's {inner_if} has a link-local address",
        )
        got = child.connect(f"{ll}%{inner_if}", port6, family=int(socket.AF_INET6))
        assert not got["ok"], f"sandbox reached the host over IPv6 at {ll}"
        with contextlib.suppress(BlockingIOError):
            conn, peer = v4.accept()
            conn.close()
            raise AssertionError(f"a connection from {peer} reached the host's listener")


def test_sandboxes_cannot_reach_each_other(
    egress: Egress, outside: OutsideHost, children: Callable[[], NetnsChild]
) -> None:
    a = attached_child(egress, children, "sb-a")
    b = attached_child(egress, children, "sb-b")
    a_ip = a.cfg["address"].split("/")[0]
    port = a.request("listen", port=0)["port"]
    # Control: the host may open connections into a sandbox (replies are "established").
    with socket.create_connection((a_ip, port), timeout=DEADLINE_S) as s:
        assert s.makefile().readline() == "hello\n"
    got = b.connect(a_ip, port)
    assert not got["ok"], f"sandbox b reached sandbox a: {got}"
    assert a.request("peers", port=port)["peers"] == [a.cfg["gateway"]]  # only the control


def test_a_spoofed_source_address_is_dropped(
    egress: Egress, outside: OutsideHost, children: Callable[[], NetnsChild]
) -> None:
    """A sandbox root enough to add an address (the handler never is: no capabilities) still
    cannot send from it: the host's reverse-path check drops it before forwarding."""
    child = attached_child(egress, children, "sb-spoof")
    ifname = child.cfg["ifname"]
    spoofed = "192.0.2.99"  # would leave un-masqueraded: it is not in the sandbox range
    out = child.request("sh", argv=["ip", "addr", "add", f"{spoofed}/32", "dev", ifname])
    assert out["rc"] == 0, out
    child.request("datagram", host=OUTSIDE_IP, port=outside.port, source=spoofed)
    child.request("datagram", host=OUTSIDE_IP, port=outside.port)  # control, sent after it
    seen = wait_for(lambda: outside.ask("SEEN"), "the control datagram arrives").split(",")
    assert OUTSIDE_HOST_IP in seen and spoofed not in seen, seen


def test_detach_frees_the_block_and_deletes_the_veth(
    egress: Egress, children: Callable[[], NetnsChild]
) -> None:
    child = children()
    egress.attach("sb-gone", child.pid)
    host_if = egress.attached["sb-gone"]
    assert egress.blocks_in_use == 1
    egress.detach("sb-gone")
    egress.detach("sb-gone")  # twice: ignored
    egress.detach("never-attached")
    wait_for(lambda: egress.blocks_in_use == 0, "the block is released")
    assert not link_exists(host_if)
    assert egress.attached == {}
    assert child.request("links")["links"] == ["lo"]  # the pair went as a whole


def test_the_veth_goes_with_the_sandbox(egress: Egress, children: Callable[[], NetnsChild]) -> None:
    child = children()
    egress.attach("sb-dies", child.pid)
    host_if = egress.attached["sb-dies"]
    child.close()
    wait_for(lambda: not link_exists(host_if), "the kernel removes the pair with the netns")
    egress.detach("sb-dies")  # ENODEV by now: fine
    wait_for(lambda: egress.blocks_in_use == 0, "the block is released")


def test_attach_to_a_dead_process_fails_cleanly(egress: Egress) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    with pytest.raises(OSError, match=f"netns {dead.pid}"):
        egress.attach("sb-dead", dead.pid)
    assert egress.blocks_in_use == 0 and egress.attached == {}
    assert not [n for _, n in socket.if_nameindex() if n.startswith(PREFIX) and _ours(n)]


def _ours(name: str) -> bool:
    return bool(int(Path(f"/sys/class/net/{name}/netdev_group").read_text()) == os.getpid())


def test_attach_before_setup_is_an_error() -> None:
    with pytest.raises(OSError, match="not set up"):
        Egress(TEST_CIDR, TEST_TABLE).attach("sb", os.getpid())


def test_teardown_deletes_veths_still_attached(
    children: Callable[[], NetnsChild],
) -> None:
    e = Egress(TEST_CIDR, TEST_TABLE)
    try:
        e.setup_host()
        child = children()
        e.attach("sb-left", child.pid)
        host_if = e.attached["sb-left"]
    finally:
        e.teardown_host()
    assert not link_exists(host_if)
    with pytest.raises(OSError, match="not set up"):
        e.attach("sb-after", child.pid)
    e.detach("sb-left")  # after teardown: ignored


def host_addresses() -> list[str]:
    """The host's IPv4 addresses but loopback's and sandbox gateways (tested on their own)."""
    out = run("ip", "-4", "-o", "addr", "show").stdout
    return [
        fields[3].split("/")[0]
        for fields in (line.split() for line in out.splitlines())
        if fields[1] != "lo" and not fields[1].startswith(PREFIX)
    ]


def link_local(ifname: str, inside: NetnsChild | None = None) -> str | None:
    """The interface's usable (no longer tentative) IPv6 link-local address, if any."""
    argv = ["ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link"]
    out = inside.request("sh", argv=argv)["out"] if inside else run(*argv).stdout
    for line in out.splitlines():
        if "tentative" not in line:
            return line.split()[3].split("/")[0]
    return None
