"""The references beside the switcher (issue 29): two-class duplicates dropped, an oracle per risk-coverage curve,
learned routers on the same features, and mean curves over seeds."""

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

torch.set_num_threads(1)

from edgesim.studies.dmd import baselines, deferral, routing
from edgesim.studies.dmd.pipeline import curve_methods, evaluate
from edgesim.studies.stats import summarise


def feature_trace(seed=0, n=300, width=6):
    """Hidden features whose first coordinate decides agreement (linearly), the second whether the cloud is right."""
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(n, width)).astype(np.float32)
    y = rng.integers(0, 2, n)
    cloud_right = h[:, 1] > -1.0
    c = np.where(cloud_right, y, 1 - y)
    agree = h[:, 0] > -0.3
    e = np.where(agree, c, 1 - c)
    p = 1 / (1 + np.exp(-rng.normal(size=n)))
    conf = np.maximum(p, 1 - p)
    df = pd.DataFrame({"sample_id": [str(i) for i in range(n)], "label": y, "edge_pred": e, "cloud_pred": c,
                       "edge_max_prob": conf, "edge_margin": 2 * conf - 1,
                       "edge_entropy": -(conf * np.log(conf) + (1 - conf) * np.log(1 - conf)), "cloud_max_prob": 0.9,
                       "agree": e == c, "split": np.array(["train", "valid", "test"])[np.arange(n) % 3]})
    df["edge_probs"] = list(np.stack([1 - p, p], axis=1).astype(np.float32))
    df["hidden"] = list(h)
    return df


def test_two_class_margin_and_entropy_are_the_uncertainty_order_and_are_dropped():
    tr = feature_trace()
    order = {m: np.argsort(-tr[col].to_numpy() if m == "entropy" else tr[col].to_numpy(), kind="stable")
             for m, col in (("uncertainty", "edge_max_prob"), ("margin", "edge_margin"), ("entropy", "edge_entropy"))}
    assert np.array_equal(order["uncertainty"], order["margin"]) and np.array_equal(order["uncertainty"], order["entropy"])
    assert {"margin", "entropy"}.isdisjoint(curve_methods(tr)) and "uncertainty" in curve_methods(tr)
    three = tr.assign(label=tr.label.where(tr.index % 7 != 0, 2))
    assert {"margin", "entropy"} <= set(curve_methods(three.drop(columns="edge_probs")))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_risk_coverage_oracle_is_the_lower_bound_of_each_curve(seed):
    """The F1-ordered oracle lost to the switcher on risk (AURC 0.0322 vs 0.0232); the per-curve oracle cannot."""
    rng = np.random.default_rng(seed)
    n = 50
    y = rng.integers(0, 2, n)
    e = np.where(rng.random(n) < 0.7, y, 1 - y)
    c = np.where(rng.random(n) < 0.85, y, 1 - y)
    tr = pd.DataFrame({"label": y, "edge_pred": e, "cloud_pred": c, "edge_max_prob": rng.uniform(0.5, 1, n),
                       "switcher_score": rng.random(n)})
    rc = routing.risk_coverage(tr, ["switcher", "uncertainty", "random", "oracle"], n_points=26)
    for column in ("risk", "disagreement"):
        oracle = rc[rc.method == "oracle"].set_index("coverage")[column]
        for method, g in rc.groupby("method"):
            assert (oracle <= g.set_index("coverage")[column] + 1e-12).all(), (method, column)


def test_learned_references_find_what_the_features_hold():
    """Agreement is linear in hidden[0]: the logistic switcher ranks it almost perfectly, the confidence-only MLP
    (noise here) does not; the router's target is 'cloud right, edge wrong', and every rule defers the switcher's
    train fraction on test up to sampling."""
    tr = feature_trace()
    tr["switcher_score"] = 1 / (1 + np.exp(-3 * (tr.hidden.map(lambda h: h[0]) + 0.3)))
    scores = {"switcher": tr.switcher_score.to_numpy(), **baselines.learned_scores(tr, epochs=40, patience=5)}
    rows, curves = baselines.baseline_rows(tr, scores, 0.3)
    rows = rows.set_index("method")
    assert rows.loc["logreg-switcher", "auroc_agree"] > 0.95
    assert rows.loc["switcher-on-confidence", "auroc_agree"] < 0.7
    assert rows.large_model_pct.between(15, 45).all() and set(curves.method) == set(rows.index)
    better = (tr.cloud_pred == tr.label) & (tr.edge_pred != tr.label)
    assert baselines.target(tr, "large_better").tolist() == (~better).astype(float).tolist()


def test_evaluate_reports_baselines_with_the_oracle_and_mean_curves_have_bands():
    tr = feature_trace(1)
    tr["switcher_score"] = tr.edge_max_prob
    info = deferral.choose_threshold(tr[tr.split == "train"].reset_index(drop=True), "switcher", "fraction", 0.4)
    ev = evaluate(tr, info, with_baselines=True, baseline_epochs=20)
    assert {"switcher", "uncertainty", "logreg-switcher", "router-large-better", "switcher-on-probs",
            "switcher-on-confidence", "oracle"} == set(ev.baselines.method)
    b = ev.baselines.set_index("method")
    assert b.loc["oracle", "auc_f1"] >= b.auc_f1.max() - 1e-12
    assert b.loc["switcher", "f1_pct"] == pytest.approx(ev.table1.set_index("method").loc["switcher", "f1_pct"])
    assert "dropped_duplicates" in ev.diagnostics
    runs = pd.concat([ev.curves.assign(seed=s, f1=ev.curves.f1 + 0.01 * s) for s in range(3)])
    mean = summarise(runs, ["split", "method", "offload_fraction"], ["f1"])
    assert (mean.n_seeds == 3).all() and (mean.f1_ci > 0).all()


def test_cost_aware_point_is_the_cheapest_fraction_reaching_the_floor():
    """Energy rising linearly with the share deferred: the cheapest point meeting the floor is the smallest train
    fraction whose train F1 reaches it; a floor nothing reaches but deferring all still ends at 100 %."""
    from edgesim.studies.dmd.costaware import cost_aware_rows

    tr = feature_trace(2)
    tr["switcher_score"] = tr.hidden.map(lambda h: h[0])  # agreement's own coordinate: a good switcher
    fr = np.round(np.linspace(0, 1, 11), 1)
    sweep = pd.DataFrame({"method": "switcher", "offload_fraction": fr, "sim_energy_kj": 1 + 9 * fr,
                          "sim_delay_mean_ms": 5 + 100 * fr})
    rows = cost_aware_rows(tr, sweep, int((tr.split == "test").sum()), 0.5).set_index("cost")
    train = tr[tr.split == "train"].reset_index(drop=True)
    order = np.argsort(train.switcher_score.to_numpy(), kind="stable")
    f1s, _ = deferral.metrics_along(train, order, np.array([round(f * len(train)) for f in np.linspace(0, 1, 101)]), 1)
    floor = rows.loc["energy", "f1_floor_pct"]
    first = np.flatnonzero(100 * f1s >= floor - 1e-9)[0] / 100
    assert rows.loc["energy", "train_offload_fraction"] == pytest.approx(first)
    assert rows.loc["energy", "sim_cost"] == pytest.approx(1 + 9 * rows.loc["energy", "test_large_model_pct"] / 100)
    assert rows.loc["energy", "sim_cost_table1_switcher"] == pytest.approx(5.5)
    assert (rows.train_f1_pct >= floor - 1e-9).all()
