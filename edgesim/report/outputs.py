"""Plots and the HTML report of a results folder (the edge: reads tables, writes files)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import pandas as pd

from edgesim.report.framestats import read_frame_stats
from profilers.errors import EdgesimError
from simulator.assemble import mobile_links
from simulator.devices import fidelity_notes, reference_model
from simulator.resolve import scenario_devices
from simulator.scenario import Scenario, apply_overrides, sweep_points
from simulator.sense import mbps_text


def policy_models(scenario: Scenario) -> list[str]:
    """The models the scenario's policies run, in order, without repeats."""
    models: list[str] = []
    for spec in scenario.policies:
        models += [m for m in spec.models(scenario.model) if m and m not in models]
    return models


def traced_uplinks(scenario: Scenario) -> dict:
    """Each mobile device's uplink (sweep point 0) when any of them follows a trace; {} otherwise."""
    if not (scenario.link.trace or any(g.link and g.link.trace for g in scenario.mobiles)):
        return {}
    sc = apply_overrides(scenario, sweep_points(scenario)[0])
    uplinks, _ = mobile_links(sc, sc.link.rate_trace())
    names = [f"{g.device}#{k}" if g.count > 1 else g.device for g in sc.mobiles for k in range(g.count)]
    return dict(zip(names, uplinks))


def trace_labels(scenario: Scenario) -> dict[str, str]:
    """{'trace': 'trace NAME, mean X Mbit/s'} where the uplink follows a trace (what a figure shows where a rate
    would be); several traces are named together; {} without one."""
    links = [scenario.link] + [g.link for g in scenario.mobiles if g.link] + [e.link for e in scenario.edges if e.link]
    named = []
    for link in links:
        if link.trace and Path(link.trace).is_file():
            rate = link.rate_trace()
            mean = float(rate.bits_until(rate.end_s) / rate.end_s / 1e6) if rate.end_s > 0 else float("nan")
            named.append(f"{Path(link.trace).stem}, mean {mbps_text(mean)} Mbit/s")
    return {"trace": "trace " + "; ".join(dict.fromkeys(named))} if named else {}


def write_plots_and_report(folder: Path, scenario: Scenario, summary: pd.DataFrame, manifest: dict,
                           png: Optional[str] = None, formats: Optional[tuple[str, ...]] = None,
                           style: str = "default") -> list[str]:
    """Write plots (HTML, and PNG where Chromium works; or each of `formats`) and report.html into folder; returns
    warnings.

    png: "auto" | "yes" | "no", default the scenario's outputs.png. A failed PNG export comes back once, in the
    returned warnings for the caller to print, not also as a Python warning. style "paper": single-column figures
    in a greyscale-safe palette. The frames are read row group by row group (framestats): never whole.
    """
    from edgesim.report import html as report  # plotly: imported where figures are drawn, not by a run without plots
    from edgesim.report import plots

    frames_path = folder / "frames.parquet"
    components = tuple(c for c, _ in plots.TIER_COMPONENTS)
    stats = read_frame_stats(frames_path, components) if frames_path.exists() else None
    devices = scenario_devices(scenario)  # resolved once: the layer figures' profiles and the fidelity notes
    profiles = []
    for model_id in policy_models(scenario):
        try:
            profiles.append(reference_model(devices, model_id))
        except EdgesimError:  # inline-only scenarios have no per-layer profile to draw
            continue
    figs = plots.build_figures(summary, stats, profiles, traced_uplinks=traced_uplinks(scenario),
                               labels=trace_labels(scenario), paper=style == "paper")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".* export failed", category=RuntimeWarning)
        written = report.write_figures(figs, folder / "plots", png or scenario.outputs.png, formats)
    report.write_report(folder, figs, summary, {**manifest, "device_fidelity": fidelity_notes(devices)},
                        title=f"edgesim: {scenario.name}")
    return list(getattr(written, "warnings", []))
