"""The trade-off studies of 003 section IV on offline digits: student size x resolution, architecture pairs, fine-tuning.

* size (003 Table II): VGG students distilled from one teacher at each resolution; params, MACs and test
  accuracy. As in 003 ("the teachers always had significantly more parameters than the students") the teacher
  must be strictly larger than every student: vgg-s2..s5 from vgg-s8 by default; vgg-s8 as a student needs a
  larger teacher (--teacher vgg11). The teacher is trained once at the teacher resolution (32x32); its logits on the training
  images are the soft targets at every student resolution (the images are the same digits, upsampled), so the
  comparison across resolutions keeps the KD budget (epochs, learning rate) constant, as 003 does.
* pairs (003 Table I): CNN->CNN, CNN->ViT, ViT->CNN, ViT->ViT with small models; accuracy and KD time.
* finetune (003 Table III): KD on one half of the training images, then the features frozen (weights and
  BatchNorm statistics) and the classifier fine-tuned at a tenth of the learning rate on the other half (hard
  labels); test accuracy before and after.

Every study runs over seeds (`run_seeds`); `seed_table` gives mean +/- Student-t interval per row, including
KD minus scratch (the same student, epochs and learning rate trained on hard labels only).

"Ops" of 003 are read as multiply-accumulates: macs = FLOPs / 2 (torch.utils.flop_counter, batch 1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from edgesim.studies.distill.data import ImageData, Split, load_data
from edgesim.studies.distill.kd import (
    accuracy,
    count_flops,
    count_params,
    distill,
    freeze,
    predict_logits,
    train_classifier,
)
from edgesim.studies.stats import summarise
from profilers.errors import EdgesimError
from profilers.models.nets import classifier_params, is_vit, make_net
from profilers.models.vgg import STUDENTS, TEACHER_CFGS
from profilers.progress import Steps, silent_steps

STUDIES = ("size", "pairs", "finetune")
SIZE_STUDENTS = ("vgg-s2", "vgg-s3", "vgg-s4", "vgg-s5")
#: 003 Table I's four pairings; both teachers are larger than both students (vgg-s8 0.97 M, vit-medium 1.8 M parameters)
PAIRS = (("vgg-s8", "vgg-s3"), ("vgg-s8", "vit-micro"), ("vit-medium", "vgg-s3"), ("vit-medium", "vit-micro"))
FINETUNE_STUDENTS = ("vgg-s5", "vit-micro")


@dataclass(frozen=True)
class StudyConfig:
    """Budget of a study: epochs, learning rates, KD temperature and mixing weight, data and seed."""

    teacher: str = "vgg-s8"
    teacher_epochs: int = 8
    epochs: int = 8
    lr: float = 3e-3
    finetune_epochs: int = 5
    finetune_lr_factor: float = 0.1
    temperature: float = 4.0
    alpha: float = 0.9
    resolutions: tuple[int, ...] = (32, 64)
    teacher_side_px: int = 32
    students: tuple[str, ...] = SIZE_STUDENTS
    dataset: str = "digits"
    seed: int = 0
    limit: Optional[int] = None
    batch_size: int = 64
    baseline: Optional[bool] = None  # scratch baseline per student; None: on for pairs, off for size


def quick(cfg: StudyConfig) -> StudyConfig:
    """Seconds instead of minutes (tests): 1 epoch, 300 images, 32x32 only, the three smallest students, with the scratch baseline."""
    return replace(cfg, teacher_epochs=1, epochs=1, finetune_epochs=1, limit=300, resolutions=(32,), baseline=True,
                   students=tuple(s for s in cfg.students if s in ("vgg-s2", "vgg-s3", "vgg-s4")) or cfg.students[:3])


class _Teachers:
    """Teachers trained once per (name, side) and their test accuracy, soft targets and size."""

    def __init__(self, cfg: StudyConfig):
        self.cfg = cfg
        self._cache: dict = {}

    def get(self, name: str, data, steps: Steps = silent_steps):
        """The teacher `name` trained on data's training split (once per side and size), with its numbers."""
        import torch

        key = (name, data.side_px, len(data.train))
        if key not in self._cache:
            torch.manual_seed(self.cfg.seed)
            net = make_net(name, data.num_classes, data.side_px)
            res = train_classifier(net, data, self.cfg.teacher_epochs, self.cfg.lr, self.cfg.batch_size, self.cfg.seed,
                                   progress=steps(f"teacher {name} at {data.side_px}px"))
            freeze(net)
            start = time.perf_counter()
            logits = predict_logits(net, data.train)
            self._cache[key] = {"net": net, "accuracy": res.test_accuracy, "logits": logits,
                                "logits_time_s": time.perf_counter() - start, "train_time_s": res.train_time_s,
                                "params": count_params(net), "flops": count_flops(net, data.input_shape),
                                "side_px": data.side_px}
        return self._cache[key]


def _data(cfg: StudyConfig, side: int):
    """The study's images at side x side, RGB, with the study's seed and limit."""
    return load_data(cfg.dataset, side, 3, cfg.seed, cfg.limit)


def _kd_row(cfg: StudyConfig, teacher: dict, teacher_name: str, student: str, data, steps: Steps = silent_steps,
            baseline: bool = True) -> tuple[dict, object]:
    """One KD run (and optionally its scratch baseline) as a table row with the teacher's numbers, and the student."""
    import torch

    torch.manual_seed(cfg.seed + 1)
    s_net = make_net(student, data.num_classes, data.side_px)
    b_net = None
    if baseline:
        torch.manual_seed(cfg.seed + 1)
        b_net = make_net(student, data.num_classes, data.side_px)
    rec = distill(teacher["net"], s_net, data, teacher_name, student, teacher["accuracy"], cfg.epochs, cfg.lr,
                  cfg.batch_size, cfg.temperature, cfg.alpha, cfg.seed, b_net, teacher_logits=teacher["logits"],
                  teacher_flops=teacher["flops"], steps=steps)
    row = rec.row()
    row["kd_minus_scratch"] = (rec.kd_accuracy - rec.scratch_accuracy) if rec.scratch_accuracy is not None else None
    row.update(teacher_params=teacher["params"], teacher_flops=teacher["flops"], teacher_macs=teacher["flops"] // 2,
               teacher_side_px=teacher["side_px"], kd_time_s=rec.kd_time_s + teacher["logits_time_s"],
               teacher_train_time_s=teacher["train_time_s"])
    return row, s_net


def size_study(cfg: StudyConfig, steps: Steps = silent_steps):
    """003 Table II: params, MACs and KD accuracy per VGG student size and resolution (long format)."""
    import pandas as pd

    for s in cfg.students:
        if s not in STUDENTS and s not in TEACHER_CFGS:
            raise EdgesimError(f"size study: student '{s}' is not a VGG; known: {', '.join([*STUDENTS, *TEACHER_CFGS])}")
    teachers = _Teachers(cfg)
    t_data = _data(cfg, cfg.teacher_side_px)
    check_teacher_larger(cfg.teacher, cfg.students, t_data.num_classes, cfg.teacher_side_px)
    teacher = teachers.get(cfg.teacher, t_data, steps)
    rows = []
    total = len(cfg.students) * len(cfg.resolutions)
    for side in cfg.resolutions:
        data = t_data if side == cfg.teacher_side_px else _data(cfg, side)
        if not bool((data.train.y == t_data.train.y).all()):
            raise EdgesimError("size study: the split differs between resolutions")  # same seed, same split
        for student in cfg.students:
            row, _ = _kd_row(cfg, teacher, cfg.teacher, student, data, _numbered(steps, len(rows) + 1, total),
                             baseline=bool(cfg.baseline))
            rows.append(row)
    return pd.DataFrame(rows)


def check_teacher_larger(teacher: str, students, num_classes: int = 10, side_px: int = 32) -> None:
    """003 section IV: the teacher has strictly more parameters than every student; one line naming the first that does not."""
    t = count_params(make_net(teacher, num_classes, side_px))
    for s in students:
        n = count_params(make_net(s, num_classes, side_px))
        if n >= t:
            raise EdgesimError(f"teacher {teacher} ({t:,} parameters) is not larger than student {s} ({n:,}); 003 "
                               "distils from a strictly larger teacher: pass a larger --teacher (e.g. vgg11) or drop the student")


def table2(long):
    """Reshape the size study to 003 Table II: rows Params (M) and per resolution Accuracy / Ops (M MACs)."""
    import pandas as pd

    students = list(dict.fromkeys(long["student"]))
    label = {s: f"{s} ({STUDENTS[s][0]})" if s in STUDENTS else s for s in students}
    out = [{"row": "Params (M)", **{label[s]: long[long.student == s].student_params.iloc[0] / 1e6 for s in students}}]
    for side in sorted(set(long.side_px)):
        g = long[long.side_px == side].set_index("student")
        out.append({"row": f"Img_size:{side} Accuracy (KD)", **{label[s]: g.kd_accuracy[s] for s in students}})
        if g.scratch_accuracy.notna().any():
            out.append({"row": f"Img_size:{side} Accuracy (scratch)", **{label[s]: g.scratch_accuracy[s] for s in students}})
        out.append({"row": f"Img_size:{side} Ops (M MACs)", **{label[s]: g.student_macs[s] / 1e6 for s in students}})
        out.append({"row": f"Img_size:{side} KD time (s)", **{label[s]: g.kd_time_s[s] for s in students}})
    return pd.DataFrame(out)


def pairs_study(cfg: StudyConfig, pairs=PAIRS, steps: Steps = silent_steps):
    """003 Table I: accuracy and KD time per teacher/student architecture pair (CNN or ViT), 32x32."""
    import pandas as pd

    data = _data(cfg, cfg.teacher_side_px)
    teachers = _Teachers(cfg)
    rows = []
    for t, s in pairs:
        check_teacher_larger(t, [s], data.num_classes, data.side_px)
    for i, (t, s) in enumerate(pairs):
        numbered = _numbered(steps, i + 1, len(pairs))
        teacher = teachers.get(t, data, numbered)
        row, _ = _kd_row(cfg, teacher, t, s, data, numbered, baseline=cfg.baseline is not False)
        row.update(teacher_kind="Transformer" if is_vit(t) else "CNN", student_kind="Transformer" if is_vit(s) else "CNN")
        rows.append(row)
    df = pd.DataFrame(rows)
    # 003 Table I ranks: best accuracy / shortest KD time = "Best"
    df["accuracy_rank"] = df.kd_accuracy.rank(ascending=False, method="min").astype(int)
    df["kd_time_rank"] = df.kd_time_s.rank(ascending=True, method="min").astype(int)
    return df


def finetune_study(cfg: StudyConfig, students=FINETUNE_STUDENTS, steps: Steps = silent_steps):
    """003 Table III: KD on half the training images, then classifier-only fine-tuning on the other half."""
    import pandas as pd
    import torch

    data = _data(cfg, cfg.teacher_side_px)
    check_teacher_larger(cfg.teacher, students, data.num_classes, data.side_px)
    teachers = _Teachers(cfg)
    teacher = teachers.get(cfg.teacher, data, steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(data.train), generator=gen)
    half = len(order) // 2
    kd_idx, ft_idx = order[:half].sort().values, order[half:].sort().values
    kd_data = ImageData(Split(data.train.x[kd_idx], data.train.y[kd_idx]), data.val, data.test, data.num_classes,
                        data.side_px, data.channels, data.source + "; KD half")
    ft_data = ImageData(Split(data.train.x[ft_idx], data.train.y[ft_idx]), data.val, data.test, data.num_classes,
                        data.side_px, data.channels, data.source + "; fine-tune half")
    kd_teacher = dict(teacher, logits=teacher["logits"][kd_idx])
    rows = []
    for i, s in enumerate(students):
        numbered = _numbered(steps, i + 1, len(students))
        row, net = _kd_row(cfg, kd_teacher, cfg.teacher, s, kd_data, numbered, baseline=False)
        before = accuracy(net, data.test)
        head_ids = {id(p) for p in classifier_params(net)}
        frozen_before = {k: v.clone() for k, v in _frozen_state(net, head_ids).items()}
        for p in net.parameters():
            p.requires_grad_(False)
        head = classifier_params(net)
        for p in head:
            p.requires_grad_(True)
        ft = train_classifier(net, ft_data, cfg.finetune_epochs, cfg.lr * cfg.finetune_lr_factor, cfg.batch_size,
                              cfg.seed, params=head, frozen_norm=True, progress=numbered(f"fine-tune {s}'s classifier"))
        rows.append({"student": s, "params_m": count_params(net) / 1e6, "trainable_params": sum(p.numel() for p in head),
                     "prior_finetune_accuracy": before, "post_finetune_accuracy": ft.test_accuracy,
                     "gain": ft.test_accuracy - before,
                     "features_unchanged": all(torch.equal(frozen_before[k], v) for k, v in _frozen_state(net, head_ids).items()), "kd_time_s": row["kd_time_s"], "finetune_time_s": ft.train_time_s,
                     "kd_images": half, "finetune_images": len(ft_idx), "finetune_epochs": cfg.finetune_epochs,
                     "finetune_lr": cfg.lr * cfg.finetune_lr_factor, "teacher": cfg.teacher,
                     "teacher_accuracy": teacher["accuracy"]})
    return pd.DataFrame(rows)


SEED_KEYS = {"size": ("student", "side_px"), "pairs": ("teacher", "student"), "finetune": ("student",)}
SEED_METRICS = {
    "size": ("kd_accuracy", "scratch_accuracy", "kd_minus_scratch", "teacher_accuracy", "student_params", "student_macs",
             "kd_time_s"),
    "pairs": ("kd_accuracy", "scratch_accuracy", "kd_minus_scratch", "teacher_accuracy", "kd_time_s", "student_params"),
    "finetune": ("prior_finetune_accuracy", "post_finetune_accuracy", "gain", "kd_time_s", "finetune_time_s"),
}


def run_study(cfg: StudyConfig, study: str, steps: Steps = silent_steps):
    """One study at cfg.seed: its long table (one row per run)."""
    if study == "size":
        return size_study(cfg, steps)
    if study == "pairs":
        return pairs_study(cfg, steps=steps)
    if study == "finetune":
        return finetune_study(cfg, steps=steps)
    raise EdgesimError(f"unknown study '{study}'; known: {', '.join(STUDIES)}")


def run_seeds(cfg: StudyConfig, study: str, seeds, steps: Steps = silent_steps):
    """The study once per seed (split, initialisation and batch order change with it), long tables with a seed column."""
    import pandas as pd

    parts = []
    for i, seed in enumerate(seeds):
        long = run_study(replace(cfg, seed=int(seed)), study, _numbered(steps, i + 1, len(seeds)))
        long.insert(0, "seed", int(seed))
        parts.append(long)
    return pd.concat(parts, ignore_index=True)


def seed_table(long, study: str):
    """Mean and 95 % t-interval half-width (<metric>_ci) over seeds per row of the study (003 Tables I-III)."""
    return summarise(long, SEED_KEYS[study], SEED_METRICS[study])


def _frozen_state(net, head_ids: set) -> dict:
    """Every tensor fine-tuning must leave alone: the feature weights and the BatchNorm running statistics."""
    head_names = {n for n, p in net.named_parameters() if id(p) in head_ids}
    return {k: v for k, v in net.state_dict(keep_vars=False).items() if k not in head_names}


def _numbered(steps: Steps, i: int, n: int) -> Steps:
    """Steps whose labels say which of the study's n runs they belong to: '[i/n] label'."""
    return lambda label: steps(f"[{i}/{n}] {label}")


# ----------------------------------------------------------------------------- figures


def _dataset_name(dataset: str) -> str:
    """A dataset as titles name it: 'digits', 'mnist', or an ImageFolder root's folder name."""
    return Path(dataset).name or str(dataset)


def _title(table: str, dataset: str, df, what: str) -> str:
    """'003 Table X on <dataset>, mean over <n> seed(s) (bars: 95% t-interval): <what>' for a seed_table figure."""
    n = int(df["n_seeds"].max()) if "n_seeds" in df.columns and len(df) else 1
    spread = " (bars: 95% t-interval)" if n > 1 else ""
    return f"003 {table} on {_dataset_name(dataset)}, mean over {n} seed(s){spread}: {what}"


def _error_bars(df, metric: str, scale: float = 100.0) -> Optional[dict]:
    """plotly error_y from seed_table's <metric>_ci column (the 95% t half-width), None where there is none."""
    col = f"{metric}_ci"
    if col not in df.columns or df[col].isna().all():
        return None
    return {"type": "data", "array": (scale * df[col]).tolist(), "visible": True}


def size_figure(mean, dataset: str):
    """Accuracy vs parameters per resolution (003 Table II as a plot), KD and scratch, seed means with intervals."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for side in sorted(set(mean.side_px)):
        g = mean[mean.side_px == side].sort_values("student_params")
        fig.add_trace(go.Scatter(x=g.student_params, y=100 * g.kd_accuracy, mode="lines+markers", text=g.student,
                                 name=f"KD, {side}x{side}", error_y=_error_bars(g, "kd_accuracy")))
        if g.scratch_accuracy.isna().all():
            continue
        fig.add_trace(go.Scatter(x=g.student_params, y=100 * g.scratch_accuracy, mode="lines+markers", text=g.student,
                                 name=f"scratch, {side}x{side}", line={"dash": "dot"},
                                 error_y=_error_bars(g, "scratch_accuracy")))
    fig.update_xaxes(type="log", title_text="student parameters")
    fig.update_yaxes(title_text="test accuracy [%]")
    fig.update_layout(title=_title("Table II", dataset, mean, "student size and resolution"), template="plotly_white")
    return fig


def pairs_figure(df, dataset: str):
    """Accuracy and KD time per teacher -> student pair (003 Table I as a plot), seed means with intervals."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    labels = [f"{t} ({a}) -> {s} ({b})" for t, a, s, b in zip(df.teacher, df.teacher_kind, df.student, df.student_kind)]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("test accuracy [%]", "KD time [s]"))
    fig.add_trace(go.Bar(x=labels, y=100 * df.kd_accuracy, name="KD accuracy",
                         error_y=_error_bars(df, "kd_accuracy")), row=1, col=1)
    fig.add_trace(go.Bar(x=labels, y=100 * df.scratch_accuracy, name="scratch accuracy",
                         error_y=_error_bars(df, "scratch_accuracy")), row=1, col=1)
    fig.add_trace(go.Bar(x=labels, y=df.kd_time_s, name="KD time", error_y=_error_bars(df, "kd_time_s", 1.0)),
                  row=1, col=2)
    fig.update_layout(title=_title("Table I", dataset, df, "teacher/student architectures"), template="plotly_white")
    return fig


def finetune_figure(df, dataset: str):
    """Accuracy before and after classifier fine-tuning (003 Table III as a plot), seed means with intervals."""
    import plotly.graph_objects as go

    fig = go.Figure([go.Bar(x=df.student, y=100 * df.prior_finetune_accuracy, name="prior fine-tuning",
                            error_y=_error_bars(df, "prior_finetune_accuracy")),
                     go.Bar(x=df.student, y=100 * df.post_finetune_accuracy, name="post fine-tuning",
                            error_y=_error_bars(df, "post_finetune_accuracy"))])
    fig.update_yaxes(title_text="test accuracy [%]")
    fig.update_layout(title=_title("Table III", dataset, df, "fine-tuning after KD"), template="plotly_white",
                      barmode="group")
    return fig
