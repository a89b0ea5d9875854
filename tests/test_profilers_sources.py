"""Model sources (torchvision, timm, Hugging Face, a user's file), automatic split points, and bad input."""

from __future__ import annotations

import json

import pytest
import torch

from edgesim.cli.app import main
from profilers.errors import EdgesimError
from profilers.models.sources import ModelRequest, build_model
from profilers.schema import load_profile

MODEL_FILE = '''
import torch
import torch.nn as nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.body(self.stem(x)).mean(dim=(2, 3)))


class Branchy(nn.Module):
    """Data-dependent control flow: neither torch.fx nor torch.export can trace it."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = self.a(x)
        if y.sum() > 1e9:  # data-dependent, never taken on these inputs
            y = y * 2
        return self.b(y)


def build():
    return Tiny()


def branchy():
    return Branchy()


def broken():
    raise ValueError("no weights here")


def not_a_module():
    return 42
'''


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "my_model.py"
    path.write_text(MODEL_FILE)
    return path


def assert_chain_is_forward(model):
    """Every split point's head followed by its tail computes the original forward."""
    x = torch.randn(1, *model.input_shape)
    with torch.inference_mode():
        want = model.extra["torch_model"](x)
        for _, k in model.split_points:
            head = x
            for block in model.blocks[:k]:
                head = block(head)
            tail = head
            for block in model.blocks[k:]:
                tail = block(tail)
            assert torch.allclose(tail, want, rtol=1e-4, atol=1e-5)


def tiny_hf_folder(tmp_path, weights: bool = False):
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=16,
                    patch_size=8, num_labels=3)
    folder = tmp_path / "tiny-vit"
    if weights:
        ViTForImageClassification(cfg).save_pretrained(folder)
    else:
        cfg.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("split", ["auto", "all"])
def test_torchvision_head_plus_tail_is_forward(split):
    model = build_model(ModelRequest("torchvision:resnet18", input_size=(32, 32), split_points=split))
    assert_chain_is_forward(model)
    names = [n for n, _ in model.split_points]
    if split == "auto":
        assert names == ["input", "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
                         "avgpool", "output"]
    else:
        assert {"layer2", "layer4", "add"} <= set(names)


def test_torchvision_default_input_and_bare_name():
    assert build_model(ModelRequest("torchvision:inception_v3")).input_shape == (3, 299, 299)
    model = build_model(ModelRequest("squeezenet1_1", input_size=(64, 64)))  # bare, not registered
    assert model.model_id == "squeezenet1_1" and model.checkpoint == "random-init"
    assert_chain_is_forward(model)


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny_patch16_224"])
def test_timm_head_plus_tail_is_forward(name):
    pytest.importorskip("timm")
    size = None if name.startswith("vit") else (32, 32)
    model = build_model(ModelRequest(f"timm:{name}", input_size=size))
    assert model.model_id == f"timm:{name}" and len(model.split_points) > 4
    assert_chain_is_forward(model)


@pytest.mark.parametrize("weights", [False, True])
def test_hf_from_local_config_or_checkpoint(tmp_path, weights):
    folder = tiny_hf_folder(tmp_path, weights)
    model = build_model(ModelRequest(f"hf:{folder}"))
    assert model.model_id == "hf:tiny-vit" and model.input_shape == (3, 16, 16)
    assert (model.checkpoint == str(folder)) == weights and (model.checkpoint == "random-init") != weights
    assert len(model.split_points) >= 4
    assert_chain_is_forward(model)


def test_model_file_and_checkpoint(tmp_path, model_file):
    from safetensors.torch import save_file

    spec = f"{model_file}:build"
    model = build_model(ModelRequest(model_file=spec, input_size=(3, 32, 32), split_points="all"))
    assert model.model_id == "my_model" and [n for n, _ in model.split_points][:3] == ["input", "stem.0", "stem"]
    assert_chain_is_forward(model)
    state = {k: torch.full_like(v, 0.01) for k, v in model.extra["torch_model"].state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    loaded = build_model(ModelRequest(model_file=spec, input_size=(3, 32, 32), checkpoint=str(tmp_path / "w.safetensors")))
    assert loaded.checkpoint.endswith("w.safetensors")
    assert torch.all(loaded.extra["torch_model"].head.weight == 0.01)


def test_untraceable_model_falls_back_with_one_line(model_file):
    lines = []
    model = build_model(ModelRequest(model_file=f"{model_file}:branchy", input_size=(3, 8, 8)), warn=lines.append)
    assert len(lines) == 1 and "cannot trace" in lines[0] and "top-level children" in lines[0]
    assert [n for n, _ in model.split_points] == ["input", "a", "output"] and model.extra["tracer"] == "children"
    assert_chain_is_forward(model)


@pytest.mark.parametrize("request_, expect", [
    (ModelRequest("pytorch:resnet18"), "unknown model source 'pytorch:'"),
    (ModelRequest("torchvision:resnet19"), "close matches: resnet18"),
    (ModelRequest("efficientnet_b9"), "close matches: efficientnet_b7"),
    (ModelRequest("torchvision:inception_v3", input_size=(32, 32)), "rejects input of size 1x3x32x32"),
    (ModelRequest(model_file="nowhere.py:build", input_size=(3, 8, 8)), "nowhere.py not found"),
    (ModelRequest(model_file="{f}:buidl", input_size=(3, 8, 8)), "has no factory 'buidl'; functions there: build"),
    (ModelRequest(model_file="{f}:broken", input_size=(3, 8, 8)), "broken() raised ValueError: no weights here"),
    (ModelRequest(model_file="{f}:not_a_module", input_size=(3, 8, 8)), "returned int, not a torch.nn.Module"),
    (ModelRequest(model_file="{f}:build"), "give --input-size C,H,W"),
    (ModelRequest(model_file="{f}:build", input_size=(1, 8, 8)), "rejects input of size 1x1x8x8"),
    (ModelRequest("torchvision:resnet18", split_points="layer1,layr2"), "close matches: layer2"),
])
def test_bad_input_is_one_line(model_file, request_, expect):
    if request_.model_file:
        request_ = ModelRequest(model_file=request_.model_file.replace("{f}", str(model_file)),
                                input_size=request_.input_size)
    with pytest.raises(EdgesimError) as info:
        build_model(request_)
    assert expect in str(info.value) and "\n" not in str(info.value)


def test_checkpoint_that_does_not_fit(tmp_path, model_file):
    torch.save({"head.weight": torch.zeros(3, 3)}, tmp_path / "bad.pt")
    with pytest.raises(EdgesimError, match="does not fit the model"):
        build_model(ModelRequest(model_file=f"{model_file}:build", input_size=(3, 8, 8),
                                 checkpoint=str(tmp_path / "bad.pt")))


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_bad_input_exits_2_without_profile(capsys, tmp_path, model_file):
    out = tmp_path / "p.json"
    for args in (["torchvision:nope"], ["--model-file", f"{model_file}:broken", "--input-size", "3,8,8"],
                 ["timm:resnet18", "--checkpoint", str(tmp_path / "missing.pt")]):
        code, _, err = run(capsys, "profile", *args, "--device-name", "d", "--out", out)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert not out.exists()


def test_cli_list_split_points(capsys, model_file):
    code, out, _ = run(capsys, "profile", "--precision", "0", "--model-file", f"{model_file}:build", "--input-size", "3,16,16",
                       "--list-split-points", "--json")
    rows = json.loads(out)
    assert code == 0 and rows[0]["split_point"] == "input" and rows[-1]["split_point"] == "output"
    assert {"stem", "body.0", "body.1"} <= {r["split_point"] for r in rows if r["stage"]}
    assert rows[1]["output_shape"] == "8x8x8" and rows[1]["float32_bytes"] == 4 * 512


def test_cli_profile_show_and_device_name_guard(capsys, tmp_path, model_file):
    out = tmp_path / "dev.json"
    code, printed, err = run(capsys, "profile", "--precision", "0", "--model-file", f"{model_file}:build", "--input-size", "3,16,16",
                             "--device-name", "dev", "--out", out, "--repeats", "2", "--warmup", "0", "--energy",
                             "estimate")
    assert code == 0, err
    mp = load_profile(out).model("my_model")
    printed = " ".join(printed.split())  # the console wraps long lines
    assert f"MiB (measured: {mp.memory_method})" in printed
    assert "threads (measured: psutil, process CPU time / wall time over the timed runs)" in printed
    assert mp.checkpoint == "random-init" and mp.energy_method == "power-model-estimate" and mp.blocks
    before = out.read_bytes()
    code, _, err = run(capsys, "profile", "--precision", "0", "torchvision:resnet18", "--input-size", "32,32", "--device-name", "other",
                       "--out", out)
    assert code == 2 and "profile of device 'dev', not 'other'" in err and err.count("\n") == 1
    assert out.read_bytes() == before
    code, text, _ = run(capsys, "profile", "show", out)
    assert code == 0 and "device 'dev'" in text and "my_model" in text and "power-model-estimate" in text


def test_cli_derive_onto_catalog_device(capsys, tmp_path, model_file):
    measured = tmp_path / "laptop.json"
    code, _, err = run(capsys, "profile", "--precision", "0", "--model-file", f"{model_file}:build", "--input-size", "3,16,16",
                       "--device-name", "mine", "--out", measured, "--repeats", "2", "--warmup", "0")
    assert code == 0, err
    code, out, err = run(capsys, "derive", measured, "--device", "rpi3b+", "--out", tmp_path / "rpi.json")
    assert code == 0, err
    assert f"wrote {tmp_path / 'rpi.json'}: rpi3b+ (mobile, derived) with my_model" in out
    dev = load_profile(tmp_path / "rpi.json")
    assert dev.name == "rpi3b+" and dev.provenance.kind == "derived" and set(dev.models) == {"my_model"}
    assert dev.models["my_model"].measurement == "derived"
    code, _, err = run(capsys, "derive", measured, "--device", "no-such-board", "--out", tmp_path / "x.json")
    assert code == 2 and "no-such-board" in err and err.count("\n") == 1
