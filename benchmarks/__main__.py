"""``python -m benchmarks [--quick] [--out DIR] [--only a,b]``: run every scenario, write
``latest.json``, ``latest.md`` and the PNG plots, print the SPEC §10 summary.

A missed target is information, not failure: the exit status is 0 unless the harness itself
could not run. A scenario that fails (for example because the daemon crashed) is recorded as an
error in the results and the others still run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import (
    buckets,
    cold,
    gateway,
    harness,
    http_invoke,
    metering,
    peers,
    profile,
    queues,
    report,
    runtimes,
    scale,
    soak,
    templates,
    throughput,
    warm,
)  # fmt: skip
from benchmarks.harness import Settings

RESULTS = Path(__file__).resolve().parent / "results"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

# Order matters a little: the heaviest scenario (1,000 sandboxes) runs last.
SCENARIOS: dict[str, Callable[[Settings], dict[str, Any]]] = {
    "peers": peers.run,
    "cold": cold.run,
    "warm": warm.run,
    "http": http_invoke.run,
    "gateway": gateway.run,  # issue 15: the HTTP gateway beside uvicorn and serverless-offline
    "metering": metering.run,
    "throughput": throughput.run,
    "runtimes": runtimes.run,
    "queues": queues.run,  # issue 16: mapping throughput, embedded and NATS (not in the table yet)
    "buckets": buckets.run,  # issue 16: object event -> handler start (not in the table yet)
    "scale": scale.run,
    "templates": templates.run,  # issue 17 item 1: template copies beside plain cold starts
}
# Run only when named with --only: the soak runs for minutes (--minutes) and measures
# stability, not speed.
OPT_IN: dict[str, Callable[[Settings], dict[str, Any]]] = {
    "soak": soak.run,
    # Issue 17 item 3: py-spy flame graphs of the daemon and a sandbox, warm and throughput.
    "profile": profile.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a brief run of every scenario")
    parser.add_argument(
        "--out",
        type=Path,
        help="output directory (default benchmarks/results, or benchmarks/results/quick)",
    )
    parser.add_argument(
        "--only",
        help=f"comma-separated subset of: {', '.join([*SCENARIOS, *OPT_IN])} "
        f"(default: all but {', '.join(OPT_IN)})",
    )
    parser.add_argument(
        "--minutes", type=float, help="how long the soak runs (default 10, --quick 1/3)"
    )
    parser.add_argument(
        "--keep-work", action="store_true", help="keep the temporary directory (daemon logs)"
    )
    args = parser.parse_args(argv)
    out_dir: Path = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    chosen = list(SCENARIOS) if not args.only else [s.strip() for s in args.only.split(",")]
    unknown = [s for s in chosen if s not in SCENARIOS and s not in OPT_IN]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    if os.geteuid() != 0:
        print(
            "benchmarks: not root — lambdad runs with reduced isolation and crun/runc are "
            "skipped; the figures are not comparable with SPEC §10's",
            file=sys.stderr,
        )

    work_dir = Path(tempfile.mkdtemp(prefix="lambdad-bench-"))
    settings = Settings.make(args.quick, out_dir, work_dir)
    if args.minutes is not None:
        if not args.minutes > 0:
            parser.error("--minutes must be a positive number")
        settings = dataclasses.replace(settings, soak_minutes=args.minutes)
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "quick": args.quick,
            "commit": harness.git_commit(),
            "machine": harness.machine_info(),
            "loadavg_before": list(os.getloadavg()),
            "scenarios": chosen,
            "settings": {
                k: v for k, v in vars(settings).items() if k not in ("out_dir", "work_dir")
            },
        }
    }
    failed = False
    for name in chosen:
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        try:
            results[name] = {**SCENARIOS, **OPT_IN}[name](settings)
        except Exception:
            failed = True
            results[name] = {"error": traceback.format_exc()}
            print(f"  scenario {name} failed:\n{traceback.format_exc()}", file=sys.stderr)
        print(f"   ({time.monotonic() - t0:.1f} s)", flush=True)
    results["meta"]["runtime_s"] = time.monotonic() - started
    results["meta"]["loadavg_after"] = list(os.getloadavg())
    results["problems"] = list(harness.PROBLEMS)

    rows, plots = report.write(results, out_dir)
    # A full run into the standard place refreshes the table in docs/benchmarks.md too.
    docs_updated = (
        not args.quick
        and out_dir.resolve() == RESULTS
        and chosen == list(SCENARIOS)
        and report.update_docs(DOCS, (out_dir / "latest.md").read_text(), "../benchmarks/results/")
    )
    print()
    print(report.summary_text(rows, results))
    if harness.PROBLEMS:
        print("\ndaemon problems seen in this run:")
        for problem in harness.PROBLEMS:
            print(f"  * {problem}")
    print(
        f"\nwrote {out_dir / 'latest.json'}, {out_dir / 'latest.md'} and {len(plots)} plots "
        f"in {results['meta']['runtime_s']:.0f} s"
    )
    if docs_updated:
        print(f"updated the results section of {DOCS}")
    if args.keep_work or failed:
        print(f"daemon logs kept in {work_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
