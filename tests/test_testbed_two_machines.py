"""Two-machine mode with both halves on this machine: `edgesim testbed serve` in the edge server's namespace,
`edgesim testbed run SCENARIO --edge HOST:PORT` in the mobile device's, over the shaped link (root only)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgesim.testbed.compare import COMPONENTS
from edgesim.testbed.net import EDGE_ADDR, LinkSettings, ShapedLink, missing_requirements

MISSING = missing_requirements()
ROOT = Path(__file__).resolve().parents[1]

SCENARIO = """
name: tiny-two
model: vgg-s2
mobiles: [{device: host-cpu-1thread}]
edge: {device: host-cpu-1thread}
link: {data_rate_mbps: 10, propagation_delay_s: 0.005}
workload: {source: periodic, frame_rate_fps: 20, frames: 4}
policies:
  - {name: split, split_point: pool1, encoding: int8}
"""


@pytest.mark.skipif(MISSING is not None, reason=f"testbed unavailable: {MISSING}")
def test_serve_and_run_through_the_namespaces(tmp_path):
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(SCENARIO)
    cpus = sorted(os.sched_getaffinity(0))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "edgesim.cli.app", "testbed"]
    with ShapedLink(LinkSettings(10e6, 10e6, 0.005, 0.005, "cubic", True)) as link:
        server = subprocess.Popen(link.command("edge", [*cli, "serve", "--host", EDGE_ADDR, "--port", "5401",
                                                        "--edge-cores", str(cpus[-1])]), env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            run = subprocess.run(link.command("mobile", [*cli, "run", str(scenario), "--edge", f"{EDGE_ADDR}:5401",
                                                         "--out", str(tmp_path / "out"), "--mobile-cores",
                                                         str(cpus[0]), "--profile-repeats", "2"]),
                                 env=env, capture_output=True, text=True, timeout=600)
        finally:
            server.terminate()
            server.wait()
    assert run.returncode == 0, run.stderr[-2000:]
    # the clock offset between two processes on one host is 0, within the bound the round trips give
    line = next(ln for ln in run.stderr.splitlines() if ln.startswith("clock offset"))
    offset, bound = (float(x) for x in line.split(":")[1].replace("s", "").replace("(+-", "").replace(")", "").split())
    assert abs(offset) <= bound and bound < 0.02
    frames = pd.read_csv(tmp_path / "out" / "frames.csv")
    assert len(frames) == 4
    assert np.allclose(frames[list(COMPONENTS)].sum(axis=1), frames["delay_s"], atol=1e-6)
    assert (frames["uplink_s"] > 0.005).all() and (frames["return_s"] > 0.005).all()
    assert (tmp_path / "out" / "sim_vs_real.csv").exists() and (tmp_path / "out" / "profiles" / "testbed-edge.json").exists()
