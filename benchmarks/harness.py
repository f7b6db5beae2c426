"""What every scenario shares: a real daemon to drive, statistics, process and memory probes.

:class:`BenchDaemon` starts ``python -m lambdad serve`` exactly as ``tests/conftest.py`` does,
on a temporary socket and state directory, with its own cgroup parent so that it can never
touch (or be touched by) another lambdad on the host. Stopping it is defensive: SIGTERM first,
then SIGKILL, then every cgroup it created is thawed, emptied and removed. Anything that did not
go as the daemon promises is recorded in :data:`PROBLEMS` and ends up in the report.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambdad.client import Client
from lambdad.testing import DaemonStartError, spawn_daemon

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FUNCTIONS = Path(__file__).resolve().parent / "functions"
CGROUP_ROOT = "/sys/fs/cgroup"
START_DEADLINE_S = 60.0
STOP_GRACE_S = 15.0
CLEANUP_DEADLINE_S = 30.0

# Daemon behaviour that got in a benchmark's way, in the words the report will use.
PROBLEMS: list[str] = []


def note_problem(text: str) -> None:
    if text not in PROBLEMS:
        PROBLEMS.append(text)
        print(f"  ! daemon problem: {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Settings:
    """How much of each scenario to run (``--quick`` shrinks every count)."""

    quick: bool
    out_dir: Path
    work_dir: Path  # temporary: sockets, state directories, logs, OCI bundles
    cold_n: int = 200  # cold invocations per mode
    warm_n: int = 20_000  # sequential warm invocations (and relay round trips)
    throughput_connections: tuple[int, ...] = (1, 2, 4, 8, 16, 64)
    throughput_depths: tuple[int, ...] = (1, 8, 32)  # requests in flight per connection
    throughput_warmup_s: float = 0.5
    throughput_window_s: float = 1.5
    scale_ns: tuple[int, ...] = (10, 100, 1000)
    metering_n: int = 50  # invocations per metering case
    peer_n: int = 100  # runs per peer
    spawn_baseline_n: int = 100  # bare interpreters started at once (scale-out baseline)
    soak_minutes: float = 10.0  # the soak's mixed load (benchmarks/soak.py; --minutes)

    @classmethod
    def make(cls, quick: bool, out_dir: Path, work_dir: Path) -> Settings:
        if not quick:
            return cls(quick, out_dir, work_dir)
        return cls(
            quick,
            out_dir,
            work_dir,
            cold_n=30,
            warm_n=2_000,
            throughput_depths=(1, 16),
            throughput_warmup_s=0.2,
            throughput_window_s=0.4,
            scale_ns=(10, 100),
            metering_n=5,
            peer_n=5,
            spawn_baseline_n=20,
            soak_minutes=1 / 3,
        )


# -- statistics --------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (the value below which a fraction ``q`` of samples lie)."""
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


def summarize(values: Iterable[float]) -> dict[str, float]:
    """n, mean, min, p50, p90, p99, max of ``values`` (same unit as the input)."""
    data = sorted(values)
    if not data:
        return {"n": 0}
    return {
        "n": len(data),
        "mean": sum(data) / len(data),
        "min": data[0],
        "p50": percentile(data, 0.50),
        "p90": percentile(data, 0.90),
        "p99": percentile(data, 0.99),
        "max": data[-1],
    }


# -- the machine -------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    cgroup = "v2" if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers") else "v1"
    if cgroup == "v1" and os.path.isdir(f"{CGROUP_ROOT}/unified"):
        cgroup = "v1 (hybrid, v2 at /sys/fs/cgroup/unified)"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "os": _os_release(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "cgroups": cgroup,
        "euid": os.geteuid(),
    }


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip() or "unknown"
    return commit + ("+dirty" if dirty.stdout.strip() else "")


# -- processes and memory ----------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/*/stat: the ppid is the 4th field)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after the last ")".
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2 :].split()[19])


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def smaps_rollup(pid: int) -> dict[str, int]:
    """Rss, Pss and private (USS) of ``pid`` in bytes; {} if it is gone."""
    values: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[-1] == "kB":
            values[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return {
        "rss": values.get("Rss", 0),
        "pss": values.get("Pss", 0),
        "private": values.get("Private_Clean", 0) + values.get("Private_Dirty", 0),
    }


# -- the daemon --------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


@dataclass
class BenchDaemon:
    """A ``lambdad serve`` of our own, on a temporary socket, state directory and cgroup parent.

    Args:
        label: names the directory, the log and the cgroup parent.
        work_dir: where the socket, state and log go.
        settings: ``[daemon]`` settings for the TOML config (see lambdad/config.py).
        extra_args: more ``lambdad serve`` arguments (``--api HOST:PORT``).
    """

    label: str
    work_dir: Path
    settings: dict[str, Any] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    started_s: float = 0.0

    def __post_init__(self) -> None:
        self.dir = self.work_dir / f"daemon-{self.label}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = str(self.dir / "lambdad.sock")
        self.state_dir = str(self.dir / "state")
        self.log_path = self.dir / "daemon.log"
        self.cgroup_parent = f"lambdad-bench-{os.getpid()}-{self.label}"
        self.config_path = self.dir / "lambdad.toml"
        self.settings = {"cgroup_parent": self.cgroup_parent, **self.settings}
        lines = ["[daemon]"] + [f"{k} = {_toml_value(v)}" for k, v in self.settings.items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    def __enter__(self) -> BenchDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        # A crash of the daemon should say where: faulthandler prints the Python stack.
        env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
        try:
            self.proc = spawn_daemon(
                self.socket,
                self.state_dir,
                log_path=str(self.log_path),
                config_path=str(self.config_path),
                extra_args=self.extra_args,
                env=env,
                cwd=str(ROOT),
                deadline_s=START_DEADLINE_S,
            )
        except DaemonStartError as exc:
            raise RuntimeError(f"lambdad did not start: {exc}") from None
        self.started_s = time.monotonic() - t0

    def client(self, timeout: float | None = 120) -> Client:
        return Client(self.socket, timeout=timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def zygote_pids(self) -> list[int]:
        if self.proc is None:
            return []
        return [p for p in children_of(self.proc.pid) if "sandbox.zygote" in cmdline(p)]

    def sandbox_pids(self) -> list[int]:
        """Every sandbox process: the zygotes' children (each is PID 1 of its pid namespace)."""
        return [p for z in self.zygote_pids() for p in children_of(z)]

    def cgroup_parents(self) -> list[str]:
        """Our parent cgroup in every hierarchy. The daemon may suffix the configured name
        with a digest of its state directory (``<name>-<10 hex>``): both forms are ours."""
        pattern = re.compile(re.escape(self.cgroup_parent) + r"(-[0-9a-f]{10})?")
        roots = [CGROUP_ROOT] + [
            e.path for e in os.scandir(CGROUP_ROOT) if e.is_dir(follow_symlinks=False)
        ]
        found = []
        for root in roots:
            try:
                entries = list(os.scandir(root))
            except OSError:
                continue
            found += [
                e.path
                for e in entries
                if e.is_dir(follow_symlinks=False) and pattern.fullmatch(e.name)
            ]
        return sorted(found)

    def log_tail(self, size: int = 3000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-size:].decode("utf-8", "replace")

    def stop(self) -> None:
        """SIGTERM (the daemon's graceful drain); SIGKILL if it does not exit; then make sure
        no process or cgroup of ours outlives the benchmark."""
        if self.proc is None:
            return
        # (pid, start time): a pid is only killed later if it is still the same process.
        leftovers = [(p, _start_time(p)) for p in self.zygote_pids() + self.sandbox_pids()]
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                note_problem(
                    f"SIGTERM did not stop `lambdad serve` within {STOP_GRACE_S:.0f} s "
                    "(it closed its socket but kept running); the harness used SIGKILL"
                )
                self.proc.kill()
                self.proc.wait()
        elif self.proc.returncode not in (0, -signal.SIGTERM):
            note_problem(f"lambdad exited with status {self.proc.returncode} during a benchmark")
        self._clean_cgroups()
        for pid, started in leftovers:
            if started is not None and _start_time(pid) == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc = None

    def _clean_cgroups(self) -> None:
        """Thaw (a frozen task never dies), kill and remove every cgroup under our parent."""
        parents = self.cgroup_parents()
        for parent in parents:
            for entry in os.scandir(parent):
                if not entry.is_dir(follow_symlinks=False):
                    continue
                for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
                    try:
                        Path(entry.path, name).write_text(value)
                    except OSError:
                        pass
                try:
                    pids = Path(entry.path, "cgroup.procs").read_text().split()
                except OSError:
                    pids = []
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
        # Dying sandboxes leave their cgroups busy for a moment: sweep until all are gone.
        deadline = time.monotonic() + CLEANUP_DEADLINE_S
        for parent in parents:
            while True:
                left = 0
                for entry in os.scandir(parent):
                    if entry.is_dir(follow_symlinks=False):
                        try:
                            os.rmdir(entry.path)
                        except FileNotFoundError:
                            pass
                        except OSError:
                            left += 1
                if not left or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            try:
                os.rmdir(parent)
            except OSError:
                pass
