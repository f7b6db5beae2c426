"""Reserved concurrency cannot starve the other tenants (issue 12, point 8).

The attack: ``deploy --concurrency 100000`` used to carve the whole global limit out for one
function, so every unreserved function — warm ones included — got ``TooManyRequests``.
"""

from __future__ import annotations

import pytest

from lambdad.errors import InvalidParameterValue
from tests.conftest import DaemonProcess, write_function

pytestmark = pytest.mark.root


def test_a_reservation_that_starves_the_others_is_refused(shared_daemon: DaemonProcess, tmp_path):
    code = write_function(tmp_path / "fn", "def handler(e, c):\n    return 'ok'\n")
    with shared_daemon.client() as c:
        c.deploy("bystander", str(code))
        assert c.invoke("bystander", {}).result == "ok"
        total = c.stats()["global_concurrency_limit"]
        keep = min(100, total // 2)
        with pytest.raises(InvalidParameterValue) as info:
            c.deploy("greedy", str(code), concurrency=100_000)
        assert info.value.details["field"] == "concurrency"
        assert info.value.details["limit"] == total - keep
        with pytest.raises(InvalidParameterValue):
            c.deploy("greedy", str(code), concurrency=total - keep + 1)
        c.deploy("greedy", str(code), concurrency=total - keep)  # exactly what may be reserved
        # A second function may reserve only what the first left.
        with pytest.raises(InvalidParameterValue, match="at most 0 can be reserved"):
            c.deploy("greedy2", str(code), concurrency=1)
        # The unreserved function, warm, still runs.
        inv = c.invoke("bystander", {})
        assert inv.result == "ok" and not inv.report.cold
        # Raising its own reservation within what is left is fine; lowering it frees room.
        c.deploy("greedy", str(code), concurrency=1)
        c.deploy("greedy2", str(code), concurrency=2)
        c.delete("greedy")
        c.delete("greedy2")
