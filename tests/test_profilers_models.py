"""Torchvision models as block chains: same output as the original forward, split sizes of 002 Table 2."""

from __future__ import annotations

import math

import pytest
import torch

from profilers.errors import EdgesimError
from profilers.models import build


def chain(model, x):
    with torch.inference_mode():
        for block in model.blocks:
            x = block(x)
    return x


@pytest.mark.parametrize("model_id, side", [("resnet18", 64), ("densenet169", 64), ("mobilenet_v2", 64)])
def test_block_chain_equals_forward(model_id, side):
    torch.manual_seed(0)
    model = build(model_id, input_size=(side, side))
    x = torch.randn(1, 3, side, side)
    with torch.inference_mode():
        expected = model.extra["torch_model"](x)
    assert torch.allclose(chain(model, x), expected, atol=1e-5, rtol=1e-4)


def test_inception_chain_shapes_on_meta():
    model = build("inception_v3", shapes_only=True)
    assert model.input_shape == (3, 299, 299)
    x = torch.empty(1, 3, 299, 299, device="meta")
    sizes = {}
    for i, block in enumerate(model.blocks):
        x = block(x)
        sizes[i + 1] = tuple(x.shape[1:])
    points = dict(model.split_points)
    assert sizes[points["Mixed_5d"]] == (288, 35, 35)
    assert sizes[points["Mixed_6e"]] == (768, 17, 17)
    assert sizes[points["Mixed_7c"]] == (2048, 8, 8)
    assert sizes[points["output"]] == (1000,)


# 002 Table 2, "Data size [%]" at the 1st/2nd/3rd split points (transition layers) of the original models.
TABLE2_DATA_SIZE_PCT = {
    "densenet169": {"transition1": 66.7, "transition2": 33.3, "transition3": 20.8},
    "densenet201": {"transition1": 66.7, "transition2": 33.3, "transition3": 29.2},
}


@pytest.mark.parametrize("model_id", sorted(TABLE2_DATA_SIZE_PCT))
def test_transition_sizes_match_002_table2(model_id):
    model = build(model_id, shapes_only=True)
    x = torch.empty(1, *model.input_shape, device="meta")
    outputs = {0: x}
    for i, block in enumerate(model.blocks):
        x = block(x)
        outputs[i + 1] = x
    input_numel = math.prod(model.input_shape)
    for name, k in model.split_points:
        if name in TABLE2_DATA_SIZE_PCT[model_id]:
            pct = 100 * outputs[k].numel() / input_numel
            assert round(pct, 1) == TABLE2_DATA_SIZE_PCT[model_id][name]


def test_input_size_changes_shape_and_points_are_ordered():
    model = build("resnet18", input_size=(32, 48))
    assert model.input_shape == (3, 32, 48)
    names = [n for n, _ in model.split_points]
    assert names[0] == "input" and names[-1] == "output"
    assert [k for _, k in model.split_points] == sorted(k for _, k in model.split_points)
    assert model.split_points[-1][1] == len(model.blocks)


def test_checkpoint_round_trip_and_errors(tmp_path):
    from safetensors.torch import save_file

    src = build("resnet18", input_size=(32, 32))
    state = {k: v.contiguous() for k, v in src.extra["torch_model"].state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save(state, tmp_path / "w.pt")
    x = torch.randn(1, 3, 32, 32)
    for name in ("w.safetensors", "w.pt"):
        loaded = build("resnet18", input_size=(32, 32), checkpoint=str(tmp_path / name))
        assert torch.allclose(chain(loaded, x), chain(src, x))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "small.pt")
    for bad, expect in (("missing.pt", "not found"), ("junk.pt", "cannot read"), ("small.pt", "does not fit")):
        with pytest.raises(EdgesimError) as info:
            build("resnet18", checkpoint=str(tmp_path / bad))
        assert expect in str(info.value) and "\n" not in str(info.value)
