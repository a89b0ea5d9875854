"""From a validated scenario to per-frame records and a summary: one sweep point at a time, in parallel."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

from profilers.errors import EdgesimError
from simulator.devices import Device, resolve_devices
from simulator.engine import STAGES, STATUS_NAMES, FramePlan, Topology, simulate
from simulator.link import Packetiser, RateTrace, load_rate_trace
from simulator.metrics import SUMMARY_COLUMNS, add_gains, summarise
from simulator.policies import FrameInputs, Route, make_policy
from simulator.scenario import Scenario, apply_overrides, sweep_points


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


def capture_times(scenario: Scenario, n_instances: int, rng: np.random.Generator,
                  dataset: Optional[pd.DataFrame]) -> np.ndarray:
    """(n_instances, frames) capture times: periodic (staggered evenly), Poisson, or from a trace."""
    w = scenario.workload
    n = w.frames
    if w.source == "periodic":
        base = np.arange(n) / w.frame_rate_fps
        offsets = np.arange(n_instances) / (w.frame_rate_fps * n_instances)
        return base[None, :] + offsets[:, None]
    if w.source == "poisson":
        gaps = rng.exponential(1.0 / w.frame_rate_fps, size=(n_instances, n))
        return np.cumsum(gaps, axis=1)
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
    if not np.all(np.isfinite(col)) or np.any(np.diff(col) < 0) or (col.size and col[0] < 0):
        raise EdgesimError("frame trace: capture_time_s must be finite, >= 0 and non-decreasing")
    reps = -(-n // col.size)
    period = (col[-1] - col[0]) + (np.median(np.diff(col)) if col.size > 1 else 1.0)
    times = np.concatenate([col + k * period for k in range(reps)])[:n]
    return np.tile(times, (n_instances, 1))


def _route_arrays(routes_by_group: list[list[Route]], group: np.ndarray, u_head: np.ndarray, u_tail: np.ndarray,
                  rng: np.random.Generator, packetiser: Packetiser, downlink_bps: float, mode: str):
    """(R, N) service demands per route: head and tail drawn from the same uniforms, bits on the wire."""
    n = group.size
    n_routes = len(routes_by_group[0])
    head = np.zeros((n_routes, n))
    tail = np.full((n_routes, n), np.nan)
    wire = np.zeros((n_routes, n))
    down = np.zeros((n_routes, n))
    for r in range(n_routes):
        resent = None
        for g, routes in enumerate(routes_by_group):
            mask = group == g
            route = routes[r]
            if route.head is not None:
                head[r, mask] = route.head.draw(u_head[mask], mode)
            if route.tail is not None:
                tail[r, mask] = route.tail.draw(u_tail[mask], mode)
                size = np.full(int(mask.sum()), route.up_bytes)
                resent = packetiser.draw_resent(rng, size)
                wire[r, mask] = packetiser.wire_bytes(size, resent) * 8.0
                down[r, mask] = packetiser.wire_bytes(np.full(int(mask.sum()), route.down_bytes)) * 8.0 / downlink_bps
    return head, tail, wire, down


def run_point(scenario: Scenario, point: int, overrides: dict) -> PointResult:
    """Simulate every policy at one sweep point (common random numbers across policies)."""
    sc = apply_overrides(scenario, overrides, source=f"sweep point {point}")
    devices = resolve_devices(sc)
    dataset = load_dataset(sc.workload.dataset, sc.workload.dataset_split)
    server: Device = devices[sc.edge.device]
    groups = [(g.device, g.count) for g in sc.mobiles]
    group_of_instance = np.repeat(np.arange(len(groups)), [c for _, c in groups])
    instance_names = [f"{name}#{k}" if count > 1 else name for name, count in groups for k in range(count)]
    n_inst = group_of_instance.size
    link = sc.link
    uplink_trace = load_rate_trace(link.trace, link.trace_scale) if link.trace else RateTrace.constant(link.data_rate_mbps)
    downlink_bps = (link.downlink_data_rate_mbps or (link.data_rate_mbps if not link.trace else float(uplink_trace.rates_bps.mean() / 1e6))) * 1e6
    packetiser = Packetiser(link.packet_payload_bytes, link.packet_overhead_bytes, link.loss_probability)
    topo = Topology(
        servers=sc.edge.servers,
        uplink=[uplink_trace] * (1 if link.shared_medium else n_inst),
        shared_medium=link.shared_medium,
        propagation_s=link.propagation_delay_s,
        downlink_bps=downlink_bps,
        mobile_capacity=sc.queue.mobile_capacity,
        server_capacity=sc.queue.server_capacity,
        drop_stale=sc.queue.drop_stale,
        deadline_s=sc.queue.deadline_s,
        packet_payload_bytes=link.packet_payload_bytes,
        packet_overhead_bytes=link.packet_overhead_bytes,
    )
    policies = [make_policy(spec, sc.model, devices, dataset) for spec in sc.policies]
    stateful = any(p.stateful for p in policies)
    needs_state = stateful or link.shared_medium or sc.queue.mobile_capacity is not None or \
        sc.queue.server_capacity is not None or sc.queue.drop_stale
    engine = sc.engine if sc.engine != "auto" else ("simpy" if needs_state else "fast")
    if engine == "fast" and needs_state:
        raise EdgesimError("engine 'fast' cannot run this scenario (adaptive policy, bounded queues, drop-stale or a "
                           "shared medium need the simulation state); use engine: simpy or auto")
    frame_frames, rows = [], []
    for rep in range(sc.replications):
        rng = np.random.default_rng([sc.seed, rep])
        cap = capture_times(sc, n_inst, rng, dataset)  # (inst, frames)
        n_frames = sc.workload.frames
        capture = cap.reshape(-1)
        mobile = np.repeat(np.arange(n_inst), n_frames)
        group = group_of_instance[mobile]
        seq = np.tile(np.arange(n_frames), n_inst)
        sample = (mobile * n_frames + seq) % len(dataset) if dataset is not None else seq
        u_head = rng.random(capture.size)
        u_tail = rng.random(capture.size)
        loss_seed = int(rng.integers(2**31))
        inputs = FrameInputs(mobile_index=mobile, sample_index=sample, dataset=dataset, seed=sc.seed + rep)
        for pol in policies:
            routes_by_group = [pol.routes(devices[name], server) for name, _ in groups]
            head, tail, wire, down = _route_arrays(routes_by_group, group, u_head, u_tail,
                                                   np.random.default_rng(loss_seed), packetiser, downlink_bps,
                                                   sc.workload.service_time)
            route = pol.choose(inputs, routes_by_group[0]).astype(np.int16) if not pol.stateful else np.zeros(capture.size, np.int16)
            plan = FramePlan(capture, mobile, route, head, wire, tail, down, n_inst)
            choose_one = None
            if pol.stateful:
                choose_one = lambda view, m, _p=pol, _r=routes_by_group: _p.choose_one(view, _r[group_of_instance[m]])
            if engine == "fast":
                from simulator.fast import simulate_fast

                times = simulate_fast(plan, topo)
            else:
                times = simulate(plan, topo, choose_one, pol.spec.bandwidth_estimate, pol.spec.ewma_alpha)
            df = frame_table(plan, times, routes_by_group, group, devices, [n for n, _ in groups], server,
                             instance_names, sample, dataset, link.propagation_delay_s, downlink_bps)
            df.insert(0, "policy", pol.spec.display)
            df.insert(0, "replication", rep)
            df["warmup"] = seq < sc.workload.warmup_frames
            frame_frames.append(df)
    frames = pd.concat(frame_frames, ignore_index=True)
    frames.insert(0, "point", point)
    idle = {name: devices[name].idle_w for name, _ in groups}
    rate = float("nan") if link.trace else link.data_rate_mbps
    mobile_label = "+".join(f"{name}x{count}" if count > 1 else name for name, count in groups)
    for spec in sc.policies:
        row = {"point": point, "policy": spec.display, "mobile": mobile_label, "edge": sc.edge.device,
               "data_rate_mbps": rate}
        row.update(summarise(frames[frames["policy"] == spec.display], idle, n_inst))
        for path, value in overrides.items():
            row[f"sweep.{path}"] = value
        row["engine"] = engine
        rows.append(row)
    local = next((p.display for p in sc.policies if p.name == "local"), None)
    offload = next((p.display for p in sc.policies if p.name == "offload"), None)
    summary = add_gains(pd.DataFrame(rows), local, offload)
    return PointResult(point, frames, summary, engine)


def frame_table(plan: FramePlan, times: dict, routes_by_group: list[list[Route]], group: np.ndarray,
                devices: dict[str, Device], group_names: list[str], server: Device, instance_names: list[str],
                sample: np.ndarray, dataset: Optional[pd.DataFrame], propagation_s: float,
                downlink_bps: float) -> pd.DataFrame:
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
        "frame": idx,
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
              executor: str = "process", scheduler: Optional[str] = None) -> list[PointResult]:
    """Run every sweep point (in `jobs` processes, or on a Dask cluster), returned in point order.

    Each point is a pure function of (scenario, point index, overrides), so results are the same
    whatever the executor, the job count or the order points finish in.
    """
    points = sweep_points(scenario)
    todo = [(k, ov) for k, ov in enumerate(points) if not skip or k not in skip]
    results: dict[int, PointResult] = {}
    total = len(todo)

    def keep(res: PointResult, done_n: int) -> None:
        results[res.point] = res
        if on_point:
            on_point(res)
        if progress:
            progress(done_n, total)

    if executor == "dask":
        from dask.distributed import Client, LocalCluster, as_completed as dask_completed

        cluster = None if scheduler else LocalCluster(n_workers=max(jobs, 1), threads_per_worker=1, processes=True,
                                                     dashboard_address=None)
        with Client(scheduler or cluster) as client:
            futures = [client.submit(run_point, scenario, k, ov, pure=False) for k, ov in todo]
            for done_n, fut in enumerate(dask_completed(futures), start=1):
                keep(fut.result(), done_n)
        if cluster is not None:
            cluster.close()
    elif executor != "process":
        raise EdgesimError(f"unknown executor '{executor}'; known: dask, process")
    elif jobs <= 1 or total <= 1:
        for done_n, (k, ov) in enumerate(todo, start=1):
            keep(run_point(scenario, k, ov), done_n)
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(run_point, scenario, k, ov) for k, ov in todo]
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
        from simulator.scenario import load_scenario

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
