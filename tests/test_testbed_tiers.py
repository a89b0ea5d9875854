"""The testbed with several mobile devices and a cloud: stamps to components through the WAN and the cloud, the
simulator's tiered frames in the same components, per-device comparison rows, the run's own compute times replayed
through the three tiers, the shared-CPU overlap, and an end-to-end session through the namespaces (root only)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgesim.testbed.compare import (CLOUD_COMPONENTS, CLOUD_STAMPS, overlap_s, real_frames, shared_cpu_overlap,
                                     simulated_components)
from edgesim.testbed.net import missing_requirements
from edgesim.testbed.runner import (Placement, RunResult, SessionProfiles, TestbedOptions, comparison_of, expand,
                                    own_compute_profiles, route_plans, run_session, simulate_frames,
                                    simulation_scenario, split_codec_steps, write_outputs)
from profilers.measure import MeasureOptions, assumed_host_power, host_hardware, host_provenance, measure_model
from profilers.models.registry import build
from profilers.schema import DeviceProfile, load_profile, save_profile
from simulator.scenario import parse_scenario

TINY = "vgg-s3"  # 3x32x32 input; split points input, pool1, pool2, output

SCENARIO = f"""
name: tiny-tiers
model: {TINY}
mobiles: [{{device: host-cpu-1thread, count: 2}}]
edge: {{device: host-cpu-1thread}}
cloud: {{device: host-cpu-1thread, wan: {{data_rate_mbps: 20, propagation_delay_s: 0.004}}}}
link: {{data_rate_mbps: 10, propagation_delay_s: 0.005}}
workload: {{source: periodic, frame_rate_fps: 5, frames: 4, warmup_frames: 1}}
policies:
  - {{name: offload, encoding: float32, tier: cloud, label: offload-cloud}}
  - {{name: split2, split_points: [pool1, pool2], encoding: int8, wan_encoding: float32}}
  - {{name: split2, split_points: [input, pool1], encoding: float32, wan_encoding: int8, label: edge-head}}
"""


@pytest.fixture(scope="module")
def profiles(tmp_path_factory) -> SessionProfiles:
    """A measured profile of the tiny model (with codec costs), as the testbed's three tiers would write it."""
    folder = tmp_path_factory.mktemp("profiles")
    mp = measure_model(build(TINY), MeasureOptions(repeats=3, warmup=1, threads=1))
    paths = []
    for name, kind in (("testbed-mobile", "mobile"), ("testbed-edge", "edge"), ("testbed-cloud", "cloud")):
        hw = host_hardware()
        prof = DeviceProfile(name=name, kind=kind, hardware=hw, power=assumed_host_power(hw.cores),
                             provenance=host_provenance(1), models={TINY: mp})
        for sp in prof.models[TINY].split_points:  # stated codec costs: 1 ms to encode, 2 ms to decode anything
            sp.encode_s = {e: 0.001 for e in ("float32", "int8")}
            sp.decode_s = {e: 0.002 for e in ("float32", "int8")}
        paths.append(save_profile(prof, folder / f"{name}.json"))
    return SessionProfiles(*paths)


def test_stamps_through_the_cloud_add_up():
    """Frame 0 (mobile 0) relayed to the cloud, frame 2 (mobile 1) with a part on the edge server, frame 1 local."""
    mobile = [{"frame": 0, "mobile": 0, "capture": 0.0, "head_start": 0.0, "head_end": 0.0, "encoded": 0.001,
               "done": 0.100},
              {"frame": 1, "mobile": 0, "capture": 0.5, "head_start": 0.5, "head_end": 0.53, "encoded": 0.53,
               "done": 0.53},
              {"frame": 2, "mobile": 1, "capture": 0.25, "head_start": 0.26, "head_end": 0.27, "encoded": 0.272,
               "done": 0.400}]
    edge = [{"frame": 0, "received": 0.010, "tail_start": 0.010, "decoded": 0.010, "tail_end": 0.010,
             "wan_encoded": 0.010, "back": 0.090},
            {"frame": 2, "received": 0.290, "tail_start": 0.295, "decoded": 0.297, "tail_end": 0.320,
             "wan_encoded": 0.321, "back": 0.390}]
    cloud = [{"frame": 0, "received": 0.030, "tail_start": 0.031, "decoded": 0.033, "tail_end": 0.080},
             {"frame": 2, "received": 0.340, "tail_start": 0.340, "decoded": 0.341, "tail_end": 0.380}]
    df = real_frames(mobile, edge, 10.0, cloud).set_index("frame")
    assert list(df["mobile"]) == [0, 0, 1]
    assert np.allclose(df[list(CLOUD_COMPONENTS)].sum(axis=1), df["delay_s"])
    relay, local, part = df.loc[0], df.loc[1], df.loc[2]
    assert relay["tail_s"] == 0 and relay["wan_uplink_s"] == pytest.approx(0.020)
    assert relay["cloud_queue_s"] == pytest.approx(0.001) and relay["cloud_decode_s"] == pytest.approx(0.002)
    assert relay["cloud_s"] == pytest.approx(0.047) and relay["wan_return_s"] == pytest.approx(0.010)
    assert relay["return_s"] == pytest.approx(0.010) and relay["delay_s"] == pytest.approx(0.100)
    assert part["tail_s"] == pytest.approx(0.023) and part["wan_encode_s"] == pytest.approx(0.001)
    assert part["server_queue_s"] == pytest.approx(0.005) and part["delay_s"] == pytest.approx(0.150)
    assert local["delay_s"] == pytest.approx(0.030)
    assert all(local[c] == 0 for c in CLOUD_COMPONENTS if c not in ("head_s", "mobile_queue_s"))
    assert {f"{s}_s" for s in CLOUD_STAMPS} <= set(df.columns)


def test_simulated_tiers_and_own_compute_through_three_tiers(profiles, tmp_path):
    sc = parse_scenario(SCENARIO, names=False)
    for j, name in enumerate(("offload-cloud", "split2", "edge-head")):
        plans, route_of_frame, _, _, frames = route_plans(sc, j, profiles, None)
        sim = simulated_components(frames)
        charged = sim.copy()
        assert np.allclose(sim[list(CLOUD_COMPONENTS)].sum(axis=1), sim["delay_s"]), name
        assert list(sim["mobile"]) == [0] * 4 + [1] * 4  # frame id = device x frames + its sequence number
        assert np.allclose(sim["capture_s"], np.r_[np.arange(4) / 5, np.arange(4) / 5 + 0.1])  # staggered
        split_codec_steps(sim, plans, route_of_frame, profiles)
        # what the simulator charged (place_route): the stated codec costs where the testbed does the work
        assert np.allclose(charged["cloud_s"] - sim["cloud_s"], 0.002), name  # the cloud decodes
        edge_codec = 0.0 if name == "offload-cloud" else 0.003  # a relay decodes nothing; a part decodes, encodes
        assert np.allclose(charged["tail_s"] - sim["tail_s"], edge_codec), name
        if name == "offload-cloud":  # relayed: the mobile encodes (1 ms), the cloud decodes (2 ms), the edge nothing
            assert len(plans[0]) == 5 and plans[0][1] == plans[0][3] == 0
            assert np.allclose(sim["encode_s"], 0.001) and np.allclose(sim["cloud_decode_s"], 0.002)
            assert np.allclose(sim[["decode_s", "tail_s", "wan_encode_s", "head_s"]], 0.0)
            wan_bytes = load_profile(profiles.mobile).models[TINY].input_bytes["float32"]
            wire = wan_bytes + 52 * -(-wan_bytes // 1448)
            assert sim["wan_uplink_s"].iloc[0] == pytest.approx(wire * 8 / 20e6 + 0.004)  # no queue at frame 0
        else:
            assert np.allclose(sim["decode_s"], 0.002) and np.allclose(sim["wan_encode_s"], 0.001)
        # a run whose stages took these times: the diagnostic profiles replay exactly them
        real = sim.copy()
        real["head_s"] = 0.0 if plans[0][1] == 0 else 0.006  # nothing runs on the mobile device before the input
        real["encode_s"], real["decode_s"], real["wan_encode_s"] = 0.001, 0.0005, 0.0005
        real["tail_s"] = 0.0 if name == "offload-cloud" else 0.002
        real["cloud_decode_s"], real["cloud_s"] = 0.001, 0.004
        if name == "offload-cloud":
            real["decode_s"] = real["wan_encode_s"] = 0.0
        own_p = own_compute_profiles(real, plans, route_of_frame, profiles, tmp_path)
        own = simulated_components(simulate_frames(simulation_scenario(sc, j, own_p.mobile, own_p.edge, None,
                                                                       "sampled", cloud_profile=own_p.cloud)))
        assert np.allclose(own["head_s"], real["head_s"] + real["encode_s"]), name
        assert np.allclose(own["tail_s"], real["decode_s"] + real["tail_s"] + real["wan_encode_s"]), name
        assert np.allclose(own["cloud_s"], 0.005), name


def test_rows_per_device_and_for_all():
    real = pd.DataFrame({"frame": range(6), "mobile": [0, 0, 0, 1, 1, 1], "delay_s": [9.0, 1, 2, 9, 3, 4]})
    for c in CLOUD_COMPONENTS:
        real[c] = 0.0
    sim = real.copy()
    sim["delay_s"] = [0.0, 1.1, 2.2, 0.0, 3.3, 4.4]
    rows = pd.DataFrame(comparison_of(RunResult({"policy": "p"}, real, sim, real), warmup_frames=1))
    d = rows[(rows.quantity == "delay_s") & (rows.statistic == "mean") & (rows.prediction == "session-profile")]
    got = dict(zip(d["mobile"], zip(d["real_s"], d["simulated_s"])))
    assert got["all"] == pytest.approx((2.5, 2.75)) and got["0"] == pytest.approx((1.5, 1.65))
    assert got["1"] == pytest.approx((3.5, 3.85))  # each device's first frame left out as warm-up
    assert set(rows["quantity"]) == {"delay_s", *CLOUD_COMPONENTS}


def test_shared_cpu_overlap_by_hand():
    assert overlap_s(np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([[0.5, 2.5]])) == pytest.approx(1.0)
    real = pd.DataFrame({"mobile": [0, 1], "head_start_s": [0.0, 0.05], "encoded_s": [0.1, 0.15],
                         "tail_start_s": [0.2, 0.3], "tail_end_s": [0.25, 0.3]})
    # both mobile devices on CPU 0: 50 ms of their 200 ms at once; the edge server on CPU 1 shares nothing
    together, busy = shared_cpu_overlap(real, {"mobile": (0,), "edge": (1,), "cloud": (1,)})
    assert together == pytest.approx(0.05) and busy == pytest.approx(0.2)
    assert shared_cpu_overlap(real, {"mobile": (0,), "edge": (0,), "cloud": (1,)})[1] == pytest.approx(0.25)


@pytest.mark.skipif(missing_requirements() is not None, reason=f"testbed unavailable: {missing_requirements()}")
def test_two_mobiles_and_a_cloud_end_to_end(tmp_path):
    """Two mobile devices, the edge server and the cloud as processes through their shaped hops: frames of both
    devices, components that add up, the WAN hop's delay in every cloud frame, per-device rows."""
    text = SCENARIO.replace("frames: 4", "frames: 3")
    points = [p.model_copy(update={"policies": p.policies[:2]}) for p in expand(parse_scenario(text, names=False))]
    cpus = sorted(os.sched_getaffinity(0))
    options = TestbedOptions(Placement((cpus[0],), (cpus[-1],)), "cubic", True, profile_repeats=2, codec_repeats=1)
    said = []
    results = run_session(points, options, tmp_path, progress=said.append)
    assert any("2 mobile devices" in msg for msg in said)
    table = write_outputs(results, tmp_path, 0, {"test": True})
    frames = pd.read_csv(tmp_path / "frames.csv")
    assert len(frames) == 12 and sorted(frames["mobile"].unique()) == [0, 1]
    assert np.allclose(frames[list(CLOUD_COMPONENTS)].sum(axis=1), frames["delay_s"], atol=1e-6)
    assert (frames["wan_uplink_s"] > 0.004).all() and (frames["wan_return_s"] > 0.004).all()
    assert (frames["uplink_s"] > 0.005).all() and (frames["cloud_s"] > 0).all()
    assert set(table["mobile"]) == {"all", "0", "1"}
    assert Path(tmp_path / "profiles" / "testbed-cloud.json").exists()
