"""A sweep point assembled for the engines: devices, link, stations (Topology), policies, and windows of frames."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from profilers.errors import EdgesimError
from simulator.devices import Device, mobile_radio_notes, resolve_devices
from simulator.link import LinkDelay, Packetiser, RateTrace, load_delay_trace, load_rate_trace
from simulator.plan import FramePlan, Topology
from simulator.policies import BasePolicy, FrameInputs, Route, make_policy
from simulator.scenario import Scenario
from simulator.workload import FrameStreams, capture_window, load_dataset, trace_captures


@dataclass
class Point:
    """What every window of a sweep point needs: devices, link, topology, policies, dataset, engine."""

    scenario: Scenario
    devices: dict[str, Device]
    server: Device
    groups: list[tuple[str, int]]  # (device name, count) per mobile group
    group_of_instance: np.ndarray  # mobile device instance -> its group
    instance_names: list[str]
    dataset: Optional[pd.DataFrame]
    packetiser: Packetiser
    downlink_bps: float
    topo: Topology
    policies: list[BasePolicy]
    engine: str  # "fast" or "simpy"
    capture_trace: Optional[np.ndarray]
    notes: list[str]  # what the user should know about how the scenario was read (one line each)

    @property
    def n_mobiles(self) -> int:
        """Mobile device instances (groups expanded by their count)."""
        return int(self.group_of_instance.size)

    def routes_of_group(self, policy: BasePolicy) -> list[list[Route]]:
        """The policy's routes for each mobile group (same order of routes in every group)."""
        return [policy.routes(self.devices[name], self.server) for name, _ in self.groups]

    def routes_of_mobile(self, policy: BasePolicy) -> list[list[Route]]:
        """The policy's routes for each mobile device instance."""
        by_group = self.routes_of_group(policy)
        return [by_group[g] for g in self.group_of_instance]


def needs_state(scenario: Scenario, policies: list[BasePolicy]) -> bool:
    """True when frames' times depend on the simulation state (adaptive policy, bounds, drop-stale, shared medium)."""
    q = scenario.queue
    return any(p.stateful for p in policies) or scenario.link.shared_medium or q.mobile_capacity is not None \
        or q.server_capacity is not None or q.drop_stale


def assemble(sc: Scenario) -> Point:
    """Resolve a scenario (one sweep point) into devices, stations, policies and the engine that can run it."""
    devices, notes = mobile_radio_notes(sc, resolve_devices(sc))
    dataset = load_dataset(sc.workload.dataset, sc.workload.dataset_split)
    groups = [(g.device, g.count) for g in sc.mobiles]
    group_of_instance = np.repeat(np.arange(len(groups)), [c for _, c in groups])
    instance_names = [f"{name}#{k}" if count > 1 else name for name, count in groups for k in range(count)]
    link = sc.link
    uplink_trace = load_rate_trace(link.trace, link.trace_scale, link.trace_end) if link.trace \
        else RateTrace.constant(link.data_rate_mbps)
    downlink_mbps = link.downlink_data_rate_mbps or (
        link.data_rate_mbps if not link.trace else float(uplink_trace.rates_bps.mean() / 1e6))
    uplinks, delays = mobile_links(sc, uplink_trace)
    topo = Topology(
        servers=sc.edge.servers,
        uplink=[uplink_trace] if link.shared_medium else uplinks,
        shared_medium=link.shared_medium,
        propagation_s=link.propagation_delay_s,
        downlink_bps=downlink_mbps * 1e6,
        mobile_capacity=sc.queue.mobile_capacity,
        server_capacity=sc.queue.server_capacity,
        drop_stale=sc.queue.drop_stale,
        deadline_s=sc.queue.deadline_s,
        packet_payload_bytes=link.packet_payload_bytes,
        packet_overhead_bytes=link.packet_overhead_bytes,
        delay=delays,
    )
    policies = [make_policy(spec, sc.model, devices, dataset) for spec in sc.policies]
    stateful = needs_state(sc, policies)
    engine = sc.engine if sc.engine != "auto" else ("simpy" if stateful else "fast")
    if engine == "fast" and stateful:
        raise EdgesimError("engine 'fast' cannot run this scenario (adaptive policy, bounded queues, drop-stale or a "
                           "shared medium need the simulation state); use engine: simpy or auto")
    capture_trace = trace_captures(sc, dataset) if sc.workload.source == "trace" else None
    return Point(sc, devices, devices[sc.edge.device], groups, group_of_instance, instance_names, dataset,
                 Packetiser(link.packet_payload_bytes, link.packet_overhead_bytes, link.loss_probability),
                 downlink_mbps * 1e6, topo, policies, engine, capture_trace, notes)


def mobile_links(sc: Scenario, scenario_trace: RateTrace) -> tuple[list[RateTrace], Optional[list[LinkDelay]]]:
    """Each mobile device's uplink (its group's own link or the scenario's, at its offset) and varying delay."""
    link = sc.link
    uplinks: list[RateTrace] = []
    delays: list[LinkDelay] = []
    for g in sc.mobiles:
        own = g.link
        spec = own or link
        path = spec.trace
        base = scenario_trace if own is None else (
            load_rate_trace(own.trace, own.trace_scale, own.trace_end) if own.trace else RateTrace.constant(own.data_rate_mbps))
        rtt = load_delay_trace(path, spec.trace_end) if link.delay and link.delay.from_trace and path else None
        for k in range(g.count):
            offset = spec.trace_offset_s + k * spec.offset_step_s if path else 0.0
            uplinks.append(base.shifted(offset))
            if link.delay is not None:
                d = link.delay
                delays.append(LinkDelay(d.mean_s or link.propagation_delay_s, rtt.shifted(offset) if rtt else None,
                                        d.distribution, d.std_s, fifo=not link.allow_reordering))
    return uplinks, (delays if link.delay is not None else None)


@dataclass
class Window:
    """One window of frames: the plan the engines read and what the frame table needs besides."""

    plan: FramePlan
    routes_by_group: list[list[Route]]
    group: np.ndarray
    sample: np.ndarray
    seq: np.ndarray
    frame_id: np.ndarray

    def rows(self, lo: int, hi: int) -> "Window":
        """Frames lo..hi-1 of this window."""
        sl = slice(lo, hi)
        return Window(self.plan.rows(lo, hi), self.routes_by_group, self.group[sl], self.sample[sl], self.seq[sl],
                      self.frame_id[sl])


def plan_window(pt: Point, pol: BasePolicy, rep: int, streams: FrameStreams, start: int, stop: int) -> Window:
    """Frames start..stop-1 of every mobile device (mobile-major), with each route's service demands."""
    sc = pt.scenario
    n_inst = pt.n_mobiles
    per = stop - start
    seq_one = np.arange(start, stop)
    mobile = np.repeat(np.arange(n_inst), per)
    seq = np.tile(seq_one, n_inst)
    group = pt.group_of_instance[mobile]
    capture = np.concatenate([capture_window(sc, m, n_inst, seq_one, streams, pt.capture_trace) for m in range(n_inst)])
    u_head = np.concatenate([streams.head[m].random(per) for m in range(n_inst)])
    u_tail = np.concatenate([streams.tail[m].random(per) for m in range(n_inst)])
    frames_per = sc.workload.frames
    sample = (mobile * frames_per + seq) % len(pt.dataset) if pt.dataset is not None else seq
    routes_by_group = pt.routes_of_group(pol)
    n_routes = len(routes_by_group[0])
    n = capture.size
    head = np.zeros((n_routes, n))
    tail = np.full((n_routes, n), np.nan)
    wire = np.zeros((n_routes, n))
    down = np.zeros((n_routes, n))
    mode = sc.workload.service_time
    packetiser = pt.packetiser
    for m in range(n_inst):
        sl = slice(m * per, (m + 1) * per)
        for r, route in enumerate(routes_by_group[pt.group_of_instance[m]]):
            if route.head is not None:
                head[r, sl] = route.head.draw(u_head[sl], mode)
            if route.tail is not None:
                tail[r, sl] = route.tail.draw(u_tail[sl], mode)
                size = np.full(per, route.up_bytes)
                wire[r, sl] = packetiser.wire_bytes(size, packetiser.draw_resent_bytes(streams.loss(m, r), size)) * 8.0
                down[r, sl] = packetiser.wire_bytes(np.full(per, route.down_bytes)) * 8.0 / pt.downlink_bps
    inputs = FrameInputs(mobile_index=mobile, sample_index=sample, dataset=pt.dataset, seed=sc.seed + rep)
    route = pol.choose(inputs, routes_by_group[0]).astype(np.int16) if not pol.stateful else np.zeros(n, np.int16)
    delay_u = None
    if pt.topo.delay is not None:
        delay_u = np.concatenate([streams.delay[m].random((2, per)) for m in range(n_inst)], axis=1)
    plan = FramePlan(capture, mobile, route, head, wire, tail, down, n_inst, delay_u)
    return Window(plan, routes_by_group, group, sample, seq, mobile * frames_per + seq)
