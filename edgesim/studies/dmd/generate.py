"""DMD data generation (000 section 2, A.2): both models see every sample; record the edge model's hidden
features, both predictions and whether they agree (the switcher's label, no human labels needed)."""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
import pandas as pd

from edgesim.studies.data import split_indices
from edgesim.studies.dmd.adapters import Adapter
from edgesim.studies.samples import Sample
from profilers.errors import EdgesimError
from profilers.progress import Progress, silent


def confidence_features(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Prediction, max probability, margin (top-1 minus top-2) and entropy (nats) per row (ref [14] of 000)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise EdgesimError(f"model probabilities: expected shape (batch, classes>=2), got {p.shape}")
    top2 = np.sort(p, axis=1)[:, -2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=1)
    return {"pred": p.argmax(axis=1), "max_prob": top2[:, 1], "margin": top2[:, 1] - top2[:, 0], "entropy": ent}


def stratified_split(labels: np.ndarray, test_fraction: float = 0.3, seed: int = 0) -> np.ndarray:
    """'train'/'test' per sample, stratified by label when every class has at least 2 samples, seeded."""
    labels = np.asarray(labels)
    n = len(labels)
    if not 0.0 < test_fraction < 1.0 or n < 2:
        raise EdgesimError(f"test fraction {test_fraction} with {n} samples: expected 0 < fraction < 1 and at least 2 samples")
    _, test_idx = split_indices(np.arange(n), labels, seed, test_size=test_fraction)
    split = np.full(n, "train", dtype=object)
    split[test_idx] = "test"
    return split


def dataset_split(splits: list) -> np.ndarray:
    """The dataset's own split per sample (000 A.1 keeps the export's train / valid / test); it needs train and test."""
    out = np.asarray(splits, dtype=object)
    missing = [name for name in ("train", "test") if name not in set(out)]
    if missing:
        raise EdgesimError(f"the dataset's own split has no {' or '.join(missing)} samples (splits: {sorted(set(out))})")
    return out


def _batches(items: Iterable[Sample], size: int) -> Iterable[list[Sample]]:
    """Consecutive lists of up to `size` samples."""
    batch: list[Sample] = []
    for s in items:
        batch.append(s)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def generate(
    dataset: Iterable[Sample],
    edge_adapter: Adapter,
    cloud_adapter: Adapter,
    hidden_layer: Optional[str] = None,
    batch_size: int = 64,
    test_fraction: float = 0.3,
    seed: int = 0,
    progress: Progress = silent,
) -> pd.DataFrame:
    """The DMD trace: one row per sample with both models' outputs, agreement, split and a 'hidden' column (000 A.2).

    hidden_layer defaults to the edge adapter's default_hidden_layer; 'hidden' holds float32 vectors of equal width.
    split: the samples' own split when every sample has one (a YOLO export), else a seeded stratified train/test split.
    progress counts samples (total 0 when the dataset has no length).
    """
    layer = hidden_layer or getattr(edge_adapter, "default_hidden_layer", None)
    if not layer:
        raise EdgesimError("DMD generation needs the edge model's hidden layer name (e.g. 'classifier.2' for ViLT)")
    cols: dict[str, list] = {k: [] for k in ("sample_id", "label", "edge_prob", "cloud_prob", "hidden", "split")}
    total = len(dataset) if hasattr(dataset, "__len__") else 0
    for batch in _batches(dataset, int(batch_size)):
        images = [s.image for s in batch]
        e_probs, hidden = edge_adapter.predict(images, hidden_layer=layer)
        c_probs, _ = cloud_adapter.predict(images, hidden_layer=None)
        if hidden is None or len(hidden) != len(batch):
            raise EdgesimError(f"edge model gave no hidden features for layer '{layer}'")
        cols["sample_id"] += [str(s.sample_id) for s in batch]
        cols["label"] += [int(s.label) for s in batch]
        cols["split"] += [s.split for s in batch]
        cols["edge_prob"].append(np.asarray(e_probs))
        cols["cloud_prob"].append(np.asarray(c_probs))
        cols["hidden"] += [np.asarray(h, dtype=np.float32) for h in hidden]
        progress(len(cols["sample_id"]), total)
    if not cols["sample_id"]:
        raise EdgesimError("DMD generation: the dataset has no samples")
    e = confidence_features(np.concatenate(cols["edge_prob"]))
    c = confidence_features(np.concatenate(cols["cloud_prob"]))
    labels = np.asarray(cols["label"], dtype=np.int64)
    df = pd.DataFrame({
        "sample_id": cols["sample_id"],
        "label": labels,
        "edge_pred": e["pred"].astype(np.int64),
        "edge_max_prob": e["max_prob"],
        "edge_margin": e["margin"],
        "edge_entropy": e["entropy"],
        "cloud_pred": c["pred"].astype(np.int64),
        "cloud_max_prob": c["max_prob"],
    })
    df["agree"] = df["edge_pred"] == df["cloud_pred"]
    df["split"] = dataset_split(cols["split"]) if all(cols["split"]) else stratified_split(labels, test_fraction, seed)
    df["edge_probs"] = list(np.concatenate(cols["edge_prob"]).astype(np.float32))  # the switcher-input ablation's
    df["hidden"] = cols["hidden"]
    df.attrs["hidden_layer"] = layer
    return df


def degenerate_problems(trace: pd.DataFrame) -> list[str]:
    """Why a trace cannot support 000's evaluation: agreement 0 %, a model whose predictions never equal a label,
    or a model that predicts one class for every sample; each with its numbers. Empty when none holds."""
    n = len(trace)
    problems = []
    if n and not trace["agree"].any():
        problems.append(f"the two models agree on 0 of {n} samples")
    for side in ("edge", "cloud"):
        pred = trace[f"{side}_pred"]
        hits = int((pred == trace["label"]).sum())
        if n and hits == 0:
            problems.append(f"the {side} model's predictions never equal the label (0 of {n}; it predicts "
                            f"{sorted(pred.unique().tolist())[:5]}, the labels are {sorted(trace['label'].unique().tolist())[:5]})")
        elif pred.nunique() == 1 and n > 1:
            problems.append(f"the {side} model predicts class {int(pred.iloc[0])} for all {n} samples "
                            f"(accuracy {100 * hits / n:.1f}%)")
    return problems


def hidden_matrix(trace: pd.DataFrame) -> np.ndarray:
    """The 'hidden' column as an (n, d) float32 matrix; one-line error if ragged."""
    if "hidden" not in trace.columns:
        raise EdgesimError("DMD trace has no 'hidden' column (the edge model's hidden features)")
    vecs = list(trace["hidden"])
    widths = {len(v) for v in vecs}
    if len(widths) > 1:
        raise EdgesimError(f"DMD trace hidden vectors have different widths {sorted(widths)[:5]}")
    return np.stack([np.asarray(v, dtype=np.float32) for v in vecs]) if vecs else np.zeros((0, 0), np.float32)
