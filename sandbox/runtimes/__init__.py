"""What runs inside a sandbox, and the one registry of runtimes.

:data:`RUNTIMES` maps a runtime name to the module that implements it; each entry is one zygote
and one generic pool. A function's ``runtime`` field is one of :func:`function_names`: an entry's
name or one of its ``aliases`` (Lambda's versioned names: ``provided.al2023``, ``nodejs20.x``,
``python3.11``), which :func:`canonical` maps to the entry. Function validation (which names a
deploy may use, :func:`unavailable` for what this host lacks), the daemon (which zygotes to
start) and the zygote (which module to pre-import and serve) all read this table and nothing
else. A runtime module exposes ``PRELOAD`` (modules the zygote imports before forking) and
``RUNTIME``, an object implementing :class:`sandbox.agent.Runtime` that the sandbox's PID-1
agent drives, and ``sandbox_layout()``: what of the host its sandboxes see (read-only binds,
masked directories, the host -> sandbox path map; python: ``sandbox/runtimes/python_layout.py``).
It may define ``prepare_zygote(path_map)``, run once in the zygote after the preloads (when
sandboxes have a private root), for work every sandbox would otherwise redo on its own copied
pages.

This module imports nothing heavy: the daemon and the validation read it too.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import site
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
# The sandbox agent's own code needs this much Python (dataclass slots, ``X | Y`` types).
AGENT_MIN_PYTHON: Final = (3, 10)
PYENV_ROOT: Final = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
# Started with the daemon; the others when a function first needs them (a host that runs
# only Python pays for no node process).
EAGER: Final = ("python3",)

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
    """The zygotes: one per entry, and one per other Python interpreter the host has."""
    return (*RUNTIMES, *python_interpreters())


def function_names() -> tuple[str, ...]:
    """Every value a function's ``runtime`` may have."""
    return tuple(n for spec in RUNTIMES.values() for n in (spec.name, *spec.aliases))


def spec(name: str) -> RuntimeSpec:
    """Raises KeyError for a runtime nobody registered."""
    if name in RUNTIMES:
        return RUNTIMES[name]
    if name in PYTHON_VERSIONS:  # another interpreter's zygote (it runs this module too)
        return RuntimeSpec(name, "sandbox.runtimes.python", f"CPython {name[6:]}, in-process")
    raise KeyError(name)


def canonical(name: str) -> str:
    """The zygote that serves a function's ``runtime`` (``nodejs20.x`` -> ``nodejs``;
    ``python3.12`` -> its own zygote unless it is the daemon's interpreter, ``python3``).

    Raises:
        KeyError: not one of :func:`function_names`.
    """
    if name in RUNTIMES:
        return name
    if name in PYTHON_VERSIONS:
        return "python3" if name == PYTHON_VERSION else name
    for entry in RUNTIMES.values():
        if name in entry.aliases:
            return entry.name
    raise KeyError(name)


@functools.cache
def python_interpreters() -> dict[str, str]:
    """``python3.X`` -> the host's interpreter of that version, for every X other than the
    daemon's own that the host has and the sandbox agent can run on (3.10 and later).

    Looked for in /usr/local/bin, /usr/bin and pyenv's versions (newest patch release first).
    Inside a sandbox the interpreter's prefix appears at /var/lang, wherever it is on the host.
    """
    found = {}
    for name, path in _python_candidates().items():
        minor = int(name.split(".")[1])
        if (3, minor) >= AGENT_MIN_PYTHON and name != PYTHON_VERSION:
            found[name] = path
    return found


@functools.cache
def _python_candidates() -> dict[str, str]:
    found = {}
    for name in PYTHON_VERSIONS:
        pyenv = glob.glob(os.path.join(PYENV_ROOT, "versions", f"3.{name[8:]}.*", "bin", name))
        for path in (f"/usr/local/bin/{name}", f"/usr/bin/{name}", *sorted(pyenv, reverse=True)):
            if os.access(path, os.X_OK):
                found[name] = path
                break
    return found


def zygote_command(name: str) -> tuple[str, dict[str, str]]:
    """The interpreter a zygote runs on, and what it needs in its environment.

    The daemon's own for every runtime but another Python version's; that one is given the
    daemon's import path (lambdad's dependencies are pure Python or have one: msgpack falls
    back to its pure-Python implementation where its C extension was built for another ABI).
    """
    other = python_interpreters().get(name)
    if other is None:
        return sys.executable, {}
    project = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = [*site.getsitepackages(), project]
    return other, {"PYTHONPATH": os.pathsep.join(path), "PYTHONNOUSERSITE": "1"}


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
    if name in PYTHON_VERSIONS and name != PYTHON_VERSION and name not in python_interpreters():
        has = ", ".join([f"{PYTHON_VERSION} (lambdad's own)", *python_interpreters()])
        old = _python_candidates().get(name)
        if old is not None:
            return (
                f"{name} is on this host ({old}) but lambdad's sandbox agent needs Python "
                f"{AGENT_MIN_PYTHON[0]}.{AGENT_MIN_PYTHON[1]} or later; this host has {has}"
            )
        return f"{name} is not available on this host: it has {has}"
    return None


def available() -> tuple[str, ...]:
    """The zygotes this host can run (the daemon sets these up; :data:`EAGER` ones start
    with it, the others when first needed)."""
    return tuple(n for n in names() if unavailable(n) is None)
