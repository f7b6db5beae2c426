"""Where the python runtime's files live inside a sandbox, and what a function can import.

Lambda's layout, which this reproduces: the interpreter under ``/var/lang``, the runtime and
its SDK (boto3, botocore, ...) under ``/var/runtime``, layers under ``/opt``, the function at
``/var/task``. The host's paths (``/root/.pyenv/versions/3.11.7``, lambdad's virtual
environment, its source tree) are never visible as themselves, and nothing of lambdad's own
dependencies is importable by a function.

Three moments:

* zygote start (:func:`layout`): the read-only binds and the masked directories of every
  sandbox's root; lambdad's venv and source tree are *not* among them: the runtime's modules
  are already in memory when ``pivot_root`` happens.
* zygote start, after the preloads (:func:`relocate_modules_in_zygote`), and pool time, after
  ``pivot_root`` (:func:`relocate_modules`): the modules imported before ``pivot_root`` name
  host paths in ``__file__``, ``__path__`` and their specs, so a lazily imported submodule
  (``importlib.metadata``, ``logging.handlers``, ``encodings.idna``) would be looked for where
  it does not exist. They are moved to their sandbox paths.
* specialization, before the handler's import (:func:`isolate_imports`): ``sys.path`` becomes
  Lambda's, the import system forgets lambdad's modules and finders.
"""

from __future__ import annotations

import gc
import importlib
import importlib.machinery
import os
import sys
import sysconfig
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import CodeType, FunctionType, ModuleType

LANG_DIR = "/var/lang"  # the interpreter's prefix, as on Lambda
RUNTIME_DIR = "/var/runtime"  # the runtime-provided SDK, as on Lambda (python3.11)
TASK_ROOT = "/var/task"
BOOTSTRAP = RUNTIME_DIR + "/bootstrap.py"  # Lambda's sys.argv[0]
# The runtime-provided SDK is built by `make python-sdk` into <project>/build/python-sdk/<X.Y>.
SDK_SUBDIR = os.path.join("build", "python-sdk")
# Import machinery that is the interpreter's own; anything else on sys.meta_path (setuptools'
# editable-install finder, distutils' shim) belongs to lambdad's environment.
_STDLIB_FINDER_MODULES = frozenset(
    {"_frozen_importlib", "_frozen_importlib_external", "importlib._bootstrap",
     "importlib._bootstrap_external", "zipimport"}
)  # fmt: skip


@dataclass(frozen=True)
class Layout:
    """The python runtime's part of a sandbox's root."""

    path_map: Mapping[str, str]  # host directory -> its path inside, longest host path first
    binds: tuple[tuple[str, str], ...]  # (host path, sandbox path), read-only, in this order
    masks: tuple[str, ...]  # sandbox paths covered by an empty read-only tmpfs
    sdk_dir: str | None  # host directory of the runtime-provided SDK, None if not built
    warnings: tuple[str, ...] = field(default=())


def pyver(version: tuple[int, ...] = tuple(sys.version_info[:2])) -> str:
    return f"{version[0]}.{version[1]}"


def sdk_dir(project_dir: str, version: str = pyver()) -> str:
    return os.path.join(project_dir, SDK_SUBDIR, version)


def layout(
    base_prefix: str,
    prefix: str,
    project_dir: str,
    version: str = pyver(),
    host_ro: Iterable[str] = ("/usr",),
) -> Layout:
    """The binds and masks for an interpreter installed at ``base_prefix``.

    ``prefix`` (a virtual environment) and ``project_dir`` (an editable install's source tree)
    are mapped, so that frames and module paths can be named, but not mounted.
    ``host_ro``: host directories every sandbox sees as themselves (``sandbox.mounts.HOST_RO``);
    an interpreter under one of them (a system Python in ``/usr``) has its ``site-packages``
    masked there too.
    """
    base = os.path.realpath(base_prefix)
    paths = {base: LANG_DIR}
    venv = os.path.realpath(prefix)
    if venv != base:
        paths[venv] = RUNTIME_DIR + "/venv"  # mapped for naming only: never mounted
    project = os.path.realpath(project_dir)
    if not any(project == p or project.startswith(p + "/") for p in paths):
        paths[project] = RUNTIME_DIR + "/src"  # idem
    path_map = dict(sorted(paths.items(), key=lambda kv: -len(kv[0])))

    binds: list[tuple[str, str]] = [(base, LANG_DIR)]
    warnings: list[str] = []
    sdk: str | None = sdk_dir(project, version)
    if sdk is not None and os.path.isdir(sdk):
        binds.append((sdk, RUNTIME_DIR))
    else:
        warnings.append(
            f"python{version}: no runtime-provided SDK at {sdk} (`make python-sdk` builds it): "
            "functions cannot import boto3 unless they ship it"
        )
        sdk = None
    # The interpreter's own site-packages hold whatever was pip-installed on the host: not
    # part of the runtime. Hidden both where it appears under /var/lang and, for a system
    # Python, where it appears as itself (Debian: /usr/lib/python3/dist-packages, ...).
    masks: list[str] = []
    for site_dir in _site_dirs(base, version):
        inside = relocate_path(site_dir, {base: LANG_DIR})
        if inside != site_dir:
            masks.append(inside)
        if any(site_dir == d or site_dir.startswith(d + "/") for d in host_ro):
            masks.append(site_dir)
    return Layout(path_map, tuple(binds), tuple(dict.fromkeys(masks)), sdk, tuple(warnings))


def _site_dirs(base: str, version: str) -> list[str]:
    """Existing site directories of the interpreter at ``base`` (pyenv: one; Debian: three)."""
    candidates = [
        f"{base}/lib/python{version}/site-packages",
        f"{base}/lib/python{version}/dist-packages",
        f"{base}/lib/python3/dist-packages",
        f"{base}/local/lib/python{version}/dist-packages",
        f"{base}/local/lib/python{version}/site-packages",
    ]
    return [p for p in candidates if os.path.isdir(p)]


def relocate_path(path: str, path_map: Mapping[str, str]) -> str:
    """``path`` as seen inside the sandbox (unchanged if no mapped directory contains it)."""
    for host, inside in path_map.items():
        if path == host or path.startswith(host + "/"):
            return inside + path[len(host) :]
    return path


# Packages' search paths as the zygote left them: (the list, how many sandbox paths lead it).
_mixed_paths: list[tuple[list[str], int]] = []
_zygote_relocated: list[bool] = []
_stale: list[object] = []  # what a sandbox replaced but must not free (see relocate_modules)


def relocate_modules_in_zygote(path_map: Mapping[str, str]) -> None:
    """Zygote, after the runtime's preloads, before the first fork: every imported module's
    ``__file__``, spec and loader name its sandbox path, and every package's ``__path__``
    lists the sandbox path first and the host path after it (the zygote itself may still
    import a submodule from the host). Done here, once, the writes stay on pages that all
    sandboxes share instead of being copied into each (measured: +2 MB private memory per
    sandbox when each sandbox did it itself)."""

    def move(p: str) -> str:
        return relocate_path(p, path_map)

    _relocate_sysconfig(move)  # first: it imports the build-time variables' module
    for module in list(sys.modules.values()):
        _relocate_module(module, move, keep_host=True)
    relocate_code_filenames(move)
    # logging tells its own frames from the caller's by this file name (findCaller).
    logging_module = sys.modules.get("logging")
    srcfile = getattr(logging_module, "_srcfile", None)
    if isinstance(srcfile, str):
        setattr(logging_module, "_srcfile", os.path.normcase(move(srcfile)))  # noqa: B010
    _zygote_relocated.append(True)


def _relocate_sysconfig(move: Callable[[str], str]) -> None:
    """sysconfig's prefixes (taken from ``sys`` when it was imported) and the interpreter's
    build-time variables (``LIBDIR``, ``prefix``, ... baked in at ``./configure`` time) as the
    sandbox sees them. Zygote only: it does not use sysconfig itself."""
    base = getattr(sysconfig, "_BASE_PREFIX", sys.base_prefix)
    exec_base = getattr(sysconfig, "_BASE_EXEC_PREFIX", sys.base_exec_prefix)
    for name, value in (("_PREFIX", base), ("_BASE_PREFIX", base), ("_EXEC_PREFIX", exec_base),
                        ("_BASE_EXEC_PREFIX", exec_base)):  # fmt: skip
        if hasattr(sysconfig, name):
            setattr(sysconfig, name, move(value))
    try:
        data = importlib.import_module(sysconfig._get_sysconfigdata_name())  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        return
    variables = getattr(data, "build_time_vars", None)
    if not isinstance(variables, dict):
        return
    inside = move(base)
    hosts = {p for p in (base, os.path.realpath(base)) if p != inside}
    for key, value in variables.items():
        if isinstance(value, str) and any(h in value for h in hosts):
            for h in hosts:
                value = value.replace(h, inside)
            variables[key] = value


def relocate_code_filenames(move: Callable[[str], str]) -> int:
    """Give every loaded function's code its sandbox file name, so that a traceback a function
    prints itself (``traceback.print_exc()``, ``logging.exception``) through a preloaded module
    names ``/var/lang/...`` (and shows its source lines) instead of the host's path. Returns how
    many functions were changed. Zygote only: it writes to every such function object."""
    replaced: dict[CodeType, CodeType] = {}

    def fix(code: CodeType) -> CodeType:
        done = replaced.get(code)
        if done is not None:
            return done
        consts = tuple(fix(c) if isinstance(c, CodeType) else c for c in code.co_consts)
        filename = move(code.co_filename)
        new = code
        if filename != code.co_filename or consts != code.co_consts:
            new = code.replace(co_filename=filename, co_consts=consts)
        replaced[code] = new
        return new

    changed = 0
    for obj in gc.get_objects():
        if isinstance(obj, FunctionType):
            code = obj.__code__
            new = fix(code)
            if new is not code:
                obj.__code__ = new
                changed += 1
    return changed


def relocate_modules(path_map: Mapping[str, str]) -> None:
    """Child half, after ``pivot_root``: every imported module, the path finder's caches and
    ``sys``'s prefixes name sandbox paths from now on (and nothing else)."""

    def move(p: str) -> str:
        return relocate_path(p, path_map)

    if _zygote_relocated:
        for paths, inside in _mixed_paths:
            del paths[inside:]  # the host's entries: they do not exist here
    else:
        for module in list(sys.modules.values()):
            _relocate_module(module, move, keep_host=False)
    sys.path[:] = [move(p) for p in sys.path]
    # A function that runs sys.executable gets the interpreter, not lambdad's venv.
    sys.executable = getattr(sys, "_base_executable", sys.executable)
    for attr in ("prefix", "exec_prefix", "base_prefix", "base_exec_prefix", "executable",
                 "_base_executable", "_stdlib_dir"):  # fmt: skip
        value = getattr(sys, attr, None)
        if isinstance(value, str) and value.startswith("/"):
            try:
                setattr(sys, attr, move(value))
            except (AttributeError, TypeError):
                pass
    # Inside, there is no virtual environment: the interpreter's prefix is the prefix.
    sys.prefix, sys.exec_prefix = sys.base_prefix, sys.base_exec_prefix
    site = sys.modules.get("site")
    if site is not None and isinstance(getattr(site, "PREFIXES", None), list):
        site.PREFIXES[:] = [sys.prefix, sys.exec_prefix]  # site.getsitepackages()
    # Finders cached per host directory would look in places that do not exist here.
    # (Not importlib.invalidate_caches(): in 3.11 it imports importlib.metadata, ~ms.)
    # The zygote's finders and sysconfig's variables are kept referenced, not freed: freeing
    # them would decrement (write) thousands of shared objects, copying their pages.
    _stale.append(dict(sys.path_importer_cache))
    sys.path_importer_cache.clear()
    # sysconfig computes its paths once from the prefixes: forget the host's.
    if getattr(sysconfig, "_CONFIG_VARS", None) is not None:
        _stale.append(sysconfig._CONFIG_VARS)  # type: ignore[attr-defined]
        sysconfig._CONFIG_VARS = None  # type: ignore[attr-defined]


def _move_search_path(paths: list[str], move: Callable[[str], str], keep_host: bool) -> None:
    moved = [move(p) if isinstance(p, str) else p for p in paths]
    if moved == paths:
        return
    host = [p for p, m in zip(paths, moved, strict=True) if m != p] if keep_host else []
    paths[:] = moved + host
    if host:
        _mixed_paths.append((paths, len(moved)))


def _relocate_module(module: ModuleType, move: Callable[[str], str], keep_host: bool) -> None:
    d = getattr(module, "__dict__", None)
    if not isinstance(d, dict):
        return
    for key in ("__file__", "__cached__"):
        value = d.get(key)
        if isinstance(value, str):
            d[key] = move(value)
    path = d.get("__path__")
    if isinstance(path, list):
        _move_search_path(path, move, keep_host)
    elif path is not None and isinstance(getattr(path, "_path", None), list):
        _move_search_path(path._path, move, keep_host)  # a namespace package's _NamespacePath
    spec = d.get("__spec__")
    if spec is not None:
        if isinstance(spec.origin, str) and spec.origin.startswith("/"):
            spec.origin = move(spec.origin)
        locations = spec.submodule_search_locations
        if isinstance(locations, list) and locations is not path:
            _move_search_path(locations, move, keep_host)
        cached = getattr(spec, "_cached", None)
        if isinstance(cached, str):
            spec._cached = move(cached)
    loader = d.get("__loader__")
    if loader is not None and isinstance(getattr(loader, "path", None), str):
        try:
            loader.path = move(loader.path)
        except AttributeError:
            pass


def function_sys_path(task_root: str, version: str = pyver()) -> list[str]:
    """Lambda's python3.11 ``sys.path``, in its order: the function's code first, then layers,
    then the runtime's SDK (so that a function's own vendored boto3 wins), then the stdlib.
    Only the stdlib entries of the current ``sys.path`` (already relocated) are kept."""
    stdlib = [
        p
        for p in sys.path
        if p.startswith(LANG_DIR + "/") and not p.endswith(("site-packages", "dist-packages"))
    ]
    return [
        task_root,
        f"/opt/python/lib/python{version}/site-packages",
        "/opt/python",
        RUNTIME_DIR,
        *stdlib,
    ]


def warm_path_cache(paths: Iterable[str]) -> None:
    """Pool time: build the path finders (and their directory listings) of the directories
    that are already what they will be for the function (stdlib, SDK), so that the handler's
    import does not list them on the cold path. Never /var/task or /opt: not mounted yet."""
    for path in paths:
        if path.startswith(LANG_DIR + "/") or path == RUNTIME_DIR:
            importlib.machinery.PathFinder.find_spec("_lambdad_warm_up_no_such_module", [path])


_STDLIB_NAMES = sys.stdlib_module_names | set(sys.builtin_module_names) | {"__main__"}
_to_forget: list[str] = []  # lambdad's modules, listed at pool time
_forgotten: list[ModuleType] = []
_planned_path: list[str] = []
_planned_modules: set[str] = set()  # the names plan_isolation() has classified


def _in_stdlib(module: ModuleType) -> bool:
    """A module of the interpreter's own library not named in ``sys.stdlib_module_names``
    (``_sysconfigdata_*``, which sysconfig imports by a computed name)."""
    path = getattr(module, "__file__", None)
    stdlib = f"{LANG_DIR}/lib/python{pyver()}/"
    return (
        isinstance(path, str)
        and path.startswith(stdlib)
        and not path.startswith((stdlib + "site-packages/", stdlib + "dist-packages/"))
    )


def plan_isolation() -> None:
    """Pool time: list the modules a function must not see, so that :func:`isolate_imports`
    does not scan ``sys.modules`` on the cold path (nothing is imported in between).

    The zygote runs it once, after :func:`relocate_modules_in_zygote` (the paths it classifies
    by are the sandbox's then); a sandbox then classifies only the modules imported since:
    ~40 of ~500 (1.1 ms -> 0.1 ms of each sandbox's set-up, measured)."""
    new = [(name, m) for name, m in list(sys.modules.items()) if name not in _planned_modules]
    _to_forget.extend(
        name
        for name, module in new
        if name.partition(".")[0] not in _STDLIB_NAMES and not _in_stdlib(module)
    )
    _planned_modules.update(name for name, _ in new)
    _planned_path[:] = function_sys_path(TASK_ROOT)


def isolate_imports(task_root: str, pythonpath: str = RUNTIME_DIR) -> None:
    """Specialization, before the handler's import: the function imports from Lambda's path
    only. lambdad's own modules (and its dependencies: msgpack, ...) stay loaded for the
    runtime, which holds references to them, but ``sys.modules`` forgets them, so that
    ``import msgpack`` in a handler fails as it would on Lambda.

    ``pythonpath``: the function's ``PYTHONPATH``. On Lambda the interpreter starts with it
    (Lambda's own value is ``/var/runtime``); here it is already running, so the entries a
    function adds (``/var/task/vendor``, say) are put where the interpreter would have put
    them: before the runtime's directory."""
    path = _planned_path if task_root == TASK_ROOT else function_sys_path(task_root)
    extra = [p for p in pythonpath.split(":") if p and p != RUNTIME_DIR and p not in path]
    if extra:
        i = path.index(RUNTIME_DIR)
        path = path[:i] + list(dict.fromkeys(extra)) + path[i:]
    sys.path[:] = path
    if not _to_forget:
        plan_isolation()
    modules = sys.modules
    # Held, not freed: the runtime still uses them, and freeing would write to shared pages.
    _forgotten.extend(modules.pop(name) for name in _to_forget if name in modules)
    # __main__ and argv are the zygote's (its globals, its command line with host paths);
    # on Lambda they are the runtime's bootstrap.
    _forgotten.append(modules["__main__"])
    modules["__main__"] = ModuleType("__main__")
    sys.argv[:] = [BOOTSTRAP]
    if hasattr(sys, "orig_argv"):
        sys.orig_argv[:] = [f"{LANG_DIR}/bin/python{pyver()}", BOOTSTRAP]
    sys.meta_path[:] = [
        f for f in sys.meta_path if getattr(f, "__module__", "") in _STDLIB_FINDER_MODULES
    ]
    # Keep the finders warm_path_cache() built; drop everything else (the code and the layers
    # were mounted since, and nothing off the function's path may answer).
    warm = {p for p in sys.path if p.startswith(LANG_DIR + "/") or p == RUNTIME_DIR}
    for key in [k for k in sys.path_importer_cache if k not in warm]:
        del sys.path_importer_cache[key]
