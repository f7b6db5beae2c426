"""``python -m benchmarks.profile [--seconds S] [--out DIR]``: CPU profiles, not guesses.

Runs a daemon of its own, puts it under the ``warm`` load (one client, sequential no-op
invocations) and then the ``throughput`` load (4 connections x 16 in flight), and for each
samples the daemon and one warm sandbox with py-spy (in the ``bench`` extra that ``make venv``
installs; it reads the processes' memory, so it needs root or ptrace rights). For every
(load, process) it writes a flame graph ``<load>-<process>.svg`` and the collapsed stacks
``<load>-<process>.txt`` into the output directory (default ``benchmarks/results/profile``),
and ``profile.md`` with the top frames by own time (where the CPU went) and by total time.

Registered as the opt-in scenario ``profile`` too (``python -m benchmarks --only profile``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import EXAMPLES, BenchDaemon, Settings, children_of
from lambdad.client import AsyncClient
from lambdad.errors import LambdadError

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RATE_HZ = 250  # samples per second per process
TOP = 12
SANDBOX_UID_MIN = 200_000  # specialized sandboxes' uids (pooled, generic ones are still root)


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    return found


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return -1


def warm_sandbox(daemon: BenchDaemon) -> int:
    """The pid (host) of a specialized sandbox: a zygote's child with a sandbox uid."""
    for zygote in daemon.zygote_pids():
        for pid in children_of(zygote):
            try:
                if _uid(pid) >= SANDBOX_UID_MIN:
                    return pid
            except OSError:
                continue
    raise RuntimeError("no specialized sandbox found")


class _Load:
    """Invocations in a background thread until stopped."""

    def __init__(self, socket: str, connections: int, in_flight: int) -> None:
        self.socket, self.connections, self.in_flight = socket, connections, in_flight
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        clients = [AsyncClient(self.socket) for _ in range(self.connections)]
        for c in clients:
            await c.__aenter__()

        async def worker(c: AsyncClient) -> None:
            while not self._stop.is_set():
                try:
                    await c.invoke("noop", {})
                except LambdadError:  # a throttle under load is data, not the end of the load
                    continue
                self.count += 1

        try:
            await asyncio.gather(
                *(worker(c) for c in clients for _ in range(self.in_flight))
            )
        finally:
            for c in clients:
                await c.__aexit__(None, None, None)

    def __enter__(self) -> _Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def record(pid: int, seconds: float, svg: Path, raw: Path) -> list[subprocess.Popen[bytes]]:
    """Two py-spy samplers of ``pid`` at once (--nonblocking: the process is never paused):
    one writes the flame graph, the other the collapsed stacks the tables are made from."""
    spy = _py_spy()
    common = ["record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate",
              str(RATE_HZ), "--nonblocking"]  # fmt: skip
    return [
        subprocess.Popen(
            [spy, *common, "--format", fmt, "-o", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for fmt, path in (("flamegraph", svg), ("raw", raw))
    ]


def top_frames(raw: Path) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(by own time, by total time): frames and their share of the samples (0..1)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    if not samples:
        return [], []
    return (
        [(f, n / samples) for f, n in own.most_common(TOP)],
        [(f, n / samples) for f, n in total.most_common(TOP)],
    )


def profile(out_dir: Path, work_dir: Path, seconds: float) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    loads = {"warm": (1, 1), "throughput": (4, 16)}
    result: dict[str, Any] = {}
    settings = {"pool_size": 2, "global_concurrency": 4096, "memory_budget_mb": 1_000_000}
    with BenchDaemon("profile", work_dir, settings) as daemon:
        with daemon.client() as c:
            c.deploy("noop", EXAMPLES / "noop")
            c.invoke("noop", {})
        assert daemon.proc is not None
        # A sandbox is sampled only when py-spy can read it: py-spy opens the interpreter's
        # binary by the path the process sees, which a sandbox's private root hides from the
        # host ("No such file or directory"); the sandbox's table then says so.
        sandbox = warm_sandbox(daemon)
        for load, (connections, in_flight) in loads.items():
            with _Load(daemon.socket, connections, in_flight) as running:
                time.sleep(0.5)  # the load is up before sampling starts
                before = running.count
                procs = {}
                for label, pid in (("daemon", daemon.proc.pid), ("sandbox", sandbox)):
                    svg = out_dir / f"{load}-{label}.svg"
                    raw = out_dir / f"{load}-{label}.txt"
                    procs[label] = (record(pid, seconds, svg, raw), svg, raw)
                failed = {}
                for label, (spies, _svg, _raw) in procs.items():
                    for spy in spies:
                        _, err = spy.communicate(timeout=seconds + 60)
                        if spy.returncode != 0:
                            failed[label] = err.decode().strip().splitlines()[0][:200]
                rate = (running.count - before) / seconds
            result[load] = {"invocations_per_s": rate}
            for label, (_spies, svg, raw) in procs.items():
                if label in failed:
                    result[load][label] = {"error": failed[label]}
                    continue
                own, total = top_frames(raw)
                result[load][label] = {"svg": svg.name, "own": own, "total": total}
            print(f"    {load}: {rate:.0f} invocations/s while sampling", flush=True)
    (out_dir / "profile.md").write_text(_markdown(result, seconds))
    return result


def _markdown(result: dict[str, Any], seconds: float) -> str:
    lines = [f"# CPU profiles ({seconds:.0f} s per load, py-spy at {RATE_HZ} Hz)", ""]
    for load, entry in result.items():
        lines += [f"## {load} ({entry['invocations_per_s']:.0f} invocations/s while sampling)", ""]
        for label in ("daemon", "sandbox"):
            data = entry[label]
            if "error" in data:
                lines += [f"### {label}: not sampled (py-spy: {data['error']})", ""]
                continue
            lines += [f"### {label} — flame graph: `{data['svg']}`", "",
                      "| own time | frame |", "|---:|---|"]  # fmt: skip
            lines += [f"| {share:.1%} | `{frame}` |" for frame, share in data["own"]]
            lines += ["", "| total time | frame |", "|---:|---|"]
            lines += [f"| {share:.1%} | `{frame}` |" for frame, share in data["total"]]
            lines.append("")
    return "\n".join(lines)


def run(settings: Settings) -> dict[str, Any]:
    """The opt-in scenario: profiles into ``<out>/profile``."""
    return profile(settings.out_dir / "profile", settings.work_dir, 3 if settings.quick else 8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="sampling time per load")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "profile")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="lambdad-profile-"))
    try:
        profile(args.out, work, args.seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out}/profile.md and the flame graphs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
