"""`edgesim dmd ...` end to end on the embedded digits data (reduced size), and one-line errors with exit 2."""

import json

import pandas as pd
import pytest
import torch

torch.set_num_threads(1)  # two pytest workers on two cores: avoid oversubscription

import numpy as np

from edgesim.cli.app import main
from edgesim.studies.dmd.generate import hidden_matrix
from edgesim.studies.dmd.records import read_dmd_json
from edgesim.studies.dmd.switcher import load_switcher, switcher_scores
from profilers.models import build
from profilers.models.digits import edge_net
from simulator.metrics import f1_score


def run_cli(args):
    return main(list(args))


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert run_cli(["dmd", "demo", "--out", str(out), "--fast", "--no-png", "--seed", "1"]) == 0
    return out


def test_demo_writes_every_artefact(demo_dir):
    """Every file, and each consistent with the others: catches a Table 1 taken on the wrong split or threshold, a
    saved switcher that is not the one that scored the trace, and curves that do not start and end at the models."""

    for name in ("dmd.parquet", "dmd.json", "switcher.safetensors", "switcher.json", "curves.csv", "curves_train.html",
                 "curves_test.html", "table1.csv", "report.html", "edge.safetensors", "cloud.safetensors", "curve_areas.csv",
                 "routing.csv", "risk_coverage.csv", "reliability.csv", "diagnostics.json", "reliability.html",
                 "risk_coverage.html", "summary.json"):
        assert (demo_dir / name).is_file(), name
    trace = pd.read_parquet(demo_dir / "dmd.parquet")
    test = trace[trace.split == "test"].reset_index(drop=True)
    model, cfg = load_switcher(demo_dir / "switcher.safetensors", demo_dir / "switcher.json")
    np.testing.assert_allclose(switcher_scores(model, cfg, hidden_matrix(trace)), trace.switcher_score, rtol=1e-5, atol=1e-6)
    assert cfg.input_size == 32 and cfg.hidden_layer == "hidden" and cfg.threshold_info["strategy"] == "buckets"
    table = pd.read_csv(demo_dir / "table1.csv").set_index("method")
    assert table.approach.tolist()[:4] == ["Small model only", "Large model only", "Uncertainty-based system", "Ours (switcher)"]
    deferred = test.switcher_score < cfg.threshold  # the train threshold, applied to the test split
    pred = np.where(deferred, test.cloud_pred, test.edge_pred)
    assert table.loc["switcher", "n_samples"] == len(test)
    assert table.loc["switcher", "large_model_pct"] == pytest.approx(100 * deferred.mean())
    assert table.loc["switcher", "f1_pct"] == pytest.approx(100 * f1_score(test.label.to_numpy(), pred, 1))
    assert table.loc["edge-only", "accuracy_pct"] == pytest.approx(100 * np.mean(test.edge_pred == test.label))
    curves = pd.read_csv(demo_dir / "curves.csv")
    c = curves[(curves.split == "test") & (curves.method == "switcher")].sort_values("offload_fraction")
    assert c.accuracy.iloc[0] == pytest.approx(np.mean(test.edge_pred == test.label))
    assert c.accuracy.iloc[-1] == pytest.approx(np.mean(test.cloud_pred == test.label))
    paper = read_dmd_json(demo_dir / "dmd.json")
    assert paper.agree.tolist() == trace.agree.tolist() and paper.sample_id.tolist() == trace.sample_id.tolist()
    diag = json.loads((demo_dir / "diagnostics.json").read_text())
    assert {"auroc_switcher", "auroc_confidence", "ece_switcher", "f1_diff_pct", "f1_diff_lo_pct"} <= set(diag)
    assert diag["f1_diff_lo_pct"] <= diag["f1_diff_pct"] <= diag["f1_diff_hi_pct"]
    routing = pd.read_csv(demo_dir / "routing.csv")
    oracle = routing[(routing.split == "test") & (routing.metric == "accuracy") & (routing.method == "oracle")]
    assert oracle.apgr.iloc[0] >= routing[(routing.split == "test") & (routing.metric == "accuracy")].apgr.max() - 1e-12


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
    page = (tmp_path / "ev" / "report.html").read_text(encoding="utf-8")
    assert "no time or energy: no simulator replay" in page and "src='plotly.min.js'" in page
    assert (tmp_path / "ev" / "plotly.min.js").is_file()


def test_train_and_evaluate_accept_the_papers_json(demo_dir, tmp_path, capsys):
    """000 A.2's JSON (image_path, last_hidden_layer, label = agreement) works in `dmd train` and `dmd evaluate`."""
    assert run_cli(["dmd", "train", str(demo_dir / "dmd.json"), "--out", str(tmp_path / "sw"), "--epochs", "3"]) == 0
    cfg = json.loads((tmp_path / "sw" / "switcher.json").read_text())
    assert cfg["threshold_info"]["strategy"] == "threshold" and cfg["threshold"] == 0.5
    assert run_cli(["dmd", "evaluate", str(demo_dir / "dmd.json"), "--switcher", str(tmp_path / "sw"),
                    "--out", str(tmp_path / "ev")]) == 0
    diag = json.loads((tmp_path / "ev" / "diagnostics.json").read_text())
    assert 0 <= diag["auroc_switcher"] <= 1 and "agreement only" in capsys.readouterr().out
    assert run_cli(["dmd", "train", str(demo_dir / "dmd.json"), "--strategy", "buckets", "--out", str(tmp_path / "x")]) == 2


def test_generic_replay_takes_any_profiles(demo_dir, tmp_path):
    """`dmd replay` on the demo's written profiles, named models and devices, equals the demo's own Table 1 rows."""
    profiles = sorted((demo_dir / "profiles").glob("*.json"))
    assert run_cli(["dmd", "replay", str(demo_dir / "dmd.parquet"), *sum((["--profile", str(p)] for p in profiles), []),
                    "--mobile", "host-1thread", "--cloud", "host-2threads", "--edge-model", "dmd-digits-edge",
                    "--cloud-model", "dmd-digits-cloud", "--encoding", "float32", "--switcher", str(demo_dir),
                    "--out", str(tmp_path), "--no-png", "--seed", "1"]) == 0
    mine = pd.read_csv(tmp_path / "table1.csv").set_index("method")
    demo = pd.read_csv(demo_dir / "table1.csv").set_index("method")
    for col in ("f1_pct", "large_model_pct", "sim_f1_pct"):
        assert mine[col].to_numpy() == pytest.approx(demo[col].to_numpy()), col
    assert mine.loc["edge-only", "sim_time_s"] == pytest.approx(demo.loc["edge-only", "sim_time_s"])
    assert (tmp_path / "cost_vs_deferred.csv").is_file()
    assert run_cli(["dmd", "replay", str(demo_dir / "dmd.parquet"), "--profile", str(profiles[0]), "--mobile", "nope",
                    "--cloud", "host-2threads", "--edge-model", "a", "--cloud-model", "b", "--switcher", str(demo_dir),
                    "--out", str(tmp_path / "y")]) == 2


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


def test_demo_runs_on_an_image_folder_the_user_brings(tmp_path):
    """--data FOLDER (root/<class>/<image>.png): grayscale 28x28, binary task 'is it the last class?'."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog", "ship"]):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(40):
            img = (rng.random((20, 24, 3)) * 90 + c * 60).clip(0, 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / "imgs" / name / f"{i}.png")
    out = tmp_path / "out"
    assert run_cli(["dmd", "demo", "--data", str(tmp_path / "imgs"), "--fast", "--no-png", "--out", str(out)]) == 0
    table = pd.read_csv(out / "table1.csv")
    assert len(table) == 6 and table["f1_pct"].notna().all()
    assert "positive = class &#x27;ship&#x27;" in (out / "report.html").read_text(encoding="utf-8")  # HTML-escaped
    assert run_cli(["dmd", "demo", "--data", str(tmp_path / "nowhere"), "--fast", "--out", str(out)]) == 2


@pytest.mark.parametrize("args, words", [
    (["--strategy", "bogus"], "--strategy 'bogus': expected one of buckets, fraction, threshold"),
    (["--strategy", "fraction", "--offload-fraction", "2"], "--offload-fraction 2.0: expected a fraction"),
    (["--strategy", "fraction", "--offload-fraction", "nan"], "--offload-fraction nan"),
    (["--strategy", "threshold", "--threshold", "nan"], "--threshold nan: expected an agreement probability"),
    (["--threshold", "nan"], "--threshold nan"),
    (["--strategy", "fraction"], "needs --offload-fraction"),
])
def test_train_refuses_an_impossible_operating_point_before_training(demo_dir, tmp_path, capsys, args, words):
    """issue 28: a bogus strategy or fraction ran on (checked after 100 epochs); --threshold nan wrote NaN."""
    out = tmp_path / "sw"
    assert run_cli(["dmd", "train", str(demo_dir / "dmd.parquet"), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err and "switcher training" not in err
    assert not out.exists()
