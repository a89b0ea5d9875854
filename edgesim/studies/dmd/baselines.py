"""Reference deferral rules beside 000's switcher, on the same train rows and the same features (issue 29):

- a logistic-regression switcher (agreement from the hidden features, linear);
- a learned "large model does better" router (Narayan et al.'s deferral target: cloud right and edge wrong), the
  switcher's MLP on the hidden features; it defers where that probability is high;
- an ablation of the switcher's input: the same MLP on the edge model's class probabilities (its softmax output:
  "logits" up to a shift) and on its confidence alone (max probability).

Every learned rule is fitted on the train split and early-stopped on 'valid' when the trace has it (as the
switcher, 000 A.3); its threshold is taken on train at the switcher's train deferral fraction (000 A.4) and
applied to test. Scores follow the switcher's convention: low score = defer first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from edgesim.studies.dmd.deferral import curve_fractions, default_positive, metrics_along, threshold_for_fraction
from edgesim.studies.dmd.generate import hidden_matrix
from edgesim.studies.dmd.routing import apgr_cpt
from edgesim.studies.dmd.switcher import switcher_scores, train_switcher
from edgesim.studies.stats import auroc
from simulator.deferral import n_deferred
from simulator.metrics import f1_score

#: the two-class duplicates: margin = 2 max_prob - 1 and entropy = H(max_prob) are monotone in max_prob when
#: there are two classes, so their deferral orders are the uncertainty baseline's (same rows: dropped)
TWO_CLASS_DUPLICATES = ("margin", "entropy")


@dataclass(frozen=True)
class LearnedRule:
    """A learned deferral rule: its name, input features, training target and learner."""

    name: str
    inputs: str  # hidden | probs | confidence
    target: str  # agree | large_better
    learner: str  # mlp | logreg
    description: str


LEARNED = (
    LearnedRule("logreg-switcher", "hidden", "agree", "logreg", "logistic regression on the hidden features, target agreement"),
    LearnedRule("router-large-better", "hidden", "large_better", "mlp",
                "switcher MLP on the hidden features, target 'large model right, small wrong' (Narayan et al.)"),
    LearnedRule("switcher-on-probs", "probs", "agree", "mlp", "switcher MLP on the edge model's class probabilities"),
    LearnedRule("switcher-on-confidence", "confidence", "agree", "mlp", "switcher MLP on the edge model's max probability"),
)


def is_two_class(trace: pd.DataFrame) -> bool:
    """Whether labels and both models' predictions use two classes at most (then margin and entropy duplicate uncertainty)."""
    classes = np.union1d(np.union1d(trace["label"].to_numpy(), trace["edge_pred"].to_numpy()), trace["cloud_pred"].to_numpy())
    return len(classes) <= 2 and ("edge_probs" not in trace.columns or len(trace["edge_probs"].iloc[0]) <= 2)


def features(trace: pd.DataFrame, inputs: str) -> np.ndarray:
    """The learned rule's input per row: hidden features, the edge class probabilities, or the edge confidence."""
    if inputs == "hidden":
        return hidden_matrix(trace)
    if inputs == "probs":
        if "edge_probs" in trace.columns:
            return np.stack([np.asarray(v, dtype=np.float32) for v in trace["edge_probs"]])
        # traces written before edge_probs was kept: the confidence features derived from the probabilities
        return trace[["edge_max_prob", "edge_margin", "edge_entropy"]].to_numpy(np.float32)
    return trace[["edge_max_prob"]].to_numpy(np.float32)


def target(trace: pd.DataFrame, name: str) -> np.ndarray:
    """1 where the sample should stay on the edge: agreement, or not ('large model right and small wrong')."""
    if name == "agree":
        return trace["agree"].to_numpy(np.float32)
    better = (trace["cloud_pred"] == trace["label"]) & (trace["edge_pred"] != trace["label"])
    return (~better).to_numpy(np.float32)


def _fit_scores(rule: LearnedRule, trace: pd.DataFrame, epochs: int, patience: int, seed: int) -> np.ndarray:
    """Fit the rule on train (early stop on valid) and score every row (high = keep on the edge)."""
    split = trace["split"] if "split" in trace.columns else pd.Series("train", index=trace.index)
    train, valid = trace[split == "train"], trace[split == "valid"]
    x, y = features(train, rule.inputs), target(train, rule.target)
    x_all = features(trace, rule.inputs)
    if len(np.unique(y)) < 2:  # one class on train: nothing to learn, every row gets the train rate
        return np.full(len(trace), float(y.mean()) if len(y) else 0.5)
    if rule.learner == "logreg":
        from sklearn.linear_model import LogisticRegression

        mean, std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
        model = LogisticRegression(max_iter=2000).fit((x - mean) / std, y.astype(int))
        return model.predict_proba((x_all - mean) / std)[:, 1]
    val = (features(valid, rule.inputs), target(valid, rule.target)) if len(valid) else (None, None)
    model, cfg, _ = train_switcher(x, y, rule.inputs, epochs=epochs, patience=patience, seed=seed,
                                   val_features=val[0], val_agree=val[1])
    return switcher_scores(model, cfg, x_all).astype(np.float64)


def learned_scores(trace: pd.DataFrame, epochs: int = 100, patience: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Every learned rule's score per row of the trace."""
    return {rule.name: _fit_scores(rule, trace, epochs, patience, seed) for rule in LEARNED}


def _curve(part: pd.DataFrame, order: np.ndarray, positive: Optional[int], fr: np.ndarray) -> pd.DataFrame:
    ks = np.array([n_deferred(len(part), f) for f in fr])
    f1s, accs = metrics_along(part, order, ks, positive)
    return pd.DataFrame({"offload_fraction": fr, "f1": f1s, "accuracy": accs})


def baseline_rows(trace: pd.DataFrame, scores: dict[str, np.ndarray], offload_fraction: float,
                  positive: Optional[int] = None, n_points: int = 101) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Test-split rows per rule (switcher, uncertainty and the learned ones): AUC / APGR / CPT of the F1 curve,
    AUROC of predicting agreement, and F1 and share deferred at the threshold taken on train at the switcher's
    train fraction; plus the test curves (long format). `scores` maps a rule to its score per trace row."""
    split = trace["split"].to_numpy() if "split" in trace.columns else np.full(len(trace), "test")
    train_rows, test_rows = split == "train", split == "test"
    test = trace[test_rows].reset_index(drop=True)
    positive = default_positive(trace) if positive is None else positive
    fr = curve_fractions(n_points)
    y, e, c = (test[k].to_numpy() for k in ("label", "edge_pred", "cloud_pred"))
    rows, curves = [], []
    for name, score in scores.items():
        s_train, s_test = np.asarray(score)[train_rows], np.asarray(score)[test_rows]
        curve = _curve(test, np.argsort(s_test, kind="stable"), positive, fr).assign(method=name)
        curves.append(curve)
        route = apgr_cpt(curve, "f1").iloc[0]
        thr = threshold_for_fraction(s_train, offload_fraction)
        defer = s_test < thr
        pred = np.where(defer, c, e)
        rows.append({"method": name, "auc_f1": route["auc_f1"], "apgr": route["apgr"], "cpt50": route["cpt50"],
                     "cpt80": route["cpt80"], "auroc_agree": auroc(test["agree"].to_numpy().astype(int), s_test),
                     "f1_pct": 100 * f1_score(y, pred, positive), "large_model_pct": 100 * float(defer.mean()),
                     "n_test": int(len(test))})
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)
