"""kernel.pid_max is shared by the host and every sandbox (issue 12, point 3).

The attack: a tenant deploys the largest ``pids_max`` it may and scales out until its sandboxes'
task limits add up to the host's whole ``pid_max`` — then nothing on the host could fork. The
daemon books every specialized sandbox's ``pids_max`` against half of the host's tasks
(``lambdad/hostbudget.py``), so the scale-out is throttled first, with a message that says why,
while a small function of another tenant still runs.
"""

from __future__ import annotations

import asyncio

import pytest

from lambdad.client import AsyncClient, Client
from lambdad.errors import InvalidParameterValue, TooManyRequests
from lambdad.hostbudget import MAX_PIDS_PER_SANDBOX, HostLimits, pids_budget
from lambdad.testing import wait_for
from tests.conftest import make_daemon, write_function

pytestmark = pytest.mark.root

# Holds its sandbox busy until a second before its timeout, then answers.
HOLD = """
import time
def handler(event, context):
    while context.get_remaining_time_in_millis() > 1000:
        time.sleep(0.01)
    return "held"
"""


def test_pids_max_above_the_per_sandbox_quota_is_refused(tmp_path):
    d = make_daemon(str(tmp_path))
    d.start()
    try:
        code = write_function(tmp_path / "fn", "def handler(e, c):\n    return 1\n")
        with d.client() as c, pytest.raises(InvalidParameterValue, match="pids_max"):
            c.deploy("greedy", str(code), pids_max=MAX_PIDS_PER_SANDBOX * 4)
    finally:
        d.stop()


def test_scale_out_stops_at_the_host_task_budget_and_others_still_run(tmp_path):
    budget = pids_budget(HostLimits.read())
    # Just under the quota, so that the scale-out leaves less than one more sandbox's worth
    # but more than a default function's 64 tasks (on a default pid_max: 16 x 1000 of 16384).
    pids = MAX_PIDS_PER_SANDBOX - 24
    fits = budget // pids
    assert budget - fits * pids >= 64, "choose another pids_max for this host's budget"
    if fits > 40:
        pytest.fail(f"this host's task budget ({budget}) needs {fits} sandboxes: test too slow")
    d = make_daemon(str(tmp_path), "[daemon]\npool_size = 2\nqueue_timeout_s = 0.2\n")
    d.start()
    try:
        hold = write_function(tmp_path / "hold", HOLD)
        small = write_function(tmp_path / "small", "def handler(e, c):\n    return 'ok'\n")
        with d.client() as c:
            c.deploy("hog", str(hold), pids_max=pids, timeout_s=15)
            c.deploy("small", str(small))

        async def scale_out() -> tuple[list[object], object, object]:
            async with AsyncClient(d.socket) as ac:
                held = [asyncio.ensure_future(ac.invoke("hog", {})) for _ in range(fits)]
                with Client(d.socket) as c:
                    await asyncio.to_thread(
                        wait_for, lambda: c.stats("hog")["sandboxes"]["warm"] == fits, 60
                    )
                try:
                    await ac.invoke("hog", {})
                    over: object = None
                except TooManyRequests as exc:
                    over = exc
                other = await ac.invoke("small", {})  # its 64 tasks still fit
                results = await asyncio.gather(*held, return_exceptions=True)
            return results, over, other

        results, over, other = asyncio.run(scale_out())
        assert isinstance(over, TooManyRequests), over
        assert "process budget" in over.message and over.details["reason"]
        assert getattr(other, "result", None) == "ok", other
        assert all(getattr(r, "result", None) == "held" for r in results), results
    finally:
        d.stop()
