"""A city of cameras: the cost of a run at equal total frames for 10 ... 10,000 cameras, and of
scenarios/city_scale.yaml per policy (wall time and peak memory of a child process running run_to_folder).

`python -m benchmarks.city [--frames N] [--city-timeout S]` prints one JSON object. Rows are measured, one child
process each (time.perf_counter around it; peak = its VmHWM, as benchmarks.memory reads it), on this machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.memory import _API, _PEAK, ROOT

CAMERAS = (10, 100, 1_000, 10_000)
TOTAL_FPS = 100.0
"""The cameras together capture this many frames per second whatever their number (each 100 / N fps), so that the
edge server's load, and so the queueing, is the same in every row: only the number of cameras changes."""


def cameras_scenario(cameras: int, total_frames: int) -> dict:
    """N RPi 4B cameras offloading JPEG frames to one laptop edge server (12 servers: rho 0.67), total_frames in all."""
    return {"name": f"cameras_{cameras}", "model": "densenet201",
            "mobiles": [{"device": "rpi4b", "count": cameras}], "edge": {"device": "laptop", "servers": 12},
            "link": {"data_rate_mbps": 10, "propagation_delay_s": 0.002},
            "workload": {"source": "periodic", "frame_rate_fps": TOTAL_FPS / cameras,
                         "frames": total_frames // cameras, "service_time": "median"},
            "policies": [{"name": "offload", "encoding": "jpeg"}], "outputs": {"frames": True, "plots": False}}


def run_child(scenario: Path, out: Path, timeout_s: float) -> dict:
    """run_to_folder(scenario, out) in a child process: wall seconds, CPU seconds (user + system: less sensitive to
    a shared machine's load) and peak RSS (MB), or that it ran out of time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        res = subprocess.run([sys.executable, "-c", _PEAK + _API, str(scenario), str(out)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "cpu_s": None, "peak_rss_mb": None, "note": f"did not finish within {timeout_s:g} s"}
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if res.returncode != 0:
        errors = [ln for ln in res.stderr.strip().splitlines() if not ln.isdigit()]  # the last line is the peak
        return {"seconds": None, "cpu_s": None, "peak_rss_mb": None, "note": (errors or ["failed"])[-1]}
    return {"seconds": seconds, "cpu_s": cpu_s, "peak_rss_mb": int(res.stderr.split()[-1]) / 1024}


def camera_rows(total_frames: int, timeout_s: float = 600.0) -> list[dict]:
    """One row per camera count in CAMERAS, all at total_frames frames and the same load."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in CAMERAS:
            path = Path(tmp) / f"cameras_{n}.yaml"
            path.write_text(yaml.safe_dump(cameras_scenario(n, total_frames)))
            row = {"cameras": n, "frames": n * (total_frames // n), **run_child(path, Path(tmp) / f"out{n}", timeout_s)}
            if row["seconds"]:
                row["frames_per_s"] = row["frames"] / row["seconds"]
            rows.append(row)
    return rows


def city_rows(timeout_s: float, scale: float = 1.0) -> list[dict]:
    """scenarios/city_scale.yaml, one policy per child process (scale < 1: that fraction of its cameras), each after
    an untimed run of the same policy with 100 cameras (50 of each of its two device groups x 600 frames = 60,000
    frames, three times metrics.COMPILED_FROM: past every size where a summary's group-by turns compiled): the timed
    run finds numba's cache filled, as every run after a machine's first does (the warm-up's own time, compiling
    included where the cache was cold, is in `warmup_s`)."""
    source = yaml.safe_load((ROOT / "scenarios" / "city_scale.yaml").read_text())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for policy in source["policies"]:
            data = {**source, "policies": [policy]}
            path = Path(tmp) / "city.yaml"
            data["mobiles"] = [{**g, "count": 50} for g in source["mobiles"]]
            path.write_text(yaml.safe_dump(data))
            warmup = run_child(path, Path(tmp) / f"warm_{policy['name']}", timeout_s)
            data["mobiles"] = [{**g, "count": max(1, int(g["count"] * scale))} for g in source["mobiles"]]
            path.write_text(yaml.safe_dump(data))
            cameras = sum(g["count"] for g in data["mobiles"])
            rows.append({"policy": policy["name"], "cameras": cameras, "edge_servers": len(data["edges"]),
                         "frames": cameras * data["workload"]["frames"],
                         **run_child(path, Path(tmp) / f"out_{policy['name']}", timeout_s),
                         "warmup_s": warmup["seconds"]})
    return rows


def report(total_frames: int, city_timeout_s: float, city_scale: float = 1.0) -> dict:
    return {"cameras_equal_frames": camera_rows(total_frames), "city_scale": city_rows(city_timeout_s, city_scale)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.city", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="total frames of each camera-count row")
    parser.add_argument("--city-timeout", type=float, default=600.0, help="seconds per city policy before giving up")
    parser.add_argument("--city-scale", type=float, default=1.0, help="fraction of the city's cameras")
    parser.add_argument("--skip-city", action="store_true")
    args = parser.parse_args(argv)
    out = {"cameras_equal_frames": camera_rows(args.frames)}
    if not args.skip_city:
        out["city_scale"] = city_rows(args.city_timeout, args.city_scale)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
