"""Sweep points in parallel: this machine's processes or a Dask cluster, results returned in point order.

Each point is a pure function of (scenario, point index, overrides), so results are the same whatever the
executor, the job count or the order points finish in.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from profilers.errors import EdgesimError, first_line
from profilers.progress import Progress
from profilers.runtime import libc, simulation_process
from simulator.devices import fidelity_notes
from simulator.metrics import order_summary
from simulator.resolve import scenario_devices
from simulator.runner import PointResult, run_point
from simulator.scenario import Scenario, as_scenario, sweep_points
from simulator.sense import RunWarning, run_messages

EXECUTORS = ("process", "dask")
#: prctl(2) option: the signal a process gets when its parent dies (linux/prctl.h)
PR_SET_PDEATHSIG = 1


def run_sweep(scenario: Scenario, jobs: int = 1, progress: Optional[Progress] = None,
              skip: Optional[set[int]] = None, on_point: Optional[Callable[[PointResult], None]] = None,
              executor: str = "process", scheduler: Optional[str] = None,
              frames_dir: Optional[Path] = None, keep_frames: bool = True,
              summary_csv: bool = False) -> list[PointResult]:
    """Run every sweep point not in skip (in `jobs` processes, or on a Dask cluster), returned in point order.

    keep_frames=False keeps no frame table in memory (the summary is folded in as frames end). With frames_dir,
    each point's frames are written there by the process that simulates it (on this machine; a remote Dask cluster
    returns them instead). summary_csv: each point's summary also comes back as CSV bytes and as they read
    (PointResult.summary_csv, summary_read), made by the process that ran it.
    """
    if executor not in EXECUTORS:
        raise EdgesimError(f"unknown executor '{executor}'; known: {', '.join(EXECUTORS)}")
    todo = [(k, ov) for k, ov in enumerate(sweep_points(scenario)) if not skip or k not in skip]
    if executor == "dask" and scheduler is not None:
        frames_dir = None  # a remote worker cannot write into this machine's folder: its frames come back
    jobs_of = [(scenario, k, ov, frames_part(frames_dir, k) if frames_dir is not None else None, keep_frames,
                summary_csv)
               for k, ov in todo]
    results: dict[int, PointResult] = {}
    for done_n, res in enumerate(_execute(jobs_of, jobs, executor, scheduler), start=1):
        results[res.point] = res
        if on_point:
            on_point(res)
        if progress:
            progress(done_n, len(todo))
    return [results[k] for k in sorted(results)]


def frames_part(points: Path, k: int) -> Path:
    """Where sweep point k's frames are staged: its own Parquet file, or (fewer than a row group of frames) the Arrow
    IPC file beside it with the suffix .arrow (frames.PointFrames)."""
    return points / f"{k:05d}.frames.parquet"


def _execute(jobs_of: list[tuple], jobs: int, executor: str, scheduler: Optional[str]):
    """Yield PointResults as they finish."""
    if executor == "dask":
        yield from _dask(jobs_of, jobs, scheduler)
    elif jobs <= 1 or len(jobs_of) <= 1:
        for args in jobs_of:
            yield run_point(*args)
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, len(jobs_of)), initializer=_worker_init,
                                 initargs=(os.getpid(),)) as pool:
            futures = [pool.submit(run_point, *args) for args in jobs_of]
            try:
                for fut in as_completed(futures):
                    yield fut.result()
            except BaseException:
                _stop_workers(pool)  # an interrupt or error: the points in progress are dropped, not waited for
                raise


def _worker_init(parent_pid: int) -> None:
    """A sweep worker dies with the process that started it (Linux: the parent-death signal), and leaves SIGINT to
    it: Ctrl-C (or SIGINT to the parent alone) stops the sweep in the parent, which then ends the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    simulation_process()  # whatever the start method: a forked worker has it from run_to_folder already


def _die_with_parent(parent_pid: Optional[int]) -> None:
    """This process gets SIGKILL when its parent dies (Linux: prctl's parent-death signal), and exits now if the
    parent (parent_pid, where known) died before prctl took effect."""
    prctl = getattr(libc(), "prctl", None) if sys.platform.startswith("linux") else None
    if prctl is not None:  # else the pool's broken-pipe check (Dask's: a pipe's EOF) remains
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def dask_setup(worker) -> None:
    """Dask preload of a LocalCluster's worker processes (the cluster runs their nannies in this process): a worker
    dies with the edgesim process that started it. Dask's own check (a thread that waits on a pipe from the parent)
    needs the GIL, which a long compiled kernel holds, so a worker could compute on for minutes after a SIGKILL."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    _die_with_parent(parent.pid if parent is not None else None)
    simulation_process()


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (their points are redone on resume)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    for proc in procs:
        proc.join(5)  # reaped: no zombie left behind


def _dask(jobs_of: list[tuple], jobs: int, scheduler: Optional[str]):
    """Yield PointResults from a Dask cluster: the one at `scheduler`, or a local one with `jobs` workers."""
    from dask.distributed import Client, LocalCluster  # optional extra: edgesim[dask]
    from dask.distributed import as_completed as dask_completed

    cluster = None if scheduler else LocalCluster(n_workers=max(jobs, 1), threads_per_worker=1, processes=True,
                                                 dashboard_address=None, preload=[__name__])  # dask_setup above
    try:
        try:
            client = Client(scheduler or cluster)
        except (OSError, TimeoutError) as exc:  # distributed raises OSError('Timed out trying to connect ...')
            raise EdgesimError(f"--scheduler {scheduler}: cannot reach the Dask scheduler: {first_line(exc)}") from None
        with client:
            futures = [client.submit(run_point, *args, pure=False) for args in jobs_of]
            for fut in dask_completed(futures):
                yield fut.result()
    finally:
        if cluster is not None:
            cluster.close()


def run(scenario: Scenario | dict | str | Path, jobs: int = 1, executor: str = "process",
        scheduler: Optional[str] = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Python API for notebooks: simulate a scenario (object, dict or YAML path) and return (frames, summary)."""
    scenario = as_scenario(scenario)
    results = run_sweep(scenario, jobs=jobs, executor=executor, scheduler=scheduler)
    for note in dict.fromkeys(n for r in results for n in r.notes):  # what the CLI prints, once each
        warnings.warn(note, UserWarning, stacklevel=2)
    frames = pd.concat([r.frames for r in results], ignore_index=True)
    summary = order_summary(pd.concat([r.summary for r in results], ignore_index=True))
    for msg in sum(run_messages(scenario, summary, fidelity_notes(scenario_devices(scenario))), []):  # derived devices, replications, overloaded stations: as the CLI
        warnings.warn(msg, RunWarning, stacklevel=2)
    return frames, summary

