"""Deploy's heavy half: unpack a code zip into the content-addressed store and byte-compile it.

Why a separate process: byte-compiling is C code that holds the GIL for a whole module, so a
thread does not help. A 2.2 MB zip of generated Python froze the daemon's loop for ~4 s and
grew the daemon by 1.2 GB (issue 13, point 2) — and a deploy is input from a socket user. So the
daemon hands the zip to ``python -m lambdad.codebuild`` on its stdin; that child lowers its own
priority and sets its own rlimits (address space, CPU time) *before* it reads a byte, unpacks,
hashes, compiles, and prints one JSON line. The daemon waits for it from the deploy's worker
thread (never on its loop), kills it past a wall-clock deadline, and turns each way it can end
into a precise :class:`~lambdad.errors.InvalidParameterValue`. The child is started with fork+exec
(``subprocess``): the daemon still runs no Python in a forked child.

Byte-compiling at deploy is kept (rather than leaving it to each sandbox's Init) because
``/var/task`` is read-only in the sandbox: without the ``.pyc`` files every cold start would
compile the handler again. A module that does not compile (a ``SyntaxError``) is left as it is:
importing it at Init reports the error exactly as Lambda does. A module that cannot be compiled
within the caps (``MemoryError``, ``RecursionError``, CPU time, wall time) fails the deploy.

:func:`build` is also callable in-process (the registry's own tests use it that way).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import py_compile
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from lambdad.errors import InvalidParameterValue

MAX_UNZIPPED: Final = 250 * 1024 * 1024  # Lambda's unzipped deployment package limit
MAX_ENTRIES: Final = 20_000
TASK_ROOT: Final = "/var/task"  # where the code appears inside a sandbox
NICENESS: Final = 19  # the builder yields the CPU to every invocation
# What the child may print on stderr before the daemon stops reading it (a traceback).
STDERR_KEEP: Final = 4096


@dataclass(frozen=True)
class BuildLimits:
    """The caps of one build (``DaemonConfig.deploy_build_*``)."""

    memory_mb: int = 1024  # RLIMIT_AS of the builder (the interpreter itself takes ~30 MB)
    cpu_s: int = 60  # RLIMIT_CPU of the builder
    timeout_s: float = 120.0  # wall clock, then SIGKILL (a niced builder may wait for the CPU)


def _code_files(infos: list[zipfile.ZipInfo]) -> list[tuple[str, zipfile.ZipInfo]]:
    """The regular files of a zip as (safe relative path, entry), sorted by path.

    Names are normalised ("./a//b" is "a/b"). Refused: absolute paths, "..", backslashes, NULs,
    symlinks, encrypted entries, two entries for one path, a file where a directory must be.
    """
    files: dict[str, zipfile.ZipInfo] = {}
    dirs: set[str] = set()
    for info in infos:
        raw = info.filename
        if raw.startswith("/") or "\\" in raw or "\0" in raw:
            raise InvalidParameterValue(f"unsafe path in zip: {raw!r}", field="code")
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise InvalidParameterValue(f"unsafe path in zip: {raw!r}", field="code")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise InvalidParameterValue(f"symlinks are not allowed: {raw!r}", field="code")
        if info.flag_bits & 0x1:
            raise InvalidParameterValue(f"encrypted entries are not allowed: {raw!r}", field="code")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
        name = "/".join(parts)
        if info.is_dir():
            if name:
                dirs.add(name)
            continue
        if not name:
            raise InvalidParameterValue(f"unsafe path in zip: {raw!r}", field="code")
        if name in files:
            raise InvalidParameterValue(f"duplicate entry in zip: {name!r}", field="code")
        files[name] = info
    conflicts = sorted(files.keys() & dirs)
    if conflicts:
        raise InvalidParameterValue(
            f"zip has both a file and a directory at {conflicts[0]!r}", field="code"
        )
    return sorted(files.items())


def _executable(info: zipfile.ZipInfo) -> bool:
    return bool((info.external_attr >> 16) & 0o111)


def write_files(archive: zipfile.ZipFile, files: Iterable[tuple[str, zipfile.ZipInfo]],
                root: str) -> None:  # fmt: skip
    """Write checked members under ``root``, each synced, mode 0755 when executable in the zip
    (0644 otherwise): a function's code tree and a layer's are written alike."""
    for name, info in files:
        dest = os.path.join(root, name)
        os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
        with open(dest, "wb") as out:
            out.write(_read_member(archive, info))
            os.fsync(out.fileno())
        os.chmod(dest, 0o755 if _executable(info) else 0o644)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return archive.read(info)
    except MemoryError:
        raise
    except Exception as exc:  # whatever a decompressor raises on damaged input (zlib, lzma, ...)
        raise InvalidParameterValue(
            f"code zip entry {info.filename!r} is damaged: {exc}", field="code"
        ) from exc


class CompileLimit(Exception):
    """A module could not be compiled within the builder's caps."""

    def __init__(self, message: str, memory: bool) -> None:
        super().__init__(message)
        self.memory = memory  # the memory cap (not the compiler's own nesting limit)


def compile_tree(root: str) -> None:
    """Byte-compile every ``.py`` under ``root`` into ``__pycache__`` (as ``compileall`` would,
    with ``ddir=/var/task``), skipping modules with syntax errors.

    Raises:
        CompileLimit: a module ran out of memory or recursion depth while compiling.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            try:
                py_compile.compile(path, dfile=os.path.join(TASK_ROOT, rel), doraise=True)
            except py_compile.PyCompileError as exc:
                if exc.exc_type_name == "MemoryError":
                    raise CompileLimit(
                        f"compiling {rel!r} needs more memory than the builder may use",
                        memory=True,
                    ) from None
                if exc.exc_type_name == "RecursionError":
                    raise CompileLimit(
                        f"compiling {rel!r} exceeds the compiler's nesting limit "
                        "(an expression nested too deeply)",
                        memory=False,
                    ) from None
                continue  # a SyntaxError and the like: the import at Init reports it


def build(code_dir: str, zip_bytes: bytes, tmp_prefix: str = ".tmp-") -> str:
    """Extract a zip into the content-addressed store under ``code_dir``; return its sha256.

    Raises:
        InvalidParameterValue: (``field="code"``) not a zip, a damaged or encrypted member,
            an unsafe, duplicate or conflicting path, a symlink, or over the size limits.
        CompileLimit: a module could not be compiled within the caps.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(zip_bytes))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
        raise InvalidParameterValue(f"code is not a valid zip file: {exc}", field="code") from exc
    if len(infos) > MAX_ENTRIES:
        raise InvalidParameterValue(f"code has more than {MAX_ENTRIES} files", field="code")
    if sum(i.file_size for i in infos) > MAX_UNZIPPED:
        raise InvalidParameterValue(
            f"code is larger than {MAX_UNZIPPED // 2**20} MB unzipped", field="code"
        )
    files = _code_files(infos)
    digest = hashlib.sha256()
    for name, info in files:
        data = _read_member(archive, info)
        digest.update(f"{name}\0{int(_executable(info))}\0{len(data)}\0".encode())
        digest.update(data)
    sha = digest.hexdigest()
    final = os.path.join(code_dir, sha)
    if os.path.isdir(final):
        return sha
    tmp = tempfile.mkdtemp(dir=code_dir, prefix=tmp_prefix)
    try:
        write_files(archive, files, tmp)
        compile_tree(tmp)
        for dirpath, _dirs, filenames in os.walk(tmp):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                if name.endswith(".pyc"):
                    os.chmod(os.path.join(dirpath, name), 0o644)
        try:
            os.rename(tmp, final)
        except OSError:
            # A concurrent deploy of the same code won the race: its tree is ours too.
            if not os.path.isdir(final):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sha


# -- the daemon's side ------------------------------------------------------------------------


def build_in_child(code_dir: str, zip_bytes: bytes, limits: BuildLimits) -> str:
    """:func:`build` in a niced, rlimited child process, waited for with a deadline.

    Blocking: the daemon calls it from the deploy's worker thread (the registry's
    ``store_code``), so the loop keeps running. ``subprocess`` forks and execs in C: no Python
    runs in a forked child of the daemon.

    Raises:
        InvalidParameterValue: (``field="code"``) what :func:`build` refuses, and a build past
            its memory, CPU-time or wall-clock cap (the message names the cap and its setting).
    """
    # The builder's own prefix: what a killed one leaves is found without touching another's.
    prefix = f".tmp-{uuid.uuid4().hex}-"
    args = [
        sys.executable, "-m", "lambdad.codebuild", "--memory-mb", str(limits.memory_mb),
        "--cpu-s", str(limits.cpu_s), "--tmp-prefix", prefix, code_dir,
    ]  # fmt: skip
    try:
        done = subprocess.run(
            args, input=zip_bytes, capture_output=True, timeout=limits.timeout_s, check=False
        )
    except subprocess.TimeoutExpired:  # run() has killed and reaped the child
        _remove_partial(code_dir, prefix)
        raise InvalidParameterValue(
            f"deploy: unpacking and byte-compiling the code took longer than "
            f"{limits.timeout_s:g} s (deploy_build_timeout_s)",
            field="code",
        ) from None
    status, out, err = done.returncode, done.stdout, done.stderr
    try:
        answer = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
    except (ValueError, IndexError):
        answer = {}
    if status == 0 and isinstance(answer.get("sha256"), str):
        return str(answer["sha256"])
    _remove_partial(code_dir, prefix)
    if isinstance(answer.get("error"), str):
        raise InvalidParameterValue(str(answer["error"]), field="code")
    if status == -signal.SIGXCPU or status == -signal.SIGKILL:
        raise InvalidParameterValue(
            f"deploy: byte-compiling the code used more than {limits.cpu_s} s of CPU time "
            "(deploy_build_cpu_s)",
            field="code",
        )
    tail = err[-STDERR_KEEP:].decode("utf-8", "replace").strip().splitlines()
    if any("MemoryError" in line for line in tail):
        raise InvalidParameterValue(
            f"deploy: unpacking and byte-compiling the code needs more than "
            f"{limits.memory_mb} MB (deploy_build_memory_mb)",
            field="code",
        )
    why = f"signal {-status}" if status < 0 else f"exit status {status}"
    raise InvalidParameterValue(
        f"deploy: the code builder failed ({why}): {tail[-1] if tail else 'no message'}",
        field="code",
    )


def _remove_partial(code_dir: str, prefix: str) -> None:
    """A killed builder leaves its ``.tmp-`` tree behind; the registry removes those at start,
    but a daemon that runs for months must not collect them."""
    for entry in os.listdir(code_dir):
        if entry.startswith(prefix):
            shutil.rmtree(os.path.join(code_dir, entry), ignore_errors=True)


# -- the child's side -------------------------------------------------------------------------


def _limit_self(memory_mb: int, cpu_s: int) -> None:
    os.nice(NICENESS)
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))
    # SIGXCPU at the soft limit, SIGKILL a second later if it is caught somewhere.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lambdad.codebuild")
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--cpu-s", type=int, required=True)
    parser.add_argument("--tmp-prefix", default=".tmp-")
    parser.add_argument("code_dir")
    args = parser.parse_args(argv)
    _limit_self(args.memory_mb, args.cpu_s)
    try:
        zip_bytes = sys.stdin.buffer.read()
        sha = build(args.code_dir, zip_bytes, args.tmp_prefix)
    except InvalidParameterValue as exc:
        answer = {"error": exc.message}
    except CompileLimit as exc:
        cap = f" ({args.memory_mb} MB, deploy_build_memory_mb)" if exc.memory else ""
        answer = {"error": f"deploy: {exc}{cap}"}
    except MemoryError:
        answer = {
            "error": f"deploy: unpacking and byte-compiling the code needs more than "
            f"{args.memory_mb} MB (deploy_build_memory_mb)"
        }
    else:
        answer = {"sha256": sha}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    return 0 if "sha256" in answer else 1


if __name__ == "__main__":
    sys.exit(main())
