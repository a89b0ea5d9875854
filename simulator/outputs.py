"""Plots and the HTML report of a results folder (the edge: reads tables, writes files)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

from simulator.scenario import Scenario


def build_figures(scenario: Scenario, summary: pd.DataFrame, frames: Optional[pd.DataFrame]) -> dict:
    """Every figure that applies to this run: gains, delay components, CDFs, energy, per-layer profile."""
    from simulator import plots
    from simulator.devices import resolve_devices, reference_model

    figs = dict(plots.gain_figures(summary))
    if frames is not None and len(frames):
        figs["delay_components"] = plots.delay_components_figure(summary, frames)
        figs["delay_cdf"] = plots.delay_cdf_figure(frames)
    figs["energy"] = plots.energy_figure(summary)
    for name in ("throughput_drop_figure", "accuracy_figure"):
        fn = getattr(plots, name, None)
        if fn is not None:
            fig = fn(summary)
            if fig is not None:
                figs[name.removesuffix("_figure")] = fig
    devices = resolve_devices(scenario)
    models = []
    for spec in scenario.policies:
        mid = spec.model or (f"{scenario.model}-mimic" if spec.name == "mimic" else scenario.model)
        if spec.edge_model:
            mid = spec.edge_model
        if mid not in models:
            models.append(mid)
    for mid in models:
        try:
            figs[f"layers_{mid}"] = plots.layer_profile_figure(reference_model(devices, mid))
        except Exception:  # a model without split points (e.g. inline devices only) has no layer figure
            continue
    return {k: v for k, v in figs.items() if v is not None}


def write_plots_and_report(folder: Path, scenario: Scenario, summary: pd.DataFrame, manifest: dict,
                           png: Optional[str] = None) -> list[str]:
    """Write plots (HTML, and PNG where chromium works) and report.html into folder; returns warnings."""
    from simulator import report

    frames_path = folder / "frames.parquet"
    frames = pd.read_parquet(frames_path) if frames_path.exists() else None
    figs = build_figures(scenario, summary, frames)
    written = report.write_figures(figs, folder / "plots", png or scenario.outputs.png)
    warnings = []
    if isinstance(written, tuple):
        written, warnings = written
    report.write_report(folder, figs, summary, manifest, title=f"edgesim: {scenario.name}")
    return list(warnings)
