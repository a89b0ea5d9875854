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
    CAP,
    FREE,
    K_CLOUD,
    K_DOWN,
    K_EDGE,
    K_MOBILE,
    K_UP,
    K_WAN,
    K_WDOWN,
    P_DEADLINE,
    P_DLBPS,
    P_LAST,
    P_MAXQD,
    P_PROP,
    P_TIMER,
    P_WANDBPS,
    QHEAD,
    QTAIL,
    Q_ASSIGN,
    Q_BATCH,
    Q_CLOUD,
    Q_CLOUDSRV,
    Q_DEADLINE,
    Q_DELAY,
    Q_DOWN0,
    Q_EDGE0,
    Q_LAST,
    Q_M,
    Q_MAXB,
    Q_NBATCH,
    Q_NE,
    Q_NFREE,
    Q_PER,
    Q_ROWPD,
    Q_ROWPU,
    Q_SHARED,
    Q_STALE,
    Q_TIERED,
    Q_UP0,
    Q_WAN0,
    Q_WDOWN0,
    SERVERS,
    SKIND,
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
    """The static part of the loop's state: stations, parameters, links, batching and best-split's tables."""
    n_mob, tiers = first.n_mobiles, topo.tiers
    tiered = first.cloud_s is not None
    n_edges = len(tiers.edges) if tiers is not None else 1
    n_up = n_mob if tiers is not None or not topo.shared_medium else 1
    media = [e for e, spec in enumerate(tiers.edges) if spec.shared_medium] if tiers is not None else []
    # stations: mobile devices, uplinks (then shared media), edge pools, downlinks, WAN links, WAN returns, cloud
    up0, edge0 = n_mob, n_mob + n_up + len(media)
    down0 = edge0 + n_edges
    wan0 = down0 + n_mob
    wdown0 = wan0 + (n_edges if tiers is not None else 0)
    cloud = wdown0 + (n_edges if tiers is not None else 0)
    n_st = cloud + (1 if tiers is not None else 0)
    SI = np.zeros((7, n_st), np.int64)
    SI[QHEAD], SI[QTAIL], SI[CAP], SI[SERVERS] = -1, -1, -1, 1

    def stations(lo, count, kind, servers=1, capacity=None):
        SI[SKIND, lo:lo + count], SI[SERVERS, lo:lo + count] = kind, servers
        SI[CAP, lo:lo + count] = -1 if capacity is None else capacity

    stations(0, n_mob, K_MOBILE, capacity=topo.mobile_capacity)
    stations(up0, n_up + len(media), K_UP)
    for e in range(n_edges):
        stations(edge0 + e, 1, K_EDGE, tiers.edges[e].servers if tiers is not None else topo.servers,
                 topo.server_capacity)
    stations(down0, n_mob, K_DOWN)
    traces = list(topo.uplink)
    E = np.zeros((5, n_edges), np.int64)
    EF = np.zeros(n_edges)
    if tiers is not None:
        stations(wan0, n_edges, K_WAN)
        stations(wdown0, n_edges, K_WDOWN)
        stations(cloud, 1, K_CLOUD, max(tiers.cloud_servers, 1))
        E[3] = -1
        first_of = {id(topo.uplink): 0}  # edge servers reached over the same uplinks (a list) share their traces
        for e, spec in enumerate(tiers.edges):
            E[0, e], E[1, e] = spec.shared_medium, spec.servers
            E[2, e] = first_of.get(id(spec.uplink), len(traces))
            if E[2, e] == len(traces):
                first_of[id(spec.uplink)] = len(traces)
                traces += list(spec.uplink)
            if spec.shared_medium:
                E[3, e] = up0 + n_up + media.index(e)
            EF[e] = spec.wan_propagation_s
        for e, spec in enumerate(tiers.edges):
            if spec.wan is not None:
                E[4, e] = len(traces)
                traces.append(spec.wan)
    SI[FREE] = SI[SERVERS]
    Q = np.zeros(Q_LAST, np.int64)
    P = np.zeros(P_LAST)
    Q[Q_M], Q[Q_UP0], Q[Q_EDGE0], Q[Q_DOWN0], Q[Q_WAN0], Q[Q_WDOWN0], Q[Q_CLOUD] = (n_mob, up0, edge0, down0, wan0,
                                                                                   wdown0, cloud)
    Q[Q_SHARED], Q[Q_TIERED], Q[Q_NE] = topo.shared_medium, tiered, n_edges
    Q[Q_PER] = (first.routes_per_edge or 1) if tiered else 1
    if tiers is not None:
        Q[Q_ASSIGN] = {"least-loaded": ASSIGN_LEAST_LOADED, "shortest-expected-delay": ASSIGN_SED}.get(
            tiers.assignment, ASSIGN_FIXED)
        Q[Q_CLOUDSRV] = tiers.cloud_servers
        P[P_WANDBPS] = tiers.wan_down_bps
    else:
        P[P_WANDBPS] = np.inf
    Q[Q_DELAY], Q[Q_STALE], Q[Q_DEADLINE] = topo.delay is not None, topo.drop_stale, topo.deadline_s is not None
    Q[Q_ROWPU], Q[Q_ROWPD] = n_rows, n_rows + 1
    P[P_PROP], P[P_DEADLINE], P[P_DLBPS] = topo.propagation_s, topo.deadline_s or 0.0, topo.downlink_bps
    P[P_TIMER] = -1.0
    batching = tiers.batching if tiers is not None else None
    if batching is not None:
        slots = tiers.cloud_servers + 1  # a batch per server, and one handing its frames on
        Q[Q_BATCH], Q[Q_MAXB], Q[Q_NFREE], Q[Q_NBATCH] = 1, batching.max_batch_size, tiers.cloud_servers, slots
        P[P_MAXQD] = batching.max_queue_delay_s
        B = (np.ascontiguousarray(first.cloud_key, dtype=np.int64),
             np.array(batching.preferred_batch_sizes, dtype=np.int64),
             np.zeros(tiers.cloud_servers), np.zeros((slots, batching.max_batch_size), np.int64),
             np.zeros(slots, np.int64), np.zeros(batching.max_batch_size, np.int64),
             np.ascontiguousarray(first.batch_factors, dtype=float), np.arange(slots, dtype=np.int64))
    else:
        B = (np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(1), np.zeros((1, 1), np.int64),
             np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros((1, 1)), np.zeros(1, np.int64))
    return SI, np.zeros((2, n_st)), Q, P, E, EF, pack_steps(traces), B, n_up
