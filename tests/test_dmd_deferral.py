"""Deferral baselines, bucket threshold and Table 1 rows of 000 A.4 on hand-made and random traces."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score as sk_f1

from edgesim.studies.dmd import deferral
from profilers.errors import EdgesimError
from simulator import deferral as masks


def make_trace(label, edge, cloud, score=None, max_prob=None, split=None):
    n = len(label)
    df = pd.DataFrame({"label": label, "edge_pred": edge, "cloud_pred": cloud})
    df["edge_max_prob"] = max_prob if max_prob is not None else np.linspace(0.5, 1.0, n)
    df["edge_margin"] = 2 * df["edge_max_prob"] - 1
    p = df["edge_max_prob"].clip(1e-9, 1 - 1e-9)
    df["edge_entropy"] = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    df["switcher_score"] = score if score is not None else np.linspace(0, 1, n)
    df["agree"] = df["edge_pred"] == df["cloud_pred"]
    if split is not None:
        df["split"] = split
    return df


def random_trace(seed, n=60, classes=2):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    e = np.where(rng.random(n) < 0.6, y, rng.integers(0, classes, n))
    c = np.where(rng.random(n) < 0.85, y, rng.integers(0, classes, n))
    return make_trace(y, e, c, score=rng.random(n), max_prob=rng.uniform(1 / classes, 1, n))


def test_bucket_threshold_known_best_k_and_tie_goes_to_fewer_deferrals():
    # 20 samples, 2 per bucket in ascending switcher score. Buckets 1-3: edge wrong, cloud right (deferring fixes);
    # bucket 4: both right (no change, a tie with k=3); buckets 5-10: edge right, cloud wrong (deferring hurts).
    label = np.array([1, 0] * 10)
    edge = label.copy()
    cloud = label.copy()
    edge[:6] = 1 - label[:6]
    cloud[8:] = 1 - label[8:]
    tr = make_trace(label, edge, cloud, score=np.arange(20) / 20)
    info = deferral.choose_threshold(tr, "switcher", "buckets")
    assert info.offload_fraction == pytest.approx(0.3)
    assert info.bucket_f1[3] == pytest.approx(1.0) and info.bucket_f1[4] == pytest.approx(1.0)
    assert masks.defer_mask(tr, "switcher", threshold=info.threshold).sum() == 6


def test_fraction_and_threshold_strategies():
    tr = random_trace(1, n=50)
    info = deferral.choose_threshold(tr, "switcher", "fraction", offload_fraction=0.6)
    assert masks.defer_mask(tr, "switcher", threshold=info.threshold).sum() == 30
    info2 = deferral.choose_threshold(tr, "switcher", "threshold", threshold=0.5)
    assert info2.offload_fraction == pytest.approx(np.mean(tr["switcher_score"] < 0.5))
    with pytest.raises(EdgesimError):
        deferral.choose_threshold(tr, "switcher", "fraction")


def test_uncertainty_defers_lowest_max_prob_first_and_entropy_highest():
    tr = random_trace(2, n=40)
    mask = masks.defer_mask(tr, "uncertainty", offload_fraction=0.25)
    assert mask.sum() == 10
    assert tr["edge_max_prob"][mask].max() <= tr["edge_max_prob"][~mask].min()
    ent = masks.defer_mask(tr, "entropy", offload_fraction=0.25)
    assert tr["edge_entropy"][ent].min() >= tr["edge_entropy"][~ent].max()
    assert masks.defer_mask(tr, "entropy", threshold=0.5).tolist() == (tr["edge_entropy"] > 0.5).tolist()


def test_oracle_first_deferrals_are_edge_wrong_cloud_right():
    tr = random_trace(3, n=80)
    fixes = (tr.edge_pred != tr.label) & (tr.cloud_pred == tr.label)
    k = int(fixes.sum())
    assert k > 0
    mask = masks.defer_mask(tr, "oracle", offload_fraction=k / len(tr))
    assert mask.tolist() == fixes.tolist()
    order = masks.deferral_order(tr, "oracle")
    tiers = masks.oracle_tier(tr)[order]
    assert np.all(np.diff(tiers) >= 0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), classes=st.sampled_from([2, 4]))
def test_oracle_curve_dominates_every_other_curve(seed, classes):
    tr = random_trace(seed, n=40, classes=classes)
    curves = deferral.deferral_curves(tr, deferral.CURVE_METHODS, np.linspace(0, 1, 41), random_seeds=3)
    oracle = curves[curves.method == "oracle"].set_index("offload_fraction")
    metrics = ["accuracy", "f1"] if classes == 2 else ["accuracy"]  # binary F1 ordering is proven; macro F1 is not
    for method, g in curves.groupby("method"):
        g = g.set_index("offload_fraction")
        for m in metrics:
            assert (oracle[m] >= g[m] - 1e-12).all(), (method, m)


@pytest.mark.parametrize("f,n,expected", [(0.25, 40, 10), (0.6, 10, 6), (0.1, 7, 1), (1.0, 13, 13), (0.0, 13, 0)])
def test_random_defers_round_f_n(f, n, expected):
    tr = random_trace(4, n=n)
    assert masks.defer_mask(tr, "random", offload_fraction=f, seed=9).sum() == expected


def test_random_mean_curve_approaches_linear_interpolation():
    tr = random_trace(5, n=200)
    curves = deferral.deferral_curves(tr, ["random"], np.linspace(0, 1, 11), random_seeds=400)
    mean = curves[curves.method == "random-mean"]["accuracy"].to_numpy()
    lin = curves[curves.method == "random-expected"]["accuracy"].to_numpy()
    assert np.max(np.abs(mean - lin)) < 0.01
    assert mean[0] == pytest.approx(lin[0]) and mean[-1] == pytest.approx(lin[-1])


def test_curve_endpoints_are_edge_only_and_cloud_only():
    tr = random_trace(6, n=50)
    curves = deferral.deferral_curves(tr, ["switcher", "uncertainty"], np.linspace(0, 1, 11))
    y = tr.label.to_numpy()
    for _, g in curves.groupby("method"):
        assert g.iloc[0]["accuracy"] == pytest.approx(np.mean(tr.edge_pred == y))
        assert g.iloc[-1]["accuracy"] == pytest.approx(np.mean(tr.cloud_pred == y))


def test_curve_area_trapezoid_closed_form():
    c = pd.DataFrame({"method": ["a"] * 3, "offload_fraction": [0, 0.5, 1.0], "f1": [0.0, 0.5, 1.0]})
    assert deferral.curve_area(c)["auc_f1"].iloc[0] == pytest.approx(0.5)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), classes=st.sampled_from([2, 3, 5]))
def test_curve_f1_is_scikit_learns_with_the_positive_class_rule(seed, classes):
    tr = random_trace(seed, n=30, classes=classes)
    curves = deferral.deferral_curves(tr, ["switcher"], [0.0, 1.0]).set_index("method").loc["switcher"]
    y = tr.label.to_numpy()
    avg = "binary" if classes == 2 else "macro"  # 0/1 labels: F1 of class 1, as 000's fall F1
    assert curves.attrs.get("f1_average", avg) == avg
    assert deferral.default_positive(tr) == (1 if classes == 2 else None)
    assert curves["f1"].iloc[0] == pytest.approx(sk_f1(y, tr.edge_pred, average=avg, zero_division=0))
    assert curves["f1"].iloc[-1] == pytest.approx(sk_f1(y, tr.cloud_pred, average=avg, zero_division=0))


def test_f1_rule_is_recorded_with_the_threshold_and_in_table1():
    tr = random_trace(9, n=40)
    info = deferral.choose_threshold(tr, "switcher", "fraction", offload_fraction=0.5)
    assert info.f1_positive == 1 and deferral.ThresholdInfo.from_dict(info.to_dict()).f1_positive == 1
    assert set(deferral.table1_rows(tr, info, split=None).f1_average) == {"binary"}
    multi = random_trace(9, n=40, classes=4)
    info = deferral.choose_threshold(multi, "switcher", "fraction", offload_fraction=0.5)
    assert info.f1_positive is None and set(deferral.table1_rows(multi, info, split=None).f1_average) == {"macro"}


def test_table1_rows_edge_only_and_cloud_only_and_percent_large():
    split = np.array(["train"] * 30 + ["test"] * 30)
    tr = random_trace(7, n=60)
    tr["split"] = split
    info = deferral.choose_threshold(tr[tr.split == "train"].reset_index(drop=True), "switcher", "fraction", offload_fraction=0.6)
    rows = deferral.table1_rows(tr, info).set_index("method")
    test = tr[tr.split == "test"]
    assert rows.loc["edge-only", "large_model_pct"] == 0 and rows.loc["cloud-only", "large_model_pct"] == 100
    assert rows.loc["cloud-only", "accuracy_pct"] == pytest.approx(100 * np.mean(test.cloud_pred == test.label))
    assert rows.loc["oracle", "large_model_pct"] == pytest.approx(60.0)
    assert list(rows.index) == ["edge-only", "cloud-only", "uncertainty", "switcher", "random", "oracle"]
    # a dict threshold_info (as read back from JSON) gives the same rows
    assert deferral.table1_rows(tr, info.to_dict())["f1_pct"].tolist() == rows["f1_pct"].tolist()


def test_bad_method_and_arguments_are_one_line_errors():
    tr = random_trace(8, n=10)
    with pytest.raises(EdgesimError, match="unknown deferral method 'nope'"):
        masks.defer_mask(tr, "nope", offload_fraction=0.5)
    with pytest.raises(EdgesimError, match="exactly one"):
        masks.defer_mask(tr, "switcher")
    with pytest.raises(EdgesimError, match="offload fraction"):
        masks.defer_mask(tr, "random", offload_fraction=1.5)
    with pytest.raises(EdgesimError, match="switcher_score"):
        masks.defer_mask(tr.drop(columns="switcher_score"), "dmd-switcher", offload_fraction=0.5)
