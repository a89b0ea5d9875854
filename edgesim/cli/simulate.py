"""`edgesim run | validate | plot | compare | list | schema`: thin wrappers over the simulator."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

from edgesim.cli.profile import device_rows, model_rows
from edgesim.report.outputs import write_plots_and_report
from profilers.errors import EdgesimError
from profilers.io import atomic_write_text
from profilers.schema import profile_json_schema
from simulator.devices import resolve_devices
from simulator.link import load_rate_trace
from simulator.policies import make_policy, policy_entries
from simulator.results import finished_points, load_results, python_command, run_to_folder, staging_dir
from simulator.runner import load_dataset
from simulator.scenario import apply_overrides, load_scenario, parse_value, scenario_json_schema, sweep_points


def _console():
    from rich.console import Console

    return Console()


def _progress(description: str):
    """A rich progress bar with a callback(done, total) for the core to report through."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=_console(), transient=False, disable=not sys.stderr.isatty() and os.environ.get("CI") == "true")
    task = bar.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


def _parse_sets(sets: list[str]) -> dict:

    out = {}
    for item in sets:
        if "=" not in item:
            raise EdgesimError(f"--set '{item}': expected PATH=VALUE, e.g. link.data_rate_mbps=20")
        path, value = item.split("=", 1)
        out[path.strip()] = parse_value(value)
    return out


def _sigterm_as_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def run(
    scenario: Optional[Path] = typer.Argument(None, help="scenario YAML (omit with --resume)"),
    out: Optional[Path] = typer.Option(None, "--out", help="results folder (default results/<scenario name>)"),
    set_: list[str] = typer.Option([], "--set", help="override a field: PATH=VALUE (repeatable)"),
    jobs: int = typer.Option(0, "--jobs", "-j", min=0, help="parallel processes for sweep points (default 0: all cores)"),
    engine: Optional[str] = typer.Option(None, "--engine", help="auto | simpy | fast"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="finish an interrupted run into this folder"),
    executor: str = typer.Option("process", "--executor", help="process (this machine) | dask"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address (default: a LocalCluster)"),
) -> None:
    """Simulate a scenario: frames.parquet, summary.csv, plots and report.html in a results folder."""

    jobs = jobs or os.cpu_count() or 1
    if resume is not None:
        target = resume
        sc = load_scenario(staging_dir(resume) / "scenario.yaml") if staging_dir(resume).exists() else None
        if sc is None:
            raise EdgesimError(f"{resume}: no interrupted run to resume (no {staging_dir(resume).name}/ beside it)")
    else:
        if scenario is None:
            raise EdgesimError("give a scenario YAML, or --resume DIR")
        sc = load_scenario(scenario)
        overrides = _parse_sets(set_)
        if engine:
            overrides["engine"] = engine
        sc = apply_overrides(sc, overrides)
        target = out or Path("results") / sc.name
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    bar, update = _progress(f"{sc.name}: sweep points")
    try:
        with bar:
            manifest = run_to_folder(sc, target, jobs=jobs, resume=resume is not None, progress=update,
                                     command=python_command(), scenario_source=str(scenario or resume),
                                     executor=executor, scheduler=scheduler,
                                     write_extras=write_plots_and_report)
    except KeyboardInterrupt:

        kept = len(finished_points(staging_dir(target)))
        print(f"edgesim: interrupted; {kept} finished sweep point(s) kept in {staging_dir(target)}; "
              f"resume with: edgesim run --resume {target}", file=sys.stderr)
        raise typer.Exit(130)
    _print_summary(target)
    for w in manifest.get("warnings", []):
        print(f"edgesim: warning: {w}", file=sys.stderr)
    print(f"results: {target}  (report: {target / 'report.html'}, wall time {manifest['wall_time_s']:.1f} s)")


def _print_summary(folder: Path, metric: str = "delay_mean_s") -> None:

    summary, _, _, _ = load_results(folder)
    _console().print(compare_table(summary, metric))


def compare_table(summary, metric: str):
    """A rich table of policies (columns) by sweep point (rows) for one summary metric."""
    import pandas as pd
    from rich.table import Table

    if metric not in summary.columns:
        raise EdgesimError(f"no column '{metric}' in summary.csv; known: {', '.join(summary.columns)}")
    keys = [c for c in summary.columns if c.startswith("sweep.") and not c.endswith("data_rate_mbps")]
    index = ["mobile", "edge", "data_rate_mbps"] + [k for k in keys if k not in ("sweep.mobiles.0.device", "sweep.edge.device")]
    policies = list(dict.fromkeys(summary["policy"]))
    unit = " [ms]" if metric.endswith("_s") else ""
    table = Table(title=f"{metric}{unit} by policy (simulated; summary.csv)")
    for col in index:
        table.add_column(col.removeprefix("sweep."))
    for p in policies:
        table.add_column(p, justify="right")
    for _, group in summary.groupby("point", sort=True):
        first = group.iloc[0]
        cells = [("" if pd.isna(first[c]) else (f"{first[c]:g}" if isinstance(first[c], float) else str(first[c])))
                 for c in index]
        values = dict(zip(group["policy"], group[metric]))
        for p in policies:
            v = values.get(p)
            if v is None or pd.isna(v):
                cells.append("-")
            elif metric.endswith("_s"):
                cells.append(f"{v * 1e3:.4g}")
            else:
                cells.append(f"{v:.4g}")
        table.add_row(*cells)
    return table


def validate(scenario: Path = typer.Argument(..., help="scenario YAML")) -> None:
    """Check a scenario: fields, devices, models, split points, policies and traces, without simulating."""

    sc = load_scenario(scenario)
    points = sweep_points(sc)
    for k, ov in enumerate(points):
        scp = apply_overrides(sc, ov, source=f"{scenario} (sweep point {k})")
        devices = resolve_devices(scp)
        dataset = load_dataset(scp.workload.dataset, scp.workload.dataset_split)
        if scp.link.trace:

            load_rate_trace(scp.link.trace)
        for spec in scp.policies:
            pol = make_policy(spec, scp.model, devices, dataset)
            for g in scp.mobiles:
                pol.routes(devices[g.device], devices[scp.edge.device])
    print(f"{scenario}: valid ({len(points)} sweep points x {len(sc.policies)} policies x {sc.replications} replications)")


def plot(results: Path = typer.Argument(..., help="results folder"),
         png: str = typer.Option("auto", "--png", help="auto | yes | no")) -> None:
    """Regenerate the plots and report.html of a results folder from its summary and frames."""

    summary, _, manifest, sc = load_results(results)
    warnings = write_plots_and_report(results, sc, summary, manifest, png=png)
    for w in warnings:
        print(f"edgesim: warning: {w}", file=sys.stderr)
    print(f"plots: {results / 'plots'}  report: {results / 'report.html'}")


def compare(results: Path = typer.Argument(..., help="results folder"),
            metric: str = typer.Option("delay_mean_s", "--metric", help="any summary.csv column")) -> None:
    """A table of policies by data rate (and device combination) for one metric."""
    _print_summary(results, metric)


def list_(what: str = typer.Argument(..., help="devices | models | policies")) -> None:
    """List catalog devices, registered models or policies."""
    from rich.table import Table

    if what == "devices":

        rows = device_rows()
    elif what == "models":

        rows = model_rows()
    elif what == "policies":

        rows = [{"policy": e.name, "what": e.summary, "source": e.source} for e in policy_entries().values()]
    else:
        raise EdgesimError(f"unknown list '{what}'; known: devices, models, policies")
    table = Table(title=what)
    for col in rows[0] if rows else []:
        table.add_column(col)
    for row in rows:
        table.add_row(*[str(v) for v in row.values()])
    _console().print(table)


def schema(what: str = typer.Argument(..., help="scenario | profile"),
           out: Optional[Path] = typer.Option(None, "--out", help="write to this file instead of stdout")) -> None:
    """Print (or write) the JSON Schema of scenario YAMLs or device profiles, for editors."""

    if what == "scenario":

        data = scenario_json_schema()
    elif what == "profile":

        data = profile_json_schema()
    else:
        raise EdgesimError(f"unknown schema '{what}'; known: profile, scenario")
    text = json.dumps(data, indent=1) + "\n"
    if out:
        atomic_write_text(out, text)
    else:
        sys.stdout.write(text)


