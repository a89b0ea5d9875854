"""The DMD replay: Table 1 of 000 with time and energy from the simulator, consistent with the trace."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from profilers.dmd.pipeline import run_demo

    out = tmp_path_factory.mktemp("dmd")
    summary = run_demo(out, seed=0, fast=True, png=False)
    return out, summary


def test_table1_replay_has_time_and_energy(demo):
    out, summary = demo
    table = pd.read_csv(out / "table1_replay.csv")
    assert list(table["policy"]) == ["edge-only", "cloud-only", "uncertainty", "dmd-switcher", "random", "oracle"]
    for col in ("f1_pct", "large_model_pct", "time_s", "energy_kj"):
        assert table[col].notna().all() and (table[col] >= 0).all(), col
    t = table.set_index("policy")
    assert t.loc["edge-only", "large_model_pct"] == 0 and t.loc["cloud-only", "large_model_pct"] == 100
    # a deferred frame runs the small model, crosses the WAN and runs the large model: dearer than edge-only
    assert t.loc["edge-only", "time_s"] < t.loc["dmd-switcher", "time_s"] < t.loc["cloud-only", "time_s"] + 1e-9 or \
        t.loc["dmd-switcher", "large_model_pct"] == 0
    assert t.loc["edge-only", "energy_kj"] < t.loc["cloud-only", "energy_kj"]
    assert json.loads((out / "summary.json").read_text())["table1_replay"]


def test_replay_accuracy_equals_the_trace(demo):
    out, _ = demo
    from profilers.dmd.replay import accuracy_matches_trace

    table = pd.read_csv(out / "table1_replay.csv")
    for policy, (sim, trace) in accuracy_matches_trace(table, out / "dmd.parquet").items():
        assert sim == pytest.approx(trace), policy


def test_cost_grows_with_the_deferred_fraction(demo):
    out, _ = demo
    sweep = pd.read_csv(out / "cost_vs_deferred.csv")
    for _, g in sweep.groupby("policy"):
        g = g.sort_values("deferred_fraction")
        assert (np.diff(g["time_s"].to_numpy()) >= -1e-9).all()
        assert (np.diff(g["energy_kj"].to_numpy()) >= -1e-12).all()
    assert (out / "energy_vs_deferred.html").exists() and (out / "runtime_vs_deferred.html").exists()
