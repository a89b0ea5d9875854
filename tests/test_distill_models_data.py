"""Distillation data (digits, ImageFolder), nets, mimic shapes and the registered distilled models."""

import numpy as np
import pytest
import torch

from edgesim.studies.distill.data import load_digits_data, load_image_folder
from edgesim.studies.distill.runs import run_head
from profilers.errors import EdgesimError
from profilers.models import build
from profilers.models.nets import make_net


def test_digits_split_is_stratified_seeded_and_resized():
    a = load_digits_data(side_px=32, channels=3, seed=1)
    b = load_digits_data(side_px=64, channels=1, seed=1)
    assert tuple(a.train.x.shape[1:]) == (3, 32, 32) and tuple(b.train.x.shape[1:]) == (1, 64, 64)
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert torch.equal(a.test.y, b.test.y)  # same seed, same split at any resolution
    counts = np.bincount(a.test.y.numpy(), minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38  # stratified: about 36 per class
    assert float(a.train.x.min()) >= -1.0 and float(a.train.x.max()) <= 1.0


def test_image_folder_loads_and_bad_folder_is_one_line(tmp_path):
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(6):
            Image.fromarray(np.full((10, 12, 3), 40 * i, dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    d = load_image_folder(tmp_path, side_px=16, channels=3)
    assert d.num_classes == 2 and tuple(d.train.x.shape[1:]) == (3, 16, 16)
    with pytest.raises(EdgesimError, match="not a directory"):
        load_image_folder(tmp_path / "missing")
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    (empty / "b").mkdir()
    with pytest.raises(EdgesimError) as exc:
        load_image_folder(empty)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("name", ["vgg-s2", "vgg-s8", "resnet18", "vit-micro", "vit-small"])
def test_nets_give_logits(name):
    net = make_net(name, 10, 32).eval()
    assert tuple(net(torch.zeros(2, 3, 32, 32)).shape) == (2, 10)


def test_registered_mimic_output_shape_equals_teacher():
    teacher, mimic = build("resnet18-digits"), build("resnet18-mimic-digits")
    x = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        t, m = x, x
        for b in teacher.blocks:
            t = b(t)
        for i, b in enumerate(mimic.blocks):
            m = b(m)
            if i + 1 == dict(mimic.split_points)["bottleneck"]:
                assert m.numel() == 48  # 3x4x4, 1.56% of 3072
    assert t.shape == m.shape == (1, 10)


def test_mimic_id_code_path_at_tiny_size():
    """002's real mimic (DenseNet-169 teacher) trains one step at 64x64 on a few images: head shape matches."""
    rec = run_head("densenet169-mimic", dataset="digits", side_px=64, epochs=1, lr=1e-3, limit=40)
    assert rec["teacher_split_shape"] == [128, 8, 8]
    assert rec["bottleneck_shape"] == [3, 9, 9]
    assert rec["mobile_head_flops"] < rec["teacher_head_flops"]


@pytest.mark.parametrize("name", ["vgg-s2", "vgg-s5"])
def test_vgg_student_ops_ratio_224_vs_32_is_about_49(name):
    """The MACs the studies record (make_net + count_flops at the study's side) grow 49x from 32 to 224 pixels, as the
    ops of 003 Table II do (its own ratio per student, within 1 %)."""
    from edgesim.studies.distill.kd import count_flops
    from profilers.models.vgg import STUDENTS

    macs = {side: count_flops(make_net(name, 10, side), (3, side, side)) // 2 for side in (32, 224)}
    table = STUDENTS[name][5] / STUDENTS[name][4]  # 003 Table II: Ops at 224 / Ops at 32
    assert macs[224] / macs[32] == pytest.approx(table, rel=0.01)
    assert 48.5 < macs[224] / macs[32] < 52  # 003 section IV-C: 49 to 52 times


@pytest.mark.parametrize("model_id, shape, pct", [
    ("densenet169-mimic-sp1", (128, 28, 28), 66.7), ("densenet169-mimic-sp2", (256, 14, 14), 33.3),
    ("densenet169-mimic-sp3", (640, 7, 7), 20.8), ("densenet201-mimic-sp3", (896, 7, 7), 29.2)])
def test_mimic_without_bottleneck_sends_002_table2_data_sizes(model_id, shape, pct):
    """002 Table 2: the student replaces the head up to the 1st/2nd/3rd transition and sends the teacher's own
    tensor there (66.7 / 33.3 / 20.8 % of the input for DenseNet-169, 29.2 % at the 3rd for DenseNet-201); the
    whole mimic still ends in the teacher's 1000 logits."""
    import torch

    from profilers.models import build

    sm = build(model_id, shapes_only=True)
    head = sm.extra["student_head"]
    with torch.device("meta"):
        z = head.encode(torch.empty(1, 3, 224, 224))
        x = torch.empty(1, 3, 224, 224)
        for block in sm.blocks:
            x = block(x)
    assert tuple(z.shape[1:]) == shape and round(100 * z.numel() / (3 * 224 * 224), 1) == pct
    assert tuple(x.shape) == (1, 1000) and dict(sm.split_points)["bottleneck"] == len(head.blocks())
    assert "without bottleneck" in sm.description
