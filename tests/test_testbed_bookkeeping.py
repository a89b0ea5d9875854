"""The testbed's bookkeeping: stamps to components that add up, simulated frames in the same components, the
comparison rows, the diagnostic profiles from a run's own compute times, and the one-line errors (tiny model)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgesim.cli.app import main
from edgesim.testbed.compare import COMPONENTS, STAMPS, comparison_rows, real_frames, simulated_components
from edgesim.testbed.net import missing_requirements
from edgesim.testbed.runner import (IDLE_GAP_CAP_S, Placement, SessionProfiles, TestbedOptions, expand,
                                    own_compute_profiles, run_session, session_idle_gap_s, simulate_frames,
                                    simulation_scenario, write_outputs)
from profilers.measure import MeasureOptions, assumed_host_power, host_hardware, host_provenance, measure_model
from profilers.models.registry import build
from profilers.schema import DeviceProfile, load_profile, save_profile
from simulator.scenario import parse_scenario

TINY = "vgg-s2"  # 3x32x32 input, split points input, pool1, output

SCENARIO = f"""
name: tiny
model: {TINY}
mobiles: [{{device: host-cpu-1thread}}]
edge: {{device: host-cpu-1thread}}
link: {{data_rate_mbps: 10, propagation_delay_s: 0.005}}
workload: {{source: periodic, frame_rate_fps: 20, frames: 4}}
policies:
  - {{name: local}}
  - {{name: split, split_point: pool1, encoding: int8}}
"""


def test_session_profile_idles_as_the_run_does():
    points = expand(parse_scenario(SCENARIO, names=False))
    assert session_idle_gap_s(points) == pytest.approx(IDLE_GAP_CAP_S)  # 20 fps: 50 ms between frames
    fast = expand(parse_scenario(SCENARIO.replace("frame_rate_fps: 20", "frame_rate_fps: 100"), names=False))
    assert session_idle_gap_s(fast) == pytest.approx(0.01)  # never more than the period itself


@pytest.fixture(scope="module")
def tiny_profiles(tmp_path_factory) -> tuple[Path, Path]:
    """A measured profile of the tiny model, as the testbed's two sides would write it."""
    folder = tmp_path_factory.mktemp("profiles")
    mp = measure_model(build(TINY), MeasureOptions(repeats=3, warmup=1, threads=1))
    paths = []
    for name, kind in (("testbed-mobile", "mobile"), ("testbed-edge", "edge")):
        hw = host_hardware()
        prof = DeviceProfile(name=name, kind=kind, hardware=hw, power=assumed_host_power(hw.cores),
                             provenance=host_provenance(1), models={TINY: mp})
        paths.append(save_profile(prof, folder / f"{name}.json"))
    return paths[0], paths[1]


def _stamps(offloaded: bool, start: float) -> tuple[dict, dict]:
    mobile = {"frame": 0 if offloaded else 1, "capture": start, "head_start": start + 0.001,
              "head_end": start + 0.011}
    if not offloaded:
        mobile["done"] = mobile["encoded"] = mobile["head_end"]
        return mobile, {}
    mobile.update(encoded=start + 0.012, done=start + 0.050)
    edge = {"frame": 0, "received": start + 0.020, "tail_start": start + 0.025, "decoded": start + 0.026,
            "tail_end": start + 0.045}
    return mobile, edge


def test_components_telescope_to_the_delay():
    (m0, e0), (m1, _) = _stamps(True, 10.0), _stamps(False, 10.5)
    df = real_frames([m0, m1], [e0], t0=10.0)
    assert list(df["frame"]) == [0, 1]
    assert np.allclose(df[list(COMPONENTS)].sum(axis=1), df["delay_s"])
    off, loc = df.iloc[0], df.iloc[1]
    assert off["uplink_s"] == pytest.approx(0.008) and off["server_queue_s"] == pytest.approx(0.005)
    assert off["return_s"] == pytest.approx(0.005) and off["delay_s"] == pytest.approx(0.050)
    assert loc["delay_s"] == pytest.approx(0.011) and loc["head_s"] == pytest.approx(0.010)
    assert all(loc[c] == 0 for c in ("encode_s", "uplink_s", "server_queue_s", "decode_s", "tail_s", "return_s"))
    assert off["capture_s"] == 0.0 and loc["capture_s"] == pytest.approx(0.5)  # seconds from t0


def test_simulated_components_add_up_and_own_compute_profiles_replay_the_run(tiny_profiles, tmp_path):
    mobile, edge = tiny_profiles
    sc = parse_scenario(SCENARIO, names=False)
    captures = tmp_path / "captures.csv"
    pd.DataFrame({"capture_time_s": [0.0, 0.05, 0.1, 0.15]}).to_csv(captures, index=False)
    sim = simulated_components(simulate_frames(simulation_scenario(sc, 1, mobile, edge, captures)))
    assert np.allclose(sim[list(COMPONENTS)].sum(axis=1), sim["delay_s"])
    assert np.allclose(sim["capture_s"], [0.0, 0.05, 0.1, 0.15])
    # the uplink is the TCP/IP-framed payload at 10 Mbit/s plus 5 ms (no queue at these captures)
    layer = load_profile(mobile).models[TINY].split_point("pool1")
    wire = layer.output_bytes["int8"] + 52 * -(-layer.output_bytes["int8"] // 1448)
    assert sim["uplink_s"].iloc[0] == pytest.approx(wire * 8 / 10e6 + 0.005)
    # a run whose head took 7 ms and tail 3 ms: the diagnostic profiles replay exactly those times
    real = sim.copy()
    real["head_s"], real["encode_s"], real["decode_s"], real["tail_s"] = 0.006, 0.001, 0.0005, 0.0025
    own_p = own_compute_profiles(real, [[TINY, layer.layer_index, "int8"]], np.zeros(4, int),
                                 SessionProfiles(mobile, edge), tmp_path)
    own = simulated_components(simulate_frames(simulation_scenario(sc, 1, own_p.mobile, own_p.edge, captures,
                                                                   "sampled")))
    assert np.allclose(own["head_s"], 0.007) and np.allclose(own["tail_s"], 0.003)
    rows = pd.DataFrame(comparison_rows(own, own, {"policy": "split"}, "run-compute"))
    assert set(rows["quantity"]) == {"delay_s", *COMPONENTS}
    assert np.allclose(rows.dropna(subset=["relative_error"])["relative_error"], 0.0)
    assert rows[(rows.quantity == "encode_s")]["relative_error"].isna().all()  # real value 0: no relative error


@pytest.mark.parametrize("change, expect", [
    (("edge: {device: host-cpu-1thread}", "edge: {device: host-cpu-1thread, servers: 2}"), "servers: 1"),
    (("edge: {device: host-cpu-1thread}", "edge: {device: host-cpu-1thread}\ncloud: {device: host-cpu-1thread, "
      "batching: {max_batch_size: 4}}"), "no batching"),
    (("link: {", "link: {shared_medium: true, "), "its own shaped hop"),
    (("edge: {device: host-cpu-1thread}", "edge: {device: host-cpu-1thread}\ncloud: {device: host-cpu-1thread, "
      "wan: {data_rate_mbps: 50, loss_probability: 0.01}}"), "cloud.wan must have a constant data_rate_mbps"),
])
def test_testbed_refuses_what_it_cannot_run(tmp_path, capsys, change, expect):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SCENARIO.replace(*change))
    assert main(["testbed", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expect in err, err
    assert not (tmp_path / "out").exists()


def test_two_machines_refuse_several_mobiles_in_one_line(tmp_path, capsys):
    two = tmp_path / "two.yaml"
    two.write_text(SCENARIO.replace("mobiles: [{device: host-cpu-1thread}]",
                                    "mobiles: [{device: host-cpu-1thread, count: 2}]"))
    assert main(["testbed", "run", str(two), "--edge", "127.0.0.1:5301", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--edge (two machines) runs one mobile device" in err
    assert not (tmp_path / "out").exists()


def test_testbed_without_root_says_so(tmp_path, capsys, monkeypatch):
    ok = tmp_path / "ok.yaml"
    ok.write_text(SCENARIO)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["testbed", str(ok), "--out", str(tmp_path / "out")]) == 2
    assert "needs root" in capsys.readouterr().err


@pytest.mark.skipif(missing_requirements() is not None, reason=f"testbed unavailable: {missing_requirements()}")
def test_tiny_session_end_to_end(tmp_path):
    """Both processes through the shaped namespaces on the tiny model: stamps, CSVs and both predictions; a second
    point over a rate trace (10 Mbit/s, 2 Mbit/s from 0.1 s, 10 again from 0.3 s), replayed on the link."""
    trace = tmp_path / "steps.csv"
    trace.write_text("time_s,data_rate_mbps\n0,10\n0.1,2\n0.3,10\n")
    traced = SCENARIO.replace("link: {data_rate_mbps: 10,", f"link: {{trace: {trace},")
    points = [p.model_copy(update={"policies": p.policies[1:]}) for text in (SCENARIO, traced)
              for p in expand(parse_scenario(text, names=False))]
    cpus = sorted(os.sched_getaffinity(0))
    options = TestbedOptions(Placement((cpus[0],), (cpus[-1],)), "cubic", True, profile_repeats=2, codec_repeats=1)
    said = []
    results = run_session(points, options, tmp_path, progress=said.append)
    assert results[0].trace_lag_s is None and len(results[1].trace_lag_s) >= 1  # the change at 0.1 s at least
    assert any("trace replayed" in msg for msg in said)
    assert results[1].keys["data_rate_mbps"] == pytest.approx((0.1 * 10 + 0.2 * 2) / 0.3)  # the trace's mean
    table = write_outputs(results, tmp_path, 0, {"test": True})
    frames = pd.read_csv(tmp_path / "frames.csv")
    assert len(frames) == 8 and set(frames["policy"]) == {"split"}
    assert np.allclose(frames[list(COMPONENTS)].sum(axis=1), frames["delay_s"], atol=1e-6)
    split = frames[frames["policy"] == "split"]
    assert (split["uplink_s"] > 0.005).all() and (split[[f"{s}_s" for s in STAMPS]].diff(axis=1).iloc[:, 1:] >= -1e-6).all().all()
    assert set(table["prediction"]) == {"session-profile", "run-compute"}
    assert (tmp_path / "profiles" / "testbed-mobile.json").exists()


def test_clock_offset_from_round_trips():
    """A remote clock 100 s ahead behind a 3 ms request and a 3 ms reply (one probe 1 ms faster each way)."""
    from edgesim.testbed.clock import estimate_offset

    now = [0.0]
    delays = iter([0.003] * 10 + [0.002] * 2 + [0.003] * 8)

    def local() -> float:
        return now[0]

    def remote() -> float:
        now[0] += next(delays)  # request
        r = now[0] + 100.0
        now[0] += next(delays)  # reply
        return r

    est = estimate_offset(remote, probes=10, local_now=local)
    assert est.offset_s == pytest.approx(100.0) and est.error_bound_s == pytest.approx(0.002)
