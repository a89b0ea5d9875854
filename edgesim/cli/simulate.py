"""`edgesim run | validate | plot | compare | list | schema`: thin wrappers over the simulator."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgesim.cli.console import console, png_mode, png_option, progress_steps
from profilers.errors import EdgesimError
from profilers.io import atomic_write_text
from simulator.limits import CONFIRM_RUNS

# the simulator, the report (plotly) and the profilers (torch) are imported by the commands that use them, so
# that `edgesim -h`, `list` and `validate` start without them (benchmarks.startup)


def _parse_sets(sets: list[str]) -> dict:
    """--set PATH=VALUE items as scenario overrides, each value parsed as YAML would read it."""
    from simulator.scenario import parse_value

    out = {}
    for item in sets:
        if "=" not in item:
            raise EdgesimError(f"--set '{item}': expected PATH=VALUE, e.g. link.data_rate_mbps=20")
        path, value = item.split("=", 1)
        out[path.strip()] = parse_value(value)
    return out


def _with_sets(sc, sets: list[str], engine: Optional[str] = None):
    """The scenario with --set overrides (and --engine) applied; implausible values among them warn."""
    from simulator.scenario import apply_overrides
    from simulator.sense import check_overrides

    overrides = _parse_sets(sets)
    if engine:
        overrides["engine"] = engine
    sc = apply_overrides(sc, overrides)
    check_overrides(sc, overrides)
    return sc


def _sigterm_as_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def capped_jobs(jobs: int, remote: bool = False) -> int:
    """--jobs as run: 0 means every core; more than the cores is capped to them, with a note (a remote Dask
    scheduler's workers are its own: the number is kept)."""
    cores = available_cores()
    if jobs == 0:
        return cores
    if jobs > cores and not remote:
        here = f"{cores} cores" if cores != 1 else "1 core"
        print(f"edgesim: note: --jobs {jobs} is more than the {here} here; using {cores}", file=sys.stderr)
        return cores
    return jobs


def confirm_size(sc, yes: bool, command: str) -> None:
    """A sweep of more than CONFIRM_RUNS runs (points x policies x replications) needs --yes: one line saying so."""
    points = sc.sweep.n_points()
    runs = points * len(sc.policies) * sc.replications
    if runs > CONFIRM_RUNS and not yes:
        raise EdgesimError(f"{sc.name}: {points:,} sweep points x {len(sc.policies)} policies x {sc.replications} "
                           f"replications = {runs:,} runs, more than {CONFIRM_RUNS:,}; add --yes to {command} them all")


def _refuse_changes_on_resume(resume: Path, scenario: Optional[Path], out: Optional[Path], sets: list[str],
                              engine: Optional[str]) -> None:
    """A resumed run is the saved scenario: anything that would change it (or move it) is one line, not ignored."""
    from simulator.results import staging_dir

    given = [name for name, value in (("a scenario argument", scenario), ("--out", out), ("--set", sets),
                                      ("--engine", engine)) if value]
    if given:
        raise EdgesimError(f"--resume {resume}: {' and '.join(given)} cannot be combined with --resume: a resumed run "
                           f"is the saved scenario ({staging_dir(resume) / 'scenario.yaml'}) into the same folder; "
                           f"to change it, start a new run with --out")


def run(
    scenario: Optional[Path] = typer.Argument(None, metavar="SCENARIO", help="scenario YAML (omit with --resume)",
                                              show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR",
                                       help="results folder (default results/<scenario name>)"),
    set_: list[str] = typer.Option([], "--set", metavar="PATH=VALUE", show_default=False,
                                   help="override a field, e.g. link.data_rate_mbps=20 (repeatable)"),
    jobs: int = typer.Option(0, "--jobs", "-j", min=0, metavar="N",
                             help="parallel processes for sweep points (default 0: all cores)"),
    engine: Optional[str] = typer.Option(None, "--engine", metavar="auto|compiled|simpy",
                                         help="simulation engine (default: the scenario's)"),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="DIR",
                                          help="finish an interrupted run into this folder (its saved scenario)"),
    overwrite: bool = typer.Option(False, "--overwrite", metavar="",
                                   help="replace the results already in --out (kept whole until the new run ends)"),
    png: Optional[bool] = png_option(),
    executor: str = typer.Option("process", "--executor", metavar="process|dask",
                                 help="process (this machine) or dask"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", metavar="ADDRESS",
                                            help="Dask scheduler address (default: a LocalCluster)"),
    yes: bool = typer.Option(False, "--yes", "-y", metavar="",
                             help=f"run a sweep of more than {CONFIRM_RUNS:,} runs (points x policies x replications)"),
) -> None:
    """Simulate a scenario: frames.parquet, summary.csv, plots and report.html in a results folder."""
    from edgesim.report.outputs import write_plots_and_report
    from simulator.results import finished_points, python_command, run_to_folder, staging_dir
    from simulator.scenario import load_scenario

    if scheduler is not None and executor != "dask":
        raise EdgesimError(f"--scheduler {scheduler}: a scheduler address is for --executor dask; the "
                           f"'{executor}' executor runs on this machine")
    jobs = capped_jobs(jobs, remote=scheduler is not None)
    if resume is not None:
        _refuse_changes_on_resume(resume, scenario, out, set_, engine)
        target = resume
        sc = load_scenario(staging_dir(resume) / "scenario.yaml") if staging_dir(resume).exists() else None
        if sc is None:
            raise EdgesimError(f"{resume}: no interrupted run to resume (no {staging_dir(resume).name}/ beside it)")
    else:
        if scenario is None:
            raise EdgesimError("give a scenario YAML, or --resume DIR")
        sc = _with_sets(load_scenario(scenario), set_, engine)
        target = out or Path("results") / sc.name
    confirm_size(sc, yes, "run")
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where the shell started us with SIGINT ignored
    try:  # a bar only on a terminal: in a log or pipe rich draws it once, at the end, among the error lines
        with progress_steps(transient=False, disable=not sys.stderr.isatty()) as steps:
            update = steps(f"{sc.name}: sweep points")
            manifest = run_to_folder(sc, target, jobs=jobs, resume=resume is not None, progress=update,
                                     command=python_command(), scenario_source=str(scenario or resume),
                                     executor=executor, scheduler=scheduler, overwrite=overwrite,
                                     write_extras=functools.partial(write_plots_and_report, png=png_mode(png, None)))
    except KeyboardInterrupt:
        kept = len(finished_points(staging_dir(target)))
        again = " --overwrite" if overwrite else ""
        print(f"edgesim: interrupted; {kept} finished sweep point(s) kept in {staging_dir(target)}; "
              f"resume with: edgesim run --resume {target}{again}", file=sys.stderr)
        raise typer.Exit(130)
    _print_summary(target)
    for note in manifest.get("notes", []):
        print(f"edgesim: note: {note}", file=sys.stderr)
    for w in manifest.get("warnings", []):
        print(f"edgesim: warning: {w}", file=sys.stderr)
    print(f"results: {target}  (report: {target / 'report.html'}, wall time {manifest['wall_time_s']:.1f} s)")


#: at most this many overload warnings on the console; the report lists them all
MAX_CONSOLE_WARNINGS = 10


def _print_summary(folder: Path, metric: str = "delay_mean_s") -> None:
    """The metric's table on stdout, then one warning line per overloaded (point, policy) on stderr."""
    from edgesim.report.outputs import trace_labels
    from simulator.devices import fidelity_notes
    from simulator.resolve import scenario_devices
    from simulator.results import load_results
    from simulator.sense import run_messages

    summary, _, _, sc = load_results(folder, frames=False)
    console().print(compare_table(summary, metric, trace_labels(sc).get("trace")))
    notes, lines = run_messages(sc, summary, fidelity_notes(scenario_devices(sc)))
    for note in notes:
        print(f"edgesim: note: {note}", file=sys.stderr)
    for w in lines[:MAX_CONSOLE_WARNINGS]:
        print(f"edgesim: warning: {w}", file=sys.stderr)
    if len(lines) > MAX_CONSOLE_WARNINGS:
        print(f"edgesim: warning: {len(lines) - MAX_CONSOLE_WARNINGS} more overloaded (point, policy) pairs; "
              f"all are listed in {folder / 'report.html'}", file=sys.stderr)


def compare_table(summary, metric: str, trace: Optional[str] = None):
    """A rich table of policies (columns) by sweep point (rows) for one summary metric, in the unit its title says;
    `trace` (the uplink trace's name and mean rate) stands where a blank data rate would.

    Every text is escaped: '[ms]' or a policy label such as 'split [mid]' must print as written, not as markup.
    """
    import pandas as pd

    from edgesim.report.html import column_unit, fmt_sig

    if metric not in summary.columns:
        raise EdgesimError(f"no column '{metric}' in summary.csv; known: {', '.join(summary.columns)}")
    keys = [c for c in summary.columns if c.startswith("sweep.") and not c.endswith("data_rate_mbps")]
    index = [c for c in ("mobile", "edge", "data_rate_mbps") if c in summary.columns]
    index += [k for k in keys if k not in ("sweep.mobiles.0.device", "sweep.edge.device")]
    if "scope" in summary.columns:  # several edge servers: the table shows every server together
        summary = summary[summary["scope"].astype(str) == "all"]
    policies = list(dict.fromkeys(summary["policy"]))
    unit, scale = column_unit(metric)
    stored = " (summary.csv holds s)" if scale != 1.0 else ""
    title = f"{metric}{f' [{unit}]' if unit else ''} by policy{stored}; simulated"
    table = Table(title=escape(title))
    for col in index:
        table.add_column(escape(col.removeprefix("sweep.")))
    for p in policies:
        table.add_column(escape(str(p)), justify="right")
    numeric = pd.api.types.is_numeric_dtype(summary[metric]) and not pd.api.types.is_bool_dtype(summary[metric])
    for _, group in summary.groupby("point", sort=True):
        first = group.iloc[0]
        cells = [((trace or "") if c == "data_rate_mbps" else "") if pd.isna(first[c]) else
                 (f"{first[c]:g}" if isinstance(first[c], float) else str(first[c])) for c in index]
        values = dict(zip(group["policy"], group[metric]))
        for p in policies:
            v = values.get(p)
            if v is None or pd.isna(v):
                cells.append("-")
            elif numeric:
                cells.append(fmt_sig(float(v) * scale, 4))
            else:
                cells.append(str(v))
        table.add_row(*[escape(c) for c in cells])
    return table


def validate(scenario: Path = typer.Argument(..., metavar="SCENARIO", help="scenario YAML", show_default=False),
             set_: list[str] = typer.Option([], "--set", metavar="PATH=VALUE", show_default=False,
                                            help="override a field as `run --set` does (repeatable)"),
             yes: bool = typer.Option(False, "--yes", "-y", metavar="",
                                      help=f"check a sweep of more than {CONFIRM_RUNS:,} runs point by point")) -> None:
    """Check a scenario: fields, devices, models, split points, policies and traces, without simulating."""
    from simulator.assemble import assemble
    from simulator.scenario import apply_overrides, load_scenario, sweep_points
    from simulator.sense import replication_note

    sc = _with_sets(load_scenario(scenario), set_)
    confirm_size(sc, yes, "validate")
    points = sweep_points(sc)
    for k, ov in enumerate(points):
        # what a run assembles before its first frame: devices, dataset, traces, stations, policies, every route
        pt = assemble(apply_overrides(sc, ov, source=f"{scenario} (sweep point {k})"))
        for pol in pt.policies:
            pt.routes_of_group(pol)
    print(f"{scenario}: valid ({len(points)} sweep points x {len(sc.policies)} policies x {sc.replications} replications)")
    note = replication_note(sc)
    if note:
        print(f"edgesim: note: {note}", file=sys.stderr)


def plot(results: Path = typer.Argument(..., metavar="RESULTS", help="results folder", show_default=False),
         png: Optional[bool] = png_option(),
         formats: Optional[str] = typer.Option(None, "--format", metavar="html,png,pdf,svg",
                                               help="figure files to write, comma-separated (images need Chromium; "
                                                    "an error if they cannot be made); default: --png's choice"),
         style: str = typer.Option("default", "--style", metavar="default|paper",
                                   help="paper: single-column width, serif fonts (embedded in PDF), a palette and "
                                        "dashes that survive greyscale")) -> None:
    """Regenerate the plots and report.html of a results folder from its summary and frames."""
    from edgesim.report.html import parse_formats
    from edgesim.report.outputs import write_plots_and_report
    from simulator.results import load_results

    if style not in ("default", "paper"):
        raise EdgesimError(f"--style '{style}': known: default, paper")
    chosen = parse_formats(formats) if formats is not None else None
    summary, _, manifest, sc = load_results(results, frames=False)
    warnings = write_plots_and_report(results, sc, summary, manifest, png=png_mode(png, None), formats=chosen,
                                      style=style)
    for w in warnings:
        print(f"edgesim: warning: {w}", file=sys.stderr)
    print(f"plots: {results / 'plots'}  report: {results / 'report.html'}")


def compare(results: Path = typer.Argument(..., metavar="RESULTS", help="results folder", show_default=False),
            metric: str = typer.Option("delay_mean_s", "--metric", metavar="COLUMN",
                                       help="any summary.csv column")) -> None:
    """A table of policies by data rate (and device combination) for one metric."""
    _print_summary(results, metric)


#: the widest a processor name gets in `edgesim list devices` without --wide
PROCESSOR_CHARS = 24
#: `edgesim list devices` without --wide: these columns (fit 80 columns), processor by name, models counted
COMPACT_DEVICE_COLUMNS = ("name", "kind", "processor", "cores", "provenance", "models")


def short_processor(text: str, limit: int = PROCESSOR_CHARS) -> str:
    """A processor description as its names only: '(quad-core)' and '@ 2.0 GHz' dropped, cut to limit with '…'."""
    short = re.sub(r"\s*\([^)]*\)", "", text)
    short = re.sub(r"\s*@[^+,]*", "", short)
    short = re.sub(r",[^+]*", "", short)
    short = " ".join(short.split())
    return short if len(short) <= limit else short[: limit - 1].rstrip() + "…"


def _compact_device(row: dict) -> dict:
    """A device row for an 80-column table: a short processor name and the number of models profiled."""
    out = {k: row[k] for k in COMPACT_DEVICE_COLUMNS if k in row}
    if "processor" in out:
        out["processor"] = short_processor(str(out["processor"]))
    if "models" in out:
        out["models"] = len([m for m in str(out["models"]).split(",") if m.strip()])
    return out


def list_(what: str = typer.Argument(..., metavar="devices|models|policies", help="what to list",
                                     show_default=False),
          wide: bool = typer.Option(False, "--wide", "-w", metavar="",
                                    help="every column in full (devices: processor description, memory, model "
                                         "names), one line per row however wide")) -> None:
    """List catalog devices, registered models or policies."""
    if what == "devices":
        from edgesim.cli.profile import device_rows

        rows = device_rows()
        if not wide:
            rows = [_compact_device(r) for r in rows]
    elif what == "models":
        from edgesim.cli.profile import model_rows

        rows = model_rows()
    elif what == "policies":
        from simulator.policies import policy_entries

        rows = [{"policy": e.name, "what": e.summary, "source": e.source} for e in policy_entries().values()]
    else:
        raise EdgesimError(f"unknown list '{what}'; known: devices, models, policies")
    table = Table(title=what, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for k, col in enumerate(rows[0] if rows else []):  # names (and compact device rows) never wrap; prose does
        table.add_column(col, no_wrap=wide or k == 0 or what == "devices")
    for row in rows:
        table.add_row(*[escape(str(v)) for v in row.values()])
    if wide:  # one line per row: as wide as the table needs, whatever the terminal
        width = Console(width=100_000).measure(table).maximum
        Console(width=width).print(table)
    else:
        console().print(table)


def schema(what: str = typer.Argument(..., metavar="scenario|profile", help="which schema", show_default=False),
           out: Optional[Path] = typer.Option(None, "--out", metavar="FILE",
                                              help="write to this file instead of stdout")) -> None:
    """Print (or write) the JSON Schema of scenario YAMLs or device profiles, for editors."""
    from profilers.schema import profile_json_schema
    from simulator.scenario import scenario_json_schema

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


