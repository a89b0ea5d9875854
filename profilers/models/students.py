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
import math
from functools import lru_cache
from pathlib import Path
from typing import Optional

from profilers.errors import EdgesimError
from profilers.models.mimic import bn_relu_conv, student_head_class
from profilers.models.nets import make_net
from profilers.models.registry import SplittableModel, register
from profilers.models.torchvision_models import _input_shape, load_checkpoint

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "distilled"
TEACHER_ID = "resnet18-digits"
MIMIC_ID = "resnet18-mimic-digits"
DEFAULT_SPLIT = "layer2"
DEFAULT_SIDE = 32
TARGET_FRACTION = 0.017  # transferred values / input values aimed at by the generic bottleneck (002 Table 3: 1.68%)


def default_head_checkpoint() -> Optional[Path]:
    """The committed student head weights, when present."""
    path = DATA_DIR / f"{MIMIC_ID}-head.safetensors"
    return path if path.is_file() else None


def _side(input_size) -> int:
    shape = _input_shape(input_size, DEFAULT_SIDE)
    if shape[1] != shape[2]:
        raise EdgesimError(f"{TEACHER_ID}: input size {input_size}: expected a square image")
    return shape[1]


def build_teacher_net(checkpoint: Optional[str] = None):
    """resnet18-digits as a plain nn.Module (10 classes), optionally loaded from a local state_dict."""
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


# ----------------------------------------------------------------------------- student heads and teachers cut in two


@lru_cache(maxsize=None)
def _head_class():
    """The mimic student of profilers.models.mimic, keeping a generic encoder as one block."""
    class BottleneckHead(student_head_class()):
        """Student head: encoder and bottleneck (mobile device), decoder (edge server) mimicking the teacher head."""

        def blocks(self) -> list:
            """Top-level blocks in execution order: encoder, bottleneck, decoder stages."""
            return [self.encoder, self.bottleneck, *self.decoder.children()]

        def mobile_blocks(self) -> int:
            """Number of leading blocks the mobile device runs (encoder and bottleneck)."""
            return 2

    return BottleneckHead


def auto_bottleneck_channels(input_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> int:
    """Bottleneck channels whose tensor (b x h_t x w_t) is nearest TARGET_FRACTION of the input values."""
    return max(1, round(TARGET_FRACTION * math.prod(input_shape) / (teacher_shape[1] * teacher_shape[2])))


def build_generic_head(input_shape: tuple[int, int, int], teacher_shape: tuple[int, int, int],
                       bottleneck_channels: Optional[int] = None):
    """A bottlenecked student head from input_shape (C, H, W) to the teacher head's output teacher_shape."""
    import torch.nn as nn

    c_in, side, _ = input_shape
    c_t, t_side, _ = teacher_shape
    ratio = side // t_side
    if side % t_side or ratio < 2 or ratio & (ratio - 1):
        raise EdgesimError(f"generic student head: input side {side} must be a power-of-2 multiple (>= 2) of the "
                           f"teacher tensor side {t_side}")
    b = bottleneck_channels or auto_bottleneck_channels(input_shape, teacher_shape)
    layers: list = []
    c, width = c_in, 32
    for i in range(int(math.log2(ratio)) - 1):
        if i:
            layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=False)]
        layers.append(nn.Conv2d(c, width, kernel_size=3, stride=2, padding=1, bias=False))
        c, width = width, width * 2
    if not layers:  # ratio 2: one stride-1 conv so that the encoder has some capacity
        layers.append(nn.Conv2d(c, 32, kernel_size=3, padding=1, bias=False))
        c = 32
    encoder = nn.Sequential(*layers)
    bottleneck = bn_relu_conv(c, b, kernel=2, stride=2)
    decoder = nn.Sequential(bn_relu_conv(b, 64, 3, padding=1), bn_relu_conv(64, c_t, 3, padding=1),
                            bn_relu_conv(c_t, c_t, 1))
    return _head_class()(encoder, bottleneck, decoder)


# ----------------------------------------------------------------------------- teachers cut into head and tail


def resnet_blocks(net) -> tuple[list, list[tuple[str, int]]]:
    """torchvision ResNet as the profilers' blocks (conv1 ... layer4, avgpool, flatten, fc) and split points."""
    import torch.nn as nn

    blocks = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4,
              net.avgpool, nn.Flatten(1), net.fc]
    return blocks, [(f"layer{i}", 4 + i) for i in range(1, 5)]


def split_teacher(net, split: str):
    """(head, tail) nn.Sequential of a torchvision ResNet cut at a stage boundary (layer1..layer4)."""
    import torch.nn as nn

    blocks, points = resnet_blocks(net)
    index = dict(points).get(split)
    if index is None:
        raise EdgesimError(f"unknown split point '{split}' for the teacher; known: {', '.join(p for p, _ in points)}")
    return nn.Sequential(*blocks[:index]), nn.Sequential(*blocks[index:])


@lru_cache(maxsize=None)
def _mimic_class():
    import torch.nn as nn

    class MimicNet(nn.Module):
        """Student head (with its bottleneck) followed by the teacher's original tail (002 Fig. 2)."""

        def __init__(self, student_head, tail):
            super().__init__()
            self.student_head = student_head
            self.tail = tail

        def forward(self, x):
            return self.tail(self.student_head(x))

    return MimicNet


def make_mimic(student_head, tail):
    """The mimic model: student head then teacher tail."""
    return _mimic_class()(student_head, tail)
