"""Constants the daemon and the sandbox side must agree on.

A module both sides may import: ``sandbox`` never imports ``lambdad``, and the daemon should
not import the zygote *program* for a number.
"""

from __future__ import annotations

from typing import Final

from sandbox.cgroups.base import CgroupLimits

# The cgroup limits a pooled sandbox gets when it is created (= FunctionConfig's defaults):
# specializing a function that uses the defaults then writes no cgroup file on the request path.
POOL_LIMITS: Final = CgroupLimits(memory_mb=128, pids_max=64)
# A refill of the pool (a sandbox nobody waits for) is set up at the lowest CPU weight, so it
# never takes a core from a sandbox being specialized or serving; it gets its function's
# weight at specialization (one write). ``nice`` alone does not do this: the scheduler weighs
# cgroups against each other first, and every sandbox has a cgroup of its own.
POOL_REFILL_LIMITS: Final = CgroupLimits(memory_mb=128, pids_max=64, cpu_weight=1)
# The zygote's exit status for "I could not start": the daemon must not respawn it.
ZYGOTE_BOOT_ERROR: Final = 3
