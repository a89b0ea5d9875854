"""The DMD demo over several seeds (issue: one seed cannot carry a claim): each seed's run in seed-<k>/, then 000
Table 1, the RouteLLM metrics and the agreement diagnostics as mean +/- Student-t interval over the seeds.

Each seed changes the pretrain / DMD split, the train / test split, the models' and the switcher's
initialisation and batch order. Per seed, the paired bootstrap of switcher - uncertainty F1 is kept beside the
t-interval of that difference over seeds; the reliability diagram pools every seed's test samples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from edgesim.report.html import PngMode, write_figures
from edgesim.studies.dmd.pipeline import run_demo
from edgesim.studies.dmd.plots import mean_curves_figure, reliability_figure
from edgesim.studies.stats import expected_calibration_error, reliability_bins, summarise
from profilers.io import atomic_write_text
from profilers.progress import Steps, silent_steps

TABLE1_METRICS = ("f1_pct", "accuracy_pct", "large_model_pct", "sim_time_s", "sim_delay_mean_ms", "sim_energy_kj")
ROUTING_METRICS = ("auc", "apgr", "cpt50", "cpt80")
DIAGNOSTICS = ("auroc_switcher", "auroc_confidence", "ece_switcher", "f1_diff_pct", "f1_diff_lo_pct",
               "f1_diff_hi_pct", "aurc_switcher", "aurc_uncertainty", "aurc_random", "aurc_oracle", "agree_rate")


BASELINE_METRICS = ("auc_f1", "apgr", "cpt50", "cpt80", "auroc_agree", "f1_pct", "large_model_pct")


def aggregate(summaries: Sequence[dict]) -> dict[str, pd.DataFrame]:
    """Per-seed rows and mean +/- t-interval tables from run_demo summaries (table1, routing, diagnostics, baselines)."""
    base = pd.DataFrame([{**r, "seed": s["seed"]} for s in summaries for r in s.get("baselines", [])])
    t1 = pd.DataFrame([{**r, "seed": s["seed"]} for s in summaries for r in s["table1"]])
    routing = pd.DataFrame([{**r, "seed": s["seed"]} for s in summaries for r in s["routing"]])
    diag = pd.DataFrame([{**s["diagnostics"], "seed": s["seed"]} for s in summaries])
    diag["all"] = "test"
    return {
        "table1_runs": t1, "routing_runs": routing, "diagnostics_runs": diag,
        "table1": summarise(t1, ["approach", "method"], TABLE1_METRICS),
        "routing": summarise(routing, ["split", "metric", "method"], ROUTING_METRICS),
        "diagnostics": summarise(diag, ["all"], DIAGNOSTICS).drop(columns="all"),
        "baselines_runs": base,
        "baselines": summarise(base, ["method"], BASELINE_METRICS) if len(base) else base,
    }


def run_demo_seeds(out: str | Path, seeds: Sequence[int], fast: bool = False, task: str = "binary",
                   png: PngMode = "auto", steps: Steps = silent_steps, mobile: str = "host-1thread",
                   cloud_device: str = "host-2threads", data_name: str = "digits") -> dict:
    """run_demo per seed into out/seed-<k>/, then the aggregate tables (CSV) and a pooled reliability diagram."""
    out = Path(out)
    summaries = []
    for i, seed in enumerate(seeds):
        numbered = (lambda label, i=i: steps(f"[seed {i + 1}/{len(seeds)}] {label}"))
        summaries.append(run_demo(out / f"seed-{seed}", seed=seed, fast=fast, task=task, png=png, steps=numbered,
                                  mobile=mobile, cloud_device=cloud_device, data_name=data_name))
    tables = aggregate(summaries)
    for name, df in tables.items():
        atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))
    curves = pd.concat([pd.read_csv(out / f"seed-{s}" / "curves.csv").assign(seed=s) for s in seeds], ignore_index=True)
    mean = summarise(curves, ["split", "method", "offload_fraction"], ["f1", "accuracy"])
    atomic_write_text(out / "curves_mean.csv", mean.to_csv(index=False))
    tables["curves_mean"] = mean
    test_mean = mean[(mean["split"] == "test") & ~mean["method"].isin(["random", "random-mean"])]
    write_figures({"curves_mean_test": mean_curves_figure(
        test_mean, f"Deferral curves on test, mean and 95% t-interval over {len(seeds)} seeds")}, out, png)
    pooled = pd.concat([pd.read_parquet(out / f"seed-{s}" / "dmd.parquet", columns=["split", "agree", "switcher_score"])
                        for s in seeds], ignore_index=True)
    pooled = pooled[pooled["split"] == "test"]
    bins = reliability_bins(pooled["agree"], pooled["switcher_score"])
    atomic_write_text(out / "reliability_pooled.csv", bins.to_csv(index=False))
    ece = expected_calibration_error(pooled["agree"], pooled["switcher_score"])
    write_figures({"reliability_pooled": reliability_figure(
        bins, f"Switcher calibration, test samples of {len(seeds)} seeds pooled (ECE {ece:.3f})")}, out, png)
    atomic_write_text(out / "seeds.json", json.dumps({"seeds": list(seeds), "data": data_name, "task": task,
                                                      "fast": fast, "pooled_ece": ece}, indent=2) + "\n")
    tables["pooled_ece"] = ece
    return tables
