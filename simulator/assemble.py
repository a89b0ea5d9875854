"""A sweep point assembled for the engines: devices, link, stations (Topology), policies, and windows of frames."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Optional

import numpy as np

from simulator.devices import Device, ServiceTime
from simulator.link import LinkDelay, Packetiser, RateTrace, load_delay_trace
from simulator.plan import Batching, EdgeTier, FramePlan, Tiers, Topology, demand_rows
from simulator.policies import BasePolicy, FrameInputs, Route, make_policy
from simulator.resolve import mobile_radio_notes, resolve_devices
from simulator.scenario import Scenario
from simulator.workload import FrameStreams, capture_windows, load_dataset, trace_captures

if TYPE_CHECKING:  # annotations only: validate imports no pandas
    import pandas as pd


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
    engine: str  # "compiled" or "simpy"
    capture_trace: Optional[np.ndarray]
    notes: list[str]  # what the user should know about how the scenario was read (one line each)
    edge_devices: list[Device] = field(default_factory=list)  # every edge server's device (server = the first)
    cloud: Optional[Device] = None
    wan_packetiser: Optional[Packetiser] = None

    @property
    def n_mobiles(self) -> int:
        """Mobile device instances (groups expanded by their count)."""
        return int(self.group_of_instance.size)

    @property
    def edge_of_mobile(self) -> Optional[np.ndarray]:
        """Static and round-robin assignment: each mobile device's edge server (None: one edge server)."""
        return self.topo.tiers.edge_of_mobile if self.topo.tiers is not None else None

    @property
    def wan_down_bps(self) -> float:
        """Data rate of the WAN from the cloud back to the edge servers (infinite without a cloud)."""
        return self.topo.tiers.wan_down_bps if self.topo.tiers is not None else float("inf")

    @cached_property
    def prediction_dtype(self) -> Optional[object]:
        """The (nullable) dtype of the predictions when any policy's routes predict from a labelled dataset, else
        None: every frame table of the point then has label, prediction and correct, so all share one schema."""
        if self.dataset is None or "label" not in self.dataset.columns:
            return None
        cols = [rt.prediction for pol in self.policies for routes in self.routes_of_group(pol) for rt in routes
                if rt.prediction]
        return self.dataset[cols[0]].convert_dtypes().dtype if cols else None

    def routes_of_group(self, policy: BasePolicy) -> list[list[Route]]:
        """The policy's routes for each mobile group via each edge server in turn (route r' = edge x R + r); those of
        a pair of devices are made once (edge servers of one device share them: 100 laptops, one set of routes)."""
        edges = self.edge_devices or [self.server]
        made: dict[tuple[int, int], list[Route]] = {}

        def of_pair(mobile: Device, edge: Device) -> list[Route]:
            key = (id(mobile), id(edge))
            if key not in made:
                made[key] = policy.routes(mobile, edge)
            return made[key]

        return [[r for e in edges for r in of_pair(self.devices[name], e)] for name, _ in self.groups]


def with_device_errors(pt: Point, seed: int, rep: int) -> Point:
    """The point with every derived device sped up or slowed down by one of its validated errors, drawn per replication.

    A derived profile records the leave-one-out errors e = predicted / published - 1 of its method on its stack
    (profilers.calibrate); the device's true latency is then derived / (1 + e), a speed factor of 1 + e. Drawing
    e from that empirical distribution per replication turns the method's validated error into a band on every
    result; devices without validated errors (measured, inline, too few published points) stay as they are. A
    model derived by another method (the dense-operator fallback of a model that could not be traced) draws from
    that method's own errors instead, or stays as it is where that method has none (as simulator.devices'
    fidelity_notes prints them).
    """
    devices = dict(pt.devices)
    for name, dev in pt.devices.items():
        prov = dev.profile.provenance if dev.profile is not None else None
        errors = tuple(getattr(prov, "validated_errors", None) or [])
        device_factor = 1.0 + _draw(errors, seed, rep, name) if errors else 1.0
        own = {mid: mp for mid, mp in (dev.profile.models.items() if dev.profile is not None else ())
               if mp.derivation_method and tuple(mp.derivation_errors) != errors}
        per_model = tuple((mid, (1.0 + _draw(tuple(mp.derivation_errors), seed, rep, name, mid)
                                 if mp.derivation_errors else 1.0) / device_factor) for mid, mp in sorted(own.items()))
        if errors or any(f != 1.0 for _, f in per_model):
            devices[name] = replace(dev, speed_factor=dev.speed_factor * device_factor,
                                    model_speed_factors=dev.model_speed_factors + per_model)
    sc = pt.scenario
    edges = [devices[e.device] for e in sc.edge_servers()]
    cloud = devices[sc.cloud.device] if sc.cloud is not None else None
    for pol in pt.policies:
        pol.with_cloud(cloud)
    return replace(pt, devices=devices, server=edges[0], edge_devices=edges if pt.edge_devices else [], cloud=cloud)


def _draw(errors: tuple[float, ...], seed: int, rep: int, *names: str) -> float:
    """One validated error drawn for a device (or one of its models) in one replication, from its own stream."""
    rng = np.random.default_rng([seed, rep, 11, *(zlib.crc32(n.encode()) for n in names)])
    return float(rng.choice(errors))


def assigned_edges(sc: Scenario, group_of_instance: np.ndarray) -> np.ndarray:
    """Each mobile device's edge server under static (mobiles.N.edge) or round-robin assignment (mobile m -> m mod E)."""
    names = [e.name for e in sc.edge_servers()]
    if sc.assignment == "static":
        per_group = [names.index(g.edge) if g.edge is not None else 0 for g in sc.mobiles]
        return np.asarray(per_group, dtype=np.int64)[group_of_instance]
    return np.arange(group_of_instance.size, dtype=np.int64) % len(names)


def tiers_of(sc: Scenario, mobile_uplinks: list[RateTrace], scenario_trace: RateTrace,
             group_of_instance: np.ndarray) -> Tiers:
    """The edge servers (each with the uplinks to it and its WAN link), the cloud pool and its batching."""
    link, cloud = sc.link, sc.cloud
    groups_own = [g.link is not None for g in sc.mobiles for _ in range(g.count)]
    w = cloud.wan if cloud is not None else None
    base_wan = None if w is None else w.rate_trace()
    edges = []
    for e, spec in enumerate(sc.edge_servers()):
        own = spec.link
        if own is None:
            uplink, shared = ([scenario_trace] if link.shared_medium else mobile_uplinks), link.shared_medium
        else:
            base = own.rate_trace()
            shared = own.shared_medium
            uplink = [base.shifted(own.offset_s(0)) if own.trace else base] if shared else [
                mobile_uplinks[m] if groups_own[m] else (base.shifted(own.offset_s(m))
                                                         if own.trace else base) for m in range(len(mobile_uplinks))]
        wan = None
        if w is not None:
            wan = base_wan.shifted(w.offset_s(e)) if w.trace else base_wan
        edges.append(EdgeTier(spec.name, spec.servers, uplink, shared, wan,
                              cloud.wan.propagation_delay_s if cloud is not None else 0.0))
    b = cloud.batching if cloud is not None else None
    batching = Batching(b.max_batch_size, tuple(sorted(b.preferred_batch_sizes, reverse=True)), b.max_queue_delay_s) \
        if b is not None else None
    wan_down = (cloud.wan.downlink_data_rate_mbps or cloud.wan.data_rate_mbps) * 1e6 if cloud is not None else float("inf")
    return Tiers(edges, sc.assignment, cloud.servers if cloud is not None else 0, batching,
                 assigned_edges(sc, group_of_instance), wan_down)


def assemble(sc: Scenario) -> Point:
    """Resolve a scenario (one sweep point) into devices, stations, policies and the engine that can run it."""
    devices, notes = mobile_radio_notes(sc, resolve_devices(sc))
    dataset = load_dataset(sc.workload.dataset, sc.workload.dataset_split, sc.workload.positive_label)
    groups = [(g.device, g.count) for g in sc.mobiles]
    group_of_instance = np.repeat(np.arange(len(groups)), [c for _, c in groups])
    instance_names = [f"{name}#{k}" if count > 1 else name for name, count in groups for k in range(count)]
    link = sc.link
    uplink_trace = link.rate_trace()
    downlink_mbps = link.downlink_data_rate_mbps or (
        link.data_rate_mbps if not link.trace else float(uplink_trace.rates_bps.mean() / 1e6))
    uplinks, delays = mobile_links(sc, uplink_trace)
    topo = Topology(
        servers=sc.edge_servers()[0].servers,
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
    cloud = devices[sc.cloud.device] if sc.cloud is not None else None
    policies = [make_policy(spec, sc.model, devices, dataset).with_cloud(cloud) for spec in sc.policies]
    edge_specs = sc.edge_servers()
    tiers = tiers_of(sc, uplinks, uplink_trace, group_of_instance) if sc.tiered else None
    if tiers is not None:
        topo = replace(topo, tiers=tiers)
    engine = "simpy" if sc.engine == "simpy" else "compiled"
    capture_trace = trace_captures(sc, dataset) if sc.workload.source == "trace" else None
    wan = sc.cloud.wan if sc.cloud is not None else None
    pt = Point(sc, devices, devices[edge_specs[0].device], groups, group_of_instance, instance_names, dataset,
               Packetiser(link.packet_payload_bytes, link.packet_overhead_bytes, link.loss_probability),
               downlink_mbps * 1e6, topo, policies, engine, capture_trace, notes,
               [devices[e.device] for e in edge_specs] if tiers is not None else [], cloud,
               Packetiser(link.packet_payload_bytes, link.packet_overhead_bytes, wan.loss_probability) if wan else None)
    if tiers is not None and tiers.batching is not None:
        notes.extend(batch_fit_notes(pt))
    return pt


def mobile_links(sc: Scenario, scenario_trace: RateTrace) -> tuple[list[RateTrace], Optional[list[LinkDelay]]]:
    """Each mobile device's uplink (its group's own link or the scenario's, at its offset) and varying delay."""
    link = sc.link
    uplinks: list[RateTrace] = []
    delays: list[LinkDelay] = []
    shared_users = 0  # mobile devices on the scenario's link so far: its offsets step through all of them
    for g in sc.mobiles:
        own = g.link
        spec = own or link
        path = spec.trace
        base = scenario_trace if own is None else own.rate_trace()
        rtt = load_delay_trace(path, spec.trace_end) if link.delay and link.delay.from_trace and path else None
        first = 0 if own is not None else shared_users
        shared_users += 0 if own is not None else g.count
        for k in range(first, first + g.count):
            offset = spec.offset_s(k) if path else 0.0
            uplinks.append(base.shifted(offset))
            if link.delay is not None:
                d = link.delay
                delays.append(LinkDelay(d.mean_s or link.propagation_delay_s, rtt.shifted(offset) if rtt else None,
                                        d.distribution, d.std_s, fifo=not link.allow_reordering))
    return uplinks, (delays if link.delay is not None else None)


WAN_LOSS = 1 << 20
"""Loss streams of the WAN are those of mobile device m numbered from here (the uplink's use the route index)."""

BATCH_SLOPE = 0.139
"""Fallback batched service time t(b) = t(1) x (1 + 0.139 (b - 1)): the least-squares line t0 + t1 b through
ResNet-50 on Triton (TensorRT fp16, V100, client latency at batch 1-32: 2.84 ... 15.66 ms; NVIDIA
DeepLearningExamples, PyTorch/Classification/ConvNets/triton/resnet50/README.md) is t0 = 2.553 ms, t1 = 0.4123 ms,
so t1 / (t0 + t1) = 0.139 (largest relative error of the line 4.4 %). Used where a profile has no batch table."""


def cloud_batches(routes: list[Route], pt: Point) -> tuple[np.ndarray, np.ndarray]:
    """Per route: its cloud key (routes with the same model part batch together; -1: none) and t(b)/t(1) factors."""
    tiers = pt.topo.tiers
    size = tiers.batching.max_batch_size if tiers.batching is not None else 1
    keys, factors, seen = np.full(len(routes), -1, dtype=np.int64), np.ones((len(routes), size + 1)), {}
    sizes = np.arange(size + 1, dtype=float)
    of_route: dict[int, np.ndarray] = {}  # edge servers of one device share their Route objects: one table each
    for r, route in enumerate(routes):
        if route.cloud is None:
            continue
        keys[r] = seen.setdefault(route.cloud_key, len(seen))
        if id(route) not in of_route:
            table = batch_table(pt.cloud, route)
            of_route[id(route)] = (np.interp(sizes, *zip(*sorted(table.items()))) / table[1] if table
                                   else 1 + BATCH_SLOPE * (sizes - 1))
        factors[r] = of_route[id(route)]
    return keys, factors


def batch_fit_notes(pt: Point) -> list[str]:
    """One note per model the cloud batches by the BATCH_SLOPE fit because its profile has no batch table."""
    models = dict.fromkeys(route.model for pol in pt.policies for routes in pt.routes_of_group(pol) for route in routes
                           if route.cloud is not None and not batch_table(pt.cloud, route))
    return [f"cloud '{pt.scenario.cloud.device}' has no measured batch table for model '{m}': its batches take "
            f"t(1) x (1 + {BATCH_SLOPE} (b - 1)), derived from ResNet-50 on Triton (V100; NVIDIA DeepLearningExamples), "
            "not measured for this model (edgesim profile --batch-sizes measures one)" for m in models]


def batch_table(cloud: Device, route: Route) -> dict[int, float]:
    """The cloud's measured latency per batch size of the route's whole model part, if its profile has one."""
    if cloud is None or cloud.profile is None or route.model not in cloud.profile.models:
        return {}
    table = getattr(cloud.profile.models[route.model], "batch_latency_s", None) or {}
    return {int(b): float(t) for b, t in table.items()} if 1 in {int(b) for b in table} else {}


@dataclass
class Window:
    """One window of frames: the plan the engines read and what the frame table needs besides."""

    plan: FramePlan
    routes_by_group: list[list[Route]]
    group: np.ndarray
    sample: np.ndarray
    seq: np.ndarray
    frame_id: np.ndarray



def _needs_uniforms(times: list, mode: str) -> bool:
    """Whether service times drawn from these distributions depend on the uniforms (else none are drawn)."""
    return any(t is not None and t.constant_s(mode) is None for t in times)


def _demands(t: ServiceTime, u: Optional[np.ndarray], frames: slice, mode: str) -> np.ndarray | float:
    """Service times of these frames (their uniforms u[frames]; None where no route's draw reads one): one number
    when every draw gives it (a row of a window's demands is filled from it without an array per route), else
    t.draw's."""
    constant = t.constant_s(mode)
    return constant if constant is not None else t.draw(u[frames], mode)


def _resent_bytes(packetiser: Packetiser, streams: FrameStreams, mobiles: range, route: int, size_bytes: int,
                  per: int) -> np.ndarray | int:
    """Resent wire bytes of each frame of these mobile devices on one route (each device's loss stream); 0 when
    nothing is lost (no stream is made)."""
    if packetiser.loss_probability <= 0:
        return 0
    size = np.full(per, size_bytes)
    return np.concatenate([packetiser.draw_resent_bytes(streams.loss(m, route), size) for m in mobiles])


def route_rows(pt: Point, routes_by_group: list[list[Route]]) -> Optional[np.ndarray]:
    """Each route's row of the point's frame plans (plan.demand_rows: edge servers of one device share rows; None:
    a row per route)."""
    wan = pt.wan_packetiser
    return demand_rows(routes_by_group, [id(d) for d in pt.edge_devices] or [id(pt.server)],
                       pt.packetiser.loss_probability > 0, wan is not None and wan.loss_probability > 0)


def plan_window(pt: Point, pol: BasePolicy, routes_by_group: list[list[Route]], rep: int, streams: FrameStreams,
                start: int, stop: int) -> Window:
    """Frames start..stop-1 of every mobile device (mobile-major), with each route's service demands.

    routes_by_group: pt.routes_of_group(pol), worked out once for all the windows of a run. Demands are filled a
    mobile group at a time (its devices' frames are contiguous) and a row per distinct route (route_rows), so the
    cost is frames x distinct routes, not devices x edge servers x routes.
    """
    sc = pt.scenario
    n_inst = pt.n_mobiles
    per = stop - start
    seq_one = np.arange(start, stop)
    mobile = np.repeat(np.arange(n_inst), per)
    seq = np.tile(seq_one, n_inst)
    group = pt.group_of_instance[mobile]
    capture = capture_windows(sc, n_inst, seq_one, streams, pt.capture_trace)
    mode = sc.workload.service_time
    tiered = pt.topo.tiers is not None
    all_routes = list({id(rt): rt for routes in routes_by_group for rt in routes}.values())  # shared ones once
    n = capture.size

    def uniforms(kind: str, needed: bool) -> Optional[np.ndarray]:
        return streams.uniforms(kind, per) if needed else None  # None: every draw is its median or fixed time

    u_head = uniforms("head", _needs_uniforms([rt.head for rt in all_routes], mode))
    u_tail = uniforms("tail", _needs_uniforms([rt.tail for rt in all_routes], mode))
    frames_per = sc.workload.frames
    sample = (mobile * frames_per + seq) % len(pt.dataset) if pt.dataset is not None else seq
    n_routes = len(routes_by_group[0])
    rows = route_rows(pt, routes_by_group)
    fill = range(n_routes) if rows is None else np.unique(rows, return_index=True)[1].tolist()  # a row's first route
    head = np.zeros((len(fill), n))
    tail = np.full((len(fill), n), np.nan)
    wire = np.zeros((len(fill), n))
    down = np.zeros((len(fill), n))
    packetiser = pt.packetiser
    wan_bits = np.zeros((len(fill), n)) if tiered else None
    cloud = np.full((len(fill), n), np.nan) if tiered else None
    wan_down = np.zeros((len(fill), n)) if tiered else None
    u_cloud = uniforms("cloud", _needs_uniforms([rt.cloud for rt in all_routes], mode)) if tiered else None
    first = np.searchsorted(pt.group_of_instance, np.arange(len(routes_by_group) + 1))  # groups are contiguous
    for g, routes in enumerate(routes_by_group):
        mobiles = range(int(first[g]), int(first[g + 1]))
        sl, count = slice(mobiles.start * per, mobiles.stop * per), len(mobiles) * per
        if not count:
            continue
        for j, r in enumerate(fill):  # row j holds route r's demands (and those of the routes sharing its row)
            route = routes[r]
            # sizes are the route's (one number; resent bytes, where packets are lost, one per frame)
            if route.head is not None:
                head[j, sl] = _demands(route.head, u_head, sl, mode)
            if route.tail is not None:
                tail[j, sl] = _demands(route.tail, u_tail, sl, mode)
            if route.offloads:
                wire[j, sl] = packetiser.wire_bytes(route.up_bytes, _resent_bytes(
                    packetiser, streams, mobiles, r, route.up_bytes, per)) * 8.0
                down[j, sl] = packetiser.wire_bytes(route.down_bytes) * 8.0 / pt.downlink_bps
            if route.cloud is not None:
                cloud[j, sl] = _demands(route.cloud, u_cloud, sl, mode)
                wp = pt.wan_packetiser
                wan_bits[j, sl] = wp.wire_bytes(route.wan_bytes, _resent_bytes(
                    wp, streams, mobiles, WAN_LOSS + r, route.wan_bytes, per)) * 8.0
                wan_down[j, sl] = wp.wire_bytes(route.down_bytes) * 8.0 / pt.wan_down_bps
    inputs = FrameInputs(mobile_index=mobile, sample_index=sample, dataset=pt.dataset, seed=sc.seed + rep)
    per_edge = len(routes_by_group[0]) // max(len(pt.edge_devices), 1)
    route = pol.choose(inputs, routes_by_group[0][:per_edge]).astype(np.int16) if not pol.stateful \
        else np.zeros(n, np.int16)
    if tiered and pt.edge_of_mobile is not None and not pt.topo.tiers.dynamic:
        route = (route + pt.edge_of_mobile[mobile] * per_edge).astype(np.int16)
    delay_u = streams.uniforms("delay", per, (2,)) if pt.topo.delay is not None else None
    if tiered:
        keys, factors = cloud_batches(routes_by_group[0], pt)
        plan = FramePlan(capture, mobile, route, head, wire, tail, down, n_inst, delay_u, wan_bits, cloud, wan_down,
                         per_edge, keys, factors, rows)
    else:
        plan = FramePlan(capture, mobile, route, head, wire, tail, down, n_inst, delay_u)
    return Window(plan, routes_by_group, group, sample, seq, mobile * frames_per + seq)
