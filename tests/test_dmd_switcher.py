"""The switcher of 000 A.3: shapes, training on a separable agreement, save/load without pickle."""

import json

import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # two pytest workers on two cores: avoid oversubscription

from edgesim.studies.dmd.generate import hidden_matrix
from edgesim.studies.dmd.pipeline import fit_switcher
from edgesim.studies.dmd.switcher import build_switcher, load_switcher, save_switcher, switcher_scores, train_switcher
from edgesim.studies.stats import auroc
from profilers.errors import EdgesimError


def test_switcher_shapes_input_512_128_1():
    m = build_switcher(1536)
    linears = [l for l in m if isinstance(l, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(1536, 512), (512, 128), (128, 1)]
    assert [l.p for l in m if isinstance(l, torch.nn.Dropout)] == [0.3, 0.3]
    assert m(torch.zeros(4, 1536)).shape == (4, 1)


def separable(n=300, d=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    return x, y


def test_training_loss_decreases_and_learns_separable_agreement():
    x, y = separable()
    model, cfg, res = train_switcher(x, y, epochs=60, patience=60, seed=0, learning_rate=1e-3)
    assert res.train_loss[-1] < 0.5 * res.train_loss[0]
    xt, yt = separable(200, seed=1)
    acc = np.mean((switcher_scores(model, cfg, xt) >= 0.5) == yt)
    assert acc > 0.9


def test_training_is_seeded():
    x, y = separable(100)
    a = train_switcher(x, y, epochs=5, seed=3)
    b = train_switcher(x, y, epochs=5, seed=3)
    assert np.allclose(switcher_scores(a[0], a[1], x), switcher_scores(b[0], b[1], x))


def test_early_stopping_stops_before_max_epochs():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(80, 4)).astype(np.float32), rng.integers(0, 2, 80).astype(np.float32)  # noise: val loss rises
    _, cfg, res = train_switcher(x, y, epochs=500, patience=3, seed=0, learning_rate=1e-2)
    assert res.epochs_run < 500 and res.best_epoch == res.epochs_run - 3


def test_save_load_round_trip_without_pickle(tmp_path):
    x, y = separable(60)
    model, cfg, _ = train_switcher(x, y, hidden_layer="classifier.2", epochs=3, seed=0)
    cfg.threshold = 0.42
    save_switcher(model, cfg, tmp_path / "s.safetensors", tmp_path / "s.json")
    meta = json.loads((tmp_path / "s.json").read_text())
    assert meta["input_size"] == 8 and meta["hidden_layer"] == "classifier.2" and meta["threshold"] == 0.42
    m2, cfg2 = load_switcher(tmp_path / "s.safetensors", tmp_path / "s.json")
    assert np.allclose(switcher_scores(model, cfg, x), switcher_scores(m2, cfg2, x))
    meta["input_size"] = 9
    (tmp_path / "s.json").write_text(json.dumps(meta))
    with pytest.raises(EdgesimError, match="do not fit input size 9"):
        load_switcher(tmp_path / "s.safetensors", tmp_path / "s.json")


def _trace(n_train=240, n_valid=80, n_test=120, d=6, seed=0):
    """Agreement follows x0 + x1 > 0 on train and valid, and the opposite rule on test: a switcher that saw test
    rows cannot rank test rows perfectly backwards."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = n_train + n_valid + n_test
    x = rng.normal(size=(n, d)).astype(np.float32)
    split = np.array(["train"] * n_train + ["valid"] * n_valid + ["test"] * n_test, dtype=object)
    agree = (x[:, 0] + x[:, 1] > 0)
    agree[split == "test"] = ~agree[split == "test"]
    return pd.DataFrame({"agree": agree, "split": split, "hidden": list(x)})


def test_switcher_never_trains_on_test_rows():
    """Catches a switcher fitted on all rows (or on train + test): test rows carry the opposite rule."""

    trace = _trace()
    model, cfg, _ = fit_switcher(trace, epochs=40, patience=40, seed=0)
    assert cfg.metrics["n_train"] == 240 and cfg.metrics["n_val"] == 80  # the valid split early-stops, not train rows
    test = trace[trace.split == "test"]
    score = switcher_scores(model, cfg, hidden_matrix(test))
    assert auroc(test.agree.to_numpy(), score) < 0.1  # the train rule, applied to test rows, ranks them backwards


def test_switcher_beats_random_and_confidence_where_agreement_is_predictable():
    """Synthetic: agreement depends on hidden features the small model's confidence does not see."""
    from edgesim.studies.stats import auroc

    rng = np.random.default_rng(1)
    n = 900
    x = rng.normal(size=(n, 8)).astype(np.float32)
    agree = (x[:, 2] - x[:, 5] > -0.3).astype(np.float32)
    confidence = rng.uniform(0.5, 1.0, n)  # uninformative about agreement
    model, cfg, _ = train_switcher(x[:600], agree[:600], epochs=40, patience=10, seed=0, learning_rate=1e-3)
    score = switcher_scores(model, cfg, x[600:])
    a_switch, a_conf = auroc(agree[600:], score), auroc(agree[600:], confidence[600:])
    a_random = auroc(agree[600:], rng.random(300))
    assert a_switch > 0.9 and a_switch > a_conf + 0.25 and a_switch > a_random + 0.25
