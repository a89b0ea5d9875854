"""The compiled loop's static state from a Topology and a FramePlan: stations, parameters, links packed by
link.pack_steps, batching, the varying delays, and a stateful policy's kernels and route records."""

from __future__ import annotations

from typing import Optional

import numpy as np

from simulator.kernels.decisions import no_decide, no_observe
from simulator.kernels.records import ROUTE
from simulator.link import RateTrace, pack_steps
from simulator.loop.layout import (
    ASSIGN_FIXED,
    ASSIGN_LEAST_LOADED,
    ASSIGN_SED,
    BATCHER,
    EDGE,
    K_CLOUD,
    K_DOWN,
    K_EDGE,
    K_MOBILE,
    K_UP,
    K_WAN,
    K_WDOWN,
    RUN,
    T_TIMES,
    Batches,
    new_stations,
)
from simulator.plan import FramePlan, Topology
from simulator.policies import Route, StatefulPolicy, policy_kernels
from simulator.policies.base import _c_functions, route_records


def policy_arrays(policy: Optional[StatefulPolicy], topo: Topology, routes_of_mobile: Optional[list[list[Route]]],
               n_mobiles: int) -> tuple:
    """(state, ROUTE table, routes per list, each mobile device's list, decide, observe) of a run: the policy's
    kernels as C functions (decisions.no_decide and no_observe without one) and its state; the routes where a decision
    reads them, a row per distinct list of routes (a mobile group's: policies.base.route_records), not per device."""
    kernels = policy_kernels(policy)
    decide, observe = _c_functions(*((kernels.decide, kernels.observe) if kernels is not None
                                     else (no_decide, no_observe)))
    state = kernels.state(policy, topo.uplink) if kernels is not None else np.zeros(1)
    if routes_of_mobile is None:
        return (state, np.zeros((1, 1), ROUTE), np.ones(1, np.int64), np.zeros(max(n_mobiles, 1), np.int64), decide,
                observe)
    table, of_mobile = route_records(routes_of_mobile, topo.packet_payload_bytes, topo.packet_overhead_bytes)
    n_routes = np.zeros(table.shape[0], np.int64)
    n_routes[of_mobile] = [len(r) for r in routes_of_mobile]
    return state, table, n_routes, of_mobile, decide, observe


def delay_model(topo: Topology, n_mobiles: int) -> tuple:
    """Per mobile device: a traced delay (1) or per-frame draws (0), FIFO or not, and the traces."""
    kinds, fifo = np.zeros(n_mobiles, np.int64), np.zeros(n_mobiles, np.int64)
    traces = []
    for m, d in enumerate(topo.delay or []):
        fifo[m] = d.fifo
        if d.trace is not None:
            kinds[m] = 1
            traces.append(d.trace)
        else:
            traces.append(RateTrace(np.array([0.0]), np.array([1.0])))  # unused: this device's delays are drawn
    return kinds, fifo, pack_steps(traces)


def delay_draws(plan: FramePlan, topo: Topology) -> np.ndarray:
    """Each frame's one-way delay up (row 0) and down (row 1) from its uniforms, where the delay is drawn."""
    out = np.zeros((2, plan.capture_s.size))
    for m, d in enumerate(topo.delay):
        if d.trace is None:
            sel = plan.mobile == m
            for row in (0, 1):
                out[row, sel] = d.sample(np.zeros(int(sel.sum())), plan.delay_u[row, sel])
    return out


def static_state(topo: Topology, first: FramePlan, n_rows: int) -> tuple:
    """The static part of the loop's state: STATION, RUN and EDGE records, the links packed, the batcher."""
    n_mob, tiers = first.n_mobiles, topo.tiers
    tiered = first.cloud_s is not None
    n_edges = len(tiers.edges) if tiers is not None else 1
    n_up = n_mob if tiers is not None or not topo.shared_medium else 1
    media = [e for e, spec in enumerate(tiers.edges) if spec.shared_medium] if tiers is not None else []
    # stations: mobile devices, uplinks (then shared media), edge pools, downlinks, WAN links, WAN returns, cloud
    up0, edge0 = n_mob, n_mob + n_up + len(media)
    down0 = edge0 + n_edges
    wan0 = down0 + n_mob
    wan_down0 = wan0 + (n_edges if tiers is not None else 0)
    cloud = wan_down0 + (n_edges if tiers is not None else 0)
    stations = new_stations(cloud + (1 if tiers is not None else 0))

    def kind(lo, count, k, servers=1, capacity=None):
        st = stations[lo:lo + count]
        st["kind"], st["servers"], st["capacity"] = k, servers, -1 if capacity is None else capacity

    kind(0, n_mob, K_MOBILE, capacity=topo.mobile_capacity)
    kind(up0, n_up + len(media), K_UP)
    for e in range(n_edges):
        kind(edge0 + e, 1, K_EDGE, tiers.edges[e].servers if tiers is not None else topo.servers, topo.server_capacity)
    kind(down0, n_mob, K_DOWN)
    traces = list(topo.uplink)
    edges = np.zeros(n_edges, EDGE)
    if tiers is not None:
        kind(wan0, n_edges, K_WAN)
        kind(wan_down0, n_edges, K_WDOWN)
        kind(cloud, 1, K_CLOUD, max(tiers.cloud_servers, 1))
        edges["medium"] = -1
        first_of = {id(topo.uplink): 0}  # edge servers reached over the same uplinks (a list) share their traces
        for e, spec in enumerate(tiers.edges):
            edges["shared_medium"][e], edges["servers"][e] = spec.shared_medium, spec.servers
            edges["uplink0"][e] = first_of.get(id(spec.uplink), len(traces))
            if edges["uplink0"][e] == len(traces):
                first_of[id(spec.uplink)] = len(traces)
                traces += list(spec.uplink)
            if spec.shared_medium:
                edges["medium"][e] = up0 + n_up + media.index(e)
            edges["wan_propagation_s"][e] = spec.wan_propagation_s
        for e, spec in enumerate(tiers.edges):
            if spec.wan is not None:
                edges["wan"][e] = len(traces)
                traces.append(spec.wan)
    stations["free"] = stations["servers"]
    assign = {"least-loaded": ASSIGN_LEAST_LOADED, "shortest-expected-delay": ASSIGN_SED}.get(
        tiers.assignment, ASSIGN_FIXED) if tiers is not None else ASSIGN_FIXED
    run = np.zeros(1, RUN)
    for name, value in dict(
            n_mobiles=n_mob, up0=up0, edge0=edge0, down0=down0, wan0=wan0, wan_down0=wan_down0, cloud=cloud,
            n_edges=n_edges, routes_per_edge=(first.routes_per_edge or 1) if tiered else 1,
            shared=topo.shared_medium, tiered=tiered, assign=assign, delay=topo.delay is not None,
            drop_stale=topo.drop_stale, has_deadline=topo.deadline_s is not None,
            batching=tiers is not None and tiers.batching is not None,
            cloud_servers=tiers.cloud_servers if tiers is not None else 0, row_delay_up=T_TIMES + n_rows,
            row_delay_down=T_TIMES + n_rows + 1, propagation_s=topo.propagation_s, deadline_s=topo.deadline_s or 0.0,
            downlink_bps=topo.downlink_bps, wan_down_bps=tiers.wan_down_bps if tiers is not None else np.inf).items():
        run[name] = value
    return stations, run, edges, pack_steps(traces), batches(first, topo), n_up


def batches(first: FramePlan, topo: Topology) -> Batches:
    """The dynamic batcher's state and arrays (empty ones without batching)."""
    tiers = topo.tiers
    batching = tiers.batching if tiers is not None else None
    state = np.zeros(1, BATCHER)
    state["timer_s"] = -1.0
    if batching is None:
        return Batches(state, np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(1), np.zeros((1, 1), np.int64),
                       np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros((1, 1)), np.zeros(1, np.int64))
    slots = tiers.cloud_servers + 1  # a batch per server, and one handing its frames on
    state["max_size"], state["idle"], state["free_slots"] = batching.max_batch_size, tiers.cloud_servers, slots
    state["max_queue_delay_s"] = batching.max_queue_delay_s
    return Batches(state, np.ascontiguousarray(first.cloud_key, dtype=np.int64),
                   np.array(batching.preferred_batch_sizes, dtype=np.int64), np.zeros(tiers.cloud_servers),
                   np.zeros((slots, batching.max_batch_size), np.int64), np.zeros(slots, np.int64),
                   np.zeros(batching.max_batch_size, np.int64), np.ascontiguousarray(first.batch_factors, dtype=float),
                   np.arange(slots, dtype=np.int64))
