"""The escape battery's fixtures and helpers.

Every attack is a real handler under ``handlers/`` (the whole directory is deployed as the
function's code; each attack is its own function name) that *tries the forbidden thing* and
returns what happened, as data. The tests assert that every attempt failed and that the
daemon still serves an ordinary function afterwards. One daemon per module
(``shared_daemon``); each attack is deployed under its own function name.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from lambdad.client import Client, Invocation
from tests.conftest import DaemonProcess

HANDLERS = Path(__file__).resolve().parent / "handlers"
CALL_TIMEOUT_S = 60.0  # no single request of the battery may hang longer than this
# The reason prefix of a test marked xfail(strict=True) because it found a real hole that
# must be fixed outside the sandbox modules: the marker goes when the fix lands (strict:
# the test then fails as XPASS until it is removed).
HOLE = "known hole, not fixed yet: "


@pytest.fixture(scope="module")
def client(shared_daemon: DaemonProcess) -> Iterator[Client]:
    with shared_daemon.client(timeout=CALL_TIMEOUT_S) as c:
        yield c


def deploy(c: Client, name: str, module: str, **config: Any) -> None:
    """Deploy ``handlers/<module>.py`` as function ``name`` (same code and config: no-op)."""
    config.setdefault("timeout_s", 10)
    c.deploy(name, HANDLERS, handler=f"{module}.handler", **config)


def attack(c: Client, name: str, module: str, event: Any, **config: Any) -> Any:
    """Deploy and invoke an attack that is expected to *return* (its attempts as data)."""
    deploy(c, name, module, **config)
    inv = c.invoke(name, event)
    assert inv.error is None, f"{name}: the attack itself crashed: {inv.error}"
    return inv.result


def succeeded(
    attempts: Mapping[str, Mapping[str, Any] | None], allowed_errnos: Iterable[int] | None = None
) -> dict[str, Any]:
    """The attempts that worked (or failed with an errno outside ``allowed_errnos``)."""
    allowed = set(allowed_errnos) if allowed_errnos is not None else None
    bad = {}
    for what, outcome in attempts.items():
        if outcome is None:
            continue
        if outcome["ok"] or (allowed is not None and outcome["errno"] not in allowed):
            bad[what] = outcome
    return bad


def assert_all_failed(
    attempts: Mapping[str, Mapping[str, Any] | None], allowed_errnos: Iterable[int] | None = None
) -> None:
    bad = succeeded(attempts, allowed_errnos)
    assert not bad, "escape attempts that did not fail as they must:\n" + "\n".join(
        f"  {what}: {outcome}" for what, outcome in bad.items()
    )


def assert_daemon_serves(c: Client) -> None:
    """The daemon still runs an ordinary function, correctly, after the attack."""
    deploy(c, "healthcheck", "echo", timeout_s=5)
    token = uuid.uuid4().hex
    inv: Invocation = c.invoke("healthcheck", {"token": token})
    assert inv.error is None, f"the daemon no longer serves: {inv.error}"
    assert inv.result["echo"] == {"token": token}
    assert inv.result["pid"] == 1 and inv.result["uid"] != 0


# -- the host's view ---------------------------------------------------------------------------


def boot_ticks() -> int:
    """Now, in the unit of a process's start time in /proc/<pid>/stat (clock ticks since boot)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


def processes_in_pidns(inode: int, started_by: int | None = None) -> list[int]:
    """Host pids of the processes in pid namespace ``pid:[inode]`` (that started no later
    than ``started_by``, in boot ticks).

    The kernel reuses a freed namespace's inode number for the next namespace it creates --
    typically the next pool sandbox's -- so "what is left of a killed sandbox" must also be
    "started before it was killed".
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if os.readlink(f"/proc/{entry}/ns/pid") != f"pid:[{inode}]":
                continue
            if started_by is not None:
                with open(f"/proc/{entry}/stat") as f:
                    # Field 22 (starttime); split after the ")" that ends the command name.
                    start = int(f.read().rsplit(")", 1)[1].split()[19])
                if start > started_by:
                    continue
            found.append(int(entry))
    return found


def pidns_from_logs(c: Client, name: str) -> int:
    """The pid-namespace inode a bomb printed (``PIDNS <n>``) before it went off."""
    text, _ = c.logs(name)
    lines = [line for line in text.splitlines() if line.startswith("PIDNS ")]
    assert lines, f"{name} printed no PIDNS line:\n{text[-2000:]}"
    return int(lines[-1].split()[1])
