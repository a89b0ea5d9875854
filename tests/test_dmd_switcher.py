"""The switcher of 000 A.3: shapes, training on a separable agreement, save/load without pickle."""

import json

import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # two pytest workers on two cores: avoid oversubscription

from edgesim.studies.dmd.switcher import build_switcher, load_switcher, save_switcher, switcher_scores, train_switcher
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
