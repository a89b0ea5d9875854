"""Every policy's routes and decisions, gains as in 002, and the DMD replay of a per-sample trace."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulator.scenario import Scenario
from simulator.sweep import run
from tests.sim_helpers import scenario_dict, write_toy_profiles


@pytest.fixture()
def profiles(tmp_path):
    return write_toy_profiles(tmp_path)


def _run(profiles, **over):
    return run(Scenario.model_validate(scenario_dict(profiles, **over)))


def test_local_offload_split_delays_are_their_components(profiles):
    frames, summary = _run(profiles, workload={"source": "periodic", "frame_rate_fps": 0.1, "frames": 5,
                                               "service_time": "median"})
    by = {p: g for p, g in frames.groupby("policy")}
    # toy-mobile: 4x base (local 0.2 s); toy-edge: 0.5x base (full model 0.025 s); no queueing at 0.1 fps
    assert by["local"]["delay_s"].to_numpy() == pytest.approx(0.2)
    assert (by["local"]["bytes_up"] == 0).all()
    wire = 192 + 40  # raw_uint8 input, one packet with 40 bytes overhead
    expected = wire * 8 / 1e6 + 0.001 + 0.025 + (40 + 40) * 8 / 1e6 + 0.001
    assert by["offload"]["delay_s"].to_numpy() == pytest.approx(expected)
    split = 0.08 + (100 + 40) * 8 / 1e6 + 0.001 + 0.015 + 80 * 8 / 1e6 + 0.001
    assert by["split"]["delay_s"].to_numpy() == pytest.approx(split)
    row = summary.set_index("policy")
    assert row.loc["offload", "gain_vs_local"] == pytest.approx(0.2 / expected)
    assert row.loc["local", "gain_vs_offload"] == pytest.approx(expected / 0.2)
    assert row.loc["local", "gain_vs_local"] == pytest.approx(1.0)


@pytest.mark.parametrize("encoding,size", [("float32", 100), ("float16", 50), ("int8", 33), ("zlib_float32", 75), ("zlib_int8", 25)])
def test_split_encodings_change_bytes(profiles, encoding, size):
    frames, _ = _run(profiles, policies=[{"name": "split", "split_point": "mid", "encoding": encoding}])
    assert (frames["bytes_up"] == size).all()


def test_offload_encodings_use_input_sizes(profiles):
    frames, _ = _run(profiles, policies=[{"name": "offload", "encoding": e, "label": e} for e in ("raw_uint8", "float32", "jpeg")])
    sizes = frames.groupby("policy")["bytes_up"].first().to_dict()
    assert sizes == {"raw_uint8": 192, "float32": 768, "jpeg": 120}


def test_mimic_uses_named_model_and_bottleneck(tmp_path):
    from profilers.schema import load_profile, save_profile

    paths = write_toy_profiles(tmp_path)
    for p in paths:  # give each device a 'toy-mimic' model whose bottleneck sends 10 numbers
        prof = load_profile(p)
        mim = prof.models["toy"].model_copy(update={"model_id": "toy-mimic"})
        sps = [sp.model_copy(update={"name": "bottleneck"}) if sp.name == "mid" else sp for sp in mim.split_points]
        sps[1] = sps[1].model_copy(update={"output_shape": [10], "output_numel": 10, "output_bytes": {"float32": 40, "int8": 18}})
        prof.models["toy-mimic"] = mim.model_copy(update={"split_points": sps})
        save_profile(prof, p)
    frames, _ = run(Scenario.model_validate(scenario_dict(paths, policies=[{"name": "mimic", "encoding": "int8"}])))
    assert (frames["bytes_up"] == 18).all()
    assert (frames["decision"] == "mimic@bottleneck/int8").all()


def test_best_split_follows_bandwidth(profiles):
    base = dict(workload={"source": "periodic", "frame_rate_fps": 0.2, "frames": 10, "service_time": "median"},
                policies=[{"name": "best-split", "bandwidth_estimate": "oracle"}])
    slow, _ = _run(profiles, link={"data_rate_mbps": 0.001}, **base)
    fast, _ = _run(profiles, link={"data_rate_mbps": 1000.0}, **base)
    assert (slow["decision"] == "local").all()  # a slow link: stay local (the all-local decision is named so)
    assert not (fast["decision"] == "local").any()  # a fast link: use the edge server


def test_best_split_is_never_worse_than_the_fixed_choices_without_queueing(profiles):
    for rate in (0.01, 0.1, 1.0, 10.0):
        _, summary = _run(profiles, link={"data_rate_mbps": rate},
                          workload={"source": "periodic", "frame_rate_fps": 0.1, "frames": 5, "service_time": "median"},
                          policies=[{"name": "local"}, {"name": "offload"}, {"name": "split", "split_point": "mid"},
                                    {"name": "best-split", "bandwidth_estimate": "oracle"}])
        d = summary.set_index("policy")["delay_mean_s"]
        assert d["best-split"] <= min(d["local"], d["offload"], d["split"]) + 1e-9


def _dmd_trace(tmp_path) -> str:
    rng = np.random.default_rng(0)
    n = 200
    label = rng.integers(0, 2, n)
    edge_ok = rng.random(n) < 0.7
    cloud_ok = rng.random(n) < 0.9
    df = pd.DataFrame({
        "sample_id": [f"s{i}" for i in range(n)],
        "label": label,
        "edge_pred": np.where(edge_ok, label, 1 - label),
        "cloud_pred": np.where(cloud_ok, label, 1 - label),
        "edge_max_prob": np.where(edge_ok, 0.6 + 0.4 * rng.random(n), 0.5 + 0.3 * rng.random(n)),
        "edge_margin": rng.random(n),
        "edge_entropy": rng.random(n),
        "switcher_score": np.where(edge_ok == cloud_ok, 0.7, 0.3) + 0.1 * rng.random(n),
        "split": "test",
    })
    path = tmp_path / "trace.parquet"
    df.to_parquet(path)
    return str(path)


def _dmd_setup(tmp_path):
    """Toy profiles with a second model 'toy-cloud' on every device, and a synthetic two-model trace."""
    from profilers.schema import load_profile, save_profile

    paths = write_toy_profiles(tmp_path)
    for p in paths:
        prof = load_profile(p)
        prof.models["toy-cloud"] = prof.models["toy"].model_copy(update={"model_id": "toy-cloud"})
        save_profile(prof, p)
    return paths, _dmd_trace(tmp_path)


def test_dmd_policies_replay_the_trace(tmp_path):
    paths, trace = _dmd_setup(tmp_path)
    pol = {"edge_model": "toy", "cloud_model": "toy-cloud"}
    data = scenario_dict(paths, workload={"source": "periodic", "frame_rate_fps": 0.5, "frames": 200, "dataset": trace},
                         policies=[{"name": "edge-only", **pol}, {"name": "cloud-only", **pol},
                                   {"name": "dmd-switcher", "offload_fraction": 0.3, **pol},
                                   {"name": "uncertainty", "offload_fraction": 0.3, **pol},
                                   {"name": "random", "offload_fraction": 0.3, **pol},
                                   {"name": "oracle", "offload_fraction": 0.3, **pol}])
    frames, summary = run(Scenario.model_validate(data))
    df = pd.read_parquet(trace)
    s = summary.set_index("policy")
    assert s.loc["edge-only", "offload_fraction"] == 0.0
    assert s.loc["cloud-only", "offload_fraction"] == 1.0
    for p in ("dmd-switcher", "uncertainty", "random", "oracle"):
        assert s.loc[p, "offload_fraction"] == pytest.approx(0.3)
    # correctness comes from the models' recorded predictions
    assert s.loc["edge-only", "accuracy"] == pytest.approx((df.edge_pred == df.label).mean())
    assert s.loc["cloud-only", "accuracy"] == pytest.approx((df.cloud_pred == df.label).mean())
    # the oracle defers edge-wrong & cloud-right first, so it is the most accurate at the same budget
    for p in ("dmd-switcher", "uncertainty", "random"):
        assert s.loc["oracle", "accuracy"] >= s.loc[p, "accuracy"]
    oracle = frames[frames.policy == "oracle"]
    deferred = oracle[oracle["decision"] == "edge+cloud"]
    d = df.iloc[deferred["sample"].to_numpy()]
    n_fixable = int(((df.edge_pred != df.label) & (df.cloud_pred == df.label)).sum())
    assert int(((d.edge_pred != d.label) & (d.cloud_pred == d.label)).sum()) == min(n_fixable, len(deferred))
    # a deferred frame runs the edge model and then the cloud model: slower than edge-only
    assert s.loc["dmd-switcher", "delay_mean_s"] > s.loc["edge-only", "delay_mean_s"]
    # uncertainty deferral picks the lowest max-probabilities
    unc = frames[(frames.policy == "uncertainty") & (frames.decision == "edge+cloud")]
    cutoff = df.edge_max_prob.sort_values().iloc[59]
    assert (df.edge_max_prob.iloc[unc["sample"].to_numpy()] <= cutoff + 1e-12).all()


def test_switcher_time_is_added_to_every_switcher_frame(tmp_path):
    paths, trace = _dmd_setup(tmp_path)
    pol = {"edge_model": "toy", "cloud_model": "toy-cloud", "offload_fraction": 0.3}
    base = scenario_dict(paths, workload={"source": "periodic", "frame_rate_fps": 0.2, "frames": 50, "dataset": trace,
                                          "service_time": "median"})
    plain, _ = run(Scenario.model_validate({**base, "policies": [{"name": "dmd-switcher", **pol}]}))
    timed, _ = run(Scenario.model_validate({**base, "policies": [{"name": "dmd-switcher", "switcher_s": 0.005, **pol}]}))
    np.testing.assert_allclose(timed["head_s"], plain["head_s"] + 0.005)
    assert (timed["decision"] == plain["decision"]).all()


def test_results_folder_with_predicting_and_plain_policies(tmp_path):
    """A labelled trace with a policy that predicts nothing first (local) and DMD policies after: every frame table
    has label, prediction and correct (one schema, so frames.parquet is written); accuracy only where predicted."""
    from simulator.results import run_to_folder

    paths, trace = _dmd_setup(tmp_path)
    pol = {"edge_model": "toy", "cloud_model": "toy-cloud"}
    data = scenario_dict(paths, workload={"source": "periodic", "frame_rate_fps": 0.5, "frames": 60, "dataset": trace},
                         policies=[{"name": "local"}, {"name": "edge-only", **pol},
                                   {"name": "dmd-switcher", "offload_fraction": 0.3, **pol}],
                         sweep={"grid": {"link.data_rate_mbps": [1.0, 10.0]}}, outputs={"plots": False})
    run_to_folder(Scenario.model_validate(data), tmp_path / "out", jobs=2)
    frames = pd.read_parquet(tmp_path / "out" / "frames.parquet")
    by = frames.groupby("policy")
    assert by["prediction"].count()["local"] == 0 and by["correct"].count()["local"] == 0
    assert by["label"].count()["local"] == by.size()["local"] == 120
    assert by["prediction"].count()["edge-only"] == 120
    ok = frames[frames.policy == "edge-only"]
    np.testing.assert_array_equal(ok["correct"].to_numpy(bool), (ok["label"] == ok["prediction"]).to_numpy(bool))
    s = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("policy")
    assert s.loc["local", "accuracy"].isna().all()  # nothing predicted
    np.testing.assert_allclose(s.loc["edge-only", "accuracy"], ok.groupby("point")["correct"].mean().to_numpy(float))
