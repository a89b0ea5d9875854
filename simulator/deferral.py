"""Deferral to the cloud model: which samples a cascade sends to the large model (000 section 3.1, A.4).

Pure functions over a per-sample trace of two models (columns label, edge_pred, cloud_pred and the score
columns below, as `edgesim dmd` writes it); the combined prediction is cloud_pred where deferred and edge_pred elsewhere.

Methods (lower priority defers first):
  switcher     switcher_score, the switcher's agreement probability (000 A.4: ascending alignment probability)
  uncertainty  edge_max_prob, least confident first (Narayan et al. 2022, ref [14] of 000; 000's baseline)
  margin       edge_margin = top-1 minus top-2 probability (ref [14])
  entropy      edge_entropy, highest entropy first (ref [14])
  random       a seeded permutation
  oracle       uses the labels: defers first the samples the cloud fixes (edge wrong, cloud right; for binary
               F1 missed positives before false alarms), then those where deferral changes nothing (edge and
               cloud give the same answer, or both are wrong), then those the cloud breaks (edge right, cloud
               wrong; false alarms before lost positives). This ordering maximises accuracy and binary F1 at
               every deferral fraction; ties keep row order.
  edge-only / cloud-only  defer nothing / everything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from profilers.errors import EdgesimError, unknown_name

if TYPE_CHECKING:  # annotations only: list policies and validate import no pandas through the cascade policies
    import pandas as pd

SCORE_COLUMNS = {"switcher": "switcher_score", "uncertainty": "edge_max_prob", "margin": "edge_margin", "entropy": "edge_entropy"}
"""Confidence column per score method; entropy is reversed (high entropy = low confidence)."""
ALIASES = {"dmd-switcher": "switcher", "max_prob": "uncertainty", "max-prob": "uncertainty", "ours": "switcher"}
METHODS = ("edge-only", "cloud-only", "switcher", "uncertainty", "margin", "entropy", "random", "oracle")


def canonical_method(method: str) -> str:
    """The method's canonical name; unknown names raise one line listing the known ones."""
    name = ALIASES.get(method, method)
    if name not in METHODS:
        raise unknown_name("deferral method", method, list(METHODS) + list(ALIASES))
    return name


def require_columns(trace: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    """One-line error when the trace lacks columns a method needs."""
    missing = [c for c in cols if c not in trace.columns]
    if missing:
        raise EdgesimError(f"DMD trace lacks column(s) {missing} needed for {what}; has {list(trace.columns)}")


def n_deferred(n: int, offload_fraction: float) -> int:
    """Number of samples deferred at a fraction: round half up of f*n (000 A.4 buckets are k*n/10)."""
    if not 0.0 <= float(offload_fraction) <= 1.0:
        raise EdgesimError(f"offload fraction {offload_fraction}: expected a number in [0, 1]")
    return int(np.floor(float(offload_fraction) * n + 0.5 + 1e-9))


def confidence(trace: pd.DataFrame, method: str) -> np.ndarray:
    """Per-sample confidence of a score method; the lowest values are deferred first."""
    method = canonical_method(method)
    if method not in SCORE_COLUMNS:
        raise EdgesimError(f"method '{method}' has no score; score methods: {', '.join(SCORE_COLUMNS)}")
    col = SCORE_COLUMNS[method]
    require_columns(trace, [col], f"'{method}' deferral")
    values = trace[col].to_numpy(dtype=float)
    return -values if method == "entropy" else values


def oracle_tier(trace: pd.DataFrame, pos_label: Optional[int] = 1) -> np.ndarray:
    """Oracle tier per sample (0 defers first): fixes, then no-change, then breaks; see the module docstring."""
    require_columns(trace, ["label", "edge_pred", "cloud_pred"], "'oracle' deferral")
    y = trace["label"].to_numpy()
    e = trace["edge_pred"].to_numpy()
    c = trace["cloud_pred"].to_numpy()
    fixes = (e != y) & (c == y)
    breaks = (e == y) & (c != y)
    tier = np.full(len(y), 2, dtype=int)
    binary = pos_label is not None and set(np.unique(np.concatenate([y, e, c])).tolist()) <= {0, 1}
    is_pos = (y == pos_label) if binary else np.zeros(len(y), dtype=bool)
    tier[fixes & is_pos] = 0
    tier[fixes & ~is_pos] = 1
    tier[breaks & ~is_pos] = 3
    tier[breaks & is_pos] = 4
    return tier


def deferral_order(trace: pd.DataFrame, method: str, seed: int = 0, pos_label: Optional[int] = 1) -> np.ndarray:
    """Row indices in the order a method defers them (stable: ties keep row order)."""
    method = canonical_method(method)
    n = len(trace)
    if method == "random":
        return np.random.default_rng(seed).permutation(n)
    if method == "oracle":
        return np.argsort(oracle_tier(trace, pos_label), kind="stable")
    if method in ("edge-only", "cloud-only"):
        return np.arange(n)
    return np.argsort(confidence(trace, method), kind="stable")


def defer_mask(
    trace_df: pd.DataFrame,
    method: str,
    offload_fraction: Optional[float] = None,
    threshold: Optional[float] = None,
    seed: int = 0,
) -> np.ndarray:
    """Boolean mask of samples sent to the cloud model (000 A.4); a threshold or an offload fraction, not both.

    threshold: defer where the method's score is below it (entropy: above it). offload_fraction: defer the
    round(f*n) lowest-priority samples. edge-only/cloud-only ignore both.
    """
    method = canonical_method(method)
    n = len(trace_df)
    if method == "edge-only":
        return np.zeros(n, dtype=bool)
    if method == "cloud-only":
        return np.ones(n, dtype=bool)
    if (offload_fraction is None) == (threshold is None):
        raise EdgesimError(f"deferral '{method}': give exactly one of offload_fraction or threshold")
    if threshold is not None:
        if method not in SCORE_COLUMNS:
            raise EdgesimError(f"deferral '{method}' takes an offload fraction, not a threshold")
        col = SCORE_COLUMNS[method]
        require_columns(trace_df, [col], f"'{method}' deferral")
        values = trace_df[col].to_numpy(dtype=float)
        return values > float(threshold) if method == "entropy" else values < float(threshold)
    k = n_deferred(n, float(offload_fraction))
    mask = np.zeros(n, dtype=bool)
    mask[deferral_order(trace_df, method, seed)[:k]] = True
    return mask


def combined_pred(trace: pd.DataFrame, mask: np.ndarray) -> np.ndarray:
    """Combined prediction: cloud_pred where deferred, edge_pred elsewhere (000 section 2)."""
    return np.where(np.asarray(mask, dtype=bool), trace["cloud_pred"].to_numpy(), trace["edge_pred"].to_numpy())
