"""Exact vectorised engine for scenarios whose decisions do not depend on the simulation state.

A FIFO single-server stage obeys Lindley's recursion d_i = max(a_i, d_{i-1}) + s_i, which unrolls to
d = S + cummax(a - S_prev) with S the cumulative service (numpy cumsum and np.maximum.accumulate).
A link with a piecewise-constant rate is the same recursion in the cumulative-bits domain C(t):
C(d_i) = max(C(a_i), C(d_{i-1})) + bits_i, so traced links stay exact. Several parallel servers
(M/G/c) use the earliest-free-server recursion with a heap. Results equal the SimPy engine's; the one
known exception is an exact tie in arrival times that SimPy orders by floating-point noise (transfers that
start during a link outage all end when it ends): both engines then serve the tied frames FIFO, possibly
in a different order.
"""

from __future__ import annotations

import heapq

import numpy as np

from simulator.engine import FramePlan, Topology


def lindley(arrival: np.ndarray, service: np.ndarray) -> np.ndarray:
    """Departures of a FIFO single-server queue for arrivals in order (vectorised, exact)."""
    if arrival.size == 0:
        return arrival.copy()
    cum = np.cumsum(service)
    prev = cum - service
    return cum + np.maximum.accumulate(arrival - prev)


def _multi_server(arrival: np.ndarray, service: np.ndarray, servers: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and departures of a FIFO queue with c servers for arrivals in order."""
    if servers == 1:
        end = lindley(arrival, service)
        return end - service, end
    free = [0.0] * servers
    start = np.empty_like(arrival)
    for k, (a, s) in enumerate(zip(arrival.tolist(), service.tolist())):
        t = heapq.heappop(free)
        st = a if a > t else t
        start[k] = st
        heapq.heappush(free, st + s)
    return start, start + service


def _arrival_order(arrival: np.ndarray, tiebreak: np.ndarray | None) -> np.ndarray | None:
    """Indices that sort arrivals, or None when they already strictly increase (the common case).

    Simultaneous arrivals are ordered as SimPy orders their events: the one whose upstream service
    started first was scheduled first (tiebreak), then by frame index.
    """
    if arrival.size < 2 or bool((arrival[1:] > arrival[:-1]).all()):
        return None
    keys = (np.arange(arrival.size),) + ((tiebreak,) if tiebreak is not None else ()) + (arrival,)
    return np.lexsort(keys)


def _fifo_stage(arrival: np.ndarray, service: np.ndarray, key: np.ndarray, servers: int = 1,
                tiebreak: np.ndarray | None = None):
    """Per-queue FIFO (key = queue id) in arrival order; returns start and end times in frame order."""
    if arrival.size == 0 or bool((key == key[0]).all()):
        groups = [None]
    else:
        groups = [np.flatnonzero(key == q) for q in np.unique(key)]
    start = np.empty(arrival.shape)
    end = np.empty(arrival.shape)
    for idx in groups:
        a = arrival if idx is None else arrival[idx]
        s_ = service if idx is None else service[idx]
        tb = tiebreak if idx is None or tiebreak is None else tiebreak[idx]
        order = _arrival_order(a, tb)
        if order is not None:
            a, s_ = a[order], s_[order]
            idx = order if idx is None else idx[order]
        st, en = _multi_server(a, s_, servers)
        if idx is None:
            start, end = st, en
        else:
            start[idx], end[idx] = st, en
    return start, end


def simulate_fast(plan: FramePlan, topo: Topology) -> dict[str, np.ndarray]:
    """Same per-frame stage times as engine.simulate, computed without events (stateless scenarios only)."""
    n = plan.capture_s.size
    idx = np.arange(n)
    r = plan.route.astype(np.int64)
    head = plan.head_s[r, idx]
    bits = plan.wire_bits[r, idx]
    tail = plan.tail_s[r, idx]
    down = plan.down_s[r, idx]
    out = {k: np.full(n, np.nan) for k in ("head_start", "head_end", "up_start", "up_end", "tail_start", "tail_end", "down_start", "down_end", "done")}
    has_head = head > 0
    out["head_start"][~has_head] = plan.capture_s[~has_head]
    out["head_end"][~has_head] = plan.capture_s[~has_head]
    hs, he = _fifo_stage(plan.capture_s[has_head], head[has_head], plan.mobile[has_head])
    out["head_start"][has_head], out["head_end"][has_head] = hs, he
    off = (bits > 0) | ~np.isnan(tail)
    local = ~off
    out["done"][local] = out["head_end"][local]
    # uplink: Lindley in the cumulative-bits domain of each mobile device's link
    a = out["head_end"][off]
    mob = plan.mobile[off]
    us = np.full(a.shape, np.nan)
    ue = np.full(a.shape, np.nan)
    for q in np.unique(mob):
        sel = np.flatnonzero(mob == q)
        sel = sel[np.argsort(a[sel], kind="stable")]
        trace = topo.uplink[int(q)]
        if trace.is_constant:
            s_t = bits[off][sel] / trace.rates_bps[0]
            e = lindley(a[sel], s_t)
            us[sel], ue[sel] = e - s_t, e
        else:
            b = bits[off][sel]
            ends = np.asarray(trace.finish_time(np.zeros(sel.size), lindley(np.asarray(trace.bits_until(a[sel])), b)))
            st = np.maximum(a[sel], np.concatenate(([-np.inf], ends[:-1])))
            us[sel], ue[sel] = st, trace.finish_time(st, b)
    out["up_start"][off], out["up_end"][off] = us, ue
    arr_server = ue + topo.propagation_s
    ts, te = _fifo_stage(arr_server, tail[off], np.zeros(arr_server.shape, dtype=np.int64), topo.servers, tiebreak=us)
    out["tail_start"][off], out["tail_end"][off] = ts, te
    ds, de = _fifo_stage(te, down[off], mob, tiebreak=ts)
    out["down_start"][off], out["down_end"][off] = ds, de
    out["done"][off] = de + topo.propagation_s
    out["status"] = np.zeros(n, dtype=np.int8)
    if topo.deadline_s is not None:
        out["status"][(out["done"] - plan.capture_s) > topo.deadline_s + 1e-12] = 1
    out["drop_stage"] = np.zeros(n, dtype=np.int8)
    out["route"] = plan.route
    return out
