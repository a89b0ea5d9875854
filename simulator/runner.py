"""One sweep point from a validated scenario to frame records and summary rows: orchestration only.

Every policy sees the same captures and service-time uniforms (common random numbers); each (replication,
policy) run goes through the compiled engine (or the SimPy engine, the readable reference), in memory or window by
window.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import pandas as pd

from simulator.assemble import Point, Window, assemble, plan_window, route_rows, with_device_errors
from simulator.frames import FrameSink, frame_columns, frame_keys
from simulator.metrics import add_gain_bands, add_gains, summary_rows
from simulator.metrics import summary_csv as metrics_csv
from simulator.policies import BasePolicy
from simulator.scenario import Scenario, apply_overrides
from simulator.workload import FrameStreams


@dataclass
class PointResult:
    """Frames and summary rows of one sweep point, and which engine ran it (frames None when streamed)."""

    point: int
    frames: Optional[pd.DataFrame]
    summary: pd.DataFrame
    engine: str
    notes: list[str] = field(default_factory=list)
    summary_csv: Optional[bytes] = None  # the summary as a results folder's CSV, and as that CSV reads back (asked for
    summary_read: Optional[pd.DataFrame] = None  # by run_point(summary_csv=True): made where the point ran)


def run_point(scenario: Scenario, point: int, overrides: dict, frames_path: Optional[Path] = None,
              keep_frames: bool = True, summary_csv: bool = False) -> PointResult:
    """Simulate every policy at one sweep point.

    With frames_path the frame tables are written there as they end (in the worker: nothing big goes back to the
    parent process) and the result holds no frames; above workload.chunk_frames the run then goes window by window.
    With summary_csv the result also holds the summary's CSV bytes and what they read back as (results folders)."""
    sc = apply_overrides(scenario, overrides, source=f"sweep point {point}")
    pt = assemble(sc)
    copies = max(_copies(pt, pt.routes_of_group(pol)) for pol in pt.policies)
    streaming = frames_path is not None and sc.workload.frames * pt.n_mobiles * copies > sc.workload.chunk_frames
    n_edges = len(pt.topo.tiers.edges) if pt.topo.tiers is not None else 0
    with FrameSink([s.display for s in sc.policies], pt.n_mobiles, n_edges, frames_path, keep_frames) as sink:
        used: dict[str, str] = {}
        notes = list(pt.notes)
        for rep in range(sc.replications):
            rep_pt = with_device_errors(pt, sc.seed, rep) if sc.uncertainty == "device" else pt
            for pol in rep_pt.policies:
                used[pol.spec.display] = run_policy(rep_pt, pol, rep, point, sink, windowed=streaming, notes=notes)
    engine = {label: name + (" (windows)" if streaming else "") for label, name in used.items()}
    idle_w = {name: pt.devices[name].idle_w for name, _ in pt.groups}
    labels = pt.dataset["label"].to_numpy() if pt.dataset is not None and "label" in pt.dataset.columns else None
    summary = summary_rows(sc, point, overrides, sink.accumulators, pt.groups, idle_w, engine, labels)
    local = next((p.display for p in sc.policies if p.name == "local"), None)
    offload = next((p.display for p in sc.policies if p.name == "offload"), None)
    summary = add_gains(summary, local, offload)
    if sc.uncertainty == "device":
        summary = add_gain_bands(summary, sink.accumulators, local, offload)
    res = PointResult(point, sink.frames(), summary, pt.engine, list(dict.fromkeys(notes)))
    if summary_csv:
        res.summary_csv = metrics_csv(summary)
        res.summary_read = pd.read_csv(io.BytesIO(res.summary_csv))
    return res


def _copies(pt: Point, routes_by_group: list) -> int:
    """How many times a frame plan holds each frame's demands of a policy route: once per distinct edge server device
    (assemble.route_rows; once per edge server where routes draw packet losses), so that a window holds chunk_frames
    frame-rows and its memory stays flat however many servers there are."""
    rows = route_rows(pt, routes_by_group)
    n_rows = len(routes_by_group[0]) if rows is None else int(rows.max()) + 1
    return max(1, -(-n_rows * max(len(pt.edge_devices), 1) // len(routes_by_group[0])))


def run_policy(pt: Point, pol: BasePolicy, rep: int, point: int, sink: FrameSink, windowed: bool,
               notes: Optional[list[str]] = None) -> str:
    """One replication of one policy at one point, its frame tables handed to the sink; returns the engine used.
    Where `engine: compiled` must run the SimPy engine, a line in `notes` says why (never silently)."""
    from simulator.engine import simulate, simulate_windows

    sc, label = pt.scenario, pol.spec.display
    streams = FrameStreams(sc.seed, rep, pt.n_mobiles)
    frames_per, chunk = sc.workload.frames, sc.workload.chunk_frames
    routes_by_group = pt.routes_of_group(pol)  # once for every window of this run
    compiled = pt.engine == "compiled"
    if compiled:  # numba: imported by the first run that uses it
        from simulator.compiled import simulate_compiled, simulate_compiled_windows
    policy = pol if pol.stateful else None
    dynamic = pt.topo.tiers is not None and pt.topo.tiers.dynamic
    routes = [routes_by_group[g] for g in pt.group_of_instance] if pol.stateful or dynamic else None
    if not windowed:
        w = plan_window(pt, pol, routes_by_group, rep, streams, 0, frames_per)
        if compiled and _compiled_covers(w.plan, pt, policy, label, notes):
            times, used = simulate_compiled(w.plan, pt.topo, policy, routes), "compiled"
        else:  # the readable reference, and whatever the compiled loop does not cover
            times, used = simulate(w.plan, pt.topo, policy, routes), "simpy"
        cols = frame_columns(pt, w, times, label, rep, point)
        sink.add(cols, label, frame_keys(w, times, rep, pt, cols["bytes_up"]))
        return used
    per_window = max(1, chunk // (pt.n_mobiles * _copies(pt, routes_by_group)))
    windows: dict[int, Window] = {}

    def load(k: int):
        start = k * per_window
        if start >= frames_per:
            return None
        w = plan_window(pt, pol, routes_by_group, rep, streams, start, min(frames_per, start + per_window))
        windows[k] = replace(w, plan=w.plan.for_tables())  # the engine holds the demands until the window is done
        return w.plan

    def done(k: int, _plan, times: dict) -> None:
        w = windows.pop(k)
        cols = frame_columns(pt, w, times, label, rep, point)
        sink.add(cols, label, frame_keys(w, times, rep, pt, cols["bytes_up"]))

    first = [load(0)]  # loaded once: windows draw from the random streams in order
    covered = compiled and first[0] is not None and _compiled_covers(first[0], pt, policy, label, notes)
    loader = (lambda k: first.pop() if k == 0 else load(k))  # nothing here keeps window 0's demands alive
    if covered:
        simulate_compiled_windows(loader, pt.topo, done, policy, routes)
        return "compiled"
    simulate_windows(loader, pt.topo, done, policy, routes)
    return "simpy"


def _compiled_covers(plan, pt: Point, policy, label: str, notes: Optional[list[str]]) -> bool:
    """True when the compiled engine runs this policy; else a note says why the SimPy engine runs it instead."""
    from simulator.compiled import why_not

    why = why_not(plan, pt.topo, policy)
    if why is not None and notes is not None:
        notes.append(f"policy '{label}' runs on the SimPy engine although the scenario asks for engine: compiled: "
                     f"{why}")
    return why is None
