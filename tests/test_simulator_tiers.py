"""Edge servers, a cloud behind a WAN, three-way splits, assignment and dynamic batching (both engines)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import run
from simulator.scenario import ScenarioError, load_scenario
from tests.sim_helpers import scenario_dict, write_scenario, write_toy_profiles

COMPONENTS = ["mobile_queue_s", "head_s", "uplink_queue_s", "transfer_s", "propagation_s", "server_queue_s", "tail_s",
              "wan_queue_s", "wan_transfer_s", "wan_propagation_s", "cloud_queue_s", "batch_wait_s", "cloud_s",
              "wan_return_s", "return_s"]


@pytest.fixture()
def profiles(tmp_path):
    return write_toy_profiles(tmp_path)


def _tiered(profiles, **over):
    data = scenario_dict(profiles, mobiles=[{"device": "toy-mobile", "count": 3}],
                         edges=[{"name": "e1", "device": "toy-edge"},
                                {"name": "e2", "device": "toy-edge", "servers": 2, "link": {"data_rate_mbps": 3.0}}],
                         cloud={"device": "toy-edge", "wan": {"data_rate_mbps": 5, "propagation_delay_s": 0.01}},
                         assignment="round-robin",
                         policies=[{"name": "offload", "tier": "cloud"}],
                         workload={"source": "poisson", "frame_rate_fps": 3.0, "frames": 100, "service_time": "sampled"})
    data.pop("edge")
    data.update(over)
    return data


def _check(sim_mean, ci, theory, rel=0.05):
    assert abs(sim_mean - theory) <= max(2 * ci, rel * theory), (sim_mean, ci, theory)


def _inline(profiles, lam, edge, cloud, servers=1, cloud_servers=1, policy=None, engine="compiled", frames=20000, reps=4):
    data = scenario_dict(
        profiles,
        devices=[{"name": "m", "kind": "mobile", "latency": {"mean_s": 1e-9}},
                 {"name": "e", "kind": "edge", "latency": {"distribution": "exponential", "mean_s": edge}},
                 {"name": "c", "kind": "cloud", "latency": {"distribution": "exponential", "mean_s": cloud}}],
        mobiles=[{"device": "m"}], edges=[{"name": "e", "device": "e", "servers": servers}],
        cloud={"device": "c", "servers": cloud_servers, "wan": {"data_rate_mbps": 1e9, "propagation_delay_s": 0.0}},
        link={"data_rate_mbps": 1e9, "downlink_data_rate_mbps": 1e9},
        workload={"source": "poisson", "frame_rate_fps": lam, "frames": frames, "warmup_frames": 1000},
        policies=[policy or {"name": "offload"}], replications=reps, engine=engine)
    data.pop("edge")
    return data


@pytest.mark.parametrize("engine", ["compiled", "simpy"])
def test_mmc_edge_pool_is_erlang_c(profiles, engine):
    lam, mu, c = 3.0, 1.5, 3  # the whole model on an edge pool of 3 exponential servers (rho = 2/3)
    _, s = run(_inline(profiles, lam, 1 / mu, 1.0, servers=c, engine=engine, frames=20000 if engine == "compiled" else 8000))
    a, rho = lam / mu, lam / (c * mu)
    p0 = 1 / (sum(a ** k / math.factorial(k) for k in range(c)) + a ** c / (math.factorial(c) * (1 - rho)))
    wait = a ** c / (math.factorial(c) * (1 - rho)) * p0 / (c * mu - lam)
    _check(s.loc[0, "delay_mean_s"], s.loc[0, "delay_mean_ci95_s"], wait + 1 / mu)
    assert s.loc[0, "utilisation_server"] == pytest.approx(rho, rel=0.03)


@pytest.mark.parametrize("engine", ["compiled", "simpy"])
def test_jackson_tandem_edge_then_cloud(profiles, engine):
    # split between the edge and the cloud at 'mid' (half the FLOPs each): the edge serves exp(mean 0.1 s), the
    # cloud exp(mean 0.08 s); Poisson at 5 fps: E[T] = 1/(10 - 5) + 1/(12.5 - 5) (Jackson, two M/M/1 in tandem)
    lam = 5.0
    policy = {"name": "split", "split_point": "mid", "between": ["edge", "cloud"]}
    _, s = run(_inline(profiles, lam, 0.2, 0.16, policy=policy, engine=engine, frames=20000 if engine == "compiled" else 8000))
    _check(s.loc[0, "delay_mean_s"], s.loc[0, "delay_mean_ci95_s"], 1 / (10 - lam) + 1 / (12.5 - lam))
    assert s.loc[0, "utilisation_server"] == pytest.approx(0.5, rel=0.03)
    assert s.loc[0, "utilisation_cloud"] == pytest.approx(0.4, rel=0.03)


def test_dynamic_batching_on_a_timeline_computed_by_hand(tmp_path):
    # cloud: fixed 0.1 s at batch 1, t(b) = 0.1 x (1 + 0.139 (b - 1)) (the stated Triton fit); max batch 4,
    # preferred [2], queue delay 0.05 s; four frames of one camera reach the cloud at 0, 0.01, 0.02 and 0.3 s
    profiles = write_toy_profiles(tmp_path)
    data = scenario_dict(
        profiles,
        devices=[{"name": "m", "kind": "mobile", "latency": {"mean_s": 1e-9}},
                 {"name": "c", "kind": "cloud", "latency": {"mean_s": 0.1}}],
        mobiles=[{"device": "m"}], edges=[{"name": "e", "device": "toy-edge"}],
        cloud={"device": "c", "servers": 1, "wan": {"data_rate_mbps": 1e9, "propagation_delay_s": 0.0},
               "batching": {"max_batch_size": 4, "preferred_batch_sizes": [2], "max_queue_delay_s": 0.05}},
        link={"data_rate_mbps": 1e9, "downlink_data_rate_mbps": 1e9},
        workload={"source": "trace", "trace": str(_captures(tmp_path, [0.0, 0.01, 0.02, 0.3])), "frames": 4},
        policies=[{"name": "offload", "tier": "cloud"}], engine="simpy")
    data.pop("edge")
    frames, _ = run(data)
    f = frames.sort_values("capture_s")
    t2 = 0.1 * (1 + 0.139)
    # frames 0 and 1 form a preferred batch of 2 at 0.01 s; frame 2 waits (server busy) and goes alone when the
    # server frees at 0.01 + t2 (it has waited 0.05 s by then); frame 3 arrives to an idle server, waits 0.05 s
    start = [0.01, 0.01, 0.01 + t2, 0.35]
    size = [2, 2, 1, 1]
    batch_wait = [0.01, 0.0, 0.0, 0.05]
    np.testing.assert_allclose(f["capture_s"] + f["delay_s"] - f["cloud_s"] - f["wan_return_s"] - f["return_s"],
                               np.array(start) + 0.0, atol=1e-9)
    assert f["batch_size"].tolist() == size
    np.testing.assert_allclose(f["batch_wait_s"], batch_wait, atol=1e-9)
    np.testing.assert_allclose(f["cloud_queue_s"], [0.0, 0.0, 0.01 + t2 - 0.02, 0.0], atol=1e-9)
    np.testing.assert_allclose(f["cloud_s"], [t2, t2, 0.1, 0.1], atol=1e-9)
    np.testing.assert_allclose(f[COMPONENTS].sum(axis=1), f["delay_s"], atol=1e-9)


def _captures(folder, times):
    path = folder / "captures.csv"
    path.write_text("capture_time_s\n" + "\n".join(str(t) for t in times) + "\n")
    return path


def test_round_robin_and_static_assignment_follow_their_definitions(profiles):
    frames, _ = run(_tiered(profiles, mobiles=[{"device": "toy-mobile", "count": 5}]))
    assert frames.groupby("mobile")["edge"].unique().map(tuple).to_dict() == {
        "toy-mobile#0": ("e1",), "toy-mobile#1": ("e2",), "toy-mobile#2": ("e1",), "toy-mobile#3": ("e2",),
        "toy-mobile#4": ("e1",)}
    static = _tiered(profiles, assignment="static",
                     mobiles=[{"device": "toy-mobile", "count": 2, "edge": "e2"}, {"device": "toy-mobile", "edge": "e1"}])
    frames, _ = run(static)
    assert set(frames[frames.mobile.str.startswith("toy-mobile#")]["edge"]) == {"e2"}
    assert set(frames[frames.mobile == "toy-mobile"]["edge"]) == {"e1"}


def test_least_loaded_sends_each_frame_to_the_emptier_pool(profiles):
    # one slow edge (1 server) and one with 3 servers: least-loaded compares frames per server at capture
    data = _tiered(profiles, assignment="least-loaded", policies=[{"name": "offload"}],
                   edges=[{"name": "slow", "device": "toy-edge"}, {"name": "wide", "device": "toy-edge", "servers": 3}],
                   workload={"source": "periodic", "frame_rate_fps": 30.0, "frames": 60, "service_time": "median"})
    frames, _ = run(data)
    f = frames.sort_values(["capture_s", "mobile"])
    # the first capture finds both pools empty: ties go to the first edge server
    assert f.iloc[0]["edge"] == "slow"
    assert (f["edge"] == "wide").mean() > 0.5  # three servers take more frames
    sed, _ = run({**data, "assignment": "shortest-expected-delay"})
    assert sed["delay_s"].mean() <= frames["delay_s"].mean() * 1.05


@settings(max_examples=40, deadline=None)
@given(servers=st.lists(st.integers(1, 3), min_size=1, max_size=9),
       changes=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 6)), max_size=60))
def test_least_loaded_tree_picks_what_the_scan_picks_after_every_change(servers, changes):
    # the compiled loop keeps least-loaded as a tournament tree; the SimPy engine scans: same server, ties first
    from simulator.kernels.decisions import least_loaded, least_loaded_after, least_loaded_tree, load_per_server

    servers = np.array(servers)
    in_system = np.zeros(servers.size, np.int64)
    tree = least_loaded_tree(servers.size)
    for e, n in changes:
        e %= servers.size
        in_system[e] = n
        least_loaded_after(tree, e, load_per_server(n, 0, servers[e]))
        assert tree[1]["edge"] == least_loaded(in_system, np.zeros_like(in_system), servers)


topologies = st.fixed_dictionaries({
    "n_mobiles": st.integers(1, 4), "servers": st.lists(st.integers(1, 3), min_size=1, max_size=3),
    "cloud_servers": st.integers(1, 3), "rate": st.floats(0.5, 20), "wan": st.floats(1, 50),
    "fps": st.floats(0.5, 8), "assignment": st.sampled_from(["static", "round-robin", "least-loaded"]),
    "policy": st.sampled_from([{"name": "offload"}, {"name": "offload", "tier": "cloud"},
                               {"name": "split", "split_point": "mid", "between": ["mobile", "cloud"]},
                               {"name": "split", "split_point": "mid", "between": ["edge", "cloud"]},
                               {"name": "split2", "split_points": ["mid", "mid"]}, {"name": "local"}]),
    "seed": st.integers(0, 10_000)})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(topo=topologies)
def test_engines_agree_frame_by_frame_over_random_topologies(profiles, topo):
    edges = [{"name": f"e{k}", "device": "toy-edge", "servers": c} for k, c in enumerate(topo["servers"])]
    data = _tiered(profiles, mobiles=[{"device": "toy-mobile", "count": topo["n_mobiles"]}], edges=edges,
                   cloud={"device": "toy-edge", "servers": topo["cloud_servers"],
                          "wan": {"data_rate_mbps": topo["wan"], "propagation_delay_s": 0.005}},
                   link={"data_rate_mbps": topo["rate"], "propagation_delay_s": 0.001, "packet_overhead_bytes": 40},
                   assignment=topo["assignment"], policies=[topo["policy"]], seed=topo["seed"],
                   workload={"source": "poisson", "frame_rate_fps": topo["fps"], "frames": 60, "service_time": "sampled"})
    comp, _ = run({**data, "engine": "compiled"})
    simpy, _ = run({**data, "engine": "simpy"})
    for col in ["delay_s", "done_s", *COMPONENTS]:
        np.testing.assert_allclose(comp[col], simpy[col], rtol=0, atol=1e-9, err_msg=col)
    assert comp["edge"].equals(simpy["edge"])  # missing alike where a frame stays on the mobile device


@pytest.mark.parametrize("change,field,words", [
    ({"mobiles": [{"device": "toy-mobile", "edge": "nowhere"}], "assignment": "static"}, "mobiles.0.edge",
     "unknown edge server 'nowhere'; known: e1, e2"),
    ({"cloud": None, "policies": [{"name": "offload", "tier": "cloud"}]}, "policies.0.tier", "needs a cloud"),
    ({"policies": [{"name": "split2", "split_points": ["mid", "input"]}]}, "policies.0.split_points",
     "out of order"),
    ({"cloud": {"device": "toy-edge", "batching": {"max_batch_size": 4, "preferred_batch_sizes": [8]}}},
     "cloud.batching", "preferred_batch_sizes [8] must lie in 1..max_batch_size (4)"),
])
def test_bad_topologies_are_one_line_with_file_and_yaml_line(tmp_path, profiles, change, field, words):
    data = _tiered(profiles)
    data.update(change)
    if data.get("cloud") is None:
        data.pop("cloud")
    path = write_scenario(tmp_path, data)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:") and f"field '{field}" in msg and words in msg, msg


def test_a_measured_batch_table_drives_the_batch_time_and_a_missing_size_is_one_line(tmp_path, profiles):
    from profilers.schema import load_profile, save_profile

    prof = load_profile(profiles[1])  # toy-edge as the cloud: whole model 0.025 s at batch 1
    prof.models["toy"] = prof.models["toy"].model_copy(update={"batch_latency_s": {1: 0.025, 2: 0.030, 4: 0.040}})
    save_profile(prof, profiles[1])
    data = _tiered(profiles, mobiles=[{"device": "toy-mobile", "count": 4}], assignment="static",
                   edges=[{"name": "e1", "device": "toy-edge"}],
                   cloud={"device": "toy-edge", "servers": 1, "wan": {"data_rate_mbps": 1e6, "propagation_delay_s": 0},
                          "batching": {"max_batch_size": 4, "max_queue_delay_s": 0.6}},
                   link={"data_rate_mbps": 1e6}, workload={"source": "periodic", "frame_rate_fps": 1.0, "frames": 3,
                                                            "service_time": "median"})
    data["mobiles"][0]["edge"] = "e1"
    frames, _ = run(data)
    batched = frames[frames["batch_size"] > 1]
    assert len(batched) and set(batched["batch_size"]) <= {2, 3, 4}
    table = {1: 0.025, 2: 0.030, 4: 0.040}
    expected = np.interp(batched["batch_size"], list(table), list(table.values()))  # 3: interpolated, 0.035 s
    np.testing.assert_allclose(batched["cloud_s"], expected, rtol=1e-9)
    data["cloud"]["batching"]["max_batch_size"] = 8
    path = write_scenario(tmp_path, data)
    with pytest.raises(ScenarioError, match=r"field 'cloud\.batching\.max_batch_size': the batch table of model 'toy' "
                                            r"on 'toy-edge' has sizes \[1, 2, 4\] but not \[8\]"):
        load_scenario(path)


def test_early_exit_cascades_and_mimic_in_the_cloud_take_the_routes_they_say(tmp_path, profiles):
    from profilers.schema import load_profile, save_profile

    for p in profiles:  # a second model for the cascade's large one, and a mimic (a copy of toy) to split in the cloud
        prof = load_profile(p)
        prof.models["toy-cloud"] = prof.models["toy"].model_copy(update={"model_id": "toy-cloud"})
        prof.models["toy-mimic"] = prof.models["toy"].model_copy(update={"model_id": "toy-mimic"})
        save_profile(prof, p)
    rng = np.random.default_rng(0)
    n = 40
    trace = tmp_path / "trace.parquet"
    import pandas as pd

    y = rng.integers(0, 2, n)
    pd.DataFrame({"label": y, "edge_pred": np.where(rng.random(n) < 0.7, y, 1 - y), "cloud_pred": y,
                  "edge_max_prob": rng.random(n), "switcher_score": rng.random(n)}).to_parquet(trace)
    cascade = {"edge_model": "toy", "cloud_model": "toy-cloud", "offload_fraction": 0.5}
    data = _tiered(profiles, mobiles=[{"device": "toy-mobile"}], assignment="static",
                   edges=[{"name": "e1", "device": "toy-edge"}],
                   workload={"source": "periodic", "frame_rate_fps": 1.0, "frames": n, "dataset": str(trace),
                             "service_time": "median"},
                   policies=[{"name": "early-exit", "exit_point": "mid", "threshold": 0.6},
                             {"name": "uncertainty", "small_on": "edge", "large_on": "cloud", **cascade},
                             {"name": "mimic", "split_point": "mid", "tier": "cloud"}])
    data["mobiles"][0]["edge"] = "e1"
    frames, _ = run(data)
    ee = frames[frames.policy == "early-exit"].sort_values("sample")
    confident = pd.read_parquet(trace)["edge_max_prob"].to_numpy()[ee["sample"].to_numpy()] >= 0.6
    assert (ee["cloud_s"].to_numpy()[confident] == 0).all() and (ee["cloud_s"].to_numpy()[~confident] > 0).all()
    assert (ee["tail_s"] > 0).all()  # the head up to the exit runs on the edge server for every frame
    unc = frames[frames.policy == "uncertainty"]
    assert (unc["head_s"] == 0).all() and (unc["tail_s"] > 0).all()  # small model on the edge server
    assert (unc["cloud_s"] > 0).mean() == pytest.approx(0.5)  # half the frames go on to the large model
    mim = frames[frames.policy == "mimic"]
    assert (mim["head_s"] > 0).all() and (mim["tail_s"] == 0).all() and (mim["cloud_s"] > 0).all()  # relayed


def test_notes_of_every_sweep_point_reach_the_manifest_and_the_console(profiles, tmp_path, capsys):
    """What assembling a point notes reaches manifest.json and the console, whichever point noted it: a device in
    another role on one sweep case only, and the batch fit the cloud uses without a measured table."""
    from edgesim.cli.app import main

    data = _tiered(profiles, sweep={"cases": [{"name": "fast"}, {"name": "mobile edge", "edges.0.device": "toy-mobile"}]})
    data["cloud"]["batching"] = {"max_batch_size": 4}
    data["workload"]["frames"] = 60
    data["outputs"] = {"plots": False}
    path = write_scenario(tmp_path, data)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--jobs", "1"]) == 0
    notes = json.loads((tmp_path / "out" / "manifest.json").read_text())["notes"]
    err = capsys.readouterr().err
    assert "device 'toy-mobile' is of kind 'mobile' and is used as an edge server" in notes
    assert any("no measured batch table for model 'toy'" in n and "0.139" in n for n in notes)
    assert all(f"edgesim: note: {n}" in err for n in notes)
    # edge server e2 has its own uplink rate: no single data rate describes the run
    import pandas as pd

    assert pd.read_csv(tmp_path / "out" / "summary.csv")["data_rate_mbps"].isna().all()
