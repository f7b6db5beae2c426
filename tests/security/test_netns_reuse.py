"""A network namespace never carries one sandbox's traffic to the next (issue 12, point 1).

The zygote used to keep a dead sandbox's network namespace for a later one when it held
nothing but ``lo``. But a namespace outlives its processes in ways that check cannot see:
TIME_WAIT sockets (60 s), counters that are never reset (``/proc/net/snmp``: how many
connections and datagrams the last tenant made) and whatever a socket kept alive past its
sandbox held. Function B's fresh sandboxes saw function A's TIME_WAIT sockets and counters.
Every sandbox now gets a namespace of its own (``sandbox/namespaces.py``).
"""

from __future__ import annotations

import os

import pytest

from lambdad.client import Client
from tests.conftest import wait_for
from tests.security.conftest import assert_daemon_serves, deploy, processes_in_pidns

pytestmark = pytest.mark.root

CONNECTIONS = 40
DATAGRAMS = 500
SANDBOXES_OF_B = 6  # the generic pool is 2 deep (TEST_CONFIG): any recycled one is among these


def test_a_network_namespace_is_never_handed_to_another_sandbox(client: Client) -> None:
    port = 20000 + int.from_bytes(os.urandom(2), "big") % 40000
    token = os.urandom(8).hex()
    base = {"udp_port": port, "token": token}
    deploy(client, "sec-netns-a", "netns")
    deploy(client, "sec-netns-b", "netns")
    left = client.invoke(
        "sec-netns-a",
        {**base, "mode": "leave", "connections": CONNECTIONS, "datagrams": DATAGRAMS},
    )
    assert left.error is None, left.error
    a = left.result
    # Control: A's traces are really there while its namespace lives.
    assert a["snmp"]["Tcp"]["ActiveOpens"] >= CONNECTIONS
    assert a["snmp"]["Udp"]["OutDatagrams"] >= DATAGRAMS
    assert sum(1 for e in a["tcp"] if e[2] == "06") >= CONNECTIONS, "no TIME_WAIT left"
    died = client.invoke("sec-netns-a", {"mode": "die"})
    assert died.error is not None  # the sandbox exited under its invocation
    # Reaped by the zygote: whatever it does with the namespace, it has done it now.
    wait_for(lambda: not processes_in_pidns(a["pidns"]), timeout=30)

    seen = []
    for _ in range(SANDBOXES_OF_B):
        inv = client.invoke("sec-netns-b", {**base, "mode": "observe"})
        assert inv.error is None, inv.error
        assert inv.report is not None and inv.report.cold, "not a fresh sandbox"
        seen.append(inv.result)
        assert client.invoke("sec-netns-b", {"mode": "die"}).error is not None
    for b in seen:
        inherited = {
            "TCP ActiveOpens": b["snmp"]["Tcp"]["ActiveOpens"],
            "UDP OutDatagrams": b["snmp"]["Udp"]["OutDatagrams"],
            "UDP InDatagrams": b["snmp"]["Udp"]["InDatagrams"],
            "TCP sockets": len(b["tcp"]),
            "datagrams received": len(b["received"]),
        }
        assert set(inherited.values()) == {0}, (
            f"a sandbox of B inherited A's network namespace: {inherited}\n{b['sockstat']}"
        )
    assert_daemon_serves(client)
