"""`edgesim dmd ...`: DMD data generation, switcher training, evaluation and the embedded demo (000)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional

import pandas as pd
import typer

from edgesim.cli.console import progress_steps
from edgesim.studies.dmd import adapters, deferral, digits
from edgesim.studies.dmd.digits import TASKS
from edgesim.studies.dmd.generate import generate
from edgesim.studies.dmd.pipeline import add_switcher_score, evaluate, fit_switcher, run_demo, write_evaluation
from edgesim.studies.dmd.records import read_trace_parquet, write_dmd_json, write_trace_parquet
from edgesim.studies.dmd.switcher import load_switcher, save_switcher
from edgesim.studies.dmd.yolo import load_fall_samples
from profilers.errors import EdgesimError
from profilers.models import build

dmd_app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="Dual-Model Distillation (seed paper 000): agreement data, switcher, deferral curves, Table 1.")


def _adapter(spec: str, checkpoint: Optional[str], hidden_layer: Optional[str], question: str):
    """An adapter from a registry model id (with an optional safetensors checkpoint) or a local HF checkpoint folder."""

    path = Path(spec)
    if path.is_dir():
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise EdgesimError(f"model folder {path}: no config.json (expected a save_pretrained checkpoint)")
        try:
            model_type = json.loads(cfg_file.read_text(encoding="utf-8")).get("model_type", "")
        except json.JSONDecodeError as exc:
            raise EdgesimError(f"{cfg_file}: not valid JSON at line {exc.lineno}") from None
        if model_type == "vilt":
            return adapters.ViltYesNoAdapter.from_pretrained(str(path), question=question)
        if model_type == "llava_next_video":
            return adapters.LlavaNextVideoYesNoAdapter.from_pretrained(str(path), question=question)
        raise EdgesimError(f"model folder {path}: model_type '{model_type}' not supported; known: vilt, llava_next_video")
    import torch.nn as nn

    sm = build(spec, checkpoint=checkpoint)
    net = nn.Sequential(*sm.blocks)
    c, h, w = sm.input_shape
    layer = hidden_layer or (str(len(sm.blocks) - 2) if len(sm.blocks) >= 2 else None)
    transform = lambda batch: adapters.preprocess_images(batch, (h, w), [0.0] * c, [1.0] * c, channels=c)  # noqa: E731
    return adapters.TorchClassifierAdapter(net, layer, transform)


def _samples(dataset: str, task: str, seed: int, fall_class: Optional[str], missing_label: str):
    """Samples from 'digits' (the DMD pool of sklearn's digits) or a YOLO fall-detection folder."""
    if dataset == "digits":
        return digits.dmd_samples(digits.demo_data(task, seed=seed))
    if not Path(dataset).is_dir():
        raise EdgesimError(f"dataset '{dataset}': expected 'digits' or a YOLO export folder")
    return load_fall_samples(dataset, fall_class, missing_label)


@dmd_app.command("generate")
def generate_cmd(
    dataset: str = typer.Argument(..., help="'digits' or a YOLO v7 export folder (images/ labels/, or train|valid|test/)"),
    edge: str = typer.Option(..., help="edge model: registry id (e.g. dmd-digits-edge) or a local ViLT checkpoint folder"),
    cloud: str = typer.Option(..., help="cloud model: registry id or a local ViLT / LLaVA-NeXT-Video checkpoint folder"),
    out: Path = typer.Option(Path("dmd.parquet"), help="Parquet trace to write"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the paper's JSON (000 A.2)"),
    edge_checkpoint: Optional[str] = typer.Option(None, help="safetensors weights for a registry edge model"),
    cloud_checkpoint: Optional[str] = typer.Option(None, help="safetensors weights for a registry cloud model"),
    hidden_layer: Optional[str] = typer.Option(None, help="edge module name whose output is the hidden feature"),
    question: str = typer.Option("Is the person in the image falling?", help="yes/no prompt for VQA models"),
    task: str = typer.Option("binary", help="digits task: binary (8 or 9) or multiclass"),
    fall_class: Optional[str] = typer.Option(None, help="YOLO fall class id or name (default: the data.yaml name with 'fall')"),
    missing_label: str = typer.Option("negative", help="images without a label file: negative or skip"),
    test_fraction: float = typer.Option(0.3, help="stratified test split fraction"),
    batch_size: int = typer.Option(64, min=1),
    seed: int = typer.Option(0),
) -> None:
    """Run both models on every sample and record hidden features, predictions and agreement (000 section 2, A.2)."""
    samples = _samples(dataset, task, seed, fall_class, missing_label)
    e = _adapter(edge, edge_checkpoint, hidden_layer, question)
    c = _adapter(cloud, cloud_checkpoint, None, question)
    with progress_steps() as steps:
        trace = generate(samples, e, c, hidden_layer=hidden_layer, batch_size=batch_size, test_fraction=test_fraction,
                         seed=seed, progress=steps("DMD generate: samples"))
    write_trace_parquet(trace, out)
    if json_out:
        write_dmd_json(trace, json_out)
    typer.echo(f"{len(trace)} samples, agreement {100 * trace['agree'].mean():.1f}% -> {out}")


@dmd_app.command("train")
def train_cmd(
    trace_path: Path = typer.Argument(..., help="DMD Parquet trace from `dmd generate`"),
    out: Path = typer.Option(Path("switcher"), help="folder for switcher.safetensors and switcher.json"),
    epochs: int = typer.Option(100, min=1),
    patience: int = typer.Option(10, min=1),
    strategy: str = typer.Option("buckets", help="operating point: buckets (000 A.4), fraction or threshold"),
    offload_fraction: Optional[float] = typer.Option(None, help="target fraction deferred (strategy fraction)"),
    threshold: Optional[float] = typer.Option(None, help="explicit agreement-probability threshold (strategy threshold)"),
    seed: int = typer.Option(0),
) -> None:
    """Train the switcher on the train split (000 A.3) and choose its threshold on train (000 A.4)."""
    trace = read_trace_parquet(trace_path)
    with progress_steps() as steps:
        model, cfg, result = fit_switcher(trace, epochs, patience, seed,
                                          progress=steps("switcher training: batches (early stopping may end it)"))
    scored = add_switcher_score(trace, model, cfg)
    train = scored[scored["split"] == "train"].reset_index(drop=True) if "split" in scored.columns else scored
    info = deferral.choose_threshold(train, "switcher", strategy, offload_fraction, threshold)
    cfg.threshold, cfg.threshold_info = info.threshold, info.to_dict()
    save_switcher(model, cfg, out / "switcher.safetensors", out / "switcher.json")
    typer.echo(f"switcher: best epoch {result.best_epoch}/{result.epochs_run}, val acc {100 * cfg.metrics['val_accuracy']:.1f}%; "
               f"defer {100 * info.offload_fraction:.0f}% on train (score < {info.threshold:.4f}) -> {out}")


@dmd_app.command("evaluate")
def evaluate_cmd(
    trace_path: Path = typer.Argument(..., help="DMD Parquet trace"),
    switcher: Path = typer.Option(Path("switcher"), help="folder with switcher.safetensors and switcher.json"),
    out: Path = typer.Option(Path("dmd-eval"), help="output folder"),
    png: bool = typer.Option(True, help="also write PNG figures (needs kaleido + Chromium; a warning if not)"),
    seed: int = typer.Option(0),
) -> None:
    """Score the trace with the switcher, then deferral curves (train/test), curve areas and Table 1 rows (000 A.4)."""
    trace = read_trace_parquet(trace_path)
    model, cfg = load_switcher(switcher / "switcher.safetensors", switcher / "switcher.json")
    scored = add_switcher_score(trace, model, cfg)
    if cfg.threshold_info:
        info = deferral.ThresholdInfo.from_dict(cfg.threshold_info)
    else:
        train = scored[scored["split"] == "train"].reset_index(drop=True)
        info = deferral.choose_threshold(train, "switcher", "buckets")
    ev = evaluate(scored, info, seed=seed)
    write_trace_parquet(scored, out / "dmd_scored.parquet")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_evaluation(ev, out, png="auto" if png else "no",
                         provenance={"trace": str(trace_path), "switcher": str(switcher)})
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
    typer.echo(ev.table1[["approach", "f1_pct", "accuracy_pct", "large_model_pct"]].to_string(index=False, float_format=lambda v: f"{v:.1f}"))


@dmd_app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("results/dmd-digits"), help="output folder"),
    seed: int = typer.Option(0),
    task: str = typer.Option("binary", help="binary ('is it an 8 or a 9?', positive-class F1) or multiclass (macro F1)"),
    fast: bool = typer.Option(False, help="fewer epochs and 400 DMD samples (tests)"),
    png: bool = typer.Option(True, help="also write PNG figures (needs kaleido + Chromium; a warning if not)"),
    mobile: str = typer.Option("host-1thread", help=(
        "mobile device running the small model in the replay: host-1thread / host-2threads (measured here) or a "
        "device_facts.json entry (rpi3b+, up-board, jetson-tx2, laptop, cloud-gpu; derived from the measurement)")),
    cloud: str = typer.Option("host-2threads", help="device running the large model in the replay (same choices; e.g. cloud-gpu)"),
) -> None:
    """Embedded DMD demo on scikit-learn's bundled digits: models, DMD data, switcher, curves, Table 1 with simulated time/energy, report."""
    if task not in TASKS:
        raise EdgesimError(f"--task '{task}': expected one of {', '.join(TASKS)}")
    with progress_steps() as steps, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_demo(out, seed=seed, fast=fast, task=task, png="auto" if png else "no", mobile=mobile,
                           cloud_device=cloud, steps=steps)
    for w in caught:
        if "PNG" in str(w.message):
            typer.echo(f"warning: {w.message}", err=True)
    table = pd.DataFrame(summary["table1"])
    typer.echo(f"Table 1 of 000 on the digits test split; F1/accuracy/% large from the trace, time and energy simulated "
               f"({summary['replay_devices']['mobile']} -> WAN -> {summary['replay_devices']['cloud']}; energy: "
               f"{table['energy_method'].iloc[0]}):")
    cols = ["approach", "f1_pct", "accuracy_pct", "large_model_pct", "sim_time_s", "sim_delay_mean_ms", "sim_energy_kj"]
    typer.echo(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    typer.echo(f"report: {out / 'report.html'}")
