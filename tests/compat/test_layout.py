"""Where the python runtime's files are inside a sandbox: both host layouts (pure logic)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from sandbox.runtimes import python_layout
from sandbox.runtimes.python_layout import layout, relocate_path


def _tree(root: Path, *dirs: str) -> None:
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)


def test_pyenv_interpreter_outside_usr(tmp_path: Path) -> None:
    base = tmp_path / "root/.pyenv/versions/3.11.7"
    venv = tmp_path / "work/lambdad/.venv"
    project = tmp_path / "work/lambdad"
    _tree(base, "lib/python3.11/site-packages")
    _tree(project, "build/python-sdk/3.11", ".venv")
    lay = layout(str(base), str(venv), str(project), "3.11")
    assert lay.binds == (
        (str(base), "/var/lang"),
        (str(project / "build/python-sdk/3.11"), "/var/runtime"),
    )
    assert lay.masks == ("/var/lang/lib/python3.11/site-packages",)
    assert lay.sdk_dir == str(project / "build/python-sdk/3.11") and lay.warnings == ()
    # The venv and the source tree are named (for frames) but never mounted.
    assert relocate_path(f"{venv}/lib/python3.11/site-packages/msgpack", lay.path_map).startswith(
        "/var/runtime/venv/"
    )
    assert relocate_path(f"{base}/lib/python3.11/json/__init__.py", lay.path_map) == (
        "/var/lang/lib/python3.11/json/__init__.py"
    )
    assert relocate_path(str(base) + "x/y", lay.path_map) == str(base) + "x/y"  # not a prefix


def test_system_python_under_usr(tmp_path: Path) -> None:
    """Debian's /usr/bin/python3.11: /usr is visible as itself in every sandbox, and also at
    /var/lang; the distribution's dist-packages are masked at both places."""
    usr = tmp_path / "usr"
    _tree(usr, "lib/python3.11", "lib/python3/dist-packages", "local/lib/python3.11/dist-packages")
    project = tmp_path / "srv/lambdad"
    _tree(project)
    lay = layout(str(usr), str(usr), str(project), "3.11", host_ro=(str(usr),))
    assert lay.binds == ((str(usr), "/var/lang"),)
    assert set(lay.masks) == {
        "/var/lang/lib/python3/dist-packages",
        str(usr / "lib/python3/dist-packages"),
        "/var/lang/local/lib/python3.11/dist-packages",
        str(usr / "local/lib/python3.11/dist-packages"),
    }
    assert lay.sdk_dir is None and "make python-sdk" in lay.warnings[0]


def test_relocate_modules_moves_packages_specs_and_loaders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = "/host/prefix/lib/python3.11"
    pkg = types.ModuleType("fakepkg")
    pkg.__file__ = f"{host}/fakepkg/__init__.py"
    pkg.__path__ = [f"{host}/fakepkg"]
    pkg.__spec__ = __import__("importlib.machinery").machinery.ModuleSpec(
        "fakepkg", None, origin=pkg.__file__, is_package=True
    )
    pkg.__spec__.submodule_search_locations = [f"{host}/fakepkg"]
    monkeypatch.setitem(sys.modules, "fakepkg", pkg)
    monkeypatch.setattr(sys, "path", [host, "/elsewhere"])
    monkeypatch.setattr(sys, "prefix", "/host/venv")
    monkeypatch.setattr(sys, "base_prefix", "/host/prefix")
    monkeypatch.setattr(sys, "exec_prefix", sys.exec_prefix)
    monkeypatch.setattr(sys, "base_exec_prefix", sys.base_exec_prefix)
    monkeypatch.setattr(sys, "executable", sys.executable)
    monkeypatch.setattr(sys, "_base_executable", sys._base_executable, raising=False)  # type: ignore[attr-defined]
    monkeypatch.setattr(sys, "_stdlib_dir", sys._stdlib_dir, raising=False)  # type: ignore[attr-defined]
    monkeypatch.setattr(python_layout.sysconfig, "_CONFIG_VARS", None, raising=False)
    # No real module lives under /host: only the fake one moves.
    python_layout.relocate_modules({"/host/prefix": "/var/lang", "/host/venv": "/v"})
    assert pkg.__file__ == "/var/lang/lib/python3.11/fakepkg/__init__.py"
    assert pkg.__path__ == ["/var/lang/lib/python3.11/fakepkg"]
    assert pkg.__spec__.origin == pkg.__file__
    assert pkg.__spec__.submodule_search_locations == pkg.__path__
    assert sys.path == ["/var/lang/lib/python3.11", "/elsewhere"]
    assert sys.prefix == sys.base_prefix == "/var/lang"


def test_function_sys_path_keeps_only_the_stdlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        sys,
        "path",
        [
            "",
            "/var/lang/lib/python311.zip",
            "/var/lang/lib/python3.11",
            "/var/lang/lib/python3.11/lib-dynload",
            "/var/runtime/venv/lib/python3.11/site-packages",
            "/var/lang/lib/python3.11/site-packages",
        ],
    )
    assert python_layout.function_sys_path("/var/task", "3.11") == [
        "/var/task",
        "/opt/python/lib/python3.11/site-packages",
        "/opt/python",
        "/var/runtime",
        "/var/lang/lib/python311.zip",
        "/var/lang/lib/python3.11",
        "/var/lang/lib/python3.11/lib-dynload",
    ]
