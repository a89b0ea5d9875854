"""Mimic (002), VGG (003) and transformers (000) models: block chains, seed-table sizes, checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from profilers.errors import EdgesimError
from profilers.models import build, entries
from profilers.models.mimic import build_student_head, teacher_split
from profilers.models.vgg import STUDENTS, build_vgg

MIMICS = {  # id -> (002 Table 3 data size %, 002 Table 3 MD complexity)
    "densenet169-mimic": (1.68, 1.22e8),
    "densenet201-mimic": (1.68, 1.22e8),
    "resnet152-mimic": (1.68, 1.22e8),
    "inception_v3-mimic": (1.53, 2.11e8),
}


def _chain(blocks, x):
    with torch.no_grad():
        for block in blocks:
            x = block(x)
    return x


def _flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


def test_all_ids_registered():
    ids = set(entries())
    assert set(MIMICS) | set(STUDENTS) | {"vgg11", "vgg13", "vgg16", "vgg19"} <= ids
    assert {"vilt", "vilt-tiny", "llava-next-video", "llava-next-video-tiny"} <= ids


@pytest.mark.parametrize("model_id", list(MIMICS))
def test_mimic_bottleneck_matches_table3_and_decoder_matches_teacher(model_id):
    pct, complexity = MIMICS[model_id]
    teacher_id, point = teacher_split(model_id)
    teacher = build(teacher_id, shapes_only=True)
    side = teacher.input_shape[1]
    head = build_student_head(model_id).eval()
    x = torch.randn(1, 3, side, side)
    z = head.encode(x)
    assert 1.0 < 100 * z.numel() / x.numel() < 2.0
    assert 100 * z.numel() / x.numel() == pytest.approx(pct, abs=0.01)  # 002 Table 3 "Data size [%]"
    t = torch.empty(1, 3, side, side, device="meta")
    for block in teacher.blocks[: dict(teacher.split_points)[point]]:
        t = block(t)
    assert tuple(head(x).shape) == tuple(t.shape)
    # FLOPs are 2 per MAC; 002's "complexity" reads as MACs (k7 stem alone: 1.18e8 / 2.03e8 MACs)
    ratio = _flops(lambda: head.encode(x)) / complexity
    assert 1.8 < ratio < 2.0


def test_densenet201_mimic_chain_equals_whole_model():
    model = build("densenet201-mimic")
    names = [n for n, _ in model.split_points]
    assert names == ["input", "bottleneck", "output"]
    k = dict(model.split_points)["bottleneck"]
    x = torch.randn(1, *model.input_shape)
    z = _chain(model.blocks[:k], x)
    assert tuple(z.shape) == (1, 3, 29, 29)
    out = _chain(model.blocks[k:], z)
    with torch.no_grad():
        whole = model.extra["torch_model"]
        ref = whole.tail(whole.student_head(x))
    torch.testing.assert_close(out, ref)
    assert out.shape == (1, 1000)


def test_mimic_head_checkpoint_loads_and_bad_path_is_one_line(tmp_path):
    from safetensors.torch import save_file

    head = build_student_head("resnet152-mimic")
    state = {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v
             for k, v in head.state_dict().items()}
    path = tmp_path / "head.safetensors"
    save_file(state, str(path))
    model = build("resnet152-mimic", head_checkpoint=str(path))
    loaded = model.extra["student_head"].state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    with pytest.raises(EdgesimError, match="not found"):
        build("resnet152-mimic", checkpoint=str(tmp_path / "missing.pt"))


# ------------------------------------------------------------------------------------------------ VGG


def test_vgg_students_params_track_table2():
    params = []
    for name, (_, _, _, table_m, _, _) in STUDENTS.items():
        n = sum(p.numel() for p in build_vgg(name, num_classes=10, input_size=32).parameters())
        assert 0.95 < n / (table_m * 1e6) < 1.05, name  # within 5% of 003 Table II
        params.append(n)
    assert params == sorted(params)


@pytest.mark.parametrize("name,side", [("vgg11", 32), ("vgg-s8", 224), ("vgg-s2", 32)])
def test_vgg_chain_equals_model_and_split_points_are_pools(name, side):
    model = build(name, input_size=side)
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        ref = model.extra["torch_model"](x)
    torch.testing.assert_close(_chain(model.blocks, x), ref)
    names = [n for n, _ in model.split_points]
    assert names[0] == "input" and names[-1] == "output"
    assert all(n.startswith("pool") for n in names[1:-1])


def test_vgg11_loads_torchvision_state_dict_at_224(tmp_path):
    import torchvision

    tv = torchvision.models.vgg11(weights=None).eval()
    path = tmp_path / "vgg11.pt"
    torch.save(tv.state_dict(), path)
    model = build("vgg11", input_size=224, num_classes=1000, checkpoint=str(path))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(_chain(model.blocks, x), tv(x))


def test_vgg_checkpoint_roundtrip_safetensors_and_torch(tmp_path):
    from safetensors.torch import save_file

    source = build_vgg("vgg-s3", num_classes=10, input_size=32)
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in source.state_dict().items()}
    save_file(state, str(tmp_path / "s3.safetensors"))
    torch.save(state, tmp_path / "s3.pt")
    for file in ("s3.safetensors", "s3.pt"):
        model = build("vgg-s3", checkpoint=str(tmp_path / file))
        loaded = model.extra["torch_model"].state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in state.items())
    with pytest.raises(EdgesimError):
        build("vgg-s4", checkpoint=str(tmp_path / "s3.pt"))  # wrong shapes: one-line error


# ------------------------------------------------------------------------------------- transformers


def test_vilt_tiny_chain_equals_hf_forward_and_classifier_hidden_is_2h():
    model = build("vilt-tiny")
    x = model.example_input(2)
    hf = model.extra["torch_model"]
    with torch.no_grad():
        ref = hf(input_ids=x["input_ids"], pixel_values=x["pixel_values"]).logits
    torch.testing.assert_close(_chain(model.blocks, x), ref)
    k = dict(model.split_points)["classifier_hidden"]
    hidden = _chain(model.blocks[:k], x)
    assert hidden.shape == (2, 2 * hf.config.hidden_size)
    assert x["input_ids"].shape == (2, 11)


def test_llava_tiny_chain_equals_hf_prefill_last_logits():
    model = build("llava-next-video-tiny")
    x = model.example_input(1)
    hf = model.extra["torch_model"]
    frames = x["pixel_values_videos"].shape[1]
    n_video = frames * model.extra["config"].video_seq_length
    ids = torch.cat([torch.full((1, n_video), hf.config.video_token_index), x["input_ids"]], dim=1)
    with torch.no_grad():
        ref = hf(input_ids=ids, pixel_values_videos=x["pixel_values_videos"]).logits[:, -1]
    torch.testing.assert_close(_chain(model.blocks, x), ref)


def test_llava_next_video_7b_on_meta_has_7b_params_and_counts_flops():
    model = build("llava-next-video")
    assert model.shapes_only
    params = sum(p.numel() for p in model.extra["torch_model"].parameters())
    assert 6e9 < params < 8.5e9
    x = model.example_input(1)
    flops = _flops(lambda: _chain(model.blocks, x))
    tokens = 8 * 144 + 32  # 8 frames pooled to 12x12 tokens + the prompt
    assert flops > 2 * 6.5e9 * tokens  # at least the LM's 2 FLOPs per parameter per token


def test_hf_checkpoint_from_local_dir_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = build("vilt-tiny").extra["torch_model"]
    source.save_pretrained(tmp_path / "vilt")
    model = build("vilt-tiny", checkpoint=str(tmp_path / "vilt"))
    loaded = model.extra["torch_model"].state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded[key], value), key
    with pytest.raises(EdgesimError, match="not found"):
        build("vilt-tiny", checkpoint=str(tmp_path / "missing"))
    with pytest.raises(EdgesimError, match="without the network"):
        build("vilt-tiny", checkpoint="nobody/no-such-model-xyz")


def test_mimic_and_vgg_build_on_meta_for_shapes_and_flops():
    for model_id, out in (("densenet201-mimic", 1000), ("vgg-s5", 10)):
        model = build(model_id, shapes_only=True)
        assert model.shapes_only
        x = torch.empty(1, *model.input_shape, device="meta")
        assert _chain(model.blocks, x).shape == (1, out)
    with pytest.raises(EdgesimError, match="shapes-only"):
        build("densenet201-mimic", shapes_only=True, checkpoint="x.pt")


def test_a_student_builds_at_its_smallest_side_through_the_registry_as_directly():
    # vgg-s5 has 4 poolings: 16 px is its least side, both for build_vgg and for `edgesim profile vgg-s5`
    assert build("vgg-s5", input_size=16).input_shape == (3, 16, 16)
    assert build_vgg("vgg-s5", input_size=16) is not None
    with pytest.raises(EdgesimError, match=r"square side >= 16"):
        build("vgg-s5", input_size=8)
    with pytest.raises(EdgesimError, match=r"square side >= 32"):
        build("vgg11", input_size=16)
