"""One benchmark measurement in a fresh process: `python -m benchmarks.measure ENGINE FRAMES` prints JSON."""

from __future__ import annotations

import json
import resource
import sys
import time

from benchmarks import tandem


def measure(engine: str, frames: int, repeats: int = 3) -> dict:
    """Best of `repeats` runs: frames per second of one engine on the tandem, and this process's peak RSS."""
    seconds = min(_once(engine, frames) for _ in range(repeats))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"engine": engine, "frames": frames, "seconds": seconds, "frames_per_s": frames / seconds,
            "peak_rss_mb": peak_mb, "repeats": repeats}


def _once(engine: str, frames: int) -> float:
    """Wall time of one run (the engines' own time: plans are built before the clock starts)."""
    if engine in ("fast", "simpy"):
        plan, topo = tandem.tandem_plan(frames)
        fn = tandem.simulate_fast if engine == "fast" else tandem.simulate
        start = time.perf_counter()
        fn(plan, topo)
        seconds = time.perf_counter() - start
    elif engine == "plain-simpy":
        start = time.perf_counter()
        tandem.run_plain_simpy(frames)
        seconds = time.perf_counter() - start
    elif engine == "ciw":
        start = time.perf_counter()
        tandem.run_ciw(frames)
        seconds = time.perf_counter() - start
    else:
        raise SystemExit(f"unknown engine {engine}")
    return seconds


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 3)))
