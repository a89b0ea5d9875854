"""Bring your own two models to DMD (issue 29): two tiny torchvision models fine-tuned on a generated 2-class YOLO
export, then `dmd generate`, `train`, `evaluate` and `replay` end to end; heads, label mappings and preprocessing."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

torch.set_num_threads(1)  # two pytest workers on two cores

from edgesim.cli.app import main
from edgesim.studies.dmd.generate import degenerate_problems
from edgesim.studies.dmd.models import ModelChoice, class_groups, load_classifier
from edgesim.studies.yolo import load_fall_samples
from profilers.errors import EdgesimError

MODELS = '''"""Two tiny torchvision models: the DMD test's edge (MobileNetV2 blocks) and cloud (a ResNet of BasicBlocks)."""
import torchvision.models as tvm
from torchvision.models.resnet import BasicBlock


def edge():
    return tvm.MobileNetV2(num_classes=2, inverted_residual_setting=[[1, 8, 1, 1], [4, 16, 1, 2], [4, 24, 1, 2]])


def cloud():
    return tvm.ResNet(BasicBlock, [1, 1, 1, 1], num_classes=2)
'''
SIDE = 32
FLAGS = {"edge": ["--edge-input-size", "32", "--edge-mean", "0.5", "--edge-std", "0.25"],
         "cloud": ["--cloud-input-size", "32", "--cloud-mean", "0.5", "--cloud-std", "0.25"]}


def make_fall_export(root, per_split=(("train", 48), ("valid", 16), ("test", 32)), seed=0):
    """A YOLO v7 export of 48x48 PNGs: a lying (horizontal) bar is a fall, a standing (vertical) bar is not; one image
    in four shows a square blob instead, labelled at random, so that no model can be right on every frame."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("names: [no-fall, fall]\n")
    for split, n in per_split:
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for i in range(n):
            fall = int(rng.integers(0, 2))
            img = rng.uniform(0, 0.35, (48, 48, 3))
            a = int(rng.integers(10, 38))
            if i % 4 == 3:
                img[a - 6:a + 6, a - 6:a + 6] = 0.8
            elif fall:
                img[a - 3:a + 3, 6:42] = 0.9
            else:
                img[6:42, a - 3:a + 3] = 0.9
            Image.fromarray((img * 255).astype(np.uint8)).save(root / split / "images" / f"{i}.png")
            (root / split / "labels" / f"{i}.txt").write_text(f"{fall} 0.5 0.5 0.4 0.4\n")


def fine_tune(choice: ModelChoice, samples, epochs: int, path) -> None:
    """Fine-tune the model the choice names on the train split, through the preprocessing `dmd generate` applies."""
    loaded = load_classifier(choice, 2)
    net, train = loaded.module, [s for s in samples if s.split == "train"]
    x, y = loaded.preprocessing([s.image for s in train]), torch.tensor([s.label for s in train])
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y)).split(16):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():  # batch-norm statistics of the final weights
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        net(x)
    torch.save(net.state_dict(), path)


@pytest.fixture(scope="module")
def fall_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    make_fall_export(root / "falls")
    (root / "tiny.py").write_text(MODELS)
    samples = load_fall_samples(root / "falls")
    for side, epochs in (("edge", 2), ("cloud", 5)):
        fine_tune(ModelChoice(model_file=f"{root / 'tiny.py'}:{side}", input_size=(SIDE, SIDE), mean=(0.5,), std=(0.25,)),
                  samples, epochs, root / f"{side}.pt")
    return root


def test_two_tiny_models_end_to_end(fall_pair, tmp_path, capsys):
    """generate -> train -> evaluate -> replay on the user's own pair: a Table 1 from real predictions, not from
    1,000-class heads; catches unnormalised pixels (the checkpoints only work through their training preprocessing)."""
    root = fall_pair
    trace = tmp_path / "dmd.parquet"
    assert main(["dmd", "generate", str(root / "falls"), "--edge-file", f"{root / 'tiny.py'}:edge",
                 "--cloud-file", f"{root / 'tiny.py'}:cloud", "--edge-checkpoint", str(root / "edge.pt"),
                 "--cloud-checkpoint", str(root / "cloud.pt"), *FLAGS["edge"], *FLAGS["cloud"], "--out", str(trace)]) == 0
    df = pd.read_parquet(trace)
    assert list(df.split.value_counts().sort_index()) == [32, 48, 16]  # the export's own test / train / valid
    clear = ~df.sample_id.str.extract(r"(\d+)\.png$")[0].astype(int).mod(4).eq(3)
    assert (df.cloud_pred == df.label)[clear].mean() >= 0.8  # learned: right on the unambiguous frames
    assert 0.0 < df.agree.mean() < 1.0 and not degenerate_problems(df)
    assert len(df.hidden.iloc[0]) == 1280  # the input of MobileNetV2's classifier Linear: the head's features
    assert main(["dmd", "train", str(trace), "--out", str(tmp_path / "sw"), "--epochs", "5", "--patience", "5"]) == 0
    assert main(["dmd", "evaluate", str(trace), "--switcher", str(tmp_path / "sw"), "--out", str(tmp_path / "ev"),
                 "--no-png"]) == 0
    t1 = pd.read_csv(tmp_path / "ev" / "table1.csv").set_index("method")
    test = df[df.split == "test"]
    pos = test.label == 1
    cloud_f1 = 2 * (pos & (test.cloud_pred == 1)).sum() / (pos.sum() + (test.cloud_pred == 1).sum())
    assert t1.loc["cloud-only", "f1_pct"] == pytest.approx(100 * cloud_f1, abs=0.01) and cloud_f1 > 0
    for side, kind in (("edge", "mobile"), ("cloud", "cloud")):
        assert main(["profile", f"tiny-{side}", "--model-file", f"{root / 'tiny.py'}:{side}", "--input-size",
                     f"3,{SIDE},{SIDE}", "--checkpoint", str(root / f"{side}.pt"), "--device-name", f"{side}-host",
                     "--kind", kind, "--repeats", "2", "--warmup", "0", "--out", str(tmp_path / f"{side}.json")]) == 0
    assert main(["dmd", "replay", str(trace), "--profile", str(tmp_path / "edge.json"), "--profile",
                 str(tmp_path / "cloud.json"), "--mobile", "edge-host", "--cloud", "cloud-host", "--edge-model",
                 "tiny-edge", "--cloud-model", "tiny-cloud", "--switcher", str(tmp_path / "sw"), "--encoding", "jpeg",
                 "--out", str(tmp_path / "rep"), "--no-png"]) == 0
    rep = pd.read_csv(tmp_path / "rep" / "table1.csv").set_index("method")
    assert rep.loc["cloud-only", "f1_pct"] == pytest.approx(t1.loc["cloud-only", "f1_pct"])
    assert rep.loc["cloud-only", "sim_energy_kj"] > 0 and rep.loc["edge-only", "large_model_pct"] == 0
    aware = pd.read_csv(tmp_path / "rep" / "cost_aware.csv").set_index("cost")
    assert (aware.train_f1_pct >= aware.f1_floor_pct - 1e-9).all() and set(aware.index) == {"energy", "delay"}
    ev = pd.read_csv(tmp_path / "ev" / "baselines.csv").set_index("method")
    assert {"logreg-switcher", "router-large-better", "switcher-on-probs", "oracle"} <= set(ev.index)
    assert main(["dmd", "cost", str(trace), "--out", str(tmp_path / "cost.csv")]) == 0
    photo = np.median([(root / "falls" / "x").parent.joinpath(p).stat().st_size for p in df.sample_id])
    cost = pd.read_csv(tmp_path / "cost.csv").set_index("part")
    assert cost.loc["photo uplink", "bytes"] == photo + 40 * np.ceil(photo / 1460)  # 40 B of headers per packet
    out = capsys.readouterr().out
    assert "weights" in out and "mean 0.5,0.5,0.5, std 0.25,0.25,0.25" in out


def test_thousand_class_heads_against_two_labels_are_refused_with_the_numbers(fall_pair, tmp_path, capsys):
    """The reviewer's run: ImageNet-sized heads on fall / no fall gave 'agreement 0.0%' and an all-zero Table 1."""
    out = tmp_path / "t.parquet"
    assert main(["dmd", "generate", str(fall_pair / "falls"), "--edge", "torchvision:mobilenet_v3_small",
                 "--cloud", "resnet18", "--edge-input-size", "32", "--cloud-input-size", "32", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "1000 outputs but the dataset has 2 classes" in err and "--num-classes 2" in err and "\n" not in err
    assert not out.exists()


def test_untrained_two_class_heads_are_a_degenerate_trace_not_a_table(fall_pair, tmp_path, capsys):
    """Random weights predict one class: an error with the numbers; --accept-degenerate writes it with a warning."""
    args = ["dmd", "generate", str(fall_pair / "falls"), "--edge-file", f"{fall_pair / 'tiny.py'}:edge",
            "--cloud-file", f"{fall_pair / 'tiny.py'}:cloud", *FLAGS["edge"], *FLAGS["cloud"], "--out", str(tmp_path / "t.parquet")]
    state = torch.load(fall_pair / "edge.pt", weights_only=True)
    state["classifier.1.weight"].zero_()
    state["classifier.1.bias"].copy_(torch.tensor([5.0, -5.0]))
    torch.save(state, tmp_path / "constant.pt")  # a head that always says 'no fall'
    assert main([*args, "--edge-checkpoint", str(tmp_path / "constant.pt"), "--cloud-checkpoint",
                 str(fall_pair / "cloud.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "the edge model predicts class 0 for all 96 samples" in err and "no trace written" in err
    assert not (tmp_path / "t.parquet").exists()
    assert main([*args, "--edge-checkpoint", str(tmp_path / "constant.pt"), "--cloud-checkpoint",
                 str(fall_pair / "cloud.pt"), "--accept-degenerate"]) == 0
    assert "warning: the edge model predicts class 0" in capsys.readouterr().err


def test_checkpoint_with_its_own_head_sets_the_class_count(tmp_path):
    """`torchvision:mobilenet_v3_small` (unknown before) with a 2-class checkpoint: no size mismatch, its weights'
    preprocessing (resize 256 -> crop 224 kept in proportion, ImageNet mean/std), hidden = the head's input."""
    import torchvision.models as tvm

    torch.save(tvm.mobilenet_v3_small(num_classes=2).state_dict(), tmp_path / "two.pt")
    loaded = load_classifier(ModelChoice(spec="torchvision:mobilenet_v3_small", checkpoint=str(tmp_path / "two.pt"),
                                         input_size=(64, 64)), 2)
    pre = loaded.preprocessing
    assert loaded.outputs == 2 and loaded.hidden_layer == "classifier.3:input"
    assert pre.size_hw == (64, 64) and pre.resize_px == round(256 * 64 / 224)
    assert pre.mean == pytest.approx((0.485, 0.456, 0.406)) and "MobileNet_V3_Small_Weights" in pre.source
    with pytest.raises(EdgesimError, match="does not fit the model"):
        load_classifier(ModelChoice(spec="torchvision:mobilenet_v3_small", checkpoint=str(tmp_path / "two.pt"),
                                    num_classes=3), 3)


def test_label_mapping_groups_outputs_into_dataset_classes():
    assert class_groups("0=0-2,1=3+4", 5, 2) == [[0, 1, 2], [3, 4]]
    assert class_groups("1=fall,0=stand", 2, 2, ["stand", "fall"]) == [[0], [1]]
    assert class_groups(None, 2, 2) is None
    for text, words in (("0=0,1=0", "mapped to two dataset classes"), ("0=0", "class(es) [1] have no outputs"),
                        ("0=0,1=9", "outside the model's 0..4"), ("0=x,1=1", "'x' is not an output index"),
                        ("2=1,0=0,1=3", "dataset class 2 outside 0..1")):
        with pytest.raises(EdgesimError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
            class_groups(text, 5, 2)
    from edgesim.studies.dmd.adapters import grouped_probs

    p = grouped_probs(np.array([[0.1, 0.2, 0.3, 0.4, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]]), [[0, 1], [2, 3]])
    assert p == pytest.approx(np.array([[0.3, 0.7], [0.5, 0.5]]))
