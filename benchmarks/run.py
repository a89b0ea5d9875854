"""`make bench`: engines on the same three-stage tandem, their agreement, memory and sweep scaling.

Prints a table and writes results/benchmarks.json. Each engine runs in a fresh process so that its
peak RSS is its own. Times are wall-clock on this machine; ratios are what to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import compiled


def _measure(engine: str, frames: int, repeats: int = 3) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.measure", engine, str(frames), str(repeats)], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def agreement(frames: int) -> float:
    """Largest per-frame difference of completion times between the fast and the SimPy engine."""
    from benchmarks import tandem

    plan, topo = tandem.tandem_plan(frames)
    a = tandem.simulate_fast(plan, topo)["done"]
    b = tandem.simulate(plan, topo)["done"]
    return float(np.max(np.abs(a - b)))


def sweep_scaling(points: int, frames: int) -> dict:
    """Wall time of the same sweep (SimPy engine) with --jobs 1 and --jobs 2, and whether results match."""
    from simulator.scenario import Scenario
    from simulator.sweep import run_sweep
    from tests.sim_helpers import scenario_dict, write_toy_profiles

    with tempfile.TemporaryDirectory() as tmp:
        profiles = write_toy_profiles(Path(tmp))
        sc = Scenario.model_validate(scenario_dict(
            profiles, engine="simpy", workload={"source": "poisson", "frame_rate_fps": 2.0, "frames": frames},
            sweep={"grid": {"link.data_rate_mbps": {"log": [0.5, 50, points]}}}))
        timings, summaries = {}, {}
        for jobs in (1, 2):
            start = time.perf_counter()
            res = run_sweep(sc, jobs=jobs)
            timings[jobs] = time.perf_counter() - start
            summaries[jobs] = [r.summary.to_csv() for r in res]
    return {"points": points, "frames_per_point_per_policy": frames, "jobs1_s": timings[1], "jobs2_s": timings[2],
            "speedup": timings[1] / timings[2], "identical": summaries[1] == summaries[2]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="frames for the fast and SimPy engines")
    parser.add_argument("--peer-frames", type=int, default=100_000, help="frames for plain SimPy and Ciw")
    parser.add_argument("--memory-frames", type=int, default=10_000_000, help="fast-engine run for peak memory")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.peer_frames, args.memory_frames = 20_000, 5_000, 100_000
    rows = [_measure("fast", args.frames), _measure("simpy", args.frames),
            _measure("plain-simpy", args.peer_frames), _measure("ciw", args.peer_frames)]
    by = {r["engine"]: r for r in rows}
    mem = _measure("fast", args.memory_frames, repeats=1)
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "engines": rows,
        "ratios": {
            "fast_vs_simpy_engine": by["fast"]["frames_per_s"] / by["simpy"]["frames_per_s"],
            "simpy_engine_vs_plain_simpy": by["simpy"]["frames_per_s"] / by["plain-simpy"]["frames_per_s"],
            "simpy_engine_vs_ciw": by["simpy"]["frames_per_s"] / by["ciw"]["frames_per_s"],
        },
        "max_abs_difference_fast_vs_simpy_s": agreement(min(args.frames, 200_000)),
        "fast_engine_peak": {"frames": mem["frames"], "peak_rss_mb": mem["peak_rss_mb"], "seconds": mem["seconds"]},
        "sweep_scaling": sweep_scaling(8, 4000 if args.quick else 20000),
        "compiled": compiled.report(args.quick),
    }
    from rich.console import Console
    from rich.table import Table

    table = Table(title="edgesim benchmark: mobile device -> link -> edge server, Poisson frames (measured, best of 3)")
    for col in ("engine", "frames", "seconds", "frames/s", "peak RSS MB"):
        table.add_column(col, justify="right")
    for r in rows + [dict(mem, engine=f"fast ({mem['frames']:,} frames)")]:
        table.add_row(r["engine"], f"{r['frames']:,}", f"{r['seconds']:.3f}", f"{r['frames_per_s']:,.0f}",
                      f"{r['peak_rss_mb']:.0f}")
    console = Console()
    console.print(table)
    for k, v in report["ratios"].items():
        console.print(f"{k}: {v:.1f}x")
    console.print(f"max |fast - simpy| per frame: {report['max_abs_difference_fast_vs_simpy_s']:.3g} s")
    s = report["sweep_scaling"]
    compiled.print_report(report["compiled"])
    console.print(f"sweep of {s['points']} points: --jobs 1 {s['jobs1_s']:.2f} s, --jobs 2 {s['jobs2_s']:.2f} s "
                  f"(speed-up {s['speedup']:.2f}x, identical results: {s['identical']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from profilers.io import atomic_write_text

    atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
