"""From a validated scenario to per-frame records and a summary: one sweep point at a time, in parallel."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

from profilers.errors import EdgesimError
from profilers.io import atomic_target
from simulator.devices import Device, resolve_devices
from simulator.engine import STAGES, STATUS_NAMES, FramePlan, Topology, simulate, simulate_windows
from simulator.fast import simulate_fast
from simulator.link import Packetiser, RateTrace, load_rate_trace
from simulator.metrics import SUMMARY_COLUMNS, SummaryAccumulator, add_gains
from simulator.policies import FrameInputs, Route, make_policy
from simulator.scenario import Scenario, apply_overrides, load_scenario, sweep_points


@dataclass
class PointResult:
    """Frames and summary rows of one sweep point, and which engine ran it."""

    point: int
    frames: pd.DataFrame
    summary: pd.DataFrame
    engine: str


def load_dataset(path: Optional[str], split: Optional[str]) -> Optional[pd.DataFrame]:
    """Per-sample trace (Parquet or CSV) whose rows frames replay in order; one line on any problem."""
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        raise EdgesimError(f"{p}: dataset trace not found (workload.dataset)")
    try:
        df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    except Exception as exc:  # pyarrow and pandas raise many types for corrupt files
        raise EdgesimError(f"{p}: cannot read dataset trace: {str(exc).splitlines()[0]}") from None
    if split is not None:
        if "split" not in df.columns:
            raise EdgesimError(f"{p}: workload.dataset_split is set but the trace has no 'split' column")
        df = df[df["split"] == split].reset_index(drop=True)
    if df.empty:
        raise EdgesimError(f"{p}: dataset trace has no rows" + (f" with split '{split}'" if split else ""))
    return df


class FrameStreams:
    """Per-mobile-device random streams (captures, head and tail uniforms, per-route packet losses).

    Each stream belongs to one mobile device, so the numbers a frame gets do not depend on how the run is
    cut into windows, and every policy sees the same captures and uniforms (common random numbers).
    """

    def __init__(self, seed: int, replication: int, n_mobiles: int) -> None:
        def rng(m: int, kind: int, extra: int = 0) -> np.random.Generator:
            return np.random.default_rng([seed, replication, m, kind, extra])

        self.capture = [rng(m, 0) for m in range(n_mobiles)]
        self.head = [rng(m, 1) for m in range(n_mobiles)]
        self.tail = [rng(m, 2) for m in range(n_mobiles)]
        self._loss: dict[tuple[int, int], np.random.Generator] = {}
        self._rng = rng
        self.last_capture_s = [0.0] * n_mobiles

    def loss(self, m: int, route: int) -> np.random.Generator:
        """The loss stream of mobile device m on route `route`."""
        if (m, route) not in self._loss:
            self._loss[(m, route)] = self._rng(m, 3, route)
        return self._loss[(m, route)]


def _trace_captures(scenario: Scenario, dataset: Optional[pd.DataFrame]) -> np.ndarray:
    """Capture times of a trace source: a CSV column or the dataset's capture_time_s (repeated past its end)."""
    w = scenario.workload
    if w.trace is not None:
        try:
            col = pd.read_csv(w.trace)["capture_time_s"].to_numpy(float)
        except FileNotFoundError:
            raise EdgesimError(f"{w.trace}: frame trace not found (workload.trace)") from None
        except KeyError:
            raise EdgesimError(f"{w.trace}: frame trace needs a capture_time_s column") from None
        except Exception as exc:
            raise EdgesimError(f"{w.trace}: cannot read frame trace: {str(exc).splitlines()[0]}") from None
    else:
        if "capture_time_s" not in dataset.columns:
            raise EdgesimError("workload.source 'trace' with a dataset needs a capture_time_s column in it")
        col = dataset["capture_time_s"].to_numpy(float)
    if col.size == 0 or not np.all(np.isfinite(col)) or np.any(np.diff(col) < 0) or col[0] < 0:
        raise EdgesimError("frame trace: capture_time_s must be finite, >= 0 and non-decreasing")
    return col


def capture_window(scenario: Scenario, m: int, n_mobiles: int, seq: np.ndarray, streams: FrameStreams,
                   trace: Optional[np.ndarray]) -> np.ndarray:
    """Capture times of mobile device m's frames seq (consecutive): periodic (staggered), Poisson or traced."""
    w = scenario.workload
    if w.source == "periodic":
        return seq / w.frame_rate_fps + m / (w.frame_rate_fps * n_mobiles)
    if w.source == "poisson":
        times = streams.last_capture_s[m] + np.cumsum(streams.capture[m].exponential(1.0 / w.frame_rate_fps, seq.size))
        if times.size:
            streams.last_capture_s[m] = float(times[-1])
        return times
    period = (trace[-1] - trace[0]) + (float(np.median(np.diff(trace))) if trace.size > 1 else 1.0)
    return trace[seq % trace.size] + (seq // trace.size) * period


@dataclass
class _Setup:
    """What every window of a sweep point needs: devices, link, topology, policies, dataset, engine."""

    sc: Scenario
    devices: dict
    server: Device
    groups: list
    group_of_instance: np.ndarray
    instance_names: list
    dataset: Optional[pd.DataFrame]
    packetiser: Packetiser
    downlink_bps: float
    topo: Topology
    policies: list
    engine: str
    trace: Optional[np.ndarray]


def _setup(sc: Scenario) -> _Setup:
    devices = resolve_devices(sc)
    dataset = load_dataset(sc.workload.dataset, sc.workload.dataset_split)
    groups = [(g.device, g.count) for g in sc.mobiles]
    group_of_instance = np.repeat(np.arange(len(groups)), [c for _, c in groups])
    instance_names = [f"{name}#{k}" if count > 1 else name for name, count in groups for k in range(count)]
    n_inst = group_of_instance.size
    link = sc.link
    uplink_trace = load_rate_trace(link.trace, link.trace_scale) if link.trace else RateTrace.constant(link.data_rate_mbps)
    downlink_mbps = link.downlink_data_rate_mbps or (
        link.data_rate_mbps if not link.trace else float(uplink_trace.rates_bps.mean() / 1e6))
    topo = Topology(
        servers=sc.edge.servers,
        uplink=[uplink_trace] * (1 if link.shared_medium else n_inst),
        shared_medium=link.shared_medium,
        propagation_s=link.propagation_delay_s,
        downlink_bps=downlink_mbps * 1e6,
        mobile_capacity=sc.queue.mobile_capacity,
        server_capacity=sc.queue.server_capacity,
        drop_stale=sc.queue.drop_stale,
        deadline_s=sc.queue.deadline_s,
        packet_payload_bytes=link.packet_payload_bytes,
        packet_overhead_bytes=link.packet_overhead_bytes,
    )
    policies = [make_policy(spec, sc.model, devices, dataset) for spec in sc.policies]
    needs_state = any(p.stateful for p in policies) or link.shared_medium or sc.queue.mobile_capacity is not None \
        or sc.queue.server_capacity is not None or sc.queue.drop_stale
    engine = sc.engine if sc.engine != "auto" else ("simpy" if needs_state else "fast")
    if engine == "fast" and needs_state:
        raise EdgesimError("engine 'fast' cannot run this scenario (adaptive policy, bounded queues, drop-stale or a "
                           "shared medium need the simulation state); use engine: simpy or auto")
    trace = _trace_captures(sc, dataset) if sc.workload.source == "trace" else None
    return _Setup(sc, devices, devices[sc.edge.device], groups, group_of_instance, instance_names, dataset,
                  Packetiser(link.packet_payload_bytes, link.packet_overhead_bytes, link.loss_probability),
                  downlink_mbps * 1e6, topo, policies, engine, trace)


@dataclass
class _Window:
    """One window of frames: the plan the engines read and what the frame table needs besides."""

    plan: FramePlan
    routes_by_group: list
    group: np.ndarray
    sample: np.ndarray
    seq: np.ndarray
    frame_id: np.ndarray


def _window(st: _Setup, pol, rep: int, streams: FrameStreams, start: int, stop: int) -> _Window:
    """Frames start..stop-1 of every mobile device (mobile-major), with each route's service demands."""
    sc = st.sc
    n_inst = st.group_of_instance.size
    per = stop - start
    seq_one = np.arange(start, stop)
    mobile = np.repeat(np.arange(n_inst), per)
    seq = np.tile(seq_one, n_inst)
    group = st.group_of_instance[mobile]
    capture = np.concatenate([capture_window(sc, m, n_inst, seq_one, streams, st.trace) for m in range(n_inst)])
    u_head = np.concatenate([streams.head[m].random(per) for m in range(n_inst)])
    u_tail = np.concatenate([streams.tail[m].random(per) for m in range(n_inst)])
    frames_per = sc.workload.frames
    sample = (mobile * frames_per + seq) % len(st.dataset) if st.dataset is not None else seq
    routes_by_group = [pol.routes(st.devices[name], st.server) for name, _ in st.groups]
    n_routes = len(routes_by_group[0])
    n = capture.size
    head = np.zeros((n_routes, n))
    tail = np.full((n_routes, n), np.nan)
    wire = np.zeros((n_routes, n))
    down = np.zeros((n_routes, n))
    mode = sc.workload.service_time
    for m in range(n_inst):
        sl = slice(m * per, (m + 1) * per)
        routes = routes_by_group[st.group_of_instance[m]]
        for r, route in enumerate(routes):
            if route.head is not None:
                head[r, sl] = route.head.draw(u_head[sl], mode)
            if route.tail is not None:
                tail[r, sl] = route.tail.draw(u_tail[sl], mode)
                size = np.full(per, route.up_bytes)
                wire[r, sl] = st.packetiser.wire_bytes(size, st.packetiser.draw_resent(streams.loss(m, r), size)) * 8.0
                down[r, sl] = st.packetiser.wire_bytes(np.full(per, route.down_bytes)) * 8.0 / st.downlink_bps
    inputs = FrameInputs(mobile_index=mobile, sample_index=sample, dataset=st.dataset, seed=sc.seed + rep)
    route = pol.choose(inputs, routes_by_group[0]).astype(np.int16) if not pol.stateful else np.zeros(n, np.int16)
    plan = FramePlan(capture, mobile, route, head, wire, tail, down, n_inst)
    return _Window(plan, routes_by_group, group, sample, seq, mobile * frames_per + seq)


def _slice_window(w: _Window, times: dict, lo: int, hi: int) -> tuple[_Window, dict]:
    """Rows lo..hi-1 of a window and of its stage times (the fast engine's chunked output)."""
    p = w.plan
    sl = slice(lo, hi)
    plan = FramePlan(p.capture_s[sl], p.mobile[sl], p.route[sl], p.head_s[:, sl], p.wire_bits[:, sl], p.tail_s[:, sl],
                     p.down_s[:, sl], p.n_mobiles)
    part = _Window(plan, w.routes_by_group, w.group[sl], w.sample[sl], w.seq[sl], w.frame_id[sl])
    return part, {k: v[sl] for k, v in times.items()}


def _frames_df(st: _Setup, w: _Window, times: dict, policy: str, rep: int, point: int) -> pd.DataFrame:
    df = frame_table(w.plan, times, w.routes_by_group, w.group, st.devices, [n for n, _ in st.groups], st.server,
                     st.instance_names, w.sample, st.dataset, st.sc.link.propagation_delay_s, st.downlink_bps,
                     w.frame_id)
    df.insert(0, "policy", policy)
    df.insert(0, "replication", rep)
    df.insert(0, "point", point)
    df["warmup"] = w.seq < st.sc.workload.warmup_frames
    return df


def run_point(scenario: Scenario, point: int, overrides: dict, frames_path: Optional[Path] = None) -> PointResult:
    """Simulate every policy at one sweep point (common random numbers across policies).

    With frames_path and more frames than workload.chunk_frames, the SimPy engine runs window by window
    and frames go straight to that Parquet file, so memory stays flat (PointResult.frames is then None).
    """
    sc = apply_overrides(scenario, overrides, source=f"sweep point {point}")
    st = _setup(sc)
    n_inst = st.group_of_instance.size
    frames_per = sc.workload.frames
    chunk_per_mobile = max(1, sc.workload.chunk_frames // n_inst)
    streaming = frames_path is not None and frames_per * n_inst > sc.workload.chunk_frames
    accs = {spec.display: SummaryAccumulator() for spec in sc.policies}
    kept: list[pd.DataFrame] = []
    writer = None
    target = atomic_target(frames_path) if streaming else None
    tmp = target.__enter__() if target is not None else None

    def write_frames(df: pd.DataFrame, label: str) -> None:
        """Fold a chunk of frame records into the summary and append it to the Parquet file as a row group."""
        nonlocal writer
        import pyarrow as pa
        import pyarrow.parquet as pq

        accs[label].add(df)
        table = pa.Table.from_pandas(df, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
        writer.write_table(table.cast(writer.schema) if table.schema != writer.schema else table)

    try:
        for rep in range(sc.replications):
            for pol in st.policies:
                streams = FrameStreams(sc.seed, rep, n_inst)
                label = pol.spec.display
                choose_one = None
                if pol.stateful:
                    routes_cache = {m: pol.routes(st.devices[st.groups[st.group_of_instance[m]][0]], st.server)
                                    for m in range(n_inst)}
                    choose_one = lambda view, m, _p=pol, _rc=routes_cache: _p.choose_one(view, _rc[m])  # noqa: E731
                if streaming and st.engine == "fast":
                    # the exact recursion needs every frame at once (about 170 bytes a frame); the frame table,
                    # the big part, is built and written a chunk of rows at a time

                    w = _window(st, pol, rep, streams, 0, frames_per)
                    times = simulate_fast(w.plan, st.topo)
                    for lo in range(0, w.plan.capture_s.size, sc.workload.chunk_frames):
                        part = _slice_window(w, times, lo, lo + sc.workload.chunk_frames)
                        write_frames(_frames_df(st, part[0], part[1], label, rep, point), label)
                    continue
                if not streaming:
                    w = _window(st, pol, rep, streams, 0, frames_per)
                    if st.engine == "fast":

                        times = simulate_fast(w.plan, st.topo)
                    else:
                        times = simulate(w.plan, st.topo, choose_one, pol.spec.bandwidth_estimate, pol.spec.ewma_alpha)
                    df = _frames_df(st, w, times, label, rep, point)
                    accs[label].add(df)
                    kept.append(df)
                    continue
                windows: dict[int, _Window] = {}

                def load(k: int, _pol=pol, _rep=rep, _streams=streams):
                    start = k * chunk_per_mobile
                    if start >= frames_per:
                        return None
                    windows[k] = _window(st, _pol, _rep, _streams, start, min(frames_per, start + chunk_per_mobile))
                    return windows[k].plan

                def done(k: int, _plan, times, _label=label, _rep=rep) -> None:
                    write_frames(_frames_df(st, windows.pop(k), times, _label, _rep, point), _label)

                simulate_windows(load, st.topo, done, choose_one, pol.spec.bandwidth_estimate, pol.spec.ewma_alpha)
        if writer is not None:
            writer.close()
            writer = None
        if target is not None:
            target.__exit__(None, None, None)
            target = None
    except BaseException as exc:
        if writer is not None:
            writer.close()
        if target is not None:
            target.__exit__(type(exc), exc, exc.__traceback__)
        raise
    idle = {name: st.devices[name].idle_w for name, _ in st.groups}
    rate = float("nan") if sc.link.trace else sc.link.data_rate_mbps
    mobile_label = "+".join(f"{name}x{count}" if count > 1 else name for name, count in st.groups)
    rows = []
    for spec in sc.policies:
        row = {"point": point, "policy": spec.display, "mobile": mobile_label, "edge": sc.edge.device,
               "data_rate_mbps": rate}
        row.update(accs[spec.display].result(idle, n_inst))
        for path, value in overrides.items():
            row[f"sweep.{path}"] = value
        row["engine"] = st.engine + ((" (windows)" if st.engine == "simpy" else " (chunked output)") if streaming else "")
        rows.append(row)
    local = next((p.display for p in sc.policies if p.name == "local"), None)
    offload = next((p.display for p in sc.policies if p.name == "offload"), None)
    summary = add_gains(pd.DataFrame(rows), local, offload)
    frames = pd.concat(kept, ignore_index=True) if kept else None
    return PointResult(point, frames, summary, st.engine)


def frame_table(plan: FramePlan, times: dict, routes_by_group: list[list[Route]], group: np.ndarray,
                devices: dict[str, Device], group_names: list[str], server: Device, instance_names: list[str],
                sample: np.ndarray, dataset: Optional[pd.DataFrame], propagation_s: float,
                downlink_bps: float, frame_id: Optional[np.ndarray] = None) -> pd.DataFrame:
    """Per-frame records: each delay component, bytes, energy (compute and radio) and the decision."""
    n = plan.capture_s.size
    idx = np.arange(n)
    r = times["route"].astype(np.int64)
    capture = plan.capture_s
    head_start, head_end = times["head_start"], times["head_end"]
    up_start, up_end = times["up_start"], times["up_end"]
    tail_start, tail_end = times["tail_start"], times["tail_end"]
    done = times["done"]
    status = times["status"]
    offloaded = ~np.isnan(up_end)
    transfer = np.where(offloaded, up_end - up_start, 0.0)
    n_routes = len(routes_by_group[0])
    head_power = np.array([[routes[k].head.power_w if routes[k].head else 0.0 for k in range(n_routes)] for routes in routes_by_group])
    tail_power = np.array([[routes[k].tail.power_w if routes[k].tail else 0.0 for k in range(n_routes)] for routes in routes_by_group])
    up_bytes = np.array([[routes[k].up_bytes for k in range(n_routes)] for routes in routes_by_group])
    down_bytes = np.array([[routes[k].down_bytes for k in range(n_routes)] for routes in routes_by_group])
    decisions = np.array([rt.decision for rt in routes_by_group[0]], dtype=object)
    wire_bits = plan.wire_bits[r, idx]
    down_dur = np.where(offloaded, times["down_end"] - times["down_start"], 0.0)
    head_s = np.nan_to_num(head_end - head_start)
    tx_w = np.array([devices[nm].radio.tx_w for nm in group_names])[group]
    tx_slope = np.array([devices[nm].radio.tx_w_per_mbps for nm in group_names])[group]
    rx_w = np.array([devices[nm].radio.rx_w for nm in group_names])[group]
    rx_slope = np.array([devices[nm].radio.rx_w_per_mbps for nm in group_names])[group]
    down_bits = down_dur * downlink_bps
    radio_j = np.where(offloaded, tx_w * transfer + tx_slope * wire_bits / 1e6 + rx_w * down_dur + rx_slope * down_bits / 1e6, 0.0)
    tail_s = np.where(offloaded, tail_end - tail_start, 0.0)
    df = pd.DataFrame({
        "frame": idx if frame_id is None else frame_id,
        "mobile": np.asarray(instance_names, dtype=object)[plan.mobile],
        "capture_s": capture,
        "decision": decisions[r],
        "status": STATUS_NAMES[status],
        "drop_stage": STAGES[times["drop_stage"]],
        "mobile_queue_s": head_start - capture,
        "head_s": head_end - head_start,
        "uplink_queue_s": np.where(offloaded, up_start - head_end, 0.0),
        "transfer_s": transfer,
        "propagation_s": np.where(offloaded, 2 * propagation_s, 0.0),
        "server_queue_s": np.where(offloaded, tail_start - up_end - propagation_s, 0.0),
        "tail_s": tail_s,
        "return_s": np.where(offloaded, done - tail_end - propagation_s, 0.0),
        "delay_s": np.where(status == 2, np.nan, done - capture),
        "done_s": done,
        "bytes_up": np.where(offloaded, up_bytes[group, r], 0),
        "wire_bytes_up": np.where(offloaded, wire_bits / 8.0, 0.0),
        "bytes_down": np.where(offloaded, down_bytes[group, r], 0),
        "energy_mobile_compute_j": head_s * head_power[group, r],
        "energy_mobile_radio_j": radio_j,
        "energy_server_j": np.nan_to_num(tail_s) * tail_power[group, r],
        "sample": sample,
    })
    dropped = status == 2
    for col in ("mobile_queue_s", "head_s", "uplink_queue_s", "transfer_s", "server_queue_s", "tail_s", "return_s"):
        df.loc[dropped, col] = np.nan
    if dataset is not None and "label" in dataset.columns:
        preds = {rt.prediction for rt in routes_by_group[0] if rt.prediction}
        if preds:
            pred_cols = np.array([rt.prediction or "" for rt in routes_by_group[0]], dtype=object)[r]
            prediction = np.empty(n, dtype=object)
            for col in preds:
                m = pred_cols == col
                prediction[m] = dataset[col].to_numpy()[sample[m]]
            df["label"] = dataset["label"].to_numpy()[sample]
            df["prediction"] = pd.Series(prediction).infer_objects()
            df["correct"] = df["label"] == df["prediction"]
    return df


def run_sweep(scenario: Scenario, jobs: int = 1, progress: Optional[Callable[[int, int], None]] = None,
              skip: Optional[set[int]] = None, on_point: Optional[Callable[[PointResult], None]] = None,
              executor: str = "process", scheduler: Optional[str] = None,
              frames_dir: Optional[Path] = None) -> list[PointResult]:
    """Run every sweep point (in `jobs` processes, or on a Dask cluster), returned in point order.

    Each point is a pure function of (scenario, point index, overrides), so results are the same
    whatever the executor, the job count or the order points finish in.
    """
    points = sweep_points(scenario)
    todo = [(k, ov) for k, ov in enumerate(points) if not skip or k not in skip]

    def path(k: int) -> Optional[Path]:
        return frames_dir / f"{k:05d}.frames.parquet" if frames_dir is not None else None

    results: dict[int, PointResult] = {}
    total = len(todo)

    def keep(res: PointResult, done_n: int) -> None:
        results[res.point] = res
        if on_point:
            on_point(res)
        if progress:
            progress(done_n, total)

    if executor == "dask":
        from dask.distributed import Client, LocalCluster
        from dask.distributed import as_completed as dask_completed

        cluster = None if scheduler else LocalCluster(n_workers=max(jobs, 1), threads_per_worker=1, processes=True,
                                                     dashboard_address=None)
        with Client(scheduler or cluster) as client:
            futures = [client.submit(run_point, scenario, k, ov, path(k), pure=False) for k, ov in todo]
            for done_n, fut in enumerate(dask_completed(futures), start=1):
                keep(fut.result(), done_n)
        if cluster is not None:
            cluster.close()
    elif executor != "process":
        raise EdgesimError(f"unknown executor '{executor}'; known: dask, process")
    elif jobs <= 1 or total <= 1:
        for done_n, (k, ov) in enumerate(todo, start=1):
            keep(run_point(scenario, k, ov, path(k)), done_n)
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(run_point, scenario, k, ov, path(k)) for k, ov in todo]
            try:
                for done_n, fut in enumerate(as_completed(futures), start=1):
                    keep(fut.result(), done_n)
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    return [results[k] for k in sorted(results)]


def run(scenario: Scenario | str | Path, jobs: int = 1, executor: str = "process",
        scheduler: Optional[str] = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Python API for notebooks: simulate a scenario (object or YAML path) and return (frames, summary)."""
    if not isinstance(scenario, Scenario):

        scenario = load_scenario(scenario)
    results = run_sweep(scenario, jobs=jobs, executor=executor, scheduler=scheduler)
    frames = pd.concat([r.frames for r in results], ignore_index=True)
    summary = pd.concat([r.summary for r in results], ignore_index=True)
    return frames, order_summary(summary)


def order_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Summary columns in the documented order, extra ones (sweep.*, accuracy, f1, engine) after."""
    first = [c for c in SUMMARY_COLUMNS if c in summary.columns]
    rest = [c for c in summary.columns if c not in first]
    return summary[first + rest].reset_index(drop=True)
