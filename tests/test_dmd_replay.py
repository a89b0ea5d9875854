"""The DMD replay (000 Table 1 time/energy, Figures 4-5): closed forms on a synthetic trace, consistency with the trace."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from edgesim.studies.dmd import deferral
from edgesim.studies.dmd.pipeline import run_demo
from edgesim.studies.dmd.plots import table_number
from edgesim.studies.dmd.replay import CLOUD_ID, EDGE_ID, SWEEP_FRACTIONS, WAN, replay
from profilers.errors import EdgesimError
from profilers.schema import load_profile

torch.set_num_threads(1)  # two pytest workers on two cores: avoid oversubscription

SWITCHER_S = 1e-3  # a stated switcher time, so its share of the runtime has a closed form


def synthetic_trace(n_train: int = 60, n_test: int = 50, seed: int = 0) -> pd.DataFrame:
    """Binary labels; the edge model errs on about 30%, the cloud model on about 10%; scores loosely informative."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    label = rng.integers(0, 2, n)
    edge = np.where(rng.random(n) < 0.3, 1 - label, label)
    cloud = np.where(rng.random(n) < 0.1, 1 - label, label)
    agree = (edge == cloud).astype(float)
    return pd.DataFrame({
        "label": label, "edge_pred": edge, "cloud_pred": cloud,
        "edge_max_prob": np.clip(0.5 + 0.3 * (edge == label) + 0.2 * rng.random(n), 0.5, 1.0),
        "switcher_score": np.clip(0.4 * agree + 0.6 * rng.random(n), 0.0, 1.0),
        "split": ["train"] * n_train + ["test"] * n_test,
    })


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Replay of a synthetic trace with untrained models measured on this host (1 thread -> 2 threads)."""
    out = tmp_path_factory.mktemp("replay")
    trace = synthetic_trace()
    trace.to_parquet(out / "dmd.parquet")
    info = deferral.choose_threshold(trace[trace.split == "train"].reset_index(drop=True), "switcher", "fraction", 0.3)
    rep = replay(out, out / "dmd.parquet", info, repeats=3, switcher_host_s=SWITCHER_S, png="no")
    return out, trace[trace.split == "test"].reset_index(drop=True), info, rep


def _median(profile_path, model_id: str, point: str, part: str) -> float:
    """A split point's head or tail median from a written profile."""
    sp = load_profile(profile_path).models[model_id].split_point(point)
    return float(getattr(sp, f"{part}_latency").median_s)


def _wire_bits(size_bytes: int) -> float:
    """Bits on the WAN for a payload: 40 bytes of headers per 1460-byte packet."""
    packets = math.ceil(size_bytes / WAN.packet_payload_bytes)
    return 8.0 * (size_bytes + packets * WAN.packet_overhead_bytes)


def _cloud_frame_s(out) -> float:
    """Capture-to-output time of one frame sent to the large model: uplink, propagation, cloud, downlink, propagation."""
    cloud = load_profile(out / "profiles" / "host-2threads.json").models[CLOUD_ID]
    rate = WAN.data_rate_mbps * 1e6
    return (_wire_bits(cloud.input_bytes["float32"]) / rate + WAN.propagation_delay_s
            + _median(out / "profiles" / "host-2threads.json", CLOUD_ID, "input", "tail")
            + _wire_bits(cloud.result_bytes) / rate + WAN.propagation_delay_s)


def test_table1_gets_time_and_energy_columns_and_files(synthetic):
    out, test, _, rep = synthetic
    table = pd.read_csv(out / "table1.csv")
    assert table["method"].tolist() == ["edge-only", "cloud-only", "uncertainty", "switcher", "random", "oracle"]
    for col in ("sim_time_s", "sim_delay_mean_ms", "sim_energy_kj", "sim_energy_mobile_mj_per_frame"):
        assert np.isfinite(table[col]).all() and (table[col] > 0).all(), col
    assert (table["energy_method"] == "power-model-estimate").all() or table["energy_method"].str.contains("rapl|nvml").all()
    n = len(test)
    assert table["sim_time_s"].to_numpy() == pytest.approx(n * 1e-3 * table["sim_delay_mean_ms"].to_numpy())
    per_frame_j = 1e-3 * (table["sim_energy_mobile_mj_per_frame"] + table["sim_energy_cloud_mj_per_frame"])
    assert table["sim_energy_kj"].to_numpy() == pytest.approx((per_frame_j * n / 1e3).to_numpy())
    for name in ("cost_vs_deferred.csv", "energy_vs_deferred.html", "runtime_vs_deferred.html",
                 "profiles/host-1thread.json", "profiles/host-2threads.json"):
        assert (out / name).is_file(), name
    mobile = load_profile(out / "profiles" / "host-1thread.json")
    assert mobile.kind == "mobile" and set(mobile.models) == {EDGE_ID, CLOUD_ID} and mobile.power.radio is not None
    assert "time and energy" in rep.provenance and "WAN" in rep.provenance["time and energy"]


def test_simulated_accuracy_equals_the_trace(synthetic):
    """Same deferral sets: the simulator's F1 / accuracy / % large equal the trace-based Table 1 for every row."""
    out, test, info, _ = synthetic
    t = pd.read_csv(out / "table1.csv").set_index("method")
    for col in ("f1_pct", "accuracy_pct", "large_model_pct"):
        assert t[f"sim_{col}"].to_numpy() == pytest.approx(t[col].to_numpy(), abs=1e-9), col
    y, e, c = test["label"].to_numpy(), test["edge_pred"].to_numpy(), test["cloud_pred"].to_numpy()
    n = len(y)
    assert t.loc["edge-only", "sim_accuracy_pct"] == pytest.approx(100 * np.mean(e == y))
    assert t.loc["cloud-only", "sim_accuracy_pct"] == pytest.approx(100 * np.mean(c == y))
    # oracle (closed form): defers the fixes first, then frames deferral does not change, then the breaks
    k = math.floor(info.offload_fraction * n + 0.5)
    fixes, breaks = int(np.sum((e != y) & (c == y))), int(np.sum((e == y) & (c != y)))
    neutral = n - fixes - breaks
    correct = np.sum(e == y) + min(k, fixes) - max(0, k - fixes - neutral)
    assert t.loc["oracle", "sim_accuracy_pct"] == pytest.approx(100 * correct / n)
    assert t.loc["oracle", "sim_large_model_pct"] == pytest.approx(100 * k / n)


def test_times_match_closed_forms(synthetic):
    """No queueing at 1 frame/s: edge-only = n x edge model; each deferred frame adds uplink + 2 x 20 ms + cloud + downlink."""
    out, test, _, _ = synthetic
    n = len(test)
    t = pd.read_csv(out / "table1.csv").set_index("method")
    edge_s = _median(out / "profiles" / "host-1thread.json", EDGE_ID, "output", "head")
    assert t.loc["edge-only", "sim_time_s"] == pytest.approx(n * edge_s, rel=1e-9)
    assert t.loc["cloud-only", "sim_time_s"] == pytest.approx(n * _cloud_frame_s(out), rel=1e-9)
    k = t.loc["switcher", "n_deferred"]
    assert t.loc["switcher", "sim_time_s"] == pytest.approx(n * (edge_s + SWITCHER_S) + k * _cloud_frame_s(out), rel=1e-9)


def test_cost_grows_with_the_deferred_fraction(synthetic):
    """A deferred frame runs the small model, crosses the WAN and runs the large model: dearer in time and energy."""
    out, test, _, rep = synthetic
    n = len(test)
    sweep = pd.read_csv(out / "cost_vs_deferred.csv")
    assert set(sweep["policy"]) == {"dmd-switcher", "uncertainty"}
    per_deferred_s = _cloud_frame_s(out)
    for policy, g in sweep.groupby("policy"):
        g = g.sort_values("offload_fraction")
        assert g["offload_fraction"].tolist() == list(SWEEP_FRACTIONS)
        k = np.floor(g["offload_fraction"].to_numpy() * n + 0.5)
        assert g["sim_large_model_pct"].to_numpy() == pytest.approx(100 * k / n)
        assert (np.diff(g["sim_time_s"].to_numpy()) > 0).all(), policy
        assert (np.diff(g["sim_energy_kj"].to_numpy()) > 0).all(), policy
        time = g["sim_time_s"].to_numpy()
        assert time - time[0] == pytest.approx(k * per_deferred_s, rel=1e-9, abs=1e-12)
    both = sweep.pivot(index="offload_fraction", columns="policy", values="sim_time_s")
    assert (both["dmd-switcher"] - both["uncertainty"]).to_numpy() == pytest.approx(n * SWITCHER_S, rel=1e-9)
    assert set(rep.figures) == {"energy_vs_deferred", "runtime_vs_deferred"}


def test_catalog_devices_are_derived(tmp_path):
    trace = synthetic_trace(40, 30, seed=1)
    trace.to_parquet(tmp_path / "dmd.parquet")
    info = deferral.choose_threshold(trace[trace.split == "train"].reset_index(drop=True), "switcher", "fraction", 0.5)
    rep = replay(tmp_path, tmp_path / "dmd.parquet", info, repeats=2, mobile="jetson-tx2", cloud="cloud-gpu",
                 switcher_host_s=0.0, png="no")
    for name, kind in (("jetson-tx2", "mobile"), ("cloud-gpu", "cloud")):
        prof = load_profile(tmp_path / "profiles" / f"{name}.json")
        assert prof.kind == kind and prof.provenance.kind == "derived" and {EDGE_ID, CLOUD_ID} <= set(prof.models)
    t = rep.table1.set_index("method")
    assert t.loc["edge-only", "sim_time_s"] < t.loc["switcher", "sim_time_s"] < t.loc["cloud-only", "sim_time_s"]
    assert t.loc["edge-only", "sim_energy_kj"] < t.loc["cloud-only", "sim_energy_kj"]


def test_unknown_device_is_one_line_before_training(tmp_path):
    with pytest.raises(EdgesimError, match=r"unknown device 'nope'.*jetson-tx2") as err:
        run_demo(tmp_path, fast=True, png="no", mobile="nope")
    assert "\n" not in str(err.value) and not any(tmp_path.iterdir())


def test_demo_table1_has_simulated_time_and_energy(tmp_path):
    """The --fast demo end to end: table1.csv carries the replay's columns, consistent with the trace."""
    summary = run_demo(tmp_path, seed=0, fast=True, png="no")
    table = pd.read_csv(tmp_path / "table1.csv").set_index("method")
    for col in ("f1_pct", "accuracy_pct", "large_model_pct"):
        assert table[f"sim_{col}"].to_numpy() == pytest.approx(table[col].to_numpy(), abs=1e-9), col
    assert table.loc["edge-only", "sim_time_s"] < table.loc["cloud-only", "sim_time_s"]
    assert table.loc["switcher", "switcher_ms_per_frame"] > 0
    assert json.loads((tmp_path / "summary.json").read_text())["table1"][0]["sim_energy_kj"] > 0
    report = (tmp_path / "report.html").read_text()
    assert "000 Figure 4" in report and "000 Figure 5" in report and "sim_time_s" in report
    # plotly.js from the file beside the page, not inlined; energy cells with significant figures, not 0.00
    assert "<script charset='utf-8' src='plotly.min.js'></script>" in report and (tmp_path / "plotly.min.js").is_file()
    assert len(report) < 1_000_000 and "time and energy (sim_* columns) simulated" in report
    for kj in table["sim_energy_kj"]:
        assert kj > 0 and f"<td>{table_number(kj)}</td>" in report and table_number(kj) not in ("0", "0.00")
    assert summary["replay_devices"] == {"mobile": "host-1thread", "cloud": "host-2threads"}
