"""What runs inside a sandbox, and the one registry of runtimes.

:data:`RUNTIMES` maps a runtime name to the module that implements it; each entry is one zygote
and one generic pool. A function's ``runtime`` field is one of :func:`function_names`: an entry's
name or one of its ``aliases`` (Lambda's versioned names: ``provided.al2023``, ``nodejs20.x``,
``python3.11``), which :func:`canonical` maps to the entry. Function validation (which names a
deploy may use, :func:`unavailable` for what this host lacks), the daemon (which zygotes to
start) and the zygote (which module to pre-import and serve) all read this table and nothing
else. A runtime module exposes ``PRELOAD`` (modules the zygote imports before forking) and
``RUNTIME``, an object implementing :class:`sandbox.agent.Runtime` that the sandbox's PID-1
agent drives.

This module imports nothing heavy: the daemon and the validation read it too.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class RuntimeSpec:
    name: str  # the zygote's name, and a function ``runtime`` value
    module: str  # the module the zygote imports: PRELOAD and RUNTIME
    description: str
    aliases: tuple[str, ...] = ()  # other function ``runtime`` values this zygote serves


PYTHON_VERSION: Final = f"python{sys.version_info[0]}.{sys.version_info[1]}"
NODE_VERSIONS: Final = ("nodejs18.x", "nodejs20.x", "nodejs22.x")
PYTHON_VERSIONS: Final = tuple(f"python3.{minor}" for minor in range(9, 14))
# Where a host's node may live: inside a sandbox only these host trees are visible.
NODE_DIRS: Final = ("/usr/bin", "/usr/local/bin", "/bin")

RUNTIMES: Final[dict[str, RuntimeSpec]] = {
    "python3": RuntimeSpec(
        "python3", "sandbox.runtimes.python", "CPython, in-process handler", PYTHON_VERSIONS
    ),
    "provided": RuntimeSpec(
        "provided",
        "sandbox.runtimes.provided",
        "custom runtime: an executable bootstrap speaking the Runtime API",
        ("provided.al2023", "provided.al2"),
    ),
    "nodejs": RuntimeSpec(
        "nodejs",
        "sandbox.runtimes.node",
        "Node.js (the host's node), pre-started processes, Runtime API",
        NODE_VERSIONS,
    ),
}


def names() -> tuple[str, ...]:
    """The zygotes: one per entry."""
    return tuple(RUNTIMES)


def function_names() -> tuple[str, ...]:
    """Every value a function's ``runtime`` may have."""
    return tuple(n for spec in RUNTIMES.values() for n in (spec.name, *spec.aliases))


def spec(name: str) -> RuntimeSpec:
    """Raises KeyError for a runtime nobody registered."""
    return RUNTIMES[name]


def canonical(name: str) -> str:
    """The zygote that serves a function's ``runtime`` (``nodejs20.x`` -> ``nodejs``).

    Raises:
        KeyError: not one of :func:`function_names`.
    """
    if name in RUNTIMES:
        return name
    for entry in RUNTIMES.values():
        if name in entry.aliases:
            return entry.name
    raise KeyError(name)


@functools.cache
def node_binary() -> tuple[str, str] | None:
    """The host's node (path, version like ``v20.20.2``) where a sandbox can see it, or None.

    Runs ``node --version`` once (the answer is cached; the daemon asks at start, off its
    event loop)."""
    for directory in NODE_DIRS:
        path = os.path.join(directory, "node")
        if os.access(path, os.X_OK):
            try:
                out = subprocess.run(
                    [path, "--version"], capture_output=True, timeout=30, check=True
                ).stdout.decode()
            except (OSError, subprocess.SubprocessError):
                continue
            if re.fullmatch(r"v\d+\.\d+\.\d+\S*\s*", out):
                return path, out.strip()
    return None


def host_node_name() -> str | None:
    """``nodejsNN.x`` for the host's node, or None without one."""
    node = node_binary()
    if node is None:
        return None
    return f"nodejs{node[1][1:].split('.')[0]}.x"


def unavailable(name: str) -> str | None:
    """Why this host cannot run functions of runtime ``name`` (None: it can), naming what it
    has instead. ``name`` must be one of :func:`function_names`."""
    zygote = canonical(name)
    if zygote == "nodejs":
        has = host_node_name()
        if has is None:
            return f"{name} needs Node.js, and this host has no node in {', '.join(NODE_DIRS)}"
        if name != "nodejs" and name != has:
            path, version = node_binary() or ("", "")
            return f"{name} is not available on this host: it has {has} ({path} {version})"
    if zygote == "python3" and name not in ("python3", PYTHON_VERSION):
        return f"{name} is not available on this host: it has {PYTHON_VERSION}"
    return None


def available() -> tuple[str, ...]:
    """The zygotes this host can run (the daemon starts these)."""
    return tuple(n for n in RUNTIMES if unavailable(n) is None)
