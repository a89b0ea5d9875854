"""Statistics shared by the studies: t-intervals over seeds, a paired bootstrap, AUROC, calibration (ECE).

Every table the studies print over several seeds gives mean +/- the half-width of a Student-t interval
(`mean_ci`, `summarise`); a paired bootstrap over test samples compares two methods on the same samples
(`paired_bootstrap`); `auroc`, `expected_calibration_error` and `reliability_bins` judge a probability such as
the switcher's agreement probability (000 A.3 thresholds it as if calibrated).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from simulator.metrics import ci95_half_width


def mean_ci(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, 95% Student-t half-width (simulator.metrics.ci95_half_width, nan for n < 2) and n of the finite values."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    mean = float(v.mean()) if v.size else float("nan")
    return mean, ci95_half_width(v), int(v.size)


def summarise(runs: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Per group of `by`: for each metric its mean, t-interval half-width (<metric>_ci) and number of seeds."""
    rows = []
    for key, g in runs.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        for m in metrics:
            if m not in g.columns:
                continue
            mean, half, n = mean_ci(pd.to_numeric(g[m], errors="coerce"))
            row[m] = mean
            row[f"{m}_ci"] = half
            row["n_seeds"] = max(row.get("n_seeds", 0), n)
        rows.append(row)
    return pd.DataFrame(rows)


def formatted(summary: pd.DataFrame, metrics: Sequence[str], digits: int = 1, significant: bool = False) -> pd.DataFrame:
    """'mean +/- half-width' strings for the metrics of a summarise() table (for printing): `digits` decimals, or
    `digits` significant figures when significant (quantities such as a tiny model's energy that decimals round to 0)."""
    spec = f".{digits}{'g' if significant else 'f'}"
    out = summary.copy()
    for m in metrics:
        if m in out.columns:
            out[m] = [f"{v:{spec}} +/- {h:{spec}}" if np.isfinite(h) else f"{v:{spec}}"
                      for v, h in zip(out[m], out[f"{m}_ci"])]
            out = out.drop(columns=f"{m}_ci")
    return out


def paired_bootstrap(metric: Callable[[np.ndarray], float], n: int, n_boot: int = 2000, seed: int = 0,
                     confidence: float = 0.95) -> tuple[float, float, float]:
    """Observed metric(all n rows) and its percentile bootstrap interval, metric(idx) evaluated on resampled rows.

    For a paired comparison pass metric = lambda idx: score_a(idx) - score_b(idx): both methods are scored on the
    same resampled test samples.
    """
    rng = np.random.default_rng(seed)
    idx_all = np.arange(n)
    observed = float(metric(idx_all))
    boots = np.array([metric(rng.integers(0, n, n)) for _ in range(int(n_boot))])
    lo, hi = np.quantile(boots, [(1 - confidence) / 2, (1 + confidence) / 2])
    return observed, float(lo), float(hi)


def auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of score predicting y_true (1 = positive); nan when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true).astype(int)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, np.asarray(score, dtype=float)))


def reliability_bins(y_true: np.ndarray, prob: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Equal-width probability bins: count, mean predicted probability and observed frequency of y_true = 1."""
    y = np.asarray(y_true, dtype=float)
    p = np.clip(np.asarray(prob, dtype=float), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=True), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = which == b
        rows.append({"bin_lo": edges[b], "bin_hi": edges[b + 1], "count": int(m.sum()),
                     "mean_prob": float(p[m].mean()) if m.any() else float("nan"),
                     "frequency": float(y[m].mean()) if m.any() else float("nan")})
    return pd.DataFrame(rows)


def expected_calibration_error(y_true: np.ndarray, prob: np.ndarray, n_bins: int = 10) -> float:
    """ECE: sum over equal-width bins of (bin share) x |observed frequency - mean probability|."""
    bins = reliability_bins(y_true, prob, n_bins)
    n = bins["count"].sum()
    if n == 0:
        return float("nan")
    used = bins[bins["count"] > 0]
    return float(np.sum(used["count"] / n * np.abs(used["frequency"] - used["mean_prob"])))


def seed_list(seeds: int, first: int = 0) -> list[int]:
    """The seeds of a multi-seed run: first, first + 1, ..., first + seeds - 1."""
    return list(range(int(first), int(first) + max(1, int(seeds))))
