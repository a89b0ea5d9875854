"""`python -m benchmarks.soak [FRAMES]`: frames through the SimPy engine in windows; peak memory stays flat.

Runs one sweep point (toy profiles: a mobile device offloading to an edge server over a lossy 1 Mbit/s link,
Poisson frames, sampled service times) into a results folder with frames written window by window, and
prints wall time, frames per second and this process's peak RSS as JSON.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from simulator.results import run_to_folder
from simulator.scenario import Scenario
from tests.sim_helpers import scenario_dict, write_toy_profiles


def soak(frames: int, chunk_frames: int = 250_000) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        profiles = write_toy_profiles(Path(tmp))
        sc = Scenario.model_validate(scenario_dict(
            profiles, engine="simpy", policies=[{"name": "offload", "encoding": "jpeg"}],
            link={"data_rate_mbps": 1.0, "loss_probability": 0.01, "packet_overhead_bytes": 40},
            workload={"source": "poisson", "frame_rate_fps": 2.0, "frames": frames, "service_time": "sampled",
                      "chunk_frames": chunk_frames},
            outputs={"plots": False, "frames": True}))
        start = time.perf_counter()
        manifest = run_to_folder(sc, Path(tmp) / "soak", jobs=1)
        wall = time.perf_counter() - start
        size_mb = (Path(tmp) / "soak" / "frames.parquet").stat().st_size / 2**20
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"frames": frames, "chunk_frames": chunk_frames, "wall_s": wall, "frames_per_s": frames / wall,
            "peak_rss_mb": peak_mb, "frames_parquet_mb": size_mb, "engines": manifest["engines"]}


if __name__ == "__main__":
    print(json.dumps(soak(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000)))
