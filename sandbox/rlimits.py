"""Resource limits: a second line of defence behind the cgroup (child half)."""

from __future__ import annotations

import resource
from dataclasses import dataclass

# The most processes and threads one sandbox may have, whatever its function asks for (Lambda's
# own quota for an execution environment). pids.max is the function's pids_max; a daemon that
# accepts more (deploy allows 4096, 12% of a default pid_max of 32,768) is held here, because
# sandbox uids are per sandbox and RLIMIT_NPROC counts a uid's tasks (issue 12, point 3). The
# budget *across* sandboxes is the daemon's: lambdad/hostbudget.py.
MAX_NPROC = 1024
# Bytes of POSIX message queues the sandbox uid may hold: the kernel's default, set explicitly
# so that it never depends on what the zygote inherited. Queues live in the sandbox's own IPC
# namespace (fs.mqueue.queues_max, 256, is per namespace), so neither limit is shared.
MSGQUEUE_BYTES = 819_200
# A function template's (sandbox/template.py): its copies share its uid, and RLIMIT_NPROC is
# counted per uid up the user-namespace chain against the template's limit, so a template
# limited to pids_max would cap *all* its copies together at pids_max. The template's tasks are
# bounded by its cgroup's pids.max; each copy sets its own RLIMIT_NPROC (its own user namespace
# counts it alone) and has its own pids.max. The template keeps the hard limit it inherited.
TEMPLATE_NPROC = -2


@dataclass(frozen=True)
class Rlimits:
    nofile: int = 1024  # open files (Lambda: 1024)
    fsize_bytes: int = 512 * 1024 * 1024  # largest file the handler may write (= tmp size)
    nproc: int = 64  # processes of the sandbox uid (uids are per sandbox, so this is per sandbox)
    core: int = 0  # never dump core
    msgqueue_bytes: int = MSGQUEUE_BYTES  # POSIX message queue bytes of the sandbox uid


def apply(limits: Rlimits) -> None:
    """Set hard and soft limits; hard limits cannot be raised again without privilege.

    ``nproc`` is capped at :data:`MAX_NPROC`.
    """
    for what, value in (
        (resource.RLIMIT_NOFILE, limits.nofile),
        (resource.RLIMIT_FSIZE, limits.fsize_bytes),
        (
            resource.RLIMIT_NPROC,
            resource.getrlimit(resource.RLIMIT_NPROC)[1]
            if limits.nproc == TEMPLATE_NPROC
            else min(limits.nproc, MAX_NPROC),
        ),
        (resource.RLIMIT_CORE, limits.core),
        (resource.RLIMIT_MSGQUEUE, limits.msgqueue_bytes),
    ):
        try:
            resource.setrlimit(what, (value, value))
        except (ValueError, OSError) as exc:
            raise OSError(f"setrlimit({what}, {value}): {exc}") from exc
