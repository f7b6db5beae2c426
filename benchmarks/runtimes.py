"""Process runtimes: Node.js and ``provided`` cold and warm, and the Runtime API's own cost.

Each figure beside a baseline measured in the same run (issue 14, point 7):

* **node cold** (force_cold, the generic pool full before each call: a pre-started node only
  loads the handler) vs ``node -e`` of the same handler — a fresh interpreter that requires it
  and calls it once. Target: cold p50 >= 5x faster than the spawn.
* **provided cold** (the compiled C bootstrap, exec'd at Init) vs the same bootstrap run *bare*:
  exec'd on the host against an in-harness Runtime API (``sandbox.runtime_api``), timed from
  the spawn to its first answer.
* **warm** node and provided no-op invocations, sequential, beside the in-process Python
  no-op, in interleaved blocks.
* **Runtime API cost**: warm Python through awslambdaric (``provided``, installed from PyPI into
  the function at bench time) vs the in-process Python runtime. Target: <= 2x.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import EXAMPLES, ROOT, BenchDaemon, Settings, note_problem, summarize
from lambdad.client import Client
from lambdad.testing import wait_for
from sandbox import runtime_api, runtimes

POOL_SIZE = 2
C_SOURCE = ROOT / "tests" / "runtimes" / "functions" / "cbin" / "runtime.c"
NODE_NOOP = "exports.handler = async (event, context) => null;\n"
BLOCK = 200
TARGET_NODE_COLD_SPEEDUP = 5.0
TARGET_RIC_WARM_RATIO = 2.0


def _functions(work: Path) -> dict[str, Path]:
    """The benchmark's functions, built in ``work``: node no-op, C bootstrap, awslambdaric."""
    node = work / "fn-node"
    node.mkdir(exist_ok=True)
    (node / "index.js").write_text(NODE_NOOP)
    cbin = work / "fn-cbin"
    cbin.mkdir(exist_ok=True)
    subprocess.run(["gcc", "-O2", "-o", str(cbin / "bootstrap"), str(C_SOURCE)], check=True)
    ric = work / "fn-ric"
    if not (ric / "awslambdaric").is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--only-binary=:all:", "--target", str(ric), "awslambdaric"],
            check=True,
        )  # fmt: skip
    (ric / "bootstrap").write_text("#!/bin/sh\nexec python3 -m awslambdaric app.handler\n")
    (ric / "bootstrap").chmod(0o755)
    shutil.copy(EXAMPLES / "noop" / "app.py", ric / "app.py")
    return {"node": node, "cbin": cbin, "ric": ric}


def _cold(client: Client, name: str, n: int, generic: int) -> dict[str, Any]:
    latencies, init_ms, errors = [], [], []
    for i in range(n + 2):
        try:
            wait_for(lambda: client.stats()["sandboxes"]["generic"] >= generic, 20, 0.002)
        except TimeoutError:
            note_problem(f"runtimes: the generic pools did not refill to {generic} in 20 s")
        t0 = time.perf_counter_ns()
        inv = client.invoke(name, None, force_cold=True)
        elapsed = (time.perf_counter_ns() - t0) / 1e6
        if i < 2:
            continue
        if inv.error is not None or inv.report is None or not inv.report.cold:
            errors.append(str(inv.error)[:200])
            continue
        latencies.append(elapsed)
        init_ms.append(inv.report.init_ms or 0.0)
    if errors:
        note_problem(f"runtimes: {len(errors)} cold {name} calls failed, e.g. {errors[0]}")
    return {
        "latency_ms": summarize(latencies),
        "init_ms": summarize(init_ms),
        "errors": len(errors),
    }


def _warm(client: Client, names: list[str], n: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up
        for _ in range(50):
            client.invoke(name)
    remaining = n
    while remaining > 0:
        block = min(BLOCK, remaining)
        for name in names:
            for _ in range(block):
                t0 = time.perf_counter_ns()
                client.invoke(name)
                samples[name].append((time.perf_counter_ns() - t0) / 1000)
        remaining -= block
    return {name: summarize(values) for name, values in samples.items()}


def _node_spawn_baseline(code: Path, n: int) -> dict[str, float]:
    node = runtimes.node_binary()
    assert node is not None
    script = f"require({str(code / 'index.js')!r}).handler(null, {{}}).then(() => {{}})"
    times = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        subprocess.run([node[0], "-e", script], check=True)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return summarize(times)


def _bare_bootstrap_baseline(bootstrap: Path, n: int) -> dict[str, float]:
    """The bootstrap exec'd on the host against an in-harness Runtime API: spawn to answer."""
    times = []
    for i in range(n):
        server = runtime_api.RuntimeApiServer(port=0)
        env = {"AWS_LAMBDA_RUNTIME_API": server.address, "PATH": "/usr/bin:/bin"}
        t0 = time.perf_counter_ns()
        proc = subprocess.Popen([str(bootstrap)], env=env, cwd=bootstrap.parent)
        try:
            server.watch_child(os.pidfd_open(proc.pid))
            if not server.wait_init().ready:
                raise RuntimeError("the bare bootstrap did not ask for an event")
            answer = server.invoke(runtime_api.Event(f"bare-{i}", b"null", 0, "arn", "trace"))
            times.append((time.perf_counter_ns() - t0) / 1e6)
            if answer.result is None:
                raise RuntimeError(f"the bare bootstrap answered {answer}")
        finally:
            proc.kill()
            proc.wait()
            server.listener.close()
    return summarize(times)


def run(settings: Settings) -> dict[str, Any]:
    if runtimes.host_node_name() is None:
        raise RuntimeError("no node on this host: the nodejs rows need it (system packages)")
    fns = _functions(settings.work_dir)
    n_cold = max(10, settings.cold_n // 4)  # each node refill is a node start: keep it short
    results: dict[str, Any] = {}
    config = {"pool_size": POOL_SIZE, "idle_ttl_s": 3600.0}
    with BenchDaemon("runtimes", settings.work_dir, config) as daemon, daemon.client() as c:
        c.deploy("noop", EXAMPLES / "noop")
        c.deploy("node-noop", fns["node"], handler="index.handler", runtime="nodejs")
        c.deploy("cbin-noop", fns["cbin"], handler="noop.handler", runtime="provided")
        c.deploy("ric-noop", fns["ric"], handler="app.handler", runtime="provided")
        for name in ("noop", "node-noop", "cbin-noop", "ric-noop"):
            inv = c.invoke(name)  # starts the lazily started zygotes too
            if inv.error is not None:
                raise RuntimeError(f"{name}: {inv.error}")
        generic = POOL_SIZE * 3  # python3, nodejs, provided
        results["node_cold"] = _cold(c, "node-noop", n_cold, generic)
        results["provided_cold"] = _cold(c, "cbin-noop", n_cold, generic)
        results["warm_us"] = _warm(
            c, ["noop", "node-noop", "cbin-noop", "ric-noop"], max(200, settings.warm_n // 10)
        )
    results["node_spawn_ms"] = _node_spawn_baseline(fns["node"], n_cold)
    results["bare_bootstrap_ms"] = _bare_bootstrap_baseline(fns["cbin"] / "bootstrap", n_cold)
    node_cold = results["node_cold"]["latency_ms"].get("p50", float("nan"))
    results["node_cold_speedup"] = results["node_spawn_ms"]["p50"] / node_cold
    warm = results["warm_us"]
    results["ric_warm_ratio"] = warm["ric-noop"]["p50"] / warm["noop"]["p50"]
    results["targets"] = {
        "node_cold_speedup_min": TARGET_NODE_COLD_SPEEDUP,
        "ric_warm_ratio_max": TARGET_RIC_WARM_RATIO,
    }
    _print(results)
    return results


def _print(r: dict[str, Any]) -> None:
    def p(d: dict[str, float]) -> str:
        return f"p50 {d.get('p50', float('nan')):7.2f}  p99 {d.get('p99', float('nan')):7.2f}"

    print(f"    node cold      ms {p(r['node_cold']['latency_ms'])} | node -e spawn "
          f"{p(r['node_spawn_ms'])} | {r['node_cold_speedup']:.1f}x faster "
          f"(target >= {TARGET_NODE_COLD_SPEEDUP:.0f}x)", flush=True)  # fmt: skip
    print(f"    provided cold  ms {p(r['provided_cold']['latency_ms'])} | bare bootstrap "
          f"{p(r['bare_bootstrap_ms'])}", flush=True)  # fmt: skip
    for name, d in r["warm_us"].items():
        print(f"    warm {name:10s} us {p(d)}", flush=True)
    print(f"    awslambdaric warm / in-process python warm (p50): {r['ric_warm_ratio']:.2f}x "
          f"(target <= {TARGET_RIC_WARM_RATIO:.0f}x)", flush=True)  # fmt: skip
