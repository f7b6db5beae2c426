"""Lambda's SnapStart runtime hooks for Python, the API of PyPI's ``snapshot-restore-py``.

A function registers callables with ``register_before_snapshot`` (run in the template, at the
end of Init) and ``register_after_restore`` (run in every copy, before its first invocation);
the runtime reads them back with ``get_before_snapshot``/``get_after_restore`` as lists of
``(func, args, kwargs)``. When the function bundles the PyPI package, its module is the one
used; otherwise this module is what ``import snapshot_restore_py`` finds in a template
function (:func:`install`), so code written for Lambda runs unchanged.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from typing import Any

MODULE = "snapshot_restore_py"
Hook = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]

_SELF = sys.modules[__name__]  # the function's import isolation renames lambdad's modules
_before_snapshot: list[Hook] = []
_after_restore: list[Hook] = []


def register_before_snapshot(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``func(*args, **kwargs)`` in the template after Init; usable as a decorator."""
    _before_snapshot.append((func, args, kwargs))
    return func


def register_after_restore(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``func(*args, **kwargs)`` in every copy before it serves; usable as a decorator."""
    _after_restore.append((func, args, kwargs))
    return func


def get_before_snapshot() -> list[Hook]:
    return _before_snapshot


def get_after_restore() -> list[Hook]:
    return _after_restore


def install() -> None:
    """Make ``import snapshot_restore_py`` find this module unless the function has its own
    (call after the function's import path is set, before its handler is imported)."""
    if MODULE not in sys.modules and importlib.util.find_spec(MODULE) is None:
        sys.modules[MODULE] = _SELF


def run(which: str) -> None:
    """Run the hooks registered with the function's ``snapshot_restore_py`` (``which``:
    "before_snapshot" or "after_restore"), in order. An exception propagates: Lambda fails
    the snapshot (the template's Init) or the restore (the copy) when a hook raises."""
    module = sys.modules.get(MODULE)
    getter = getattr(module, f"get_{which}", None) if module is not None else None
    if getter is None:
        return
    for func, args, kwargs in list(getter()):
        func(*args, **kwargs)
