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
# The zygote's exit status for "I could not start": the daemon must not respawn it.
ZYGOTE_BOOT_ERROR: Final = 3
