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
import re
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
    kd_half_fraction: bool = False  # KD: the half fraction 2^(3-1) of T x alpha x lr (each level in half the trials)

    def __post_init__(self) -> None:
        from profilers.errors import EdgesimError

        if self.kd_half_fraction and not len(self.temperatures) == len(self.alphas) == len(self.lrs) == 2:
            raise EdgesimError("the KD half fraction needs exactly 2 temperatures, 2 alphas and 2 learning rates "
                               f"(got {len(self.temperatures)}, {len(self.alphas)}, {len(self.lrs)})")
        if len(self.kd_trials()) != len(self.scratch_trials()):
            raise EdgesimError(f"tuning budget: KD has {len(self.kd_trials())} trials, scratch "
                               f"{len(self.scratch_trials())}; give both arms the same number (equal search)")

    def kd_trials(self) -> list[dict]:
        """Every T x alpha x lr, or its half fraction (defining relation I = ABC: the level indices sum to even), in
        which each level of each factor, and each pair of levels of two factors, appears equally often."""
        levels = itertools.product(*(enumerate(v) for v in (self.temperatures, self.alphas, self.lrs)))
        return [{"temperature": t, "alpha": a, "lr": lr, "weight_decay": 0.0}
                for (i, t), (j, a), (k, lr) in levels if not self.kd_half_fraction or (i + j + k) % 2 == 0]

    def scratch_trials(self) -> list[dict]:
        return [{"temperature": None, "alpha": None, "lr": lr, "weight_decay": wd}
                for lr, wd in itertools.product(self.scratch_lrs, self.scratch_weight_decays)]

    def budget(self) -> str:
        """One line: trials and epochs per arm."""
        return (f"KD {len(self.kd_trials())} trials ({'half fraction of ' if self.kd_half_fraction else ''}T "
                f"{list(self.temperatures)} x alpha {list(self.alphas)} x lr {list(self.lrs)}), scratch {len(self.scratch_trials())} trials (lr {list(self.scratch_lrs)} x weight "
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
            "val_curve": " ".join(f"{v:.3f}" for v in history.val), "train_time_s": time.perf_counter() - start}


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
        "kd_val_curve": kd["val_curve"], "scratch_val_curve": scratch["val_curve"],  # the chosen trials', per epoch
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


def unseeded(described: str) -> str:
    """A data description (ImageData.describe) without its seed: the dataset line of a table over several seeds."""
    return re.sub(r", seed \d+", "", described)


def tune_study(teacher: str, students, dataset: str, sides, seeds, grid: TuneGrid, teacher_epochs: int = 8,
               teacher_lr: float = 3e-3, limit: Optional[int] = None, batch_size: int = 64,
               teacher_px: Optional[int] = None, steps: Steps = silent_steps):
    """Rows of tune_student for every student, resolution and seed, each with its teacher's numbers.

    teacher_px: the teacher is trained once per seed at this side and its logits on the same training images are
    the soft targets at every student side (a teacher that cannot run at a student's small side, e.g. vgg-s8's
    five poolings at 16 px); else it is trained at each student side."""
    import pandas as pd

    from edgesim.studies.distill.data import load_data
    from edgesim.studies.distill.studies import check_teacher_larger
    from profilers.errors import EdgesimError

    rows, checked = [], set()
    for seed in seeds:
        fixed = None
        if teacher_px is not None:
            tdata = load_data(dataset, teacher_px, 3, seed, limit)
            fixed = (tdata, *teacher_for(teacher, tdata, teacher_epochs, teacher_lr, seed, batch_size, steps))
        for side in sides:
            data = fixed[0] if fixed is not None and side == teacher_px else load_data(dataset, side, 3, seed, limit)
            if side not in checked:  # the models' sizes do not depend on the seed: checked once per side
                check_teacher_larger(teacher, students, data.num_classes, side if teacher_px is None else teacher_px)
                checked.add(side)
            if fixed is None:
                info, logits = teacher_for(teacher, data, teacher_epochs, teacher_lr, seed, batch_size, steps)
                info = {**info, "teacher_side_px": side}
            else:
                tdata, info, logits = fixed
                if not bool((tdata.train.y == data.train.y).all()):
                    raise EdgesimError(f"the teacher's {teacher_px} px training split differs from the {side} px one")
                info = {**info, "teacher_side_px": teacher_px}
            for student in students:
                rows.append({**info, **tune_student(student, data, logits, grid, seed, batch_size, steps),
                             "dataset": data.describe()})
    return pd.DataFrame(rows)


def _cited_003(student: str, side_px: int) -> str:
    """003 Table II's parameters and Ops of the student of the same size (cited; Ops given at 32 and 224 px only)."""
    from profilers.models.vgg import STUDENTS

    if student not in STUDENTS:
        return ""
    _, _, _, params_m, ops32, ops224 = STUDENTS[student]
    ops = {32: ops32, 224: ops224}.get(side_px)
    return f"{1e6 * params_m:,.0f} / " + (f"{ops:.3g} M" if ops is not None else "-")


def _chosen(g, cols: tuple[str, ...]) -> str:
    """The settings chosen on validation, one tuple per seed ('T 4, a 0.9, lr 0.003, 6 ep; ...')."""
    names = {"kd_temperature": "T", "kd_alpha": "a", "kd_lr": "lr", "scratch_lr": "lr", "scratch_weight_decay": "wd"}
    return "; ".join(", ".join(f"{names[c]} {getattr(r, c):g}" for c in cols[:-1]) + f", {getattr(r, cols[-1])} ep"
                     for r in g.itertuples(index=False))


def tune_markdown(runs, mean, meta: dict) -> str:
    """The tuned KD-vs-scratch table as markdown: per student and resolution, params and MACs (ours and 003's,
    cited), teacher, KD, scratch and KD - scratch (mean +/- 95% t-interval over seeds), the verdict, and the
    settings each arm chose on validation per seed."""
    from edgesim.studies.stats import formatted

    shown = formatted(mean, ["teacher_accuracy", "kd_accuracy", "scratch_accuracy", "kd_minus_scratch"], 3)
    lines = ["| student | px | params (ours) | params / Ops 003 (cited) | MACs (ours) | teacher | KD | scratch | "
             "KD - scratch | seeds | verdict | KD chose (per seed) | scratch chose (per seed) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in shown.itertuples(index=False):
        g = runs[(runs.student == row.student) & (runs.side_px == row.side_px)].sort_values("seed")
        lines.append(
            f"| {row.student} | {row.side_px} | {int(g.student_params.iloc[0]):,} | {_cited_003(row.student, row.side_px)} | "
            f"{g.student_macs.iloc[0] / 1e6:.3g} M | {row.teacher_accuracy} | {row.kd_accuracy} | {row.scratch_accuracy} | "
            f"{row.kd_minus_scratch} | {int(row.n_seeds)} | {row.verdict} | "
            f"{_chosen(g, ('kd_temperature', 'kd_alpha', 'kd_lr', 'kd_epochs'))} | "
            f"{_chosen(g, ('scratch_lr', 'scratch_weight_decay', 'scratch_epochs'))} |")
    cross = runs[runs.teacher_side_px != runs.side_px] if "teacher_side_px" in runs else runs.iloc[:0]
    head = [f"Teacher {meta['teacher']} ({int(runs.teacher_params.iloc[0]):,} parameters, larger than every student); "
            f"data: {meta['dataset']}.", f"Budget per student, resolution and seed: {meta['budget']}.",
            f"Seeds {meta['seeds']}; test accuracy, mean +/- half-width of the 95% Student-t interval over seeds; "
            "verdict from the interval of KD - scratch (paired by seed).",
            *([f"At {', '.join(map(str, sorted(set(cross.side_px))))} px the soft targets are the logits of the teacher "
               f"trained at {', '.join(map(str, sorted(set(cross.teacher_side_px))))} px on the same training images "
               "(its accuracy is at that side)."] if len(cross) else []),
            f"Wall time {meta['wall_time_s']:.0f} s; host: " + ("; ".join(meta["host_busy"]) or "quiet (profilers.hostcheck)") + "."]
    return "\n".join(head) + "\n\n" + "\n".join(lines) + "\n"


TUNE_METRICS = ("kd_accuracy", "scratch_accuracy", "kd_minus_scratch", "teacher_accuracy", "kd_epochs", "scratch_epochs")


def write_tune_tables(runs, meta: dict, out):
    """Seeds summarised per student and resolution (mean +/- t-interval, verdict), then tune_runs.csv, tune_seeds.csv,
    tune.json (budget, seeds, times, host check) and tune.md written atomically into out; returns the summary."""
    from pathlib import Path

    from edgesim.studies.distill.runs import write_csv, write_json
    from edgesim.studies.stats import summarise
    from profilers.io import atomic_write_text

    out = Path(out)
    mean = summarise(runs, ["student", "side_px"], TUNE_METRICS)
    mean["verdict"] = [verdict(r) for _, r in mean.iterrows()]
    write_csv(runs, out / "tune_runs.csv")
    write_csv(mean, out / "tune_seeds.csv")
    write_json(meta, out / "tune.json")
    atomic_write_text(out / "tune.md", tune_markdown(runs, mean, meta))
    return mean


def combine_tune_runs(folders) -> tuple:
    """The rows and metadata of several `distill tune` output folders pooled (seeds run side by side): one line when a
    folder lacks its files, when budgets, teachers or data differ, or when a seed repeats."""
    import json
    from pathlib import Path

    import pandas as pd

    from profilers.errors import EdgesimError

    runs, metas = [], []
    for folder in map(Path, folders):
        for name in ("tune_runs.csv", "tune.json"):
            if not (folder / name).is_file():
                raise EdgesimError(f"{folder}: no {name} (the output folder of `edgesim distill tune`)")
        runs.append(pd.read_csv(folder / "tune_runs.csv"))
        metas.append(json.loads((folder / "tune.json").read_text(encoding="utf-8")))
    for key in ("budget", "teacher"):
        values = {m[key] for m in metas}
        if len(values) > 1:
            raise EdgesimError(f"runs differ in {key}: {' vs '.join(sorted(values))}; combine runs of one budget only")
    data: dict[int, set] = {}  # per resolution: one dataset
    for r in runs:
        for side, d in zip(r["side_px"], r["dataset"]):
            data.setdefault(int(side), set()).add(unseeded(d))
    for described in data.values():
        if len(described) > 1:
            raise EdgesimError(f"runs differ in data: {' vs '.join(sorted(described))}")
    pooled = pd.concat(runs, ignore_index=True)
    repeated = pooled[pooled.duplicated(["student", "side_px", "seed"], keep=False)]
    if len(repeated):
        r = repeated.iloc[0]
        raise EdgesimError(f"seeds repeat across the runs: {r.student} at {r.side_px} px, seed {r.seed} appears twice")
    seeds = sorted({s for m in metas for s in m["seeds"]})
    meta = {"budget": metas[0]["budget"], "teacher": metas[0]["teacher"], "seeds": seeds,
            "wall_time_s": max(m["wall_time_s"] for m in metas), "cpu_time_s": sum(m.get("cpu_time_s", 0.0) for m in metas),
            "load_avg_1min_end": [m.get("load_avg_1min_end") for m in metas],
            "host_busy": list(dict.fromkeys(b for m in metas for b in m["host_busy"])),
            "interval": metas[0]["interval"], "dataset": "; ".join(next(iter(d)) for _, d in sorted(data.items())),
            "runs": [str(f) for f in folders]}
    return pooled.sort_values(["student", "side_px", "seed"], kind="stable"), meta
