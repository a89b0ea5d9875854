"""Results folders: crash-safe, resumable, reproducible.

A run works in a staging folder `<out>.partial/` beside the results folder. Each finished sweep
point is written there atomically (frames as Parquet, summary as CSV), so an interrupted sweep keeps
every finished point and `edgesim run --resume <out>` runs only the rest. At the end the staging
folder becomes `<out>` in one rename; an existing results folder is replaced only then, never
left half-overwritten.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from profilers.errors import EdgesimError
from profilers.io import atomic_target, atomic_write_bytes, atomic_write_text
from simulator.runner import PointResult, order_summary, run_sweep
from simulator.scenario import Scenario, load_scenario, sweep_points, to_yaml

PACKAGES = ("numpy", "pandas", "pyarrow", "simpy", "pydantic", "plotly", "kaleido", "torch", "torchvision",
            "transformers", "PyYAML", "typer", "rich")


def staging_dir(out: Path) -> Path:
    """Where a run in progress keeps its finished points."""
    return out.with_name(out.name + ".partial")


def git_revision() -> str:
    """The git revision of the edgesim checkout ('+dirty' with local changes), or 'unknown' outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages that shape the numbers."""
    out = {"python": platform.python_version(), "edgesim": _version("edgesim")}
    for name in PACKAGES:
        out[name] = _version(name)
    return out


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _csv_bytes(df: pd.DataFrame) -> bytes:
    """CSV with a fixed float format, so the same numbers always give the same bytes."""
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.12g", lineterminator="\n")
    return buf.getvalue().encode()


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, compression="zstd")
    return buf.getvalue()


def _write_point(stage: Path, res: PointResult, frames: bool) -> None:
    points = stage / "points"
    if frames and res.frames is not None:  # None: streamed to that file by the worker, window by window
        atomic_write_bytes(points / f"{res.point:05d}.frames.parquet", _parquet_bytes(res.frames))
    atomic_write_bytes(points / f"{res.point:05d}.summary.csv", _csv_bytes(res.summary))


def finished_points(stage: Path) -> set[int]:
    """Sweep points whose summary is already written in the staging folder."""
    return {int(p.name.split(".")[0]) for p in (stage / "points").glob("*.summary.csv")} if stage.exists() else set()


def _combine_frames(stage: Path, n_points: int) -> Optional[Path]:
    """frames.parquet from the per-point files, one row group at a time (bounded memory)."""
    import pyarrow.parquet as pq

    files = [stage / "points" / f"{k:05d}.frames.parquet" for k in range(n_points)]
    if not all(f.exists() for f in files):
        return None
    target = stage / "frames.parquet"
    with atomic_target(target) as tmp:
        writer = None
        try:
            for f in files:
                source = pq.ParquetFile(f)
                for i in range(source.num_row_groups):
                    table = source.read_row_group(i)
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
                    writer.write_table(table.cast(writer.schema) if table.schema != writer.schema else table)
        finally:
            if writer is not None:
                writer.close()
    return target


def run_to_folder(scenario: Scenario, out: Path, jobs: int = 1, resume: bool = False,
                  progress: Optional[Callable[[int, int], None]] = None, command: str = "",
                  scenario_source: str = "", executor: str = "process", scheduler: Optional[str] = None,
                  write_extras: Optional[Callable[[Path, Scenario, pd.DataFrame, dict], list[str]]] = None) -> dict:
    """Run a scenario into a results folder; returns the manifest. Interrupts keep finished points.

    write_extras(folder, scenario, summary, manifest) adds files (plots, the report) to the staged folder before
    it becomes the results folder, and returns warnings; the layer above passes it (the simulator draws nothing).
    """
    out = Path(out)
    stage = staging_dir(out)
    started = time.time()
    resolved = to_yaml(scenario)
    if resume:
        if not stage.exists():
            if (out / "summary.csv").exists():
                raise EdgesimError(f"{out}: already complete, nothing to resume")
            raise EdgesimError(f"{out}: no interrupted run to resume (no {stage.name}/ beside it)")
        saved = (stage / "scenario.yaml").read_text(encoding="utf-8")
        scenario = load_scenario(stage / "scenario.yaml")
        resolved = saved
    else:
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir(parents=True)
        atomic_write_text(stage / "scenario.yaml", resolved)
    points = sweep_points(scenario)
    done = finished_points(stage)
    engines: dict[int, str] = {}

    def keep(res: PointResult) -> None:
        _write_point(stage, res, scenario.outputs.frames)
        engines[res.point] = res.engine

    run_sweep(scenario, jobs=jobs, progress=progress, skip=done, on_point=keep, executor=executor, scheduler=scheduler,
              frames_dir=stage / "points" if scenario.outputs.frames else None)
    summaries = [pd.read_csv(stage / "points" / f"{k:05d}.summary.csv") for k in range(len(points))]
    summary = order_summary(pd.concat(summaries, ignore_index=True))
    atomic_write_bytes(stage / "summary.csv", _csv_bytes(summary))
    if scenario.outputs.frames:
        _combine_frames(stage, len(points))
    engines_all = sorted({str(e) for e in summary.get("engine", pd.Series(dtype=str)).unique()})
    manifest = {
        "edgesim_command": command,
        "scenario": scenario.name,
        "scenario_source": scenario_source,
        "scenario_sha256": hashlib.sha256(resolved.encode()).hexdigest(),
        "seed": scenario.seed,
        "replications": scenario.replications,
        "sweep_points": len(points),
        "resumed_points": sorted(done),
        "engines": engines_all,
        "engine_note": "fast = exact vectorised recursion (no simulation state needed); simpy = discrete-event engine "
                       "(adaptive policies, bounded queues, drop-stale or a shared medium)",
        "jobs": jobs,
        "executor": executor if executor == "process" else f"dask ({scheduler or 'LocalCluster'})",
        "git_revision": git_revision(),
        "versions": package_versions(),
        "platform": platform.platform(),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(time.time() - started, 3),
        "rerun": f"edgesim run {out}/scenario.yaml --out <new folder>",
    }
    atomic_write_text(stage / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    if scenario.outputs.plots and write_extras is not None:
        manifest["warnings"] = write_extras(stage, scenario, summary, manifest)
        atomic_write_text(stage / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    shutil.rmtree(stage / "points", ignore_errors=True)  # the per-point files are only needed to resume
    _promote(stage, out)
    return manifest


def _promote(stage: Path, out: Path) -> None:
    """Make the staging folder the results folder; an older folder is set aside first, then removed."""
    old = None
    if out.exists():
        old = out.with_name(f"{out.name}.old-{int(time.time() * 1000)}")
        out.rename(old)
    stage.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_results(folder: Path) -> tuple[pd.DataFrame, Optional[pd.DataFrame], dict, Scenario]:
    """Read a results folder back: summary, frames (if written), manifest, scenario."""
    folder = Path(folder)
    if not (folder / "summary.csv").exists():
        hint = f"; an interrupted run can be resumed with `edgesim run --resume {folder}`" if staging_dir(folder).exists() else ""
        raise EdgesimError(f"{folder}: not a results folder (no summary.csv){hint}")
    try:
        summary = pd.read_csv(folder / "summary.csv")
        manifest = json.loads((folder / "manifest.json").read_text()) if (folder / "manifest.json").exists() else {}
        frames = pd.read_parquet(folder / "frames.parquet") if (folder / "frames.parquet").exists() else None
    except Exception as exc:
        raise EdgesimError(f"{folder}: cannot read results: {str(exc).splitlines()[0]}") from None
    scenario = load_scenario(folder / "scenario.yaml")
    return summary, frames, manifest, scenario


def python_command() -> str:
    """The command line that started this process (recorded in the manifest)."""
    return " ".join([Path(sys.argv[0]).name] + sys.argv[1:])
