"""The switcher of 000 A.3: an MLP input->512->128->1 on the edge model's hidden features predicting agreement.

Trained with BCEWithLogitsLoss on the DMD agreement label, Adam lr 1e-4, dropout 0.3, early stopping on a
validation split; saved as safetensors weights plus a JSON config (no pickle).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from edgesim.studies.data import split_indices
from edgesim.studies.training import fit, save_state
from profilers.errors import EdgesimError
from profilers.io import atomic_write_text, read_json
from profilers.progress import Progress, silent
from simulator.metrics import f1_score

HIDDEN_SIZES = (512, 128)  # 000 A.3
DROPOUT = 0.3  # 000 A.3
LEARNING_RATE = 1e-4  # 000 A.3


def build_switcher(input_size: int, dropout: float = DROPOUT):
    """The switcher MLP of 000 A.3: Linear(input,512)-ReLU-Dropout-Linear(512,128)-ReLU-Dropout-Linear(128,1)."""
    import torch.nn as nn

    if input_size < 1:
        raise EdgesimError(f"switcher input size {input_size}: expected a positive integer")
    h1, h2 = HIDDEN_SIZES
    return nn.Sequential(
        nn.Linear(input_size, h1), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(h1, h2), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(h2, 1),
    )


@dataclass
class SwitcherConfig:
    """What is saved beside the weights: sizes, the edge layer the features come from, threshold and metrics."""

    input_size: int
    hidden_layer: str = ""
    hidden_sizes: list = field(default_factory=lambda: list(HIDDEN_SIZES))
    dropout: float = DROPOUT
    learning_rate: float = LEARNING_RATE
    threshold: Optional[float] = None
    threshold_info: dict = field(default_factory=dict)
    feature_mean: list = field(default_factory=list)  # standardisation fitted on the training split
    feature_std: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


def _standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std with std floored to avoid division by zero."""
    return (x - mean) / np.maximum(std, 1e-6)


def train_switcher(
    features: np.ndarray,
    agree: np.ndarray,
    hidden_layer: str = "",
    epochs: int = 100,
    patience: int = 10,
    val_fraction: float = 0.2,
    batch_size: int = 32,
    learning_rate: float = LEARNING_RATE,
    seed: int = 0,
    standardise: bool = True,
    val_features: Optional[np.ndarray] = None,
    val_agree: Optional[np.ndarray] = None,
    progress: Progress = silent,
):
    """Train the switcher on (hidden features, agreement) with early stopping on validation loss (000 A.3).

    The validation rows are val_features / val_agree when given (a dataset's own validation split, 000 A.1),
    else a seeded stratified val_fraction of the rows given. Returns (model, SwitcherConfig, History); the model
    is in eval mode with the best validation weights.
    """
    import torch

    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(agree, dtype=np.float32).reshape(-1)
    if x.ndim != 2 or len(x) != len(y) or len(x) < 2:
        raise EdgesimError(f"switcher training data: expected features (n, d) and n labels with n >= 2, got {x.shape} and {y.shape}")
    torch.manual_seed(seed)  # the switcher's initial weights
    if val_features is not None:
        xv = np.asarray(val_features, dtype=np.float32)
        yv = np.asarray(val_agree, dtype=np.float32).reshape(-1)
        if xv.ndim != 2 or xv.shape[1] != x.shape[1] or len(xv) != len(yv) or len(xv) == 0:
            raise EdgesimError(f"switcher validation data: expected features (m, {x.shape[1]}) and m labels, got {xv.shape} and {yv.shape}")
        x, y = np.concatenate([x, xv]), np.concatenate([y, yv])
    idx = np.arange(len(x))
    n_val = max(1, int(round(val_fraction * len(x)))) if val_fraction > 0 else 0
    if val_features is not None:
        tr_idx, va_idx = idx[:len(x) - len(xv)], idx[len(x) - len(xv):]
    elif n_val and len(x) - n_val >= 1:
        tr_idx, va_idx = split_indices(idx, y if len(np.unique(y)) > 1 else None, seed, test_size=n_val)
    else:
        tr_idx, va_idx = idx, idx
    mean = x[tr_idx].mean(axis=0) if standardise else np.zeros(x.shape[1], np.float32)
    std = x[tr_idx].std(axis=0) if standardise else np.ones(x.shape[1], np.float32)
    xs = torch.from_numpy(_standardise(x, mean, std).astype(np.float32))
    ys = torch.from_numpy(y)
    model = build_switcher(x.shape[1])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    x_tr, y_tr, x_va, y_va = xs[tr_idx], ys[tr_idx], xs[va_idx], ys[va_idx]
    history = fit(model, lambda out, target: loss_fn(out.squeeze(1), target), x_tr, y_tr, epochs, learning_rate,
                  batch_size, seed, validate=lambda: loss_fn(model(x_va).squeeze(1), y_va), patience=patience,
                  progress=progress)
    with torch.no_grad():
        p_va = torch.sigmoid(model(x_va).squeeze(1)).numpy()
    y_va_np = y_va.numpy()
    pred = (p_va >= 0.5).astype(np.float32)
    metrics = {
        "val_loss": history.best_val, "best_epoch": history.best_epoch, "epochs_run": history.epochs_run,
        "val_accuracy": float(np.mean(pred == y_va_np)), "val_f1": f1_score(y_va_np, pred, positive=1.0),
        "n_train": int(len(tr_idx)), "n_val": int(len(va_idx)), "agree_rate": float(y[tr_idx].mean()),
        "validation": "the dataset's validation split" if val_features is not None else f"{val_fraction:g} of the training rows",
    }
    cfg = SwitcherConfig(int(x.shape[1]), hidden_layer, learning_rate=learning_rate,
                         feature_mean=[float(v) for v in mean], feature_std=[float(v) for v in std], metrics=metrics)
    return model, cfg, history


def switcher_scores(model, config: SwitcherConfig, features: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Agreement probability per sample (sigmoid of the switcher's logit)."""
    import torch

    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != config.input_size:
        raise EdgesimError(f"switcher expects features of width {config.input_size}, got shape {x.shape}")
    if config.feature_mean:
        x = _standardise(x, np.asarray(config.feature_mean, np.float32), np.asarray(config.feature_std, np.float32))
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            out.append(torch.sigmoid(model(torch.from_numpy(x[s:s + batch_size].astype(np.float32))).squeeze(1)).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def save_switcher(model, config: SwitcherConfig, weights_path: str | Path, config_path: str | Path) -> None:
    """Write switcher.safetensors and switcher.json atomically."""
    save_state(model, weights_path, metadata={"format": "pt", "model": "dmd-switcher"})
    atomic_write_text(config_path, json.dumps(asdict(config), indent=2) + "\n")


def load_switcher(weights_path: str | Path, config_path: str | Path):
    """Read a switcher saved by save_switcher (safetensors, no pickle); one-line errors."""
    from safetensors.torch import load_file

    config_path, weights_path = Path(config_path), Path(weights_path)
    data = read_json(config_path, "switcher config")
    if not isinstance(data, dict) or "input_size" not in data:
        raise EdgesimError(f"switcher config {config_path}: expected an object with 'input_size'")
    keys = set(SwitcherConfig.__dataclass_fields__)
    config = SwitcherConfig(**{k: v for k, v in data.items() if k in keys})
    model = build_switcher(int(config.input_size), float(config.dropout))
    if not weights_path.is_file():
        raise EdgesimError(f"switcher weights {weights_path}: file not found")
    try:
        state = load_file(str(weights_path))
        model.load_state_dict(state)
    except Exception as exc:
        raise EdgesimError(f"switcher weights {weights_path}: do not fit input size {config.input_size}: {str(exc).splitlines()[0]}") from None
    model.eval()
    return model, config
