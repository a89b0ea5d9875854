"""Peak memory of a long run: the toy tandem with N frames, streamed window by window into a results folder.

`python -m benchmarks.memory N [--engine compiled|simpy] [--chunk FRAMES] [--cli]` prints one JSON line: frames,
seconds, peak RSS (MB, measured: getrusage of the child process), the engine summary.csv names and frames.parquet's
rows. The child runs simulator.results.run_to_folder (the simulator alone), or with --cli `edgesim run`, whose
imports (torch among them, for the profiling commands) add about 700 MB before the first frame.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from tests.sim_helpers import scenario_dict, write_scenario, write_toy_profiles

ROOT = Path(__file__).resolve().parent.parent
_API = """
import sys
from pathlib import Path
from simulator.results import run_to_folder
from simulator.scenario import load_scenario
run_to_folder(load_scenario(Path(sys.argv[1])), Path(sys.argv[2]), jobs=1)
"""
_CLI = """
import sys
from edgesim.cli.app import main
sys.exit(main(sys.argv[1:]))
"""
# the child's own peak: VmHWM of its address space after exec (ru_maxrss would also count the parent's memory
# that the child shared between fork and exec: make bench's large parent added about 350 MB to it)
_PEAK = """
import atexit
import sys
def _peak():
    with open("/proc/self/status") as f:
        print(next(line.split()[1] for line in f if line.startswith("VmHWM:")), file=sys.stderr)
atexit.register(_peak)
"""


def measure(frames: int, engine: str = "compiled", chunk: int = 0, cli: bool = False, plots: bool = False) -> dict:
    """Run the toy tandem (one mobile device, split at 'mid', 1 frame/s) in a child process; its peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        profiles = write_toy_profiles(folder)
        workload = {"source": "poisson", "frame_rate_fps": 1.0, "frames": frames, "service_time": "sampled"}
        if chunk:
            workload["chunk_frames"] = chunk
        data = scenario_dict(profiles, engine=engine, link={"data_rate_mbps": 1.0}, workload=workload,
                             policies=[{"name": "split", "split_point": "mid"}],
                             outputs={"plots": plots, "png": "no"})
        path, out = write_scenario(folder, data), folder / "out"
        cmd = [sys.executable, "-c", _PEAK + (_CLI if cli else _API)] + (
            ["run", str(path), "--out", str(out), "--jobs", "1"] if cli else [str(path), str(out)])
        start = time.perf_counter()
        res = subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - start
        peak_mb = int(res.stderr.split()[-1]) / 1024  # VmHWM in kB
        engine_used = pd.read_csv(out / "summary.csv")["engine"].iloc[0]
        rows = pq.ParquetFile(out / "frames.parquet").metadata.num_rows
    return {"frames": frames, "seconds": seconds, "frames_per_s": frames / seconds, "peak_rss_mb": peak_mb,
            "engine": engine_used, "frames_written": rows, "process": "edgesim run" if cli else "run_to_folder",
            "plots": plots}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.splitlines()[0])
    parser.add_argument("frames", type=int)
    parser.add_argument("--engine", default="compiled", choices=["compiled", "simpy"])
    parser.add_argument("--chunk", type=int, default=0, help="workload.chunk_frames (default: the scenario default)")
    parser.add_argument("--cli", action="store_true", help="measure `edgesim run` instead of the simulator alone")
    parser.add_argument("--plots", action="store_true", help="with outputs.plots (HTML figures and the report)")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.frames, args.engine, args.chunk, args.cli, args.plots)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
