"""Deferral curves, thresholds and Table 1 rows over the DMD trace (000 section 3.1, A.4).

The masks themselves (which samples go to the cloud model, per method) are `simulator.deferral`, shared with
the simulator's cascade policies; this module sweeps them into curves and picks thresholds as 000 A.4 does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from profilers.errors import EdgesimError
from simulator.deferral import (
    SCORE_COLUMNS,
    canonical_method,
    combined_pred,
    confidence,
    defer_mask,
    deferral_order,
    n_deferred,
    require_columns,
)
from simulator.metrics import f1_score, positive_class

CURVE_METHODS = ("switcher", "uncertainty", "margin", "entropy", "random", "oracle")
N_BUCKETS = 10  # 000 A.4: "split the results into 10 buckets"


def default_positive(trace: pd.DataFrame) -> Optional[int]:
    """The class F1 is taken for, by simulator.metrics' rule over labels and edge predictions: 1 for 0/1 labels (as
    000's fall F1), None (macro F1) with more classes."""
    return positive_class(np.union1d(trace["label"].to_numpy(), trace["edge_pred"].to_numpy()))


def average_name(positive: Optional[int]) -> str:
    """How F1 is averaged, for tables and figure titles: 'binary' (F1 of the positive class) or 'macro'."""
    return "binary" if positive is not None else "macro"


def metrics_along(trace: pd.DataFrame, order: np.ndarray, ks: np.ndarray,
                   positive: Optional[int]) -> tuple[np.ndarray, np.ndarray]:
    """F1 and accuracy of the combined prediction after deferring order[:k], for each k."""
    y = trace["label"].to_numpy()
    e = trace["edge_pred"].to_numpy()
    c = trace["cloud_pred"].to_numpy()
    f1s, accs = np.empty(len(ks)), np.empty(len(ks))
    for i, k in enumerate(ks):
        pred = e.copy()
        idx = order[:k]
        pred[idx] = c[idx]
        f1s[i] = f1_score(y, pred, positive)
        accs[i] = float(np.mean(pred == y)) if len(y) else 0.0
    return f1s, accs


def curve_fractions(n_points: int = 101) -> np.ndarray:
    """Deferral fractions 0..1 evenly spaced (101 points: every 1%)."""
    return np.linspace(0.0, 1.0, int(n_points))


def deferral_curves(
    trace: pd.DataFrame,
    methods: Sequence[str] = CURVE_METHODS,
    fractions: Optional[Sequence[float]] = None,
    positive: Optional[int] = None,
    seed: int = 0,
    random_seeds: int = 20,
) -> pd.DataFrame:
    """Combined F1 and accuracy vs fraction deferred per method (000 Figures 2-3), long format.

    F1 is of the `positive` class (default: default_positive of the trace; None there means macro F1). Adds 'random-mean' (mean over `random_seeds` seeds) and 'random-expected' (linear interpolation between
    edge-only and cloud-only: the exact expectation for accuracy, the usual reference for F1).
    """
    require_columns(trace, ["label", "edge_pred", "cloud_pred"], "deferral curves")
    fr = curve_fractions() if fractions is None else np.asarray(fractions, dtype=float)
    positive = default_positive(trace) if positive is None else positive
    n = len(trace)
    ks = np.array([n_deferred(n, f) for f in fr])
    rows = []

    def add(method: str, f1s: np.ndarray, accs: np.ndarray) -> None:
        for f, k, f1, acc in zip(fr, ks, f1s, accs):
            rows.append({"method": method, "offload_fraction": float(f), "n_deferred": int(k), "f1": float(f1), "accuracy": float(acc)})

    for m in methods:
        m = canonical_method(m)
        f1s, accs = metrics_along(trace, deferral_order(trace, m, seed), ks, positive)
        add(m, f1s, accs)
        if m == "random":
            runs = [metrics_along(trace, deferral_order(trace, "random", seed + s), ks, positive)
                    for s in range(int(random_seeds))]
            add("random-mean", np.mean([r[0] for r in runs], axis=0), np.mean([r[1] for r in runs], axis=0))
            y = trace["label"].to_numpy()
            e = trace["edge_pred"].to_numpy()
            c = trace["cloud_pred"].to_numpy()
            f_e, f_c = f1_score(y, e, positive), f1_score(y, c, positive)
            a_e, a_c = float(np.mean(e == y)), float(np.mean(c == y))
            frac = ks / n if n else fr
            add("random-expected", f_e + (f_c - f_e) * frac, a_e + (a_c - a_e) * frac)
    out = pd.DataFrame(rows)
    out.attrs["f1_average"] = average_name(positive)
    return out


def trapezoid_area(x: np.ndarray, y: np.ndarray) -> float:
    """Area under the piecewise-linear curve through (x, y), x ascending (the trapezoid rule)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def area_per_method(curves: pd.DataFrame, x: str, y: str, name: str) -> pd.DataFrame:
    """Per method of a long table of curves, the trapezoid area under y against x, in a column called name."""
    return pd.DataFrame([{"method": method, name: trapezoid_area(*g.sort_values(x)[[x, y]].to_numpy().T)}
                         for method, g in curves.groupby("method", sort=False)])


def curve_area(curves: pd.DataFrame, metric: str = "f1") -> pd.DataFrame:
    """Area under each deferral curve: trapezoid over the deferral fraction 0..1."""
    return area_per_method(curves, "offload_fraction", metric, f"auc_{metric}")


@dataclass
class ThresholdInfo:
    """The chosen offload operating point: a fraction from train, and per score method the threshold it implies."""

    method: str
    strategy: str  # "buckets", "fraction" or "threshold"
    offload_fraction: float  # fraction deferred on the training split
    threshold: float  # score threshold of `method`: defer where score < threshold
    method_thresholds: dict = field(default_factory=dict)  # per score method, same fraction on train
    bucket_f1: list = field(default_factory=list)  # combined train F1 at k = 0..10 buckets (strategy "buckets")
    f1_positive: Optional[int] = None  # the class F1 is taken for on train (default_positive); None: macro F1

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ThresholdInfo":
        """From a JSON dict; unknown keys ignored."""
        keys = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in keys})


def threshold_at_fraction(trace: pd.DataFrame, method: str, offload_fraction: float) -> float:
    """Score threshold that defers round(f*n) training samples (midpoint between neighbours; ties defer fewer)."""
    method = canonical_method(method)
    t = threshold_for_fraction(confidence(trace, method), offload_fraction)
    return float(-t if method == "entropy" else t)


def threshold_for_fraction(scores: np.ndarray, offload_fraction: float) -> float:
    """Threshold t on scores (defer where score < t) that defers round(f*n) of them (midpoint between neighbours)."""
    conf = np.sort(np.asarray(scores, dtype=np.float64), kind="stable")
    k = n_deferred(len(conf), offload_fraction)
    if k == 0:
        t = (conf[0] - 1.0) if len(conf) else 0.0
    elif k >= len(conf):
        t = conf[-1] + 1.0
    else:
        t = (conf[k - 1] + conf[k]) / 2.0
    return float(t)


def bucket_f1(trace: pd.DataFrame, method: str = "switcher", positive: Optional[int] = None,
              n_buckets: int = N_BUCKETS) -> np.ndarray:
    """Combined F1 after deferring the k lowest-score buckets, k = 0..n_buckets (000 A.4)."""
    positive = default_positive(trace) if positive is None else positive
    n = len(trace)
    ks = np.array([n_deferred(n, k / n_buckets) for k in range(n_buckets + 1)])
    f1s, _ = metrics_along(trace, deferral_order(trace, method), ks, positive)
    return f1s


STRATEGIES = ("buckets", "fraction", "threshold")


def check_strategy(strategy: str, offload_fraction: Optional[float] = None, threshold: Optional[float] = None) -> None:
    """An operating-point request that can be met: a known strategy, a fraction in [0, 1], a finite threshold in [0, 1]."""
    if strategy not in STRATEGIES:
        raise EdgesimError(f"--strategy '{strategy}': expected one of {', '.join(STRATEGIES)}")
    if offload_fraction is not None and not 0.0 <= offload_fraction <= 1.0:  # False for NaN as well
        raise EdgesimError(f"--offload-fraction {offload_fraction}: expected a fraction deferred in [0, 1]")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise EdgesimError(f"--threshold {threshold}: expected an agreement probability in [0, 1]")
    if strategy == "fraction" and offload_fraction is None:
        raise EdgesimError("--strategy fraction needs --offload-fraction F (e.g. 0.6)")
    if strategy == "threshold" and threshold is None:
        raise EdgesimError("--strategy threshold needs --threshold P (e.g. 0.5)")


def choose_threshold(
    train: pd.DataFrame,
    method: str = "switcher",
    strategy: str = "buckets",
    offload_fraction: Optional[float] = None,
    threshold: Optional[float] = None,
    positive: Optional[int] = None,
) -> ThresholdInfo:
    """Pick the operating point on training data: 10-bucket best combined F1 (ties: fewer deferrals), a fraction, or a threshold."""
    method = canonical_method(method)
    positive = default_positive(train) if positive is None else positive
    buckets: list = []
    if strategy == "buckets":
        f1s = bucket_f1(train, method, positive)
        buckets = [float(v) for v in f1s]
        best = int(np.flatnonzero(f1s >= f1s.max() - 1e-12)[0])
        fraction = best / N_BUCKETS
        thr = threshold_at_fraction(train, method, fraction)
    elif strategy == "fraction":
        if offload_fraction is None:
            raise EdgesimError("threshold strategy 'fraction' needs an offload fraction (e.g. 0.6)")
        fraction = float(offload_fraction)
        thr = threshold_at_fraction(train, method, fraction)
    elif strategy == "threshold":
        if threshold is None:
            raise EdgesimError("threshold strategy 'threshold' needs a threshold value")
        thr = float(threshold)
        fraction = float(defer_mask(train, method, threshold=thr).mean()) if len(train) else 0.0
    else:
        raise EdgesimError(f"threshold strategy '{strategy}': expected buckets, fraction or threshold")
    others = {m: threshold_at_fraction(train, m, fraction) for m in SCORE_COLUMNS if SCORE_COLUMNS[m] in train.columns}
    others[method] = thr
    return ThresholdInfo(method, strategy, float(fraction), float(thr), others, buckets, positive)


TABLE1_APPROACHES = (
    ("Small model only", "edge-only"),
    ("Large model only", "cloud-only"),
    ("Uncertainty-based system", "uncertainty"),
    ("Ours (switcher)", "switcher"),
    ("Random", "random"),
    ("Oracle", "oracle"),
)


def table1_rows(trace_df: pd.DataFrame, threshold_info: ThresholdInfo | Mapping[str, Any], split: Optional[str] = "test", seed: int = 0) -> pd.DataFrame:
    """Table 1 of 000 without time/energy: F1 %, accuracy % and % to the large model per approach.

    Switcher and uncertainty defer where their score passes the threshold chosen on train at the same
    train fraction (000 A.4 "we also used 60%"); random and oracle defer that fraction of the split.
    """
    info = threshold_info if isinstance(threshold_info, ThresholdInfo) else ThresholdInfo.from_dict(threshold_info)
    trace = trace_df
    if split is not None and "split" in trace_df.columns:
        trace = trace_df[trace_df["split"] == split].reset_index(drop=True)
        if trace.empty:
            raise EdgesimError(f"DMD trace has no rows with split '{split}'")
    positive = default_positive(trace) if info.f1_positive is None else info.f1_positive
    y = trace["label"].to_numpy()
    rows = []
    for approach, method in TABLE1_APPROACHES:
        if method in SCORE_COLUMNS:
            if SCORE_COLUMNS[method] not in trace.columns:
                continue
            thr = info.method_thresholds.get(method, info.threshold if method == info.method else None)
            mask = defer_mask(trace, method, threshold=thr) if thr is not None else defer_mask(trace, method, offload_fraction=info.offload_fraction)
        elif method in ("random", "oracle"):
            mask = defer_mask(trace, method, offload_fraction=info.offload_fraction, seed=seed)
        else:
            mask = defer_mask(trace, method)
        pred = combined_pred(trace, mask)
        rows.append({
            "approach": approach,
            "method": method,
            "f1_pct": 100.0 * f1_score(y, pred, positive),
            "accuracy_pct": 100.0 * float(np.mean(pred == y)) if len(y) else 0.0,
            "large_model_pct": 100.0 * float(mask.mean()) if len(mask) else 0.0,
            "n_samples": int(len(trace)),
            "n_deferred": int(mask.sum()),
            "f1_average": average_name(positive),
        })
    return pd.DataFrame(rows)
