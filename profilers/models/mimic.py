"""Distilled head with an injected bottleneck ("Mimic w/B") of 002 section 3, attached to the original tail.

A small student head replaces the teacher's head up to a natural split point of the teacher; the
student has a 3-channel bottleneck early on, where the model is split: the mobile device runs the
student encoder and the bottleneck (the head), the edge server runs the student decoder and the
teacher's tail (002 Fig. 2 and section 3, "Bottleneck Injection").

Architecture choices (ours; 002 gives only the Table 3 totals):
* encoder: conv 3->64 k7 s2, BN, ReLU, max-pool k3 s2 (the stem of DenseNet/ResNet); for Inception-v3
  the same without padding, as in the authors' public code, so that the bottleneck lands at 37x37;
* bottleneck: BN, ReLU, conv 64->3 k2 s2 p1. At 224x224 the transferred tensor is 3x29x29 = 2523
  values = 1.68% of the 3x224x224 input, and at 299x299 it is 3x37x37 = 4107 = 1.53%: both exactly the
  "Data size [%]" row of 002 Table 3 (the percentage compares element counts; bytes scale alike);
* decoder: (BN, ReLU, conv k2) stages growing the channels to the teacher's tensor at its split point:
  DenseNet-169/-201 transition1 output 128x28x28 (1st split point of 002 Fig. 1/3), ResNet-152 layer2
  output 512x28x28, Inception-v3 maxpool2 output 192x35x35 (the input of Mixed_5b).

Complexity. 002 Table 3 reports "MD complexity" 1.22e8 (DN/ResNet) and 2.11e8 (Inception-v3). The
encoder's k7 convolution alone has 1.18e8 (224x224) and 2.03e8 (299x299) multiply-accumulates, so we read
002's complexity as MACs plus a few elementwise operations (BN, ReLU, pooling). Our profilers count FLOPs
with torch.utils.flop_counter, 2 per MAC and nothing for BN/ReLU/pooling: 2.37e8 and 4.09e8 FLOPs for the
head, i.e. about 2x the 002 numbers, as expected for FLOPs versus MACs.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from typing import Optional

from profilers.errors import EdgesimError
from profilers.models.registry import SplittableModel, build, register
from profilers.models.torchvision_models import load_checkpoint

#: mimic id -> (teacher model id, teacher split point name, teacher tensor channels, default input side)
_TEACHERS: dict[str, tuple[str, str, int, int]] = {
    "densenet169-mimic": ("densenet169", "transition1", 128, 224),
    "densenet201-mimic": ("densenet201", "transition1", 128, 224),
    "resnet152-mimic": ("resnet152", "layer2", 512, 224),
    "inception_v3-mimic": ("inception_v3", "maxpool2", 192, 299),
    "resnet18-mimic": ("resnet18", "layer2", 128, 224),  # the testbed's small model (edgesim testbed, make testbed)
}

BOTTLENECK_CHANNELS = 3

#: 002 Table 2, "mimic model without bottleneck": a student head replacing DenseNet-169/-201 up to its 1st, 2nd or
#: 3rd natural bottleneck (transition1/2/3), sending the teacher's own tensor there: 128x28x28 (66.7 % of the
#: 3x224x224 input), 256x14x14 (33.3 %), and 640x7x7 (DN-169, 20.8 %) or 896x7x7 (DN-201, 29.2 %), as 002 lists
#: mimic id -> (teacher, split point, teacher channels there, stride-2 stages after the stem)
PLAIN: dict[str, tuple[str, str, int, int]] = {
    f"{t}-mimic-sp{k}": (t, f"transition{k}", (128, 256, c3)[k - 1], k)
    for t, c3 in (("densenet169", 640), ("densenet201", 896)) for k in (1, 2, 3)
}
_TEACHERS.update({m: (t, point, c, 224) for m, (t, point, c, _) in PLAIN.items()})


def teacher_split(model_id: str) -> tuple[str, str]:
    """(teacher model id, teacher split point name) whose head output the student head mimics (002 eq. 1)."""
    if model_id not in _TEACHERS:
        raise EdgesimError(f"unknown mimic model '{model_id}'; known: {', '.join(sorted(_TEACHERS))}")
    teacher_id, point, _, _ = _TEACHERS[model_id]
    return teacher_id, point


def bn_relu_conv(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0):
    """BN, ReLU, conv without bias: the pre-activation stage used throughout the student."""
    import torch.nn as nn

    return nn.Sequential(
        nn.BatchNorm2d(c_in), nn.ReLU(inplace=False),
        nn.Conv2d(c_in, c_out, kernel_size=kernel, stride=stride, padding=padding, bias=False),
    )


def _plain_student_head(model_id: str):
    """002 Table 2's student without bottleneck: the DenseNet stem, then one stride-2 BN-ReLU-conv k3 per stage
    (64 -> 128 -> 256 -> the teacher's channels), ending on the teacher's tensor at its transition layer; all of it
    runs on the mobile device (the split is the teacher's own bottleneck)."""
    import torch.nn as nn

    _, _, c_teacher, stages = PLAIN[model_id]
    stem = nn.Sequential(nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False),
                         nn.BatchNorm2d(64), nn.ReLU(inplace=False))
    widths = [64, 128, 256, c_teacher][: stages + 1]
    widths[-1] = c_teacher
    convs = [bn_relu_conv(a, b, 3, stride=2, padding=1) for a, b in zip(widths[:-1], widths[1:])]
    encoder = nn.Sequential(OrderedDict(stem=stem, pool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
                                        **{f"stage{i + 1}": c for i, c in enumerate(convs)}))
    return student_head_class()(encoder, nn.Identity(), nn.Sequential())


def _make_student_head(model_id: str, bottleneck_channels: int = BOTTLENECK_CHANNELS):
    """Encoder, bottleneck and decoder of the student for model_id (see the module docstring)."""
    import torch.nn as nn

    if model_id in PLAIN:
        return _plain_student_head(model_id)
    teacher_id, _, c_teacher, _ = _TEACHERS[model_id]
    inception = teacher_id == "inception_v3"
    pad = 0 if inception else 3
    pool_pad = 0 if inception else 1
    stem = nn.Sequential(nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=pad, bias=False),
                         nn.BatchNorm2d(64), nn.ReLU(inplace=False))
    pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=pool_pad)
    bottleneck = bn_relu_conv(64, bottleneck_channels, kernel=2, stride=2, padding=1)  # 56 -> 29, 73 -> 37
    b = bottleneck_channels
    if teacher_id.startswith("densenet") or teacher_id == "resnet18":  # 29 -> 30 -> 29 -> 28
        decoder = [bn_relu_conv(b, 64, 2, padding=1), bn_relu_conv(64, 128, 2), bn_relu_conv(128, c_teacher, 2)]
    elif teacher_id == "resnet152":  # 29 -> 30 -> 29 -> 28 -> 28
        decoder = [bn_relu_conv(b, 64, 2, padding=1), bn_relu_conv(64, 128, 2), bn_relu_conv(128, 256, 2),
                   bn_relu_conv(256, c_teacher, 1)]
    else:  # inception: 37 -> 38 -> 37 -> 36 -> avg-pool k2 s1 -> 35
        decoder = [bn_relu_conv(b, 64, 2, padding=1), bn_relu_conv(64, 128, 2), bn_relu_conv(128, c_teacher, 2),
                   nn.AvgPool2d(kernel_size=2, stride=1)]
    return student_head_class()(nn.Sequential(OrderedDict(stem=stem, pool=pool)), bottleneck, nn.Sequential(*decoder))


@lru_cache(maxsize=None)
def student_head_class():
    """The StudentHead nn.Module class (defined lazily: torch is imported only when a model is built)."""
    import torch.nn as nn

    class StudentHead(nn.Module):
        """Student of 002 Fig. 2: encoder and bottleneck on the mobile device, decoder on the server."""

        def __init__(self, encoder, bottleneck, decoder):
            super().__init__()
            self.encoder = encoder
            self.bottleneck = bottleneck
            self.decoder = decoder
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

        def encode(self, x):
            """Mobile-device side: the tensor sent over the link."""
            return self.bottleneck(self.encoder(x))

        def forward(self, x):
            return self.decoder(self.encode(x))

        def blocks(self) -> list:
            """Top-level blocks in execution order: encoder stages, bottleneck, decoder stages."""
            return [*self.encoder.children(), self.bottleneck, *self.decoder.children()]

        def mobile_blocks(self) -> int:
            """Number of leading blocks the mobile device runs (encoder and bottleneck)."""
            return len(list(self.encoder.children())) + 1

    return StudentHead


def build_student_head(model_id: str, bottleneck_channels: int = BOTTLENECK_CHANNELS):
    """The student (encoder + bottleneck + decoder) whose output has the teacher head's shape; train it with 002 eq. (1)."""
    teacher_split(model_id)  # validates the id
    return _make_student_head(model_id, bottleneck_channels)


def _teacher_tail(teacher_id: str, point: str, input_size, teacher_checkpoint: Optional[str], shapes_only: bool):
    """The teacher's blocks after its split point (random init or a local teacher checkpoint)."""

    teacher = build(teacher_id, input_size=input_size, checkpoint=teacher_checkpoint, shapes_only=shapes_only)
    index = dict(teacher.split_points)[point]
    return teacher.blocks[index:], teacher.input_shape


def _build_mimic(model_id: str, input_size=None, checkpoint: Optional[str] = None,
                 head_checkpoint: Optional[str] = None, teacher_checkpoint: Optional[str] = None,
                 bottleneck_channels: int = BOTTLENECK_CHANNELS, shapes_only: bool = False) -> SplittableModel:
    """Assemble [encoder, bottleneck, decoder, teacher tail] and optionally load weights."""
    import contextlib

    import torch
    import torch.nn as nn

    if shapes_only and (checkpoint or head_checkpoint or teacher_checkpoint):
        raise EdgesimError(f"model {model_id}: a checkpoint cannot be loaded into a shapes-only (meta) model")
    teacher_id, point, _, _ = _TEACHERS[model_id]
    tail, input_shape = _teacher_tail(teacher_id, point, input_size, teacher_checkpoint, shapes_only)
    with torch.device("meta") if shapes_only else contextlib.nullcontext():
        head = build_student_head(model_id, bottleneck_channels)
    if head_checkpoint is not None:
        load_checkpoint(head, head_checkpoint)
    whole = nn.Module()
    whole.student_head = head
    whole.tail = nn.Sequential(*tail)
    if checkpoint is not None:
        load_checkpoint(whole, checkpoint)
    blocks = head.blocks() + list(whole.tail.children())
    for block in blocks:
        block.eval()
        for p in block.parameters():
            p.requires_grad_(False)
    n_head = len(head.encoder) + 1
    loaded = [c for c in (checkpoint, head_checkpoint, teacher_checkpoint) if c]
    return SplittableModel(
        model_id=model_id,
        blocks=blocks,
        split_points=[("input", 0), ("bottleneck", n_head), ("output", len(blocks))],
        input_shape=input_shape,
        description=(f"002 Table 2 mimic without bottleneck: student head replacing {teacher_id} up to {point} (its "
                     f"own bottleneck, where it is split), then the {teacher_id} tail" if model_id in PLAIN else
                     f"002 Mimic w/B: student head with a {bottleneck_channels}-channel bottleneck replacing "
                     f"{teacher_id} up to {point}, then the {teacher_id} tail"),
        shapes_only=shapes_only,
        checkpoint=", ".join(str(c) for c in loaded) if loaded else "random-init",
        extra={"torch_model": whole, "student_head": head, "teacher": (teacher_id, point),
               "decoder_blocks": (n_head, n_head + len(head.decoder))},
    )


def _registrar(model_id: str, label: str):
    teacher_id, point, _, side = _TEACHERS[model_id]
    pct = "1.53" if side == 299 else "1.68"

    @register(model_id, f"{label} Mimic w/B (002 Table 3: {pct}% of the input sent); student head to {point}, "
                        f"then the {teacher_id} tail", "mimic")
    def _build(input_size=None, checkpoint=None, head_checkpoint=None, teacher_checkpoint=None,
               bottleneck_channels=BOTTLENECK_CHANNELS, shapes_only=False, **_) -> SplittableModel:
        return _build_mimic(model_id, input_size, checkpoint, head_checkpoint, teacher_checkpoint,
                            bottleneck_channels, shapes_only)

    _build.__doc__ = f"{label} with a distilled, bottlenecked head (002 section 3); split at 'bottleneck'."
    return _build


def _plain_registrar(model_id: str):
    teacher_id, point, c, k = PLAIN[model_id]

    @register(model_id, f"002 Table 2 mimic without bottleneck: student head replacing {teacher_id} up to {point} "
                        f"(split point {k}), then the {teacher_id} tail", "mimic")
    def _build(input_size=None, checkpoint=None, head_checkpoint=None, teacher_checkpoint=None, shapes_only=False,
               **_) -> SplittableModel:
        return _build_mimic(model_id, input_size, checkpoint, head_checkpoint, teacher_checkpoint, BOTTLENECK_CHANNELS,
                            shapes_only)

    _build.__doc__ = f"{teacher_id} with a distilled head up to {point}, no injected bottleneck (002 Table 2)."
    return _build


for _plain_id in PLAIN:
    _plain_registrar(_plain_id)

densenet169_mimic = _registrar("densenet169-mimic", "DenseNet-169")
densenet201_mimic = _registrar("densenet201-mimic", "DenseNet-201")
resnet152_mimic = _registrar("resnet152-mimic", "ResNet-152")
inception_v3_mimic = _registrar("inception_v3-mimic", "Inception-v3")
resnet18_mimic = _registrar("resnet18-mimic", "ResNet-18")
