"""KD and scratch tuned alike on validation, within one stated budget (issue 29; 003 section IV compares KD students
with the same students trained without a teacher).

Each arm gets the same number of trials, each trained for the same maximum epochs; the epoch count is tuned too
(the epoch with the best validation accuracy; test accuracy is recorded at every epoch and read at that epoch
only, so test never steers a choice). KD searches temperature x alpha x learning rate; scratch searches
learning rate x weight decay (the same number of trials, so neither arm gets more search). The rows give, per
student, resolution and seed, the chosen settings and their test accuracy; `edgesim.studies.stats.summarise`
turns the seeds into mean +/- t-interval, and KD minus scratch per seed into its interval.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from edgesim.studies.distill.kd import accuracy, count_flops, count_params, kd_loss, predict_logits, train_classifier
from edgesim.studies.training import fit
from profilers.models.nets import make_net
from profilers.progress import Steps, silent_steps


@dataclass(frozen=True)
class TuneGrid:
    """The search of each arm: KD temperature x alpha x lr, scratch lr x weight decay, the same number of trials."""

    temperatures: tuple[float, ...] = (2.0, 4.0, 8.0)
    alphas: tuple[float, ...] = (0.5, 0.9)
    lrs: tuple[float, ...] = (3e-3,)
    scratch_lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    scratch_weight_decays: tuple[float, ...] = (0.0, 1e-4)
    max_epochs: int = 8

    def __post_init__(self) -> None:
        from profilers.errors import EdgesimError

        if len(self.kd_trials()) != len(self.scratch_trials()):
            raise EdgesimError(f"tuning budget: KD has {len(self.kd_trials())} trials, scratch "
                               f"{len(self.scratch_trials())}; give both arms the same number (equal search)")

    def kd_trials(self) -> list[dict]:
        return [{"temperature": t, "alpha": a, "lr": lr, "weight_decay": 0.0}
                for t, a, lr in itertools.product(self.temperatures, self.alphas, self.lrs)]

    def scratch_trials(self) -> list[dict]:
        return [{"temperature": None, "alpha": None, "lr": lr, "weight_decay": wd}
                for lr, wd in itertools.product(self.scratch_lrs, self.scratch_weight_decays)]

    def budget(self) -> str:
        """One line: trials and epochs per arm."""
        return (f"KD {len(self.kd_trials())} trials (T {list(self.temperatures)} x alpha {list(self.alphas)} x lr "
                f"{list(self.lrs)}), scratch {len(self.scratch_trials())} trials (lr {list(self.scratch_lrs)} x weight "
                f"decay {list(self.scratch_weight_decays)}), each up to {self.max_epochs} epochs, epoch chosen on validation")


def _trial(student: str, data, trial: dict, max_epochs: int, batch_size: int, seed: int, teacher_logits=None) -> dict:
    """Train one trial from the seed's initial weights; the best-validation epoch and the test accuracy there."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed + 1)  # the same initial student in every trial and in both arms
    net = make_net(student, data.num_classes, data.side_px)
    test_acc: list[float] = []

    def validate() -> float:
        test_acc.append(accuracy(net, data.test))
        return accuracy(net, data.val)

    if teacher_logits is None:
        loss_fn, targets = F.cross_entropy, data.train.y
    else:
        t, a = trial["temperature"], trial["alpha"]
        loss_fn, targets = (lambda s, y, tl: kd_loss(s, tl, y, t, a)), (data.train.y, teacher_logits)
    start = time.perf_counter()
    history = fit(net, loss_fn, data.train.x, targets, max_epochs, trial["lr"], batch_size, seed,
                  weight_decay=trial["weight_decay"], validate=validate)
    best = int(np.argmax(history.val))  # first best: fewer epochs on ties
    return {**trial, "epochs": best + 1, "val_accuracy": float(history.val[best]), "test_accuracy": test_acc[best],
            "train_time_s": time.perf_counter() - start}


def tune_student(student: str, data, teacher_logits, grid: TuneGrid, seed: int = 0, batch_size: int = 64,
                 steps: Steps = silent_steps) -> dict:
    """The best KD and the best scratch trial of one student on one dataset and seed, as one row."""
    arms = {}
    for arm, trials, logits in (("kd", grid.kd_trials(), teacher_logits), ("scratch", grid.scratch_trials(), None)):
        progress = steps(f"{arm} {student} {data.side_px}px seed {seed}: trials")
        results = []
        for i, trial in enumerate(trials):
            results.append(_trial(student, data, trial, grid.max_epochs, batch_size, seed, logits))
            progress(i + 1, len(trials))
        best = max(results, key=lambda r: (r["val_accuracy"], -r["epochs"]))
        arms[arm] = {**best, "time_s": sum(r["train_time_s"] for r in results)}
    kd, scratch = arms["kd"], arms["scratch"]
    return {
        "student": student, "side_px": data.side_px, "seed": seed,
        "student_params": count_params(make_net(student, data.num_classes, data.side_px)),
        "student_macs": count_flops(make_net(student, data.num_classes, data.side_px), data.input_shape) // 2,
        "kd_accuracy": kd["test_accuracy"], "scratch_accuracy": scratch["test_accuracy"],
        "kd_minus_scratch": kd["test_accuracy"] - scratch["test_accuracy"],
        "kd_val_accuracy": kd["val_accuracy"], "scratch_val_accuracy": scratch["val_accuracy"],
        "kd_temperature": kd["temperature"], "kd_alpha": kd["alpha"], "kd_lr": kd["lr"], "kd_epochs": kd["epochs"],
        "scratch_lr": scratch["lr"], "scratch_weight_decay": scratch["weight_decay"], "scratch_epochs": scratch["epochs"],
        "kd_search_time_s": kd["time_s"], "scratch_search_time_s": scratch["time_s"],
    }


def teacher_for(teacher: str, data, epochs: int, lr: float, seed: int, batch_size: int = 64,
                steps: Steps = silent_steps) -> tuple[dict, object]:
    """Train the teacher on the training split; its numbers and its logits on the training images (soft targets)."""
    import torch

    from edgesim.studies.distill.kd import freeze

    torch.manual_seed(seed)
    net = make_net(teacher, data.num_classes, data.side_px)
    res = train_classifier(net, data, epochs, lr, batch_size, seed, progress=steps(f"teacher {teacher} {data.side_px}px"))
    freeze(net)
    info = {"teacher": teacher, "teacher_accuracy": res.test_accuracy, "teacher_params": count_params(net),
            "teacher_macs": count_flops(net, data.input_shape) // 2}
    return info, predict_logits(net, data.train)


def verdict(mean_row, level: str = "95% t-interval") -> str:
    """Where KD helps: 'KD better' / 'scratch better' when the interval of KD - scratch excludes 0, else 'no difference'."""
    d, h = mean_row["kd_minus_scratch"], mean_row.get("kd_minus_scratch_ci", float("nan"))
    if not np.isfinite(h):
        return "one seed: no interval"
    if d - h > 0:
        return f"KD better ({level} excludes 0)"
    if d + h < 0:
        return f"scratch better ({level} excludes 0)"
    return f"no difference ({level} holds 0)"


def tune_study(teacher: str, students, dataset: str, sides, seeds, grid: TuneGrid, teacher_epochs: int = 8,
               teacher_lr: float = 3e-3, limit: Optional[int] = None, steps: Steps = silent_steps):
    """Rows of tune_student for every student, resolution and seed, each with its teacher's numbers."""
    import pandas as pd

    from edgesim.studies.distill.data import load_data
    from edgesim.studies.distill.studies import check_teacher_larger

    rows = []
    for seed in seeds:
        for side in sides:
            data = load_data(dataset, side, 3, seed, limit)
            check_teacher_larger(teacher, students, data.num_classes, side)
            info, logits = teacher_for(teacher, data, teacher_epochs, teacher_lr, seed, steps=steps)
            for student in students:
                rows.append({**info, **tune_student(student, data, logits, grid, seed, steps=steps),
                             "dataset": data.describe()})
    return pd.DataFrame(rows)
