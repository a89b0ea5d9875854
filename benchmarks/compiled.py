"""The compiled engine against the SimPy engine, plain SimPy and Ciw: the tandem, best-split, drops, a shared medium
of 8 cameras and edge servers with a batching cloud; compile time on a cold and a warm cache; peak memory.

`python -m benchmarks.compiled [--quick]` prints a table and the JSON (results/benchmarks_compiled.json);
benchmarks.run adds the same section to `make bench`. Times are wall-clock, best of three, all in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from benchmarks import tandem
from benchmarks.memory import measure as memory_measure
from simulator.assemble import BATCH_SLOPE
from simulator.compiled import simulate_compiled
from simulator.devices import ServiceTime
from simulator.engine import simulate
from simulator.link import RateTrace
from simulator.plan import Batching, EdgeTier, FramePlan, Tiers, Topology
from simulator.policies import Route
from simulator.policies.best_split import BestSplitPolicy, BestSplitSpec

ROOT = Path(__file__).resolve().parent.parent
LOCAL_MEAN_S = 1.5  # best-split's local route on the tandem: the whole model on the mobile device


def best_split_policy() -> BestSplitPolicy:
    """Best-split with an EWMA bandwidth estimate (alpha 0.3), as a scenario's default entry makes it."""
    pol = BestSplitPolicy.__new__(BestSplitPolicy)  # the engines call only its stateful hooks
    pol.spec = BestSplitSpec(name="best-split")
    return pol


def best_split_tandem(n: int) -> tuple[FramePlan, Topology, list[list[Route]]]:
    """The tandem with two routes: local (the whole model on the mobile device, mean LOCAL_MEAN_S) or split (head
    0.5 s, 200 kbit, tail 0.6 s). Each alone is worse than choosing: local overloads the mobile device (1.5 s per
    frame at 1 frame/s) and split's 1.3 s is the more in expectation only while the uplink and server are idle;
    best-split splits about 65 % of frames here and the queues stay stable (measured)."""
    plan, topo = tandem.tandem_plan(n)
    rng = np.random.default_rng(2)
    head = np.vstack([rng.exponential(LOCAL_MEAN_S, n), plan.head_s[0]])
    tail = np.vstack([np.full(n, np.nan), plan.tail_s[0]])
    wire = np.vstack([np.zeros(n), plan.wire_bits[0]])
    plan = FramePlan(plan.capture_s, plan.mobile, np.zeros(n, np.int16), head, wire, tail, np.zeros((2, n)), 1)
    routes = [Route("local", "toy", "output", "", ServiceTime("exponential", 0.0, mean_s=LOCAL_MEAN_S), 0, None, 0),
              Route("split", "toy", "mid", "", ServiceTime("exponential", 0.0, mean_s=tandem.HEAD_MEAN_S), 25_000,
                    ServiceTime("exponential", 0.0, mean_s=tandem.TAIL_MEAN_S), 0)]
    return plan, topo, [routes]


def bounded_tandem(n: int) -> tuple[FramePlan, Topology]:
    """The tandem at 1.5 frames/s (overloaded) with at most 2 frames waiting at the mobile device and the server."""
    plan, topo = tandem.tandem_plan(n)
    plan.capture_s = plan.capture_s / 1.5
    return plan, Topology(1, topo.uplink, False, 0.0, topo.downlink_bps, mobile_capacity=2, server_capacity=2,
                          drop_stale=False)


def shared_medium(n: int, cameras: int = 8) -> tuple[FramePlan, Topology]:
    """8 cameras at 0.12 frames/s each offloading 200 kbit over one shared 2 Mbit/s medium to a 2-server edge pool."""
    rng = np.random.default_rng(3)
    per = n // cameras
    capture = np.concatenate([np.cumsum(rng.exponential(1 / 0.12, per)) for _ in range(cameras)])
    n = capture.size
    plan = FramePlan(capture, np.repeat(np.arange(cameras), per), np.zeros(n, np.int16),
                     rng.exponential(0.5, (1, n)), np.full((1, n), 200e3), rng.exponential(1.2, (1, n)),
                     np.full((1, n), 0.001), cameras)
    return plan, Topology(2, [RateTrace.constant(2.0)], True, 0.002, 1e6)


def tiered_batching(n: int, cameras: int = 8) -> tuple[FramePlan, Topology]:
    """8 cameras, 2 edge servers (round-robin), each relaying 200 kbit to a 2-server cloud with dynamic batching."""
    rng = np.random.default_rng(4)
    per = n // cameras
    capture = np.concatenate([np.cumsum(rng.exponential(1 / 0.5, per)) for _ in range(cameras)])
    n = capture.size
    mobile = np.repeat(np.arange(cameras), per)
    edge_of_mobile = np.arange(cameras) % 2
    route = edge_of_mobile[mobile].astype(np.int16)
    cloud = rng.exponential(0.25, (2, n))
    factors = np.tile(1 + BATCH_SLOPE * (np.arange(9) - 1.0), (2, 1))  # the fallback batch fit (assemble.py)
    plan = FramePlan(capture, mobile, route, np.zeros((2, n)), np.full((2, n), 200e3), np.full((2, n), np.nan),
                     np.full((2, n), 0.001), cameras, None, np.full((2, n), 200e3), cloud, np.full((2, n), 0.002),
                     1, np.zeros(2, np.int64), factors)
    edges = [EdgeTier(f"e{k}", 1, [RateTrace.constant(5.0)] * cameras, False, RateTrace.constant(50.0), 0.01)
             for k in range(2)]
    tiers = Tiers(edges, "round-robin", 2, Batching(8, (4, 2), 0.02), edge_of_mobile, 1e8)
    return plan, Topology(1, [RateTrace.constant(5.0)] * cameras, False, 0.002, 1e6, tiers=tiers)


def _best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Least wall time of `repeats` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _row(scenario: str, engine: str, frames: int, seconds: float) -> dict:
    return {"scenario": scenario, "engine": engine, "frames": frames, "seconds": seconds,
            "frames_per_s": frames / seconds}


def _copy(plan: FramePlan) -> FramePlan:
    return FramePlan(**{**plan.__dict__, "route": plan.route.copy()})


def throughput(frames: int, simpy_frames: int, peer_frames: int) -> list[dict]:
    """Frames per second of each engine on each scenario (plans built before the clock starts)."""
    rows = []
    plan, topo = tandem.tandem_plan(frames)
    simulate_compiled(*tandem.tandem_plan(1000))  # load the compiled code (warm cache) before timing
    rows.append(_row("tandem", "compiled", frames, _best_of(lambda: simulate_compiled(plan, topo))))
    small, stopo = tandem.tandem_plan(simpy_frames)
    rows.append(_row("tandem", "simpy engine", simpy_frames, _best_of(lambda: simulate(small, stopo))))
    rows.append(_row("tandem", "plain simpy", peer_frames, _best_of(lambda: tandem.run_plain_simpy(peer_frames))))
    rows.append(_row("tandem", "ciw", peer_frames, _best_of(lambda: tandem.run_ciw(peer_frames))))
    cases: list[tuple[str, Callable[[int], tuple], Optional[Callable]]] = [
        ("best-split", best_split_tandem, best_split_policy), ("bounded queues (drops)", bounded_tandem, None),
        ("shared medium, 8 cameras", shared_medium, None), ("2 edges + cloud, batching", tiered_batching, None)]
    for name, build, policy in cases:
        for engine, n in (("compiled", frames), ("simpy engine", simpy_frames)):
            built = build(n)
            plan, topo, routes = built if len(built) == 3 else (*built, None)
            run = simulate_compiled if engine == "compiled" else simulate
            seconds = _best_of(lambda: run(_copy(plan), topo, policy() if policy else None, routes))
            rows.append(_row(name, engine, plan.capture_s.size, seconds))
    return rows


_FIRST_CALL = """
import time
from benchmarks import tandem
from benchmarks.compiled import shared_medium
from simulator.compiled import simulate_compiled
plan, topo = tandem.tandem_plan(1000)
shared = shared_medium(1000)
t0 = time.perf_counter()
simulate_compiled(plan, topo)  # one mobile device: Lindley's recursion
t1 = time.perf_counter()
simulate_compiled(*shared)  # 8 cameras on one medium: the event loop
print(t1 - t0, time.perf_counter() - t1)
"""


def compile_times() -> dict:
    """First calls in a fresh process on an empty numba cache (compile) and again on the filled cache (load): the
    recursion path (the tandem) and the event loop (the shared medium of 8 cameras); *_cache_s is their sum."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
        out = {}
        for label in ("cold", "warm"):
            res = subprocess.run([sys.executable, "-c", _FIRST_CALL], capture_output=True, text=True, check=True,
                                 cwd=ROOT, env=env)
            recursion, loop = (float(x) for x in res.stdout.split())
            out[f"{label}_cache_s"] = recursion + loop
            out[f"{label}_recursion_s"], out[f"{label}_event_loop_s"] = recursion, loop
    return out


def hybrid_scenario(quick: bool) -> list[dict]:
    """The shipped hybrid edge-cloud scenario (8 cameras, two edge servers, a batching cloud, six policies, every
    sweep point) through each engine, one process, one job."""
    from simulator.scenario import apply_overrides, load_scenario, sweep_points
    from simulator.sweep import run_sweep

    sc = load_scenario(ROOT / "scenarios" / "hybrid_edge_cloud.yaml")
    if quick:
        sc = apply_overrides(sc, {"workload.frames": 50}, source="--quick")
    frames = sc.workload.frames * sum(g.count for g in sc.mobiles) * len(sc.policies) * sc.replications * \
        len(sweep_points(sc))
    rows = []
    for engine in ("compiled", "simpy"):
        run = apply_overrides(sc, {"engine": engine}, source="bench")
        if engine == "compiled":
            run_sweep(run, jobs=1)  # compile and load outside the clock
        simpy = engine == "simpy"  # a run of the SimPy engine here takes tens of seconds: timed once
        rows.append(_row("hybrid_edge_cloud.yaml (all points)", "simpy engine (1 run)" if simpy else engine,
                         frames, _best_of(lambda: run_sweep(run, jobs=1), 1 if simpy else 3)))
    return rows


def report(quick: bool = False) -> dict:
    """Throughput rows, ratios, compile times and peak memory of the compiled engine."""
    frames, simpy_frames, peer, memory = (20_000, 5_000, 2_000, 200_000) if quick else \
        (1_000_000, 100_000, 50_000, 10_000_000)
    rows = throughput(frames, simpy_frames, peer) + hybrid_scenario(quick)
    by = {(r["scenario"], r["engine"].removesuffix(" (1 run)")): r["frames_per_s"] for r in rows}
    ratios = {f"{s}: compiled / simpy engine": by[(s, "compiled")] / by[(s, "simpy engine")]
              for s in dict.fromkeys(r["scenario"] for r in rows)}
    ratios["tandem: compiled / plain simpy"] = by[("tandem", "compiled")] / by[("tandem", "plain simpy")]
    ratios["tandem: compiled / ciw"] = by[("tandem", "compiled")] / by[("tandem", "ciw")]
    return {"rows": rows, "ratios": ratios, "compile": compile_times(), "peak_memory": memory_measure(memory),
            "cpu_user_s": resource.getrusage(resource.RUSAGE_SELF).ru_utime}


def print_report(rep: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="compiled engine vs the SimPy engine, plain SimPy and Ciw (measured here, best of 3, one core)")
    for col in ("scenario", "engine", "frames", "seconds", "frames/s"):
        table.add_column(col, justify="right")
    for r in rep["rows"]:
        table.add_row(r["scenario"], r["engine"], f"{r['frames']:,}", f"{r['seconds']:.3f}", f"{r['frames_per_s']:,.0f}")
    console = Console()
    console.print(table)
    for k, v in rep["ratios"].items():  # derived: quotients of the measured frames/s in the table
        console.print(f"{k}: {v:,.1f}x (frames/s ratio of the rows above)")
    c, m = rep["compile"], rep["peak_memory"]
    console.print(f"first calls (recursion + event loop): {c['cold_cache_s']:.1f} s on a cold numba cache "
                  f"({c['cold_recursion_s']:.1f} + {c['cold_event_loop_s']:.1f} s), {c['warm_cache_s']:.2f} s warm")
    console.print(f"{m['frames']:,} frames into a results folder ({m['engine']}, {m['process']}, frames.parquet "
                  f"{m['frames_written']:,} rows): {m['seconds']:.1f} s ({m['frames_per_s']:,.0f} frames/s end to end), "
                  f"peak RSS {m['peak_rss_mb']:,.0f} MB")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compiled", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks_compiled.json"))
    args = parser.parse_args(argv)
    rep = report(args.quick)
    print_report(rep)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rep, indent=1) + "\n")
    print(json.dumps(rep, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
