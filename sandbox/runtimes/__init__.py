"""What runs inside a sandbox, and the one registry of runtimes.

:data:`RUNTIMES` maps a function's ``runtime`` name to the module that implements it. Function
validation (which names a deploy may use), the daemon (which zygotes to start) and the zygote
(which module to pre-import and serve) all read this table and nothing else. A runtime module
exposes ``PRELOAD`` (modules the zygote imports before forking), ``RUNTIME``, an object
implementing :class:`sandbox.agent.Runtime` that the sandbox's PID-1 agent drives, and
``sandbox_layout()``: what of the host its sandboxes see (read-only binds, masked directories,
the host -> sandbox path map; python: ``sandbox/runtimes/python_layout.py``). It may define
``prepare_zygote(path_map)``, run once in the zygote after the preloads (when sandboxes have a
private root), for work every sandbox would otherwise redo on its own copied pages.

This module imports nothing heavy: the daemon and the validation read it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class RuntimeSpec:
    name: str  # what a function's ``runtime`` field says
    module: str  # the module the zygote imports: PRELOAD and RUNTIME
    description: str


RUNTIMES: Final[dict[str, RuntimeSpec]] = {
    "python3": RuntimeSpec("python3", "sandbox.runtimes.python", "CPython, in-process handler"),
}


def names() -> tuple[str, ...]:
    return tuple(RUNTIMES)


def spec(name: str) -> RuntimeSpec:
    """Raises KeyError for a runtime nobody registered."""
    return RUNTIMES[name]
