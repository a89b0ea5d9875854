"""Knowledge distillation (Hinton et al. 2015, as used in 003 section III): soft targets at temperature T.

loss = alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y), the KL taken with the
teacher's distribution as the target (Hinton's soft-target cross-entropy minus the teacher's entropy, which
has no gradient), averaged over the batch; the T^2 keeps the soft-target gradients' scale independent of T.
The teacher is frozen (eval mode, no gradient); its logits on the fixed training images are computed once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

from edgesim.studies.distill.data import ImageData, Split, batches
from edgesim.studies.training import fit
from profilers.errors import EdgesimError
from profilers.progress import Progress, Steps, silent, silent_steps

DEFAULT_TEMPERATURE = 4.0  # ours: 003 does not state T or alpha; 4 and 0.9 are common choices
DEFAULT_ALPHA = 0.9


def kd_loss(student_logits, teacher_logits, labels, temperature: float = DEFAULT_TEMPERATURE,
            alpha: float = DEFAULT_ALPHA):
    """Hinton KD loss: alpha * T^2 * KL(p_t^T || p_s^T) + (1 - alpha) * CE(s, y), batch mean."""
    import torch.nn.functional as F

    if temperature <= 0:
        raise EdgesimError(f"temperature {temperature}: must be positive")
    if not 0 <= alpha <= 1:
        raise EdgesimError(f"alpha {alpha}: must be in [0, 1]")
    hard = F.cross_entropy(student_logits, labels)
    if alpha == 0:
        return hard
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.log_softmax(teacher_logits.detach() / temperature, dim=1),
                    reduction="batchmean", log_target=True)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


def freeze(net):
    """Eval mode and no gradients: a teacher or a frozen part."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def count_params(net) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in net.parameters())


def count_flops(net, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward on one image (torch.utils.flop_counter: 2 per multiply-accumulate)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = net.training
    net.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(torch.zeros((1, *input_shape)))
    net.train(was_training)
    return int(counter.get_total_flops())


def predict_logits(net, split: Split, batch_size: int = 256):
    """Outputs of net (a classifier's logits, a head's tensor) on every image of split, eval mode, no gradients."""
    import torch

    was_training = net.training
    net.eval()
    outs = []
    with torch.no_grad():
        for x in batches(split, batch_size):
            outs.append(net(x))
    net.train(was_training)
    return torch.cat(outs)


def accuracy(net, split: Split, batch_size: int = 256) -> float:
    """Top-1 accuracy of net on split."""
    logits = predict_logits(net, split, batch_size)
    return float((logits.argmax(1) == split.y).float().mean())


@dataclass
class TrainResult:
    """What one training run produced: accuracies, wall time and the per-epoch history."""

    val_accuracy: float
    test_accuracy: float
    train_time_s: float
    epochs: int
    history: list[dict] = field(default_factory=list)


def train_classifier(net, data: ImageData, epochs: int, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
                     teacher_logits=None, temperature: float = DEFAULT_TEMPERATURE, alpha: float = DEFAULT_ALPHA,
                     params: Optional[list] = None, weight_decay: float = 0.0, frozen_norm: bool = False,
                     progress: Progress = silent) -> TrainResult:
    """Adam on hard labels (teacher_logits None) or on the KD loss against precomputed teacher logits.

    params restricts the trained parameters (fine-tuning the classifier only); the rest stays frozen, and with
    frozen_norm so do the BatchNorm running statistics (eval mode), as frozen features require.
    """
    import torch.nn.functional as F

    if teacher_logits is None:
        loss_fn, targets = F.cross_entropy, data.train.y
    else:
        loss_fn, targets = (lambda s, y, t: kd_loss(s, t, y, temperature, alpha)), (data.train.y, teacher_logits)
    history = fit(net, loss_fn, data.train.x, targets, epochs, lr, batch_size, seed, params, weight_decay,
                  validate=lambda: accuracy(net, data.val), frozen_norm=frozen_norm, progress=progress)
    rows = [{"epoch": e + 1, "train_loss": loss, "val_accuracy": acc}
            for e, (loss, acc) in enumerate(zip(history.train_loss, history.val))]
    return TrainResult(accuracy(net, data.val), accuracy(net, data.test), history.time_s, epochs, rows)


@dataclass
class KDRecord:
    """One teacher -> student distillation with its scratch baseline (003 Tables I and II columns)."""

    teacher: str
    student: str
    side_px: int
    teacher_params: int
    teacher_flops: int
    teacher_accuracy: float
    student_params: int
    student_flops: int
    kd_accuracy: float
    kd_val_accuracy: float
    kd_time_s: float
    kd_epochs: int
    scratch_accuracy: Optional[float]
    scratch_time_s: Optional[float]
    temperature: float
    alpha: float

    def row(self) -> dict:
        """Flat dict for a DataFrame; MACs = FLOPs / 2 (003's 'Ops' read as multiply-accumulates)."""
        d = dict(self.__dict__)
        d["student_macs"] = self.student_flops // 2
        d["teacher_macs"] = self.teacher_flops // 2
        return d


def distill(teacher, student, data: ImageData, teacher_name: str, student_name: str, teacher_accuracy: float,
            epochs: int, lr: float = 1e-3, batch_size: int = 64, temperature: float = DEFAULT_TEMPERATURE,
            alpha: float = DEFAULT_ALPHA, seed: int = 0, baseline_student=None,
            teacher_logits=None, teacher_flops: Optional[int] = None, steps: Steps = silent_steps) -> KDRecord:
    """KD from a frozen teacher into student; optionally the same student architecture from scratch, same budget.

    kd_time_s counts the teacher's forward passes over the training set (once, no augmentation) and the
    student's training; the scratch baseline gets the same epochs, learning rate and batch size.
    """
    freeze(teacher)
    start = time.perf_counter()
    if teacher_logits is None:
        teacher_logits = predict_logits(teacher, data.train)
    teacher_time = time.perf_counter() - start
    res = train_classifier(student, data, epochs, lr, batch_size, seed, teacher_logits, temperature, alpha,
                           progress=steps(f"KD {teacher_name} -> {student_name}"))
    scratch_acc = scratch_time = None
    if baseline_student is not None:
        base = train_classifier(baseline_student, data, epochs, lr, batch_size, seed,
                                progress=steps(f"{student_name} from scratch"))
        scratch_acc, scratch_time = base.test_accuracy, base.train_time_s
    shape = data.input_shape
    if teacher_flops is None:
        teacher_flops = count_flops(teacher, shape)
    return KDRecord(teacher_name, student_name, data.side_px, count_params(teacher), teacher_flops,
                    teacher_accuracy, count_params(student), count_flops(student, shape), res.test_accuracy,
                    res.val_accuracy, teacher_time + res.train_time_s, epochs, scratch_acc, scratch_time,
                    temperature, alpha)
