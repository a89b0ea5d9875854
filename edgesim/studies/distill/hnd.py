"""Head network distillation with an injected bottleneck (002 section 3, eq. (1)).

A student head replaces the frozen teacher's head up to a split point; it is trained with Adam to minimise
SSE(X) = sum_{x in X} ||t(x) - s(x)||^2 between the teacher head's output t(x) and the student's s(x)
(002 eq. (1)), then attached to the teacher's original tail (the "mimic" model). The mobile device runs the
student encoder and bottleneck; the edge server runs the student decoder and the teacher tail.

Two kinds of student head:
* the four mimic ids of profilers/models/mimic.py (densenet169/201, resnet152, inception_v3 at 224/299):
  build_student_head(model_id), 3-channel bottleneck at 1.68% / 1.53% of the input (002 Table 3);
* a generic head for a small teacher (ours): stride-2 3x3 convs (32, 64, 128... channels) halve the input
  until it is twice the teacher tensor's side, then BN, ReLU and a k2 s2 conv to b bottleneck channels at the
  teacher tensor's side, then a stride-1 decoder (3x3 conv to 64, 3x3 conv to C_t, 1x1 conv) restores the
  teacher's C_t channels. b defaults to the count that brings the transferred tensor nearest 1.7% of the input
  values (002 Table 3: 1.68%); for resnet18 at 32x32 split at layer2 (128x4x4) that is b = 3: 3x4x4 = 48
  values = 1.56% of 3x32x32 = 3072.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from edgesim.studies.distill.data import ImageData
from edgesim.studies.distill.kd import freeze, predict_logits
from edgesim.studies.training import fit
from profilers.progress import Progress, silent


def hnd_loss(student_out, teacher_out):
    """002 eq. (1): sum over the batch of the squared L2 distance between teacher and student head outputs."""
    return ((teacher_out.detach() - student_out) ** 2).sum()


# ----------------------------------------------------------------------------- training


@dataclass
class HeadTrainResult:
    """SSE per image on the training and validation images after each epoch, and the wall time."""

    train_sse: list[float] = field(default_factory=list)
    val_sse: list[float] = field(default_factory=list)
    initial_val_sse: float = 0.0
    time_s: float = 0.0


def _sse_per_image(student, x, t, batch_size: int = 128) -> float:
    """002 eq. (1) over (x, t) divided by the number of images, in eval mode without gradients."""
    import torch

    student.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            total += float(hnd_loss(student(x[i:i + batch_size]), t[i:i + batch_size]))
    return total / max(len(x), 1)


def train_head(student, teacher_head, data: ImageData, epochs: int, lr: float = 1e-3, batch_size: int = 32,
               seed: int = 0, progress: Progress = silent) -> HeadTrainResult:
    """Adam on 002 eq. (1) against the frozen teacher head; teacher outputs precomputed once."""
    freeze(teacher_head)
    start = time.perf_counter()
    t_train = predict_logits(teacher_head, data.train)  # t(x), computed once: no augmentation
    t_val = predict_logits(teacher_head, data.val)
    initial = _sse_per_image(student, data.val.x, t_val)
    history = fit(student, hnd_loss, data.train.x, t_train, epochs, lr, batch_size, seed, batch_mean=False,
                  validate=lambda: _sse_per_image(student, data.val.x, t_val), progress=progress)
    return HeadTrainResult(history.train_loss, history.val, initial, time.perf_counter() - start)
