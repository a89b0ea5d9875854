"""How good a deferral rule is, beyond one operating point: RouteLLM's APGR and CPT on the deferral curves,
risk-coverage curves, and how well a score predicts agreement (AUROC, calibration) - REFERENCES section 6.

APGR (RouteLLM): (AUC of quality vs share of calls to the large model - weak) / (strong - weak), with weak and
strong the small-only and large-only quality; CPT(x %): the smallest share of calls to the large model whose
quality reaches weak + x % of the weak-to-strong gap. Risk-coverage (selective prediction): keep the
`coverage` share of samples the score trusts most on the small model; risk = its error rate on them.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd

from edgesim.studies.dmd.deferral import area_per_method, trapezoid_area
from edgesim.studies.stats import auroc, expected_calibration_error, paired_bootstrap
from simulator.deferral import (
    SCORE_COLUMNS,
    combined_pred,
    defer_mask,
    deferral_order,
    n_deferred,
)
from simulator.metrics import f1_score

CPT_LEVELS = (0.5, 0.8)  # RouteLLM reports CPT(50%) and CPT(80%)


def apgr_cpt(curves: pd.DataFrame, metric: str = "f1", levels: Sequence[float] = CPT_LEVELS) -> pd.DataFrame:
    """Per method of a deferral_curves() table: AUC, APGR and CPT(levels) of `metric` (RouteLLM).

    weak / strong: the curve's value at 0 % / 100 % deferred. APGR and CPT are nan when strong <= weak.
    """
    rows = []
    for method, g in curves.groupby("method", sort=False):
        g = g.sort_values("offload_fraction")
        x, y = g["offload_fraction"].to_numpy(float), g[metric].to_numpy(float)
        weak, strong = y[0], y[-1]
        auc = trapezoid_area(x, y)
        gap = strong - weak
        row = {"method": method, f"auc_{metric}": auc, "weak": weak, "strong": strong,
               "apgr": (auc - weak) / gap if gap > 0 else float("nan")}
        for level in levels:
            reached = np.flatnonzero(y >= weak + level * gap - 1e-12) if gap > 0 else np.array([], int)
            row[f"cpt{int(round(100 * level))}"] = float(x[reached[0]]) if len(reached) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def risk_coverage(trace: pd.DataFrame, methods: Sequence[str], n_points: int = 51, seed: int = 0) -> pd.DataFrame:
    """Risk (small model's error rate, and disagreement rate) on the `coverage` share kept, per method, long format.

    The oracle is an oracle for each curve: for risk it keeps the samples the small model gets right first, for
    disagreement those where the two models agree first (deferral_order's oracle is ordered for combined F1, which
    is not the order that minimises either risk)."""
    n = len(trace)
    y, e, c = (trace[k].to_numpy() for k in ("label", "edge_pred", "cloud_pred"))
    rows = []
    for method in methods:
        if method == "oracle":  # wrong (disagreeing) first: the kept tail holds the right (agreeing) ones
            orders = {"risk": np.argsort(e == y, kind="stable"), "disagreement": np.argsort(e == c, kind="stable")}
        else:
            order = deferral_order(trace, method, seed)  # deferred first: the kept set is the tail of this order
            orders = {"risk": order, "disagreement": order}
        for cov in np.linspace(0.0, 1.0, n_points):
            k = n_deferred(n, cov)  # kept count, rounded as the deferred count is
            row = {"method": method, "coverage": float(cov), "n_kept": k}
            for column, truth in (("risk", y), ("disagreement", c)):
                kept = orders[column][n - k:] if k else orders[column][:0]
                row[column] = float(np.mean(e[kept] != truth[kept])) if k else 0.0
            rows.append(row)
    return pd.DataFrame(rows)


def aurc(rc: pd.DataFrame, column: str = "risk") -> pd.DataFrame:
    """Area under each risk-coverage curve (lower is better)."""
    return area_per_method(rc, "coverage", column, f"aurc_{column}")


def agreement_diagnostics(trace: pd.DataFrame) -> dict:
    """AUROC of predicting agreement from the switcher's probability and from the small model's confidence, and
    the switcher's expected calibration error (its probability is thresholded as if calibrated)."""
    agree = trace["agree"].to_numpy().astype(int)
    out = {"n": int(len(trace)), "agree_rate": float(agree.mean()) if len(agree) else float("nan")}
    if "switcher_score" in trace.columns:
        out["auroc_switcher"] = auroc(agree, trace["switcher_score"].to_numpy())
        out["ece_switcher"] = expected_calibration_error(agree, trace["switcher_score"].to_numpy())
    if "edge_max_prob" in trace.columns:
        out["auroc_confidence"] = auroc(agree, trace["edge_max_prob"].to_numpy())
    return out


def switcher_vs_uncertainty(trace: pd.DataFrame, thresholds: dict, positive: Optional[int], n_boot: int = 2000,
                            seed: int = 0) -> dict:
    """Paired bootstrap over test samples of F1(switcher) - F1(uncertainty) at their train thresholds (000 Table 1)."""
    y = trace["label"].to_numpy()
    preds = {}
    for method in ("switcher", "uncertainty"):
        if SCORE_COLUMNS[method] not in trace.columns or method not in thresholds:
            return {}
        preds[method] = combined_pred(trace, defer_mask(trace, method, threshold=float(thresholds[method])))

    def diff(idx: np.ndarray) -> float:
        return f1_score(y[idx], preds["switcher"][idx], positive) - f1_score(y[idx], preds["uncertainty"][idx], positive)

    d, lo, hi = paired_bootstrap(diff, len(y), n_boot, seed)
    return {"f1_diff_pct": 100 * d, "f1_diff_lo_pct": 100 * lo, "f1_diff_hi_pct": 100 * hi, "n_boot": n_boot}
