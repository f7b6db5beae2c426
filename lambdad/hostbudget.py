"""Host-wide kernel counters budgeted across all live sandboxes, as pure logic (issue 12, point 3).

A sandbox's own limits (cgroup ``pids.max``, ``RLIMIT_NPROC``, ``RLIMIT_NOFILE``) bound what *one*
sandbox takes; they say nothing of the sum. ``kernel.pid_max`` (32,768 on a default kernel) is
shared by the host and every sandbox: nine warm sandboxes of a function deployed with
``pids_max = 4096`` could hold all of it, and then nothing on the host can fork. So the daemon
books every specialized sandbox's ``pids_max`` against a share of the host's ``pid_max`` (and
``threads-max``), exactly as it books ``memory_mb`` against its memory budget: when a cold start
does not fit, idle sandboxes are retired, least recently used first, and only if that cannot
make room is the invocation throttled (``TooManyRequests``).

Nothing here touches the system except :meth:`HostLimits.read`; the daemon supplies what is
live (:class:`Claim`) and applies the plan :func:`make_room` returns.

Hook (the daemon's ``_make_room``, called at each cold start): replace its body by ::

    claims = [Claim(s.id, s.memory_mb, s.pids_max, s in st.idle, s.last_used)
              for st in self.functions.values() for s in st.sandboxes]
    for key in make_room(claims, cfg.memory_mb, cfg.pids_max, self.budget):
        ...retire the idle sandbox ``key`` (as today's loop does)

with ``self.budget = Budget(memory_mb=self.memory_budget_mb,
pids=pids_budget(HostLimits.read()))`` built once at start, ``sandbox.pids_max = cfg.pids_max``
recorded where the cold start records ``sandbox.memory_mb`` (the sandbox must be in
``st.sandboxes`` from then on, as it is today, so that a cold start in flight is counted), and
deploy's ``pids_max`` bound (``lambdad/functions.py``, with its test in
``tests/lambdad/test_functions.py``) set to :data:`MAX_PIDS_PER_SANDBOX` instead of 4096.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from lambdad.errors import TooManyRequests
from lambdad.scheduler import ACCOUNT_EXCEEDED

# The most tasks (processes + threads) one sandbox may have: Lambda's own quota per execution
# environment. The sandbox enforces it too (sandbox/rlimits.py: MAX_NPROC, RLIMIT_NPROC).
MAX_PIDS_PER_SANDBOX: Final = 1024
# The share of min(pid_max, threads-max) that sandboxes may book together; the rest is the
# host's (its services, the daemon, the zygotes, an admin's shell).
DEFAULT_SHARE: Final = 0.5


@dataclass(frozen=True)
class HostLimits:
    """The host's kernel-wide limits that sandboxes draw on."""

    pid_max: int  # kernel.pid_max: highest pid + 1, i.e. how many tasks can exist at once
    threads_max: int  # kernel.threads-max: tasks the kernel will create at all

    @classmethod
    def read(cls, proc_sys: str = "/proc/sys") -> HostLimits:
        """Read them from ``/proc/sys``. Raises OSError or ValueError if unreadable."""

        def value(name: str) -> int:
            with open(f"{proc_sys}/{name}") as f:
                return int(f.read().split()[0])

        return cls(pid_max=value("kernel/pid_max"), threads_max=value("kernel/threads-max"))


def pids_budget(limits: HostLimits, share: float = DEFAULT_SHARE) -> int:
    """How many tasks all specialized sandboxes together may be allowed (sum of pids_max)."""
    if not 0 < share < 1:
        raise ValueError(f"share must be between 0 and 1, got {share}")
    return int(min(limits.pid_max, limits.threads_max) * share)


@dataclass(frozen=True)
class Budget:
    """What specialized sandboxes may book together."""

    memory_mb: int  # the daemon's memory budget
    pids: int  # from pids_budget()


@dataclass(frozen=True)
class Claim:
    """What one live, specialized sandbox holds."""

    key: str  # the sandbox's id
    memory_mb: int
    pids: int  # its function's pids_max (= its cgroup's pids.max)
    idle: bool  # may be retired to make room
    last_used: float  # any monotonic order: the least recently used idle one goes first


def make_room(claims: Iterable[Claim], memory_mb: int, pids: int, budget: Budget) -> list[str]:
    """The idle sandboxes to retire (least recently used first) so that a new sandbox of
    ``memory_mb`` and ``pids`` fits in ``budget``; empty when it fits already.

    Raises:
        TooManyRequests: (``reason = ConcurrentInvocationLimitExceeded``) even retiring every
            idle sandbox would not make room; the message names the exhausted budget.
    """
    claims = list(claims)
    used_mb = sum(c.memory_mb for c in claims)
    used_pids = sum(c.pids for c in claims)

    def fits() -> bool:
        return used_mb + memory_mb <= budget.memory_mb and used_pids + pids <= budget.pids

    plan: list[str] = []
    idle = sorted((c for c in claims if c.idle), key=lambda c: c.last_used)
    for claim in idle:
        if fits():
            break
        plan.append(claim.key)
        used_mb -= claim.memory_mb
        used_pids -= claim.pids
    if fits():
        return plan
    if used_mb + memory_mb > budget.memory_mb:
        what = f"memory budget of {budget.memory_mb} MB"
    else:
        what = f"process budget of {budget.pids} tasks (a share of the host's pid_max)"
    raise TooManyRequests(f"Rate Exceeded: {what} is in use", reason=ACCOUNT_EXCEEDED)
