"""Distillation runs that produce records and files: `distill kd`, `distill head` and profiling the result.

Records are plain dicts (one row of a table each); files are written atomically (profilers/io.py).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional

from edgesim.studies.distill.data import load_data
from edgesim.studies.distill.hnd import train_head
from edgesim.studies.distill.kd import accuracy, count_flops, count_params, distill, freeze, train_classifier
from edgesim.studies.training import save_state
from profilers.errors import EdgesimError
from profilers.io import atomic_write_bytes, atomic_write_text
from profilers.measure import INT8_HEADER_BYTES, MeasureOptions
from profilers.models import build
from profilers.models.mimic import _TEACHERS, build_student_head, teacher_split
from profilers.models.nets import make_net
from profilers.models.students import (
    MIMIC_ID,
    TEACHER_ID,
    build_generic_head,
    build_teacher_net,
    make_mimic,
    split_teacher,
)
from profilers.profiling import measure_into
from profilers.progress import Progress, Steps, silent, silent_steps


def write_json(obj, path: Path) -> Path:
    """Pretty JSON, atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=1, default=str) + "\n")


def write_csv(df, path: Path) -> Path:
    """A DataFrame as CSV, atomically."""
    return atomic_write_text(path, df.to_csv(index=False))


# ----------------------------------------------------------------------------- KD (one pair)


def run_kd(teacher: str, student: str, dataset: str = "digits", side_px: int = 32, teacher_epochs: int = 3,
           epochs: int = 3, lr: float = 3e-3, temperature: float = 4.0, alpha: float = 0.9, seed: int = 0,
           baseline: bool = True, limit: Optional[int] = None, steps: Steps = silent_steps) -> dict:
    """Train a teacher on hard labels, distil it into student (003 section III), and the scratch baseline."""
    import torch

    data = load_data(dataset, side_px, 3, seed, limit)
    torch.manual_seed(seed)
    t_net = make_net(teacher, data.num_classes, side_px)
    t_res = train_classifier(t_net, data, teacher_epochs, lr, seed=seed, progress=steps(f"teacher {teacher}"))
    torch.manual_seed(seed + 1)
    s_net = make_net(student, data.num_classes, side_px)
    torch.manual_seed(seed + 1)
    b_net = make_net(student, data.num_classes, side_px) if baseline else None
    rec = distill(t_net, s_net, data, teacher, student, t_res.test_accuracy, epochs, lr, temperature=temperature,
                  alpha=alpha, seed=seed, baseline_student=b_net, steps=steps)
    row = rec.row()
    row.update(teacher_train_time_s=t_res.train_time_s, teacher_epochs=teacher_epochs, dataset=data.describe())
    return row


# ----------------------------------------------------------------------------- head network distillation


def _numel_bytes(numel: int) -> dict:
    """Bytes of a tensor of numel values sent as float32 or as per-tensor int8 (profilers.measure's count)."""
    return {"float32": 4 * numel, "int8": numel + INT8_HEADER_BYTES}


def run_head(teacher: str = "resnet18", split: str = "layer2", dataset: str = "digits", side_px: int = 32,
             teacher_epochs: int = 3, epochs: int = 10, lr: float = 1e-3, teacher_lr: float = 1e-3,
             bottleneck_channels: Optional[int] = None, teacher_checkpoint: Optional[str] = None,
             seed: int = 0, limit: Optional[int] = None, out: Optional[Path] = None,
             steps: Steps = silent_steps) -> dict:
    """002 section 3 end to end: teacher, student head by eq. (1), mimic = student head + teacher tail.

    teacher 'resnet18' trains a 10-class ResNet-18 on the data first (unless teacher_checkpoint); a mimic id
    of profilers/models/mimic.py (e.g. densenet169-mimic) uses its registered teacher (random init unless
    teacher_checkpoint: a 1000-class ImageNet network, so its accuracy on digits is only a code-path check).
    """
    import torch

    t0 = time.perf_counter()
    if teacher == "resnet18" and split not in ("layer1", "layer2", "layer3", "layer4"):
        raise EdgesimError(f"unknown split point '{split}' for the teacher; known: layer1, layer2, layer3, layer4")
    data = load_data(dataset, side_px, 3, seed, limit)
    torch.manual_seed(seed)
    teacher_time = 0.0
    if teacher == "resnet18":
        t_net = build_teacher_net(teacher_checkpoint)
        if data.num_classes != 10:
            t_net = make_net("resnet18", data.num_classes, side_px)
        if not teacher_checkpoint:
            res = train_classifier(t_net, data, teacher_epochs, teacher_lr, seed=seed,
                                   progress=steps(f"teacher {teacher}"))
            teacher_time = res.train_time_s
        freeze(t_net)
        teacher_acc = accuracy(t_net, data.test)
        head, tail = split_teacher(t_net, split)
        with torch.no_grad():
            t_shape = tuple(head(data.test.x[:1]).shape[1:])
        student = build_generic_head(data.input_shape, t_shape, bottleneck_channels)
        model_id, teacher_id = (MIMIC_ID, TEACHER_ID) if dataset == "digits" else (f"resnet18-mimic-{Path(dataset).name}", f"resnet18-{Path(dataset).name}")
        whole_teacher = t_net
    elif teacher in _TEACHERS:
        teacher_id, split = teacher_split(teacher)
        sm = build(teacher_id, input_size=side_px, checkpoint=teacher_checkpoint)
        k = dict(sm.split_points)[split]
        head, tail = torch.nn.Sequential(*sm.blocks[:k]), torch.nn.Sequential(*sm.blocks[k:])
        freeze(head), freeze(tail)
        whole_teacher = torch.nn.Sequential(head, tail)
        teacher_acc = accuracy(whole_teacher, data.test)
        student = build_student_head(teacher, bottleneck_channels or 3)
        model_id = teacher
        with torch.no_grad():
            t_shape = tuple(head(data.test.x[:1]).shape[1:])
            s_shape = tuple(student.eval()(data.test.x[:1]).shape[1:])
        if s_shape != t_shape:
            raise EdgesimError(f"{teacher}: student head gives {s_shape} but the teacher's {split} gives {t_shape} "
                               f"at {side_px}x{side_px}; try --input-size 64 or 224")
    else:
        raise EdgesimError(f"unknown head-distillation teacher '{teacher}'; known: resnet18, {', '.join(sorted(_TEACHERS))}")

    hnd = train_head(student, head, data, epochs, lr, seed=seed,
                     progress=steps(f"head network distillation of {teacher} up to {split}"))
    mimic = make_mimic(student, tail)
    freeze(mimic)
    mimic_acc = accuracy(mimic, data.test)
    with torch.no_grad():
        z = student.encode(data.test.x[:1])
    in_numel = math.prod(data.input_shape)
    z_numel = z.numel()
    t_out_numel = math.prod(t_shape)
    mobile = torch.nn.Sequential(student.encoder, student.bottleneck)
    head_flops = count_flops(head, data.input_shape)
    mobile_flops = count_flops(mobile, data.input_shape)
    student_flops = count_flops(student, data.input_shape)
    record = {
        "model_id": model_id, "teacher_id": teacher_id, "split_point": split, "dataset": data.describe(),
        "side_px": side_px, "seed": seed, "teacher_epochs": 0 if teacher_checkpoint or teacher != "resnet18" else teacher_epochs,
        "head_epochs": epochs, "head_lr": lr, "optimizer": "Adam", "loss": "SSE, 002 eq. (1)",
        "teacher_accuracy": teacher_acc, "mimic_accuracy": mimic_acc, "accuracy_drop": teacher_acc - mimic_acc,
        "input_shape": list(data.input_shape), "input_numel": in_numel,
        "bottleneck_shape": list(z.shape[1:]), "bottleneck_numel": z_numel,
        "data_size_pct": 100.0 * z_numel / in_numel,
        "input_bytes": {"uint8": in_numel, "float32": 4 * in_numel},
        "bottleneck_bytes": _numel_bytes(z_numel),
        "teacher_split_shape": list(t_shape), "teacher_split_bytes": _numel_bytes(t_out_numel),
        "teacher_head_flops": head_flops, "mobile_head_flops": mobile_flops, "student_head_flops": student_flops,
        "md_complexity_reduction_pct": 100.0 * (1 - mobile_flops / head_flops),
        "student_complexity_reduction_pct": 100.0 * (1 - student_flops / head_flops),
        "teacher_params": count_params(whole_teacher), "student_head_params": count_params(student),
        "teacher_head_params": count_params(head),
        "bottleneck_channels": int(z.shape[1]),
        "initial_val_sse_per_image": hnd.initial_val_sse, "train_sse_per_image": hnd.train_sse,
        "val_sse_per_image": hnd.val_sse, "teacher_train_time_s": teacher_time, "head_train_time_s": hnd.time_s,
        "wall_time_s": None, "flops_method": "torch.utils.flop_counter, batch 1, 2 FLOPs per multiply-accumulate",
    }
    if out is not None:
        out = Path(out)
        save_state(student, out / f"{model_id}-head.safetensors")
        save_state(mimic, out / f"{model_id}.safetensors")
        if teacher == "resnet18":
            save_state(whole_teacher, out / f"{teacher_id}.safetensors")
        record["files"] = {"head": str(out / f"{model_id}-head.safetensors"), "mimic": str(out / f"{model_id}.safetensors"),
                           "teacher": str(out / f"{teacher_id}.safetensors") if teacher == "resnet18" else teacher_checkpoint}
    record["wall_time_s"] = time.perf_counter() - t0
    if out is not None:
        write_json(record, Path(out) / "head.json")
    return record


def head_table_rows(rec: dict) -> list[dict]:
    """002 Table 3 layout: teacher (original) vs mimic with bottleneck, plus 002's DenseNet-201 column (cited)."""
    return [
        {"metric": "Test accuracy [%]", "original": 100 * rec["teacher_accuracy"],
         "mimic_w_b": 100 * rec["mimic_accuracy"], "002_table3_dn201": "84.1 (-1.1)"},
        {"metric": "Data size [% of input values]", "original": 100.0, "mimic_w_b": rec["data_size_pct"],
         "002_table3_dn201": "1.68"},
        {"metric": "Transferred bytes float32", "original": rec["input_bytes"]["float32"],
         "mimic_w_b": rec["bottleneck_bytes"]["float32"], "002_table3_dn201": ""},
        {"metric": "Transferred bytes int8", "original": rec["input_bytes"]["uint8"],
         "mimic_w_b": rec["bottleneck_bytes"]["int8"], "002_table3_dn201": ""},
        {"metric": "MD complexity [FLOPs]", "original": rec["teacher_head_flops"],
         "mimic_w_b": rec["mobile_head_flops"], "002_table3_dn201": "1.22e8 (MACs+)"},
        {"metric": "MD complexity reduction [%]", "original": 0.0, "mimic_w_b": rec["md_complexity_reduction_pct"],
         "002_table3_dn201": "94.2"},
        {"metric": "Whole student head [FLOPs]", "original": rec["teacher_head_flops"],
         "mimic_w_b": rec["student_head_flops"], "002_table3_dn201": ""},
    ]


# ----------------------------------------------------------------------------- into a device profile


def profile_into(model_id: str, device_name: str, profile_out: Path, accuracy: Optional[float],
                 accuracy_source: str, kind: str = "edge", threads: Optional[int] = None, repeats: int = 10,
                 warmup: int = 2, progress: Progress = silent, **build_kwargs):
    """Measure a registered model (profilers/measure.py) and merge it, with its accuracy, into a device profile."""
    device = measure_into([build(model_id, **build_kwargs)], device_name, MeasureOptions(repeats=repeats, warmup=warmup,
                          threads=threads), out=Path(profile_out), kind=kind, codec_repeats=0, progress=progress,
                          finish=lambda mp: mp.model_copy(update={"accuracy": accuracy, "accuracy_source": accuracy_source}))
    return next(iter(device.models.values()))


def accuracy_source(rec: dict, which: str) -> str:
    """Where a profile's accuracy came from (STYLE rule 12)."""
    when = time.strftime("%Y-%m-%d")
    if which == "teacher":
        how = f"trained {rec['teacher_epochs']} epochs (Adam, cross-entropy)"
    else:
        how = (f"head network distillation (002 eq. (1), Adam, {rec['head_epochs']} epochs) of {rec['teacher_id']} "
               f"up to {rec['split_point']}, then its tail")
    return f"measured {when}: top-1 on the test split of {rec['dataset']}; {how}; `edgesim distill head`"


def export_head(rec: dict, folder: Path) -> list[Path]:
    """Copy a run's student head weights and its record (without local paths) beside the registered model.

    The registered resnet18-mimic-digits reads its split point and bottleneck channels from the record and its
    student head from the weights (small: about 0.45 MB); the teacher tail is not exported (about 43 MB).
    """
    folder = Path(folder)
    files = rec.get("files", {})
    head = Path(files.get("head", ""))
    if not head.is_file():
        raise EdgesimError(f"run record has no student head weights at {head} (run `edgesim distill head` first)")
    record = {k: v for k, v in rec.items() if k != "files"}
    return [atomic_write_bytes(folder / f"{rec['model_id']}-head.safetensors", head.read_bytes()),
            write_json(record, folder / f"{rec['model_id']}.json")]
