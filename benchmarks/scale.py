"""Scale-out and density.

Scale-out: N concurrent invocations (N = 10, 100, 1,000) of a function that notes when it
started and then holds its sandbox long enough that every invocation needs a sandbox of its own
(``benchmarks/functions/stamp``). The sandboxes are up when their handlers start; the handler
reads CLOCK_MONOTONIC, which the host shares (sandboxes have no time namespace), so

    bring-up time = latest handler start - the moment the burst was sent,

and the rate is N / bring-up time. Every invocation must report ``cold`` (a warm one would mean
a sandbox served two of them: the hold was too short).

Density: after the largest burst, its N sandboxes sit idle (and frozen, by the daemon's idle
policy). Their memory is taken two ways — the sum of ``memory.usage_in_bytes`` of their cgroups
(what the kernel charges them, page cache included) and the sum of PSS from
``/proc/<pid>/smaps_rollup`` of the sandbox processes (the zygote's children; pre-forked
generic sandboxes, still uid 0, are counted apart) — plus the daemon's and the zygote's own.

Same-run baselines: bare interpreters started all at once (processes/s), and the memory that
N idle interpreters with the handler imported would take (measured on a few: private memory x N
+ shared once).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    FUNCTIONS,
    BenchDaemon,
    Settings,
    note_problem,
    smaps_rollup,
    summarize,
)
from benchmarks.peers import runner
from lambdad.client import AsyncClient, Invocation
from lambdad.errors import LambdadError
from lambdad.testing import wait_for

PER_CONNECTION = 250  # invocations in flight per client connection
MEMORY_BASELINE_PROCS = 20
DAEMON_SETTINGS = {
    "pool_size": 4,
    "pool_max": 64,
    "global_concurrency": 4096,
    "memory_budget_mb": 1_000_000,
    "idle_ttl_s": 3600.0,
}


def hold_ms(n: int) -> int:
    """How long each handler keeps its sandbox: long enough for ~80 sandboxes/s."""
    return 1500 + 12 * n


async def _burst(path: str, name: str, n: int, hold: int) -> tuple[int, list[Any]]:
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(AsyncClient(path))
            for _ in range(math.ceil(n / PER_CONNECTION))
        ]

        async def one(i: int) -> tuple[Invocation | LambdadError, int]:
            try:
                inv = await clients[i % len(clients)].invoke(name, {"ms": hold})
            except LambdadError as exc:
                return exc, time.monotonic_ns()
            return inv, time.monotonic_ns()

        t0 = time.monotonic_ns()
        results = await asyncio.gather(*(one(i) for i in range(n)))
    return t0, list(results)


def scale_out(daemon: BenchDaemon, n: int) -> dict[str, Any]:
    name = f"stamp{n}"
    hold = hold_ms(n)
    with daemon.client() as c:
        c.deploy(name, FUNCTIONS / "stamp", timeout_s=hold / 1000 + 60)
    t0, results = asyncio.run(_burst(daemon.socket, name, n, hold))
    starts_ms: list[float] = []
    sources: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    warm = 0
    for outcome, _done in results:
        if isinstance(outcome, LambdadError):
            errors[_error_kind(type(outcome).__name__, outcome.message)] += 1
            continue
        if outcome.error is not None:
            error = outcome.error
            errors[_error_kind(str(error.get("errorType")), str(error.get("errorMessage")))] += 1
            continue
        report = outcome.report
        assert report is not None
        if not report.cold:
            warm += 1
        sources[report.source] += 1
        starts_ms.append((int(outcome.result["started_ns"]) - t0) / 1e6)
    starts_ms.sort()
    up_s = starts_ms[-1] / 1000 if starts_ms else math.nan
    result = {
        "n": n,
        "hold_ms": hold,
        "started": len(starts_ms),
        "bring_up_s": up_s,
        "sandboxes_per_s": len(starts_ms) / up_s if starts_ms and up_s > 0 else 0.0,
        "time_to_start_ms": summarize(starts_ms),
        "start_curve_ms": starts_ms,
        "sources": dict(sources),
        "warm": warm,
        "errors": dict(errors),
    }
    print(
        f"    N={n:5d}: {len(starts_ms)} up in {up_s:.3f} s = {result['sandboxes_per_s']:.0f}/s "
        f"(sources {dict(sources)}, warm {warm}, errors {sum(errors.values())})",
        flush=True,
    )
    if errors:
        note_problem(f"scale-out N={n}: {sum(errors.values())} invocations failed: {dict(errors)}")
    if warm:
        note_problem(
            f"scale-out N={n}: {warm} invocations reused a sandbox within a {hold} ms hold "
            "(bring-up slower than the hold allows)"
        )
    return result


def _error_kind(kind: str, message: str) -> str:
    """Errors grouped by kind: sandbox and request ids taken out of the message."""
    message = re.sub(r"python3-\d+-\d+", "<sandbox>", message)
    message = re.sub(r"RequestId: [0-9a-f-]{36} ", "", message)
    return f"{kind}: {message[:160]}"


def _status_uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _memory_cgroup(pid: int) -> str | None:
    """The directory of ``pid``'s memory cgroup (v1 memory hierarchy, else the v2 one)."""
    unified = None
    try:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            hierarchy, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                return "/sys/fs/cgroup/memory" + path
            if hierarchy == "0" and not controllers:
                unified = "/sys/fs/cgroup" + path
    except (OSError, ValueError):
        return None
    return unified


def _cgroup_usage(path: str) -> int:
    for name in ("memory.usage_in_bytes", "memory.current"):
        try:
            return int(Path(path, name).read_text())
        except (OSError, ValueError):
            continue
    return 0


def top_up(daemon: BenchDaemon, name: str, n: int) -> int:
    """If the burst left fewer than ``n`` warm sandboxes (failed invocations), run ``n``
    concurrent invocations again: the warm ones are reused and only the missing ones are cold.
    Returns how many sandboxes that added."""
    with daemon.client() as c:
        before = int(c.stats(name)["sandboxes"]["warm"])
    if before >= n:
        return 0
    asyncio.run(_burst(daemon.socket, name, n, 1500 + 3 * n))
    with daemon.client() as c:
        after = int(c.stats(name)["sandboxes"]["warm"])
    note_problem(
        f"density: the scale-out burst left {before} warm sandboxes instead of {n}; "
        f"a second burst of {n} topped them up to {after} before measuring"
    )
    return after - before


def density(daemon: BenchDaemon, name: str, n: int) -> dict[str, Any]:
    topped_up = top_up(daemon, name, n)
    with daemon.client() as c:
        try:
            wait_for(
                lambda: (s := c.stats(name)["sandboxes"])["frozen"] >= s["warm"] > 0,
                timeout=20,
                interval=0.1,
            )
        except TimeoutError:
            note_problem(f"density: the idle sandboxes of {name} were not all frozen after 20 s")
        fn_sandboxes = c.stats(name)["sandboxes"]
    warm: list[int] = []
    generic: list[int] = []
    for pid in daemon.sandbox_pids():
        (warm if _status_uid(pid) not in (0, None) else generic).append(pid)
    pss = {pid: smaps_rollup(pid) for pid in warm}
    cgroups = {pid: _memory_cgroup(pid) for pid in warm}
    cgroup_bytes = sum(_cgroup_usage(cg) for cg in set(cgroups.values()) if cg)
    memory_parents = [p for p in daemon.cgroup_parents() if "/memory/" in p]
    parent_usage = sum(_cgroup_usage(p) for p in memory_parents)
    total_pss = sum(v.get("pss", 0) for v in pss.values())
    total_rss = sum(v.get("rss", 0) for v in pss.values())
    total_private = sum(v.get("private", 0) for v in pss.values())
    count = len(warm)
    fixed = {}
    assert daemon.proc is not None
    for label, pids in (("daemon", [daemon.proc.pid]), ("zygote", daemon.zygote_pids())):
        fixed[label] = sum(smaps_rollup(p).get("pss", 0) for p in pids)
    generic_pss = sum(smaps_rollup(p).get("pss", 0) for p in generic)
    result = {
        "n": n,
        "topped_up": topped_up,
        "warm_sandboxes": count,
        "generic_sandboxes": len(generic),
        "daemon_stats": fn_sandboxes,
        "cgroup_total_bytes": cgroup_bytes,
        "cgroup_parent_usage_bytes": parent_usage,
        "pss_total_bytes": total_pss,
        "rss_total_bytes": total_rss,
        "private_total_bytes": total_private,
        "cgroup_per_sandbox_bytes": cgroup_bytes / count if count else 0,
        "pss_per_sandbox_bytes": total_pss / count if count else 0,
        "private_per_sandbox_bytes": total_private / count if count else 0,
        "daemon_pss_bytes": fixed["daemon"],
        "zygote_pss_bytes": fixed["zygote"],
        "generic_pss_bytes": generic_pss,
    }
    print(
        f"    density: {count} warm sandboxes: cgroups {cgroup_bytes / 2**20:.0f} MiB "
        f"({result['cgroup_per_sandbox_bytes'] / 2**20:.2f} MiB each), PSS "
        f"{total_pss / 2**20:.0f} MiB ({result['pss_per_sandbox_bytes'] / 2**20:.2f} MiB each); "
        f"daemon {fixed['daemon'] / 2**20:.0f} MiB, zygote {fixed['zygote'] / 2**20:.0f} MiB",
        flush=True,
    )
    if count != n:
        note_problem(f"density: expected {n} warm sandbox processes, found {count}")
    return result


MERGE_N = 200  # sandboxes of the memory_merge density run (1,000 would take minutes more)
KSM = Path("/sys/kernel/mm/ksm")
# ksmd's own pace (100 pages per 20 ms, ~20 MB/s) needs minutes for a few hundred sandboxes;
# the run sets this pace and puts the host's back after (a production host would tune it, or
# use the kernel's advisor_mode).
KSM_PACE = {"pages_to_scan": "20000", "sleep_millisecs": "10"}
MERGE_SETTLE_S = 120.0


def merged_density(settings: Settings) -> dict[str, Any]:
    """Density with the daemon's opt-in ``memory_merge`` (KSM): ``MERGE_N`` idle sandboxes of
    one function, measured as :func:`density` does once ksmd's count of merged pages has
    stopped growing."""
    n = min(MERGE_N, settings.scale_ns[-1])
    if not (KSM / "run").exists():
        return {"error": "no KSM in this kernel"}
    saved = {k: (KSM / k).read_text().strip() for k in ("run", *KSM_PACE)}
    try:
        for key, value in KSM_PACE.items():
            (KSM / key).write_text(value)
        settings_merge = {**DAEMON_SETTINGS, "memory_merge": True}
        with BenchDaemon("merge", settings.work_dir, settings_merge) as daemon:
            scale_out(daemon, n)
            t0 = time.monotonic()
            seen: list[int] = []

            def settled() -> bool:
                seen.append(int((KSM / "pages_sharing").read_text()))
                return len(seen) > 6 and seen[-1] <= seen[-7] * 1.002  # flat for ~3 s

            try:
                wait_for(settled, timeout=MERGE_SETTLE_S, interval=0.5)
            except TimeoutError:
                note_problem(f"memory_merge: still merging after {MERGE_SETTLE_S:.0f} s")
            settle_s = time.monotonic() - t0
            merged = density(daemon, f"stamp{n}", n)
        print(
            f"    memory_merge: {n} sandboxes, PSS "
            f"{merged['pss_per_sandbox_bytes'] / 2**20:.2f} MiB each after {settle_s:.0f} s",
            flush=True,
        )
        return {"n": n, "settle_s": settle_s, "ksm_pace": KSM_PACE, "density": merged}
    finally:
        for key in KSM_PACE:
            (KSM / key).write_text(saved[key])
        if saved["run"] != "1":
            (KSM / "run").write_text("2")  # stop ksmd and unmerge every page
        (KSM / "run").write_text(saved["run"])


def spawn_baseline(n: int) -> dict[str, Any]:
    """n bare interpreters running the no-op handler, all started at once: processes/s."""
    argv = [sys.executable, "-c", runner(str(FUNCTIONS.parent.parent / "examples" / "noop"))]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL) for _ in range(n)]
    failures = sum(1 for p in procs if p.wait() != 0)
    elapsed = time.perf_counter() - t0
    return {"n": n, "seconds": elapsed, "per_s": n / elapsed, "failures": failures}


def memory_baseline(n_target: int) -> dict[str, Any]:
    """Idle interpreters with the handler imported: private x n_target + shared once."""
    code = runner(str(FUNCTIONS.parent.parent / "examples" / "noop"))
    code += "; sys.stdout.flush(); sys.stdin.read()"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for _ in range(MEMORY_BASELINE_PROCS)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            p.stdout.readline()
        mem = [smaps_rollup(p.pid) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    private = sum(m["private"] for m in mem) / len(mem)
    shared = sum(m["rss"] - m["private"] for m in mem) / len(mem)
    return {
        "measured": len(mem),
        "private_per_process_bytes": private,
        "shared_bytes": shared,
        "pss_per_process_bytes": sum(m["pss"] for m in mem) / len(mem),
        "estimate_for_n": n_target,
        "estimate_bytes": private * n_target + shared,
    }


def run(settings: Settings) -> dict[str, Any]:
    runs = []
    dens: dict[str, Any] = {}
    with BenchDaemon("scale", settings.work_dir, DAEMON_SETTINGS) as daemon:
        for i, n in enumerate(settings.scale_ns):
            runs.append(scale_out(daemon, n))
            if i < len(settings.scale_ns) - 1:
                with daemon.client() as c:
                    c.delete(f"stamp{n}")  # its sandboxes retire: the next burst starts clean
        n = settings.scale_ns[-1]
        dens = density(daemon, f"stamp{n}", n)
        if not daemon.alive():
            raise RuntimeError(f"the daemon died during the scale-out run:\n{daemon.log_tail()}")
    merged = merged_density(settings)
    baseline = spawn_baseline(settings.spawn_baseline_n)
    print(
        f"    baseline: {baseline['n']} bare python3 no-op processes at once: "
        f"{baseline['per_s']:.0f}/s",
        flush=True,
    )
    mem_baseline = memory_baseline(1000)
    return {
        "runs": runs,
        "density": dens,
        "merged_density": merged,
        "spawn_baseline": baseline,
        "memory_baseline": mem_baseline,
        "daemon_settings": DAEMON_SETTINGS,
    }
