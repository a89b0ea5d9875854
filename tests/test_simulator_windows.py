"""The windowed (bounded-memory) SimPy engine gives the same per-frame times as the in-memory run."""

from __future__ import annotations

import numpy as np
import pytest

from profilers.errors import EdgesimError
from simulator.compiled import simulate_compiled_windows
from simulator.engine import simulate, simulate_windows
from simulator.plan import FramePlan, Topology
from simulator.link import RateTrace
from simulator.policies import StatefulPolicy
from simulator.policies.best_split import BandwidthEstimator


class _ByBandwidth(StatefulPolicy):
    """Route 1 (offload) while the EWMA bandwidth estimate is above 1 Mbit/s, else route 0 (local)."""

    def __init__(self) -> None:  # no spec or devices: the engine only calls the stateful hooks
        self.estimator = None

    def start(self, uplinks):
        self.estimator = BandwidthEstimator("ewma", 0.3, uplinks)

    def observe_transfer(self, link, bits, duration_s):
        self.estimator.observe(link, bits, duration_s)

    def choose_one(self, view, routes):
        return 1 if self.estimator.at(view.link, view.now_s) > 1e6 else 0


def _plan(n_mobiles=3, frames=400, seed=0, routes=2):
    rng = np.random.default_rng(seed)
    capture = np.concatenate([np.cumsum(rng.exponential(0.5, frames)) + 0.01 * m for m in range(n_mobiles)])
    n = capture.size
    mobile = np.repeat(np.arange(n_mobiles), frames)
    head = rng.exponential(0.1, (routes, n))
    tail = rng.exponential(0.05, (routes, n))
    tail[0] = np.nan  # route 0: local only
    head[1] *= 0.3
    wire = np.zeros((routes, n))
    wire[1] = rng.integers(1_000, 200_000, n) * 8.0
    down = np.zeros((routes, n))
    down[1] = 0.001
    route = (rng.random(n) < 0.6).astype(np.int16)
    return FramePlan(capture, mobile, route, head, wire, tail, down, n_mobiles)


def _window(plan: FramePlan, frames: int, k: int, w: int):
    seq = np.tile(np.arange(frames), plan.n_mobiles)
    sel = np.flatnonzero((seq >= k * w) & (seq < (k + 1) * w))
    if sel.size == 0:
        return None, sel
    return FramePlan(plan.capture_s[sel], plan.mobile[sel], plan.route[sel].copy(), plan.head_s[:, sel],
                     plan.wire_bits[:, sel], plan.tail_s[:, sel], plan.down_s[:, sel], plan.n_mobiles), sel


@pytest.mark.parametrize("servers,trace", [(1, False), (2, True)])
@pytest.mark.parametrize("stateful", [False, True])
def test_windows_equal_in_memory(servers, trace, stateful):
    frames, w = 400, 37
    plan = _plan(frames=frames)
    uplink = RateTrace(np.array([0.0, 30.0, 60.0]), np.array([2e6, 0.5e6, 4e6])) if trace else RateTrace.constant(2.0)
    topo = Topology(servers=servers, uplink=[uplink] * 3, shared_medium=False, propagation_s=0.002, downlink_bps=1e7)
    policy = _ByBandwidth() if stateful else None
    routes = [[None, None]] * 3 if stateful else None
    whole = simulate(FramePlan(**{**plan.__dict__, "route": plan.route.copy()}), topo, policy, routes)
    got = {}

    def keep(k, wp, times):
        got[k] = times

    simulate_windows(lambda k: _window(plan, frames, k, w)[0], topo, keep, policy, routes, ring_windows=4)
    assert sorted(got) == list(range(-(-frames // w)))
    for k, times in got.items():
        _, sel = _window(plan, frames, k, w)
        for name in ("head_start", "head_end", "up_end", "tail_end", "done"):
            np.testing.assert_allclose(times[name], whole[name][sel], rtol=0, atol=1e-9, equal_nan=True)
        np.testing.assert_array_equal(times["route"], whole["route"][sel])


def test_unstable_system_gives_one_clear_error():
    plan = _plan(n_mobiles=1, frames=400, routes=2)
    plan.head_s[:] = 5.0  # 5 s of work per frame, a frame every 0.5 s: the queue grows without bound
    plan.route[:] = 0
    topo = Topology(servers=1, uplink=[RateTrace.constant(1.0)], shared_medium=False, propagation_s=0.0, downlink_bps=1e6)
    with pytest.raises(EdgesimError, match="in flight"):
        simulate_windows(lambda k: _window(plan, 400, k, 20)[0], topo, lambda *a: None, ring_windows=2)
    with pytest.raises(EdgesimError, match="in flight"):
        simulate_compiled_windows(lambda k: _window(plan, 400, k, 20)[0], topo, lambda *a: None, ring_windows=2)


def test_windowed_run_writes_the_same_frames_and_summary(tmp_path):
    """A results-folder run above workload.chunk_frames streams windows; values equal the in-memory run."""
    import pandas as pd

    from edgesim.cli.app import main
    from tests.sim_helpers import scenario_dict, write_scenario, write_toy_profiles

    profiles = write_toy_profiles(tmp_path)
    data = scenario_dict(profiles, engine="simpy", mobiles=[{"device": "toy-mobile", "count": 2}],
                         workload={"source": "poisson", "frame_rate_fps": 2.0, "frames": 1500, "service_time": "sampled"},
                         link={"data_rate_mbps": 1.0, "loss_probability": 0.05, "packet_overhead_bytes": 40},
                         policies=[{"name": "local"}, {"name": "offload"}, {"name": "best-split"}],
                         replications=2, outputs={"plots": False})
    path = write_scenario(tmp_path, data)
    assert main(["run", str(path), "--out", str(tmp_path / "mem"), "--jobs", "1"]) == 0
    assert main(["run", str(path), "--out", str(tmp_path / "win"), "--jobs", "1", "--set", "workload.chunk_frames=400"]) == 0
    a = pd.read_parquet(tmp_path / "mem" / "frames.parquet")
    b = pd.read_parquet(tmp_path / "win" / "frames.parquet")
    key = ["replication", "policy", "frame"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-9, rtol=0)
    sa = pd.read_csv(tmp_path / "mem" / "summary.csv").drop(columns=["engine"])
    sb = pd.read_csv(tmp_path / "win" / "summary.csv")
    assert (sb["engine"] == "simpy (windows)").all()
    pd.testing.assert_frame_equal(sa, sb.drop(columns=["engine"]), check_exact=False, rtol=1e-9)


def test_compiled_engine_windows_equal_in_memory(tmp_path):
    import pandas as pd

    from edgesim.cli.app import main
    from tests.sim_helpers import scenario_dict, write_scenario, write_toy_profiles

    profiles = write_toy_profiles(tmp_path)
    data = scenario_dict(profiles, engine="compiled", mobiles=[{"device": "toy-mobile", "count": 2}],
                         workload={"source": "poisson", "frame_rate_fps": 2.0, "frames": 900, "service_time": "sampled"},
                         outputs={"plots": False})
    path = write_scenario(tmp_path, data)
    assert main(["run", str(path), "--out", str(tmp_path / "mem"), "--jobs", "1"]) == 0
    assert main(["run", str(path), "--out", str(tmp_path / "chk"), "--jobs", "1", "--set", "workload.chunk_frames=500"]) == 0
    a = pd.read_parquet(tmp_path / "mem" / "frames.parquet")
    b = pd.read_parquet(tmp_path / "chk" / "frames.parquet")
    key = ["replication", "policy", "frame"]  # windows end in their own order
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-9, rtol=0)
    sb = pd.read_csv(tmp_path / "chk" / "summary.csv")
    assert (sb["engine"] == "compiled (windows)").all()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "mem" / "summary.csv").drop(columns=["engine"]),
                                  sb.drop(columns=["engine"]), check_exact=False, rtol=1e-9)


def test_frames_parquet_bytes_do_not_depend_on_how_tables_arrive(tmp_path, monkeypatch):
    """frames.parquet is cut into row groups by row count: one table, or the same rows in uneven pieces, give
    the same bytes (so executors, job counts and window sizes cannot change the file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import simulator.frames as frames

    monkeypatch.setattr(frames, "ROW_GROUP_ROWS", 1000)
    rng = np.random.default_rng(3)
    table = pa.table({"policy": np.array(["local", "offload"] * 1250, dtype=object), "delay_s": rng.random(2500)})
    outputs = []
    for cuts in ([0, 2500], [0, 7, 999, 1001, 2400, 2500], [0, 1500, 2500]):
        with frames.FramesFile(tmp_path / f"f{len(outputs)}.parquet") as out:
            for lo, hi in zip(cuts[:-1], cuts[1:]):
                out.write(table.slice(lo, hi - lo))
        outputs.append((tmp_path / f"f{len(outputs)}.parquet").read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    meta = pq.ParquetFile(tmp_path / "f0.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1000, 1000, 500]
    assert pq.read_table(tmp_path / "f1.parquet").equals(table)
