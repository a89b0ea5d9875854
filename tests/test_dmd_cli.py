"""`edgesim dmd ...` end to end on the embedded digits data (reduced size), and one-line errors with exit 2."""

import json

import pandas as pd
import pytest
import torch

torch.set_num_threads(1)  # two pytest workers on two cores: avoid oversubscription

from edgesim.cli.app import main
from profilers.models import build
from profilers.models.digits import edge_net


def run_cli(args):
    return main(list(args))


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert run_cli(["dmd", "demo", "--out", str(out), "--fast", "--no-png", "--seed", "1"]) == 0
    return out


def test_demo_writes_every_artefact(demo_dir):
    for name in ("dmd.parquet", "dmd.json", "switcher.safetensors", "switcher.json", "curves.csv", "curves_train.html",
                 "curves_test.html", "table1.csv", "report.html", "edge.safetensors", "cloud.safetensors", "curve_areas.csv"):
        assert (demo_dir / name).is_file(), name
    table = pd.read_csv(demo_dir / "table1.csv")
    assert table.approach.tolist()[:4] == ["Small model only", "Large model only", "Uncertainty-based system", "Ours (switcher)"]
    assert {"f1_pct", "accuracy_pct", "large_model_pct"} <= set(table.columns)
    cfg = json.loads((demo_dir / "switcher.json").read_text())
    assert cfg["input_size"] == 32 and cfg["hidden_layer"] == "hidden" and cfg["threshold_info"]["strategy"] == "buckets"
    curves = pd.read_csv(demo_dir / "curves.csv")
    assert set(curves.split) == {"train", "test"} and {"switcher", "uncertainty", "random", "oracle"} <= set(curves.method)
    trace = pd.read_parquet(demo_dir / "dmd.parquet")
    assert "switcher_score" in trace.columns and trace.switcher_score.between(0, 1).all()


def test_registry_models_load_demo_checkpoints(demo_dir):
    from safetensors.torch import load_file

    sm = build("dmd-digits-edge", checkpoint=str(demo_dir / "edge.safetensors"))
    assert sm.split_points[0] == ("input", 0) and sm.split_points[-1] == ("output", len(sm.blocks)) and sm.input_shape == (1, 8, 8)
    net = edge_net(2)
    net.load_state_dict(load_file(str(demo_dir / "edge.safetensors")))
    x = torch.rand(3, 1, 8, 8)
    y = x
    for b in sm.blocks:
        y = b(y)
    assert torch.allclose(y, net.eval()(x))
    cloud = build("dmd-digits-cloud", checkpoint=str(demo_dir / "cloud.safetensors"))
    assert len(cloud.blocks) == 6


def test_generate_train_evaluate_commands(demo_dir, tmp_path):
    trace = tmp_path / "t.parquet"
    assert run_cli(["dmd", "generate", "digits", "--edge", "dmd-digits-edge", "--cloud", "dmd-digits-cloud",
                    "--edge-checkpoint", str(demo_dir / "edge.safetensors"), "--cloud-checkpoint", str(demo_dir / "cloud.safetensors"),
                    "--out", str(trace), "--json", str(tmp_path / "t.json"), "--seed", "1"]) == 0
    df = pd.read_parquet(trace)
    assert len(df) == 1079 and (tmp_path / "t.json").is_file()
    assert run_cli(["dmd", "train", str(trace), "--out", str(tmp_path / "sw"), "--epochs", "3", "--strategy", "fraction",
                    "--offload-fraction", "0.6"]) == 0
    assert json.loads((tmp_path / "sw" / "switcher.json").read_text())["threshold_info"]["offload_fraction"] == 0.6
    assert run_cli(["dmd", "evaluate", str(trace), "--switcher", str(tmp_path / "sw"), "--out", str(tmp_path / "ev"), "--no-png"]) == 0
    t1 = pd.read_csv(tmp_path / "ev" / "table1.csv").set_index("method")
    assert t1.loc["oracle", "large_model_pct"] == pytest.approx(60.0, abs=0.5)


@pytest.mark.parametrize("args,match", [
    (["dmd", "demo", "--task", "bogus"], "--task 'bogus'"),
    (["dmd", "generate", "nowhere", "--edge", "dmd-digits-edge", "--cloud", "dmd-digits-cloud"], "dataset 'nowhere'"),
    (["dmd", "generate", "digits", "--edge", "no-such-model", "--cloud", "dmd-digits-cloud"], "unknown model 'no-such-model'"),
    (["dmd", "evaluate", "missing.parquet"], "file not found"),
])
def test_bad_inputs_exit_2_with_one_line(args, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1
