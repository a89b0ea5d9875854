"""Statistics of the studies and the DMD routing metrics against closed forms (t-interval, APGR, CPT, ECE, AUROC)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from edgesim.studies.dmd.routing import apgr_cpt, risk_coverage
from edgesim.studies.dmd.seeds import aggregate
from edgesim.studies.stats import auroc, expected_calibration_error, mean_ci, paired_bootstrap, summarise


def test_mean_ci_is_the_student_t_interval():
    v = [1.0, 2.0, 4.0, 7.0, 11.0]
    mean, half, n = mean_ci(v)
    assert n == 5 and mean == pytest.approx(5.0)
    assert half == pytest.approx(stats.t.ppf(0.975, 4) * np.std(v, ddof=1) / np.sqrt(5))
    assert np.isnan(mean_ci([3.0])[1])
    s = summarise(pd.DataFrame({"g": ["a"] * 5, "x": v}), ["g"], ["x"])
    assert s.loc[0, "x_ci"] == pytest.approx(half) and s.loc[0, "n_seeds"] == 5
    # None and non-finite values are left out before the interval (a seed whose metric is undefined)
    assert mean_ci([*v, None, float("nan"), float("inf")]) == pytest.approx((mean, half, 5))
    assert mean_ci([None])[2] == 0 and np.isnan(mean_ci([])[0])


def test_apgr_and_cpt_closed_forms():
    x = np.linspace(0, 1, 101)
    curves = pd.concat([pd.DataFrame({"method": "linear", "offload_fraction": x, "f1": 0.5 + 0.4 * x}),
                        pd.DataFrame({"method": "sqrt", "offload_fraction": x, "f1": 0.5 + 0.4 * np.sqrt(x)})])
    r = apgr_cpt(curves).set_index("method")
    assert r.loc["linear", "apgr"] == pytest.approx(0.5, abs=1e-9)  # random routing: half the gap
    assert r.loc["linear", "cpt50"] == pytest.approx(0.5) and r.loc["linear", "cpt80"] == pytest.approx(0.8)
    assert r.loc["sqrt", "apgr"] == pytest.approx(2 / 3, abs=2e-3)  # integral of sqrt(x) over [0, 1]
    assert r.loc["sqrt", "cpt50"] == pytest.approx(0.25) and r.loc["sqrt", "cpt80"] == pytest.approx(0.64)


def test_ece_auroc_and_bootstrap():
    y = np.array([1, 1, 0, 0])
    assert expected_calibration_error(y, np.array([0.95, 0.95, 0.05, 0.05])) == pytest.approx(0.05)
    assert expected_calibration_error(np.array([1, 0, 1, 0]), np.full(4, 0.5)) == pytest.approx(0.0)
    assert auroc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 1.0 and np.isnan(auroc(np.ones(3), np.ones(3)))
    d, lo, hi = paired_bootstrap(lambda idx: float(np.mean(idx < 50)), 100, n_boot=500, seed=0)
    assert d == 0.5 and lo < 0.5 < hi and hi - lo < 0.25


def test_risk_coverage_oracle_keeps_the_correct_first():
    trace = pd.DataFrame({"label": [0, 1, 1, 0], "edge_pred": [0, 0, 1, 1], "cloud_pred": [0, 1, 1, 0]})
    rc = risk_coverage(trace, ["oracle"], n_points=5)
    assert rc.set_index("coverage").risk.loc[0.5] == 0.0 and rc.set_index("coverage").risk.loc[1.0] == 0.5


def test_seed_aggregate_gives_mean_and_interval_per_approach():
    summaries = [{"seed": s, "table1": [{"approach": "A", "method": "switcher", "f1_pct": 60.0 + s}],
                  "routing": [{"split": "test", "metric": "f1", "method": "switcher", "apgr": 0.6 + 0.01 * s}],
                  "diagnostics": {"auroc_switcher": 0.7, "f1_diff_pct": float(s)}} for s in range(5)]
    t = aggregate(summaries)
    row = t["table1"].iloc[0]
    assert row.f1_pct == pytest.approx(62.0) and row.f1_pct_ci == pytest.approx(mean_ci([60, 61, 62, 63, 64])[1])
    assert t["routing"].iloc[0].apgr == pytest.approx(0.62) and t["diagnostics"].iloc[0].f1_diff_pct == pytest.approx(2.0)
