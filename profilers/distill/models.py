"""Registered models from the distillation demo: the digits ResNet-18 teacher and its bottlenecked mimic.

* resnet18-digits: torchvision ResNet-18 with 10 classes for 3x32x32 upsampled digits; split points layer1..4.
* resnet18-mimic-digits: the generic student head of hnd.py (3-channel bottleneck, 3x4x4 = 1.56% of the
  input) replacing resnet18-digits up to layer2, then the teacher's tail; split point 'bottleneck'.

Weights: the student head loads profilers/data/distilled/resnet18-mimic-digits-head.safetensors when it exists
(small, committed); the ResNet-18 tail (about 43 MB in float32) is random unless a local checkpoint is given
(checkpoint= the whole mimic, teacher_checkpoint= the teacher, both written by `edgesim distill head`).
Latency, FLOPs and transferred bytes do not depend on the weights; accuracy comes from the training run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from profilers.models import SplittableModel, register

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "distilled"
TEACHER_ID = "resnet18-digits"
MIMIC_ID = "resnet18-mimic-digits"
DEFAULT_SPLIT = "layer2"
DEFAULT_SIDE = 32


def default_head_checkpoint() -> Optional[Path]:
    """The committed student head weights, when present."""
    path = DATA_DIR / f"{MIMIC_ID}-head.safetensors"
    return path if path.is_file() else None


def _side(input_size) -> int:
    from profilers.models.torchvision_models import _input_shape

    shape = _input_shape(input_size, DEFAULT_SIDE)
    if shape[1] != shape[2]:
        from profilers.errors import EdgesimError

        raise EdgesimError(f"{TEACHER_ID}: input size {input_size}: expected a square image")
    return shape[1]


def build_teacher_net(checkpoint: Optional[str] = None):
    """resnet18-digits as a plain nn.Module (10 classes), optionally loaded from a local state_dict."""
    from profilers.distill.nets import make_net
    from profilers.models.torchvision_models import load_checkpoint

    net = make_net("resnet18", num_classes=10)
    if checkpoint:
        load_checkpoint(net, str(checkpoint))
    return net.eval()


def _freeze(blocks) -> None:
    for b in blocks:
        b.eval()
        for p in b.parameters():
            p.requires_grad_(False)


@register(TEACHER_ID, "ResNet-18, 10 classes, for 32x32 upsampled digits (edgesim distill head teacher)", "distill")
def resnet18_digits(input_size=None, checkpoint=None, shapes_only=False, **_) -> SplittableModel:
    """The digits teacher with split points at its stage boundaries."""
    from profilers.distill.hnd import resnet_blocks

    side = _side(input_size)
    net = build_teacher_net(checkpoint)
    blocks, points = resnet_blocks(net)
    _freeze(blocks)
    return SplittableModel(TEACHER_ID, blocks, [("input", 0), *points, ("output", len(blocks))], (3, side, side),
                           description=f"torchvision resnet18, 10 classes, {side}x{side} digits teacher",
                           checkpoint=str(checkpoint) if checkpoint else "random-init", extra={"torch_model": net})


def mimic_config() -> dict:
    """Split point and bottleneck channels of the committed mimic (sidecar JSON), with defaults."""
    path = DATA_DIR / f"{MIMIC_ID}.json"
    cfg = {"split": DEFAULT_SPLIT, "bottleneck_channels": None}
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        cfg.update({k: saved[k] for k in cfg if k in saved})
    return cfg


def build_mimic_net(side: int = DEFAULT_SIDE, split: str = DEFAULT_SPLIT, bottleneck_channels: Optional[int] = None,
                    teacher_checkpoint: Optional[str] = None):
    """(mimic nn.Module, student head) for resnet18-digits cut at split, random student head."""
    import torch

    from profilers.distill.hnd import build_generic_head, make_mimic, split_teacher

    teacher = build_teacher_net(teacher_checkpoint)
    head, tail = split_teacher(teacher, split)
    with torch.no_grad():
        t_shape = tuple(head.eval()(torch.zeros(1, 3, side, side)).shape[1:])
    student = build_generic_head((3, side, side), t_shape, bottleneck_channels)
    return make_mimic(student, tail), student


@register(MIMIC_ID, "002 Mimic w/B of resnet18-digits: distilled head, 3-channel bottleneck (1.56% of the "
                    "input at 32x32), then the teacher tail (edgesim distill head)", "distill")
def resnet18_mimic_digits(input_size=None, checkpoint=None, head_checkpoint=None, teacher_checkpoint=None,
                          bottleneck_channels=None, split=None, shapes_only=False, **_) -> SplittableModel:
    """Student head blocks (encoder, bottleneck, decoder) then the resnet18-digits tail; split at 'bottleneck'."""
    from profilers.models.torchvision_models import load_checkpoint

    side = _side(input_size)
    cfg = mimic_config()
    b = bottleneck_channels or cfg["bottleneck_channels"]
    split = split or cfg["split"]
    mimic, student = build_mimic_net(side, split, b, teacher_checkpoint)
    head_checkpoint = head_checkpoint or (None if checkpoint else default_head_checkpoint())
    if head_checkpoint:
        load_checkpoint(student, str(head_checkpoint))
    if checkpoint:
        load_checkpoint(mimic, str(checkpoint))
    blocks = student.blocks() + list(mimic.tail.children())
    _freeze(blocks)
    loaded = [str(c) for c in (checkpoint, head_checkpoint, teacher_checkpoint) if c]
    n_mobile = student.mobile_blocks()
    return SplittableModel(
        MIMIC_ID, blocks, [("input", 0), ("bottleneck", n_mobile), ("output", len(blocks))], (3, side, side),
        description=f"002 Mimic w/B: generic student head replacing {TEACHER_ID} up to {split}, "
                    f"then its tail; {side}x{side} digits",
        checkpoint=", ".join(loaded) + ("" if checkpoint or teacher_checkpoint else " (tail random-init)")
        if loaded else "random-init",
        extra={"torch_model": mimic, "student_head": student},
    )
