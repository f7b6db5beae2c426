"""Metering a function cannot forge (issue 12 point 4).

Each attack (``handlers/clock.py``) sleeps 300 ms of real time and then makes the runtime
measure, or say, 10 us: a patched ``time.monotonic_ns``, the runtime's start time rewritten in
its own frame with ctypes, its message constructor replaced, or a forged ``result`` frame on
fd 3. Before the fix each was billed 1 ms. The REPORT must still say at least the work's
duration less the link's slack (``lambdad.metering.LINK_SLACK_MS``), and never more than the
caller waited: the daemon bounds the sandbox's claim by its own round trip.
"""

from __future__ import annotations

import time

import pytest

from lambdad.client import Client
from lambdad.metering import LINK_SLACK_MS, link_slack_ms
from tests.conftest import wait_for
from tests.security.conftest import assert_daemon_serves, deploy

pytestmark = pytest.mark.root

WORK_MS = 300


@pytest.mark.parametrize("mode", ["patch", "frame", "encoder", "forge"])
def test_a_handler_cannot_shorten_its_billed_duration(client: Client, mode: str) -> None:
    name = f"sec-clock-{mode}"
    deploy(client, name, "clock", timeout_s=5)
    # Cold, then warm (the patches persist in a warm sandbox). A forged frame is taken as the
    # answer and the runtime's own, which follows, costs the sandbox: once is enough.
    for attempt in range(1 if mode == "forge" else 2):
        began = time.monotonic()
        inv = client.invoke(name, {"mode": mode, "work_ms": WORK_MS})
        waited_ms = (time.monotonic() - began) * 1000
        report = inv.report
        assert report is not None
        if mode == "forge":
            assert inv.result == {"forged": True}
            wait_for(lambda: client.stats(name)["sandboxes"]["live"] == 0, timeout=10)
        else:
            assert inv.error is None, inv.error
            assert inv.result["work_ms"] >= WORK_MS
            if mode == "encoder" and attempt == 1:
                # The attack reached the runtime: its first answer went out through the forger.
                assert inv.result["forged_before"] >= 1, inv.result
        floor = WORK_MS - link_slack_ms(len(b'{"forged": true}') + 100)
        assert report.duration_ms >= floor, (attempt, report)
        assert report.billed_ms >= WORK_MS - LINK_SLACK_MS, (attempt, report)
        assert report.duration_ms <= waited_ms, (attempt, report, waited_ms)
    assert_daemon_serves(client)


def test_init_duration_cannot_be_shortened_either(client: Client) -> None:
    """Init is billed too: an import that sleeps and then rewrites the agent's start time."""
    deploy(client, "sec-clock-init", "clockinit", timeout_s=5)
    inv = client.invoke("sec-clock-init", {})
    assert inv.error is None, inv.error
    assert inv.report is not None and inv.report.init_ms is not None
    assert inv.result["forged"], inv.result  # the attack did reach the agent's variable
    assert inv.report.init_ms >= WORK_MS - LINK_SLACK_MS, inv.report
