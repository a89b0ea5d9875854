"""Plots and the HTML report of a results folder (the edge: reads tables, writes files)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import pandas as pd

from edgesim.report import html as report
from edgesim.report import plots
from profilers.errors import EdgesimError
from simulator.devices import reference_model, resolve_devices
from simulator.scenario import Scenario


def policy_models(scenario: Scenario) -> list[str]:
    """The models the scenario's policies run, in order, without repeats."""
    models: list[str] = []
    for spec in scenario.policies:
        models += [m for m in spec.models(scenario.model) if m and m not in models]
    return models


def write_plots_and_report(folder: Path, scenario: Scenario, summary: pd.DataFrame, manifest: dict,
                           png: Optional[str] = None) -> list[str]:
    """Write plots (HTML, and PNG where Chromium works) and report.html into folder; returns warnings.

    png: "auto" | "yes" | "no", default the scenario's outputs.png. A failed PNG export comes back once, in the
    returned warnings for the caller to print, not also as a Python warning.
    """

    frames_path = folder / "frames.parquet"
    frames = pd.read_parquet(frames_path) if frames_path.exists() else None
    devices = resolve_devices(scenario)
    profiles = []
    for model_id in policy_models(scenario):
        try:
            profiles.append(reference_model(devices, model_id))
        except EdgesimError:  # inline-only scenarios have no per-layer profile to draw
            continue
    figs = plots.build_figures(summary, frames, profiles)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PNG export failed", category=RuntimeWarning)
        written = report.write_figures(figs, folder / "plots", png or scenario.outputs.png)
    report.write_report(folder, figs, summary, manifest, title=f"edgesim: {scenario.name}")
    return list(getattr(written, "warnings", []))
