"""Network namespaces are recycled between sandboxes (their teardown is slow) — and a
recycled one carries nothing of its previous tenant."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import DaemonProcess, write_function

pytestmark = pytest.mark.root

TENANT = """
import os, socket

KEEP = []

def handler(event, context):
    ino = os.stat("/proc/self/ns/net").st_ino
    names = [n for _, n in socket.if_nameindex()]
    # Leave things behind: a TCP listener and a bound UDP port (closed only by our death).
    tcp = socket.socket()
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", 40123))
    tcp.listen()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 40124))
    KEEP.extend([tcp, udp])
    return {"netns": ino, "interfaces": names}
"""


def test_a_recycled_network_namespace_is_clean(daemon: DaemonProcess, tmp_path: Path) -> None:
    code = write_function(tmp_path / "tenant", TENANT)
    seen: list[int] = []
    with daemon.client() as c:
        c.deploy("tenant", code)
        for _ in range(12):
            # Each invocation gets a fresh sandbox and retires it; binding the same ports
            # again proves the previous tenant's sockets did not survive in the namespace.
            inv = c.invoke("tenant", {}, force_cold=True)
            assert inv.error is None, inv.error
            assert inv.result["interfaces"] == ["lo"]
            seen.append(inv.result["netns"])
    # Namespaces were reused (not one new namespace per sandbox), yet every tenant could bind
    # the ports its predecessor held.
    assert len(set(seen)) < len(seen)
