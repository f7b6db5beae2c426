"""Peers, measured in the same run: the tools a user would otherwise pick to run one function.

Each peer runs the very same no-op handler (``examples/noop``) end to end — start, import the
handler, call it, print its JSON result on stdout, exit — and the clock is the caller's, from
spawn to exit, like a lambdad cold start observed by its client. The handler's directory is
mounted read-only at ``/var/task`` wherever the peer has a mount namespace.

* ``python3``: the virtual environment's interpreter, bare (no isolation at all).
* ``unshare``: util-linux ``unshare`` with every namespace (user, mount, pid, net, ipc, uts,
  cgroup, time) and a fresh /proc.
* ``bwrap``: ``bwrap --unshare-all`` with read-only binds of /usr, the interpreter and the code.
* ``crun`` / ``runc``: ``run`` of a minimal OCI bundle generated here (read-only rootfs of
  binds; pid, net, ipc, uts, mount and cgroup namespaces). crun 1.8 refuses hybrid cgroup hosts
  ("cgroups in hybrid mode not supported"), so it runs in a private mount namespace with
  ``/sys/fs/cgroup/unified`` unmounted.
* ``firejail``: hardened (no network, all capabilities dropped, seccomp, no_new_privs, a user
  namespace, private /tmp and /dev, read-only /).

A peer whose tool is missing or fails is reported as skipped or failed with the reason — never
left out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import EXAMPLES, Settings, summarize

TASK = "/var/task"
RUN_TIMEOUT_S = 30.0


def runner(task_root: str) -> str:
    """The program every peer runs: import the handler, call it, print its JSON result."""
    return (
        f"import json, sys; sys.path.insert(0, {task_root!r}); from app import handler; "
        "print(json.dumps(handler({}, None)))"
    )


@dataclass(frozen=True)
class Peer:
    name: str
    description: str
    tool: str | None  # the executable that must exist, None = always available
    command: Callable[[Settings, int], list[str]]  # (settings, run number) -> argv


def _python() -> str:
    return sys.executable


def _code() -> str:
    return str(EXAMPLES / "noop")


def _python_roots() -> list[str]:
    """Directories the interpreter needs: the venv and the installation it points at."""
    roots = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), sys.prefix}
    return sorted(r for r in roots if not r.startswith("/usr"))


def bare_command(settings: Settings, n: int) -> list[str]:
    return [_python(), "-c", runner(_code())]


def unshare_command(settings: Settings, n: int) -> list[str]:
    return [
        "unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork", "--mount-proc",
        "--net", "--ipc", "--uts", "--cgroup", "--time",
        _python(), "-c", runner(_code()),
    ]  # fmt: skip


def bwrap_command(settings: Settings, n: int) -> list[str]:
    binds = []
    for root in _python_roots():
        binds += ["--ro-bind", root, root]
    return [
        "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin",
        *binds,
        "--ro-bind", _code(), TASK,
        "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
        "--chdir", TASK,
        _python(), "-c", runner(TASK),
    ]  # fmt: skip


def oci_bundle(work_dir: Path) -> Path:
    """A minimal OCI bundle: an empty read-only rootfs whose content is read-only binds."""
    bundle = work_dir / "oci-bundle"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True, exist_ok=True)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
        if not (rootfs / link).is_symlink():
            (rootfs / link).symlink_to(target)

    def bind(source: str, destination: str) -> dict[str, Any]:
        return {
            "destination": destination,
            "type": "bind",
            "source": source,
            "options": ["rbind", "ro", "nosuid", "nodev"],
        }

    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]  # runc spec's defaults
    config = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": [_python(), "-c", runner(TASK)],
            "env": ["PATH=/usr/bin:/bin"],
            "cwd": TASK,
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "peer",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777"],
            },
            bind("/usr", "/usr"),
            *(bind(root, root) for root in _python_roots()),
            bind(_code(), TASK),
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")
            ],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger", "/proc/bus"],
        },
    }
    (bundle / "config.json").write_text(json.dumps(config, indent=1))
    return bundle


def crun_command(settings: Settings, n: int) -> list[str]:
    bundle = oci_bundle(settings.work_dir)
    state = settings.work_dir / "crun-state"
    state.mkdir(exist_ok=True)
    inner = (
        "umount /sys/fs/cgroup/unified 2>/dev/null; "
        f"exec crun --root {state} run --bundle {bundle} bench-crun-{os.getpid()}-{n}"
    )
    return ["unshare", "--mount", "sh", "-c", inner]


def runc_command(settings: Settings, n: int) -> list[str]:
    bundle = oci_bundle(settings.work_dir)
    state = settings.work_dir / "runc-state"
    state.mkdir(exist_ok=True)
    return [
        "runc", "--root", str(state), "run", "--bundle", str(bundle),
        f"bench-runc-{os.getpid()}-{n}",
    ]  # fmt: skip


def firejail_command(settings: Settings, n: int) -> list[str]:
    return [
        "firejail", "--quiet", "--noprofile", "--net=none", "--caps.drop=all", "--seccomp",
        "--nonewprivs", "--noroot", "--private-tmp", "--private-dev", "--nogroups",
        "--ipc-namespace", "--read-only=/",
        "--", _python(), "-c", runner(_code()),
    ]  # fmt: skip


PEERS: tuple[Peer, ...] = (
    Peer("python3", "bare venv python3, no isolation", None, bare_command),
    Peer("unshare", "unshare, all 8 namespaces, fresh /proc", "unshare", unshare_command),
    Peer("bwrap", "bwrap --unshare-all, read-only binds", "bwrap", bwrap_command),
    Peer("crun", "crun run, minimal OCI bundle (hybrid cgroup workaround)", "crun", crun_command),
    Peer("runc", "runc run, minimal OCI bundle", "runc", runc_command),
    Peer("firejail", "firejail, hardened (net none, caps, seccomp, userns, ro /)", "firejail",
         firejail_command),
)  # fmt: skip


def run_once(argv: list[str]) -> tuple[float, str | None]:
    """(milliseconds from spawn to exit, None) or (elapsed, why it failed)."""
    t0 = time.perf_counter_ns()
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return RUN_TIMEOUT_S * 1000, f"timed out after {RUN_TIMEOUT_S:.0f} s"
    except OSError as exc:
        return 0.0, f"cannot run {argv[0]}: {exc}"
    elapsed = (time.perf_counter_ns() - t0) / 1e6
    if proc.returncode != 0 or proc.stdout.strip() != b"null":
        detail = (proc.stderr or proc.stdout).decode(errors="replace").strip()[-500:]
        return elapsed, f"exit status {proc.returncode}: {detail or '(no output)'}"
    return elapsed, None


def measure(peer: Peer, settings: Settings) -> dict[str, Any]:
    base = {"name": peer.name, "description": peer.description}
    if os.geteuid() != 0 and peer.name in ("crun", "runc"):
        return {**base, "status": "skipped: needs root (rootful OCI bundle)"}
    if peer.tool is not None and shutil.which(peer.tool) is None:
        return {**base, "status": f"skipped: `{peer.tool}` is not installed (make bench-peers)"}
    argv = peer.command(settings, 0)
    samples: list[float] = []
    for n in range(2 + settings.peer_n):  # two warm-up runs: page cache, first-use costs
        elapsed, error = run_once(peer.command(settings, n))
        if error is not None:
            return {**base, "status": f"failed: {error}", "argv": argv}
        if n >= 2:
            samples.append(elapsed)
    return {
        **base,
        "status": "ok",
        "argv": argv,
        "latency_ms": summarize(samples),
        "samples_ms": samples,
    }


def run(settings: Settings) -> dict[str, Any]:
    results = {}
    for peer in PEERS:
        result = measure(peer, settings)
        results[peer.name] = result
        if result["status"] == "ok":
            lat = result["latency_ms"]
            print(
                f"    {peer.name:9s} p50 {lat['p50']:7.2f} ms  p99 {lat['p99']:7.2f} ms",
                flush=True,
            )
        else:
            print(f"    {peer.name:9s} {result['status']}", flush=True)
    return results
