"""Results folders: crash-safe, resumable, reproducible.

A run works in a staging folder `<out>.partial/` beside the results folder. Each finished sweep
point is written there atomically (frames as the point's own Parquet file, written by the process that simulates
it; summary as CSV), so an interrupted sweep keeps every finished point and `edgesim run --resume <out>` runs only
the rest; at the end frames.parquet joins the points' files, their encoded row groups copied as they are. Resuming first drops what a hard kill
can leave (temporary files, a per-point file without its footer or a cut-short CSV), so those points
run again. At the end the staging folder becomes `<out>` in one rename; an existing
results folder is replaced only when asked (`overwrite`), and only then, never left half-overwritten.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator, Optional

import pandas as pd

from profilers.errors import EdgesimError
from profilers.io import atomic_target, atomic_write_bytes, atomic_write_text, read_text
from profilers.runtime import collector_paused, heap_kept
from simulator.frames import FramesFile, PointFrames, staged_arrow, staged_frames
from simulator.metrics import order_summary, summary_csv
from simulator.runner import PointResult
from simulator.scenario import Scenario, load_scenario, sweep_points, to_yaml
from simulator.sweep import frames_part, run_sweep

PACKAGES = ("numpy", "pandas", "pyarrow", "simpy", "pydantic", "plotly", "kaleido", "torch", "torchvision",
            "transformers", "PyYAML", "typer", "rich")


def staging_dir(out: Path) -> Path:
    """Where a run in progress keeps its finished points."""
    return out.with_name(out.name + ".partial")


#: beside the saved scenario in the staging folder: the sha256 of the scenario its finished points were made from
SCENARIO_HASH = "scenario.sha256"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_saved_scenario(stage: Path) -> str:
    """The staged scenario's text, refused in one line unless it is the one its finished points were made from."""
    saved_path, hash_path = stage / "scenario.yaml", stage / SCENARIO_HASH
    saved = read_text(saved_path, "saved scenario")
    recorded = read_text(hash_path, "scenario hash").strip() if hash_path.exists() else None
    if recorded != _sha256(saved):
        why = (f"has no {SCENARIO_HASH} to check it against" if recorded is None else
               f"changed since its finished points were made (sha256 {_sha256(saved)[:12]}, recorded "
               f"{recorded[:12]} in {SCENARIO_HASH})")
        raise EdgesimError(f"{saved_path}: {why}; resuming would mix points of two scenarios: restore it, or start "
                           f"again with `edgesim run SCENARIO --out {stage.with_name(stage.name.removesuffix('.partial'))} "
                           "--overwrite`")
    return saved


def lock_path(out: Path) -> Path:
    """The lock file of a results folder: beside it, hidden, present only while a run writes the folder."""
    return out.with_name(f".{out.name}.lock")


@contextmanager
def writer_lock(out: Path) -> Iterator[None]:
    """One writer per results folder at a time (--overwrite included): a second run is refused in one line while
    the first holds the lock. flock(2): the OS releases it when the holder dies, even by SIGKILL."""
    path = lock_path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise EdgesimError(f"{out}: another edgesim run (pid {holder}) is writing this folder; wait for it "
                                   "to end, or choose another --out") from None
            try:
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    break  # the file we locked is still the lock file (not removed by a holder that just ended)
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError as exc:
        raise EdgesimError(f"cannot lock {path}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


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


def _write_point(stage: Path, res: PointResult, frames: bool) -> None:
    points = stage / "points"
    if frames and res.frames is not None:  # None: written to that file by the worker, window by window
        import pyarrow as pa

        part = frames_part(points, res.point)
        with PointFrames(part) as staged:
            staged.write(pa.Table.from_pandas(res.frames, preserve_index=False))
    atomic_write_text(points / f"{res.point:05d}.notes.json", json.dumps(res.notes) + "\n")
    atomic_write_bytes(points / f"{res.point:05d}.summary.csv", res.summary_csv)  # last: the point is done


def _point_notes(stage: Path, k: int) -> list[str]:
    """What assembling sweep point k noted (a device in another role, a stand-in radio or batch fit)."""
    path = stage / "points" / f"{k:05d}.notes.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def finished_points(stage: Path) -> set[int]:
    """Sweep points whose summary is already written in the staging folder."""
    return {int(p.name.split(".")[0]) for p in (stage / "points").glob("*.summary.csv")} if stage.exists() else set()


def _frames_complete(part: Path) -> bool:
    """True if a point's staged frames (its Parquet file, or the Arrow IPC file beside it) end with a readable
    footer (a write cut short has none)."""
    import pyarrow.parquet as pq

    try:
        if part.exists():
            pq.read_metadata(part)
        else:
            sum(t.num_rows for t in staged_frames(staged_arrow(part)))
    except Exception:  # pyarrow raises ArrowInvalid, OSError and others for a damaged or missing file
        return False
    return True


def _csv_complete(path: Path) -> bool:
    """True if the summary CSV passes read_summary's checks (a hard kill can cut it short)."""
    try:
        read_summary(path)
    except (OSError, EdgesimError):
        return False
    return True


def _drop_incomplete(stage: Path, frames: bool) -> None:
    """Before resuming: remove temporary files and each point whose files a hard kill may have cut short."""
    for tmp in stage.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    points = stage / "points"
    for k in sorted(finished_points(stage)):
        summary, frames_file = points / f"{k:05d}.summary.csv", frames_part(points, k)
        ok = _csv_complete(summary) and (not frames or _frames_complete(frames_file))
        if not ok:
            for path in (summary, frames_file, staged_arrow(frames_file), points / f"{k:05d}.notes.json"):
                path.unlink(missing_ok=True)


def holds_results(folder: Path) -> bool:
    """True if folder looks like a results folder (a summary or a manifest written by a run)."""
    return (folder / "summary.csv").exists() or (folder / "manifest.json").exists()


def check_target(out: Path, overwrite: bool, resume: bool = False) -> None:
    """Refuse a results folder that would replace results (unless overwrite) or any folder that is not results."""
    out = Path(out)
    stage = staging_dir(out)
    if not resume and stage.exists() and not overwrite:
        raise EdgesimError(f"{stage}: an interrupted run is staged there; finish it with `edgesim run --resume {out}`, "
                           "or add --overwrite to start again")
    if not out.exists():
        return
    if not out.is_dir():
        raise EdgesimError(f"{out}: exists and is not a folder; choose another --out")
    if holds_results(out):
        if not overwrite:
            raise EdgesimError(f"{out}: already holds results; add --overwrite to replace them (they stay whole "
                               "until the new run is complete), or choose another --out")
    elif any(out.iterdir()):
        raise EdgesimError(f"{out}: not a results folder and not empty; choose another --out (a run replaces the "
                           "whole folder)")


class FramesJoin:
    """frames.parquet from the staged per-point files, in point order, joined while the sweep runs: each point as soon
    as it and every point before it are staged, so the parent's work after the last point is the footer alone.

    A point staged as Parquet (a row group or more of frames, encoded where it ran) keeps its row groups; runs of
    smaller points (staged as Arrow IPC) are pooled into row groups here. The pieces are joined by copying their
    encoded row groups under one footer (parquet_concat), or, where their schemas differ, read and written again in
    the first's schema at the end. A single piece becomes frames.parquet as it is (a second name for it: the staged
    point stays whole until the end). Used as a `with` block: an error or interrupt leaves no partial file."""

    def __init__(self, stage: Path, n_points: int) -> None:
        self.stage, self.n_points = Path(stage), n_points
        self.points = self.stage / "points"
        self.out = self.stage / "frames.parquet"
        self.next = 0  # the first point not yet joined
        self.pieces: list[Path] = []  # complete pieces in point order: points' own files and pools of small ones
        self._pool: Optional[FramesFile] = None
        self._pool_path: Optional[Path] = None
        self._pool_stack, self._out_stack = ExitStack(), ExitStack()
        self._join = None  # parquet_concat.ParquetJoin once a second piece exists; it holds every piece since
        self._rewrite = False  # a piece that cannot be copied: every piece is read and written again at the end

    def __enter__(self) -> "FramesJoin":
        return self

    def staged(self, done: set[int]) -> None:
        """Join every point from the next one on, in order, while `done` holds it."""
        while self.next < self.n_points and self.next in done:
            self._point(self.next)
            self.next += 1

    def _point(self, k: int) -> None:
        part = frames_part(self.points, k)
        if part.exists():
            self._end_pool()
            self._piece(part)
            return
        if not staged_arrow(part).exists():
            raise EdgesimError(f"{self.points}: the frames of sweep point {k} are missing; frames.parquet not written")
        if self._pool is None:
            self._pool_path = self.points / f"pool.{k:05d}.parquet"
            self._pool = self._pool_stack.enter_context(FramesFile(self._pool_path))
        for table in staged_frames(staged_arrow(part)):
            self._pool.write(table)

    def _end_pool(self) -> None:
        """The pool of small points before this one is complete: it becomes a piece."""
        if self._pool is not None:
            self._pool = None
            self._pool_stack.close()
            self._piece(self._pool_path)

    def _piece(self, path: Path) -> None:
        from simulator.parquet_concat import ParquetJoin

        self.pieces.append(path)
        if self._rewrite or len(self.pieces) < 2:
            return
        new = self.pieces[-1:]
        if self._join is None:  # the second piece: the first joins too
            tmp = self._out_stack.enter_context(atomic_target(self.out))
            self._join = ParquetJoin(self._out_stack.enter_context(open(tmp, "wb", buffering=0)))
            new = self.pieces
        if not all(self._join.add(piece) for piece in new):
            self._rewrite = True
            self._abandon()

    def _abandon(self) -> None:
        """Drop the joined file (atomic_target removes it on an exception)."""
        stop = _Abandoned()
        self._out_stack.__exit__(type(stop), stop, None)
        self._join = None

    def finish(self) -> None:
        """Write frames.parquet; every point must have been joined (staged)."""
        if self.next < self.n_points:
            raise EdgesimError(f"{self.points}: the frames of sweep point {self.next} are missing; frames.parquet "
                               "not written")
        self._end_pool()
        if self._join is not None:
            self._join.close()
            self._out_stack.close()
            return
        self.out.unlink(missing_ok=True)
        if len(self.pieces) == 1:
            os.link(self.pieces[0], self.out)
            return
        import pyarrow.parquet as pq

        with FramesFile(self.out) as joined:
            for piece in self.pieces:
                source = pq.ParquetFile(piece)
                for i in range(source.num_row_groups):
                    joined.write(source.read_row_group(i))
                joined.end_part()

    def __exit__(self, kind, exc, tb) -> None:
        self._pool_stack.__exit__(kind, exc, tb)
        self._out_stack.__exit__(kind, exc, tb)


class _Abandoned(Exception):
    """FramesJoin drops the file it was joining."""


def run_to_folder(scenario: Scenario, out: Path, jobs: int = 1, resume: bool = False,
                  progress: Optional[Callable[[int, int], None]] = None, command: str = "",
                  scenario_source: str = "", executor: str = "process", scheduler: Optional[str] = None,
                  write_extras: Optional[Callable[[Path, Scenario, pd.DataFrame, dict], list[str]]] = None,
                  overwrite: bool = False) -> dict:
    """Run a scenario into a results folder; returns the manifest. Interrupts keep finished points.

    An existing results folder is replaced only with overwrite=True. write_extras(folder, scenario, summary,
    manifest) adds files (plots, the report) to the staged folder before it becomes the results folder, and returns
    warnings; the layer above passes it (the simulator draws nothing). A failure (EdgesimError) after points have
    finished keeps them in the staging folder and says so; with none finished, a fresh run leaves nothing behind.
    """
    out = Path(out)
    with writer_lock(out), collector_paused(), heap_kept():
        return _run_locked(scenario, out, jobs, resume, progress, command, scenario_source, executor, scheduler,
                           write_extras, overwrite)


def _run_locked(scenario: Scenario, out: Path, jobs: int, resume: bool, progress: Optional[Callable[[int, int], None]],
                command: str, scenario_source: str, executor: str, scheduler: Optional[str],
                write_extras: Optional[Callable[[Path, Scenario, pd.DataFrame, dict], list[str]]],
                overwrite: bool) -> dict:
    """run_to_folder's work, with the folder's writer lock held."""
    stage = staging_dir(out)
    started = time.time()
    resolved = to_yaml(scenario)
    if resume:
        if not stage.exists():
            if (out / "summary.csv").exists():
                raise EdgesimError(f"{out}: already complete, nothing to resume")
            raise EdgesimError(f"{out}: no interrupted run to resume (no {stage.name}/ beside it)")
        check_target(out, overwrite, resume=True)
        resolved = check_saved_scenario(stage)
        scenario = load_scenario(stage / "scenario.yaml")
        _drop_incomplete(stage, scenario.outputs.frames)
    else:
        check_target(out, overwrite)
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir(parents=True)
        atomic_write_text(stage / "scenario.yaml", resolved)
        atomic_write_text(stage / SCENARIO_HASH, _sha256(resolved) + "\n")
    try:
        return _finish(scenario, out, stage, resolved, started, jobs, progress, command, scenario_source, executor,
                       scheduler, write_extras)
    except EdgesimError as exc:
        kept = len(finished_points(stage))
        if not kept and not resume:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        raise EdgesimError(f"{exc}; {kept} finished sweep point(s) kept in {stage}: resume with "
                           f"`edgesim run --resume {out}` once the cause is fixed (it reruns the saved scenario), "
                           "or delete that folder") from exc


def _finish(scenario: Scenario, out: Path, stage: Path, resolved: str, started: float, jobs: int,
            progress: Optional[Callable[[int, int], None]], command: str, scenario_source: str, executor: str,
            scheduler: Optional[str],
            write_extras: Optional[Callable[[Path, Scenario, pd.DataFrame, dict], list[str]]]) -> dict:
    """Run the points not yet staged, then combine, describe and promote the staging folder to `out`."""
    points = sweep_points(scenario)
    done = finished_points(stage)
    about: dict = {}  # git revision and versions: worked out while the first point runs (the parent waits then)

    def describe() -> None:
        if not about:
            about.update(git_revision=git_revision(), versions=package_versions())

    read_back: dict[int, pd.DataFrame] = {}  # each point's summary as its CSV reads (the worker parsed it)

    staged = set(done)
    with FramesJoin(stage, len(points) if scenario.outputs.frames else 0) as frames:

        def keep(res: PointResult) -> None:
            describe()
            _write_point(stage, res, scenario.outputs.frames)
            read_back[res.point] = res.summary_read
            staged.add(res.point)
            frames.staged(staged)  # joined while later points run

        frames.staged(staged)
        run_sweep(scenario, jobs=jobs, progress=progress, skip=done, on_point=keep, executor=executor,
                  scheduler=scheduler, frames_dir=stage / "points" if scenario.outputs.frames else None,
                  keep_frames=scenario.outputs.frames, summary_csv=True)
        if scenario.outputs.frames:
            frames.finish()
    describe()  # every point was staged before (resume)
    summaries = [read_back[k] if k in read_back else pd.read_csv(stage / "points" / f"{k:05d}.summary.csv")
                 for k in range(len(points))]
    notes = list(dict.fromkeys(note for k in range(len(points)) for note in _point_notes(stage, k)))
    summary = order_summary(pd.concat(summaries, ignore_index=True))
    atomic_write_bytes(stage / "summary.csv", summary_csv(summary))
    engines_all = sorted({str(e) for e in summary.get("engine", pd.Series(dtype=str)).unique()})
    manifest = {
        "edgesim_command": command,
        "scenario": scenario.name,
        "scenario_source": scenario_source,
        "scenario_sha256": _sha256(resolved),
        "seed": scenario.seed,
        "replications": scenario.replications,
        "sweep_points": len(points),
        "resumed_points": sorted(done),
        "notes": notes,
        "engines": engines_all,
        "engine_note": "compiled = the numba event loop, or Lindley's recursion where no station is shared or "
                       "observed (equal to simpy within 1e-9 s); simpy = the discrete-event reference; '(windows)' = "
                       "run window by window, frames written in chunks",
        "jobs": jobs,
        "executor": executor if executor == "process" else f"dask ({scheduler or 'LocalCluster'})",
        "git_revision": about["git_revision"],
        "versions": about["versions"],
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
    (stage / SCENARIO_HASH).unlink(missing_ok=True)  # as is the hash (the manifest records it as scenario_sha256)
    for tmp in stage.rglob(".*.tmp"):  # never carry a temporary file into the results folder
        tmp.unlink(missing_ok=True)
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


def read_summary(path: Path, n_points: Optional[int] = None) -> pd.DataFrame:
    """summary.csv, checked whole: a header with point and policy, complete rows, every point with every policy.

    A truncated or corrupt file is one EdgesimError line naming the file (and line), never an empty table.
    """
    path = Path(path)
    redo = "rerun into a new folder (see scenario.yaml and manifest.json beside it)"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EdgesimError(f"{path}: not UTF-8 text at byte {exc.start} (corrupt file); {redo}") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise EdgesimError(f"{path}: empty file; {redo}")
    header = rows[0]
    missing = [c for c in ("point", "policy") if c not in header]
    if missing:
        raise EdgesimError(f"{path}:1: no column {', '.join(repr(c) for c in missing)} in the header; not a summary "
                           f"written by edgesim run")
    if len(rows) == 1:
        raise EdgesimError(f"{path}: header but no rows (cut short?); {redo}")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise EdgesimError(f"{path}:{line}: {len(row)} fields, the header has {len(header)} (cut short or "
                               f"corrupt); {redo}")
    if not text.endswith("\n"):
        raise EdgesimError(f"{path}:{len(rows)}: the last line has no line end (cut short?); {redo}")
    try:
        summary = pd.read_csv(io.StringIO(text))
        point = pd.to_numeric(summary["point"], errors="raise")
    except (ValueError, pd.errors.ParserError) as exc:
        raise EdgesimError(f"{path}: cannot parse: {str(exc).splitlines()[0]}") from None
    if point.isna().any() or summary["policy"].isna().any() or (point != point.round()).any():
        raise EdgesimError(f"{path}: a row without a whole 'point' number or a 'policy'; {redo}")
    policies = set(summary["policy"])
    have = summary.groupby("point")["policy"].agg(set)
    expected = range(n_points) if n_points is not None else have.index
    lacking = [k for k in expected if k not in have.index or have[k] != policies]
    if lacking:
        raise EdgesimError(f"{path}: rows missing for sweep point(s) {', '.join(str(k) for k in lacking[:5])}"
                           f"{' ...' if len(lacking) > 5 else ''} ({len(summary)} rows, expected every point x "
                           f"{len(policies)} policies; cut short?); {redo}")
    return summary


def load_results(folder: Path, frames: bool = True) -> tuple[pd.DataFrame, Optional[pd.DataFrame], dict, Scenario]:
    """Read a results folder back: summary (checked), frames (if written and asked for), manifest, scenario."""
    folder = Path(folder)
    if not (folder / "summary.csv").exists():
        hint = f"; an interrupted run can be resumed with `edgesim run --resume {folder}`" if staging_dir(folder).exists() else ""
        raise EdgesimError(f"{folder}: not a results folder (no summary.csv){hint}")
    scenario = load_scenario(folder / "scenario.yaml")
    try:
        manifest = json.loads((folder / "manifest.json").read_text()) if (folder / "manifest.json").exists() else {}
    except (OSError, ValueError) as exc:
        raise EdgesimError(f"{folder / 'manifest.json'}: cannot read: {str(exc).splitlines()[0]}") from None
    n_points = manifest.get("sweep_points") if isinstance(manifest.get("sweep_points"), int) else None
    summary = read_summary(folder / "summary.csv", n_points if n_points is not None else len(sweep_points(scenario)))
    table = None
    path = folder / "frames.parquet"
    if path.exists():
        import pyarrow.parquet as pq

        try:  # without frames: the footer only (what plots and reports read later must be readable)
            table = pd.read_parquet(path) if frames else pq.ParquetFile(path).close()
        except Exception as exc:  # pyarrow raises many types for a damaged file
            raise EdgesimError(f"{path}: cannot read: {str(exc).splitlines()[0].rstrip('.')}; {redo_hint(folder)}") from None
    return summary, table, manifest, scenario


def redo_hint(folder: Path) -> str:
    """What to do with a damaged results folder: run its scenario again."""
    return f"rerun into a new folder (edgesim run {folder / 'scenario.yaml'} --out NEW)"


def python_command() -> str:
    """The command line that started this process (recorded in the manifest)."""
    return " ".join([Path(sys.argv[0]).name] + sys.argv[1:])
