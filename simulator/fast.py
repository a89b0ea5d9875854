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

from simulator.plan import FramePlan, Topology


def lindley(arrival: np.ndarray, service: np.ndarray) -> np.ndarray:
    """Departures of a FIFO single-server queue for arrivals in order (vectorised, exact)."""
    if arrival.size == 0:
        return arrival.copy()
    cum = np.cumsum(service)
    out = arrival - cum  # a_j - S_{j-1} = a_j - S_j + s_j, computed in place
    out += service
    np.maximum.accumulate(out, out=out)
    out += cum
    return out


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
    groups = _groups(key)
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


def _groups(key: np.ndarray) -> list:
    """Index arrays per queue id, or [None] when every frame uses the same queue (no gathering needed)."""
    if key.size == 0 or bool((key == key[0]).all()):
        return [None]
    return [np.flatnonzero(key == q) for q in np.unique(key)]


def _link_stage(arrival: np.ndarray, bits: np.ndarray, key: np.ndarray, traces: list) -> tuple[np.ndarray, np.ndarray]:
    """Per-mobile FIFO uplinks: Lindley in the cumulative-bits domain C(t) of each link (exact for traces)."""
    start = np.empty(arrival.shape)
    end = np.empty(arrival.shape)
    for idx in _groups(key):
        a = arrival if idx is None else arrival[idx]
        b = bits if idx is None else bits[idx]
        order = _arrival_order(a, None)
        if order is not None:
            a, b = a[order], b[order]
            idx = order if idx is None else idx[order]
        trace = traces[int(key[0] if idx is None else key[idx[0]])]
        if trace.is_constant:
            s_t = b / trace.rates_bps[0]
            e = lindley(a, s_t)
            st = e - s_t
        else:
            ends = np.asarray(trace.finish_time(np.zeros(a.size), lindley(np.asarray(trace.bits_until(a)), b)))
            st = np.maximum(a, np.concatenate(([-np.inf], ends[:-1])))
            e = trace.finish_time(st, b)
        if idx is None:
            start, end = st, e
        else:
            start[idx], end[idx] = st, e
    return start, end


def _take(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return x if mask is None else x[mask]


def _put(dst: np.ndarray, mask: np.ndarray | None, values: np.ndarray) -> None:
    if mask is None:
        dst[:] = values
    else:
        dst[mask] = values


def _mask(selected: np.ndarray) -> np.ndarray | None:
    """None when every frame is selected (the common case), else the boolean mask."""
    return None if bool(selected.all()) else selected


def _varying_arrivals(sent: np.ndarray, u: np.ndarray, mobile: np.ndarray, path: np.ndarray, delays: list) -> np.ndarray:
    """Arrival times after each mobile device's varying delay; on a FIFO path a running maximum in sending order."""
    arrive = np.empty(sent.shape)
    for m in np.unique(mobile):
        sel = mobile == m
        arrive[sel] = sent[sel] + delays[int(m)].sample(sent[sel], u[sel])
    for idx in _groups(path):
        if not delays[int(path[0] if idx is None else path[idx[0]])].fifo:
            continue
        order = np.argsort(sent if idx is None else sent[idx], kind="stable")
        rows = order if idx is None else idx[order]
        arrive[rows] = np.maximum.accumulate(arrive[rows])
    return arrive


def simulate_fast(plan: FramePlan, topo: Topology) -> dict[str, np.ndarray]:
    """Same per-frame stage times as engine.simulate, computed without events (stateless scenarios only)."""
    if topo.tiers is not None:
        return _simulate_tiers(plan, topo)
    n = plan.capture_s.size
    if plan.head_s.shape[0] == 1:  # one route: no gather needed
        head, bits, tail, down = plan.head_s[0], plan.wire_bits[0], plan.tail_s[0], plan.down_s[0]
    else:
        idx = np.arange(n)
        r = plan.route.astype(np.int64)
        head, bits, tail, down = (plan.head_s[r, idx], plan.wire_bits[r, idx], plan.tail_s[r, idx],
                                  plan.down_s[r, idx])
    out = {k: np.full(n, np.nan) for k in ("up_start", "up_end", "tail_start", "tail_end", "down_start", "down_end")}
    capture = plan.capture_s
    # mobile device: frames with a head queue FIFO; the others pass at capture time
    has_head = head > 0
    out["head_start"], out["head_end"] = capture.copy(), capture.copy()
    if has_head.any():
        m = _mask(has_head)
        hs, he = _fifo_stage(_take(capture, m), _take(head, m), _take(plan.mobile, m))
        _put(out["head_start"], m, hs)
        _put(out["head_end"], m, he)
    off_sel = (bits > 0) | (tail == tail)  # something to send, or a tail (not NaN) to run
    out["done"] = out["head_end"].copy()
    if off_sel.any():
        off = _mask(off_sel)
        mob = _take(plan.mobile, off)
        us, ue = _link_stage(_take(out["head_end"], off), _take(bits, off), mob, topo.uplink)
        _put(out["up_start"], off, us)
        _put(out["up_end"], off, ue)
        u_up = u_down = None
        if topo.delay is not None:
            u_up, u_down = _take(plan.delay_u[0], off), _take(plan.delay_u[1], off)
            link_of = np.zeros_like(mob) if topo.shared_medium else mob
            arrive = _varying_arrivals(ue, u_up, mob, link_of, topo.delay)
            out["prop_up_s"] = np.full(n, np.nan)
            _put(out["prop_up_s"], off, arrive - ue)
        else:
            arrive = ue + topo.propagation_s
        ts, te = _fifo_stage(arrive, _take(tail, off), np.zeros(ue.shape, dtype=np.int64),
                             topo.servers, tiebreak=us)
        _put(out["tail_start"], off, ts)
        _put(out["tail_end"], off, te)
        d_off = _take(down, off)
        if topo.servers == 1 and not d_off.any():  # nothing to return and results leave in order: no queue
            ds, de = te, te
        else:
            ds, de = _fifo_stage(te, d_off, mob, tiebreak=ts)
        _put(out["down_start"], off, ds)
        _put(out["down_end"], off, de)
        if topo.delay is not None:
            back = _varying_arrivals(de, u_down, mob, mob, topo.delay)
            out["prop_down_s"] = np.full(n, np.nan)
            _put(out["prop_down_s"], off, back - de)
            _put(out["done"], off, back)
        else:
            _put(out["done"], off, de + topo.propagation_s)
    return _with_status(out, plan, topo)


def _gather(plan: FramePlan) -> tuple[np.ndarray, ...]:
    """Each frame's demands on its route: head, uplink bits, edge, downlink, WAN bits, cloud, WAN return."""
    idx, r = np.arange(plan.capture_s.size), plan.route.astype(np.int64)
    return tuple(a[r, idx] for a in (plan.head_s, plan.wire_bits, plan.tail_s, plan.down_s, plan.wan_bits,
                                     plan.cloud_s, plan.wan_down_s))


def _propagated(sent: np.ndarray, plan: FramePlan, way: int, rows: np.ndarray, mobile: np.ndarray, topo: Topology,
                out: dict, name: str) -> np.ndarray:
    """Arrival times one way (0 up, 1 down) after the constant propagation, or each mobile device's varying delay
    on its FIFO path (the delays met are recorded in out[name])."""
    if topo.delay is None:
        return sent + topo.propagation_s
    arrive = _varying_arrivals(sent, plan.delay_u[way][rows], mobile, mobile, topo.delay)
    out.setdefault(name, np.full(plan.capture_s.size, np.nan))[rows] = arrive - sent
    return arrive


def _simulate_tiers(plan: FramePlan, topo: Topology) -> dict[str, np.ndarray]:
    """The exact recursion through edge servers and the cloud (static or round-robin assignment, no batching).

    Each mobile device keeps one edge server, so every station is still a FIFO queue fed in arrival order: the
    uplink per mobile device (Lindley in the cumulative-bits domain of its trace to that server), each edge pool,
    each WAN link, the cloud pool (c servers), each WAN return link and the downlink per mobile device.
    """
    tiers, n, capture = topo.tiers, plan.capture_s.size, plan.capture_s
    head, bits, tail, down, wan_bits, cloud, wan_down = _gather(plan)
    edge = plan.route.astype(np.int64) // (plan.routes_per_edge or 1)
    out = {k: np.full(n, np.nan) for k in ("up_start", "up_end", "tail_start", "tail_end", "down_start", "down_end",
                                           "edge_arrive", "wan_start", "wan_end", "cloud_arrive", "cloud_start",
                                           "cloud_end", "wan_down_start", "wan_down_end")}
    out["head_start"], out["head_end"] = capture.copy(), capture.copy()
    if (head > 0).any():
        m = _mask(head > 0)
        hs, he = _fifo_stage(_take(capture, m), _take(head, m), _take(plan.mobile, m))
        _put(out["head_start"], m, hs)
        _put(out["head_end"], m, he)
    out["done"] = out["head_end"].copy()
    sent = (bits > 0) | (tail == tail) | (cloud == cloud)
    if sent.any():
        idx = np.flatnonzero(sent)
        mob, e = plan.mobile[idx], edge[idx]
        traces = [tiers.edges[int(e[mob == m][0])].uplink[int(m)] for m in range(plan.n_mobiles)
                  if (mob == m).any()]
        keys = np.unique(mob)
        remap = np.searchsorted(keys, mob)
        us, ue = _link_stage(out["head_end"][idx], bits[idx], remap, traces)
        out["up_start"][idx], out["up_end"][idx] = us, ue
        arrive = _propagated(ue, plan, 0, idx, mob, topo, out, "prop_up_s")
        out["edge_arrive"][idx] = arrive
        after = arrive.copy()
        computed = tail[idx] == tail[idx]
        for k, spec in enumerate(tiers.edges):
            sel = np.flatnonzero(computed & (e == k))
            if sel.size:
                ts, te = _fifo_stage(arrive[sel], tail[idx][sel], np.zeros(sel.size, dtype=np.int64), spec.servers,
                                     tiebreak=us[sel])
                out["tail_start"][idx[sel]], out["tail_end"][idx[sel]] = ts, te
                after[sel] = te
        to_cloud = cloud[idx] == cloud[idx]
        back = after.copy()
        if to_cloud.any():
            c = np.flatnonzero(to_cloud)
            ws, we = _link_stage(after[c], wan_bits[idx][c], e[c], [spec.wan for spec in tiers.edges])
            prop = np.array([spec.wan_propagation_s for spec in tiers.edges])[e[c]]
            cs, ce = _fifo_stage(we + prop, cloud[idx][c], np.zeros(c.size, dtype=np.int64), max(tiers.cloud_servers, 1),
                                 tiebreak=ws)
            ds, de = _fifo_stage(ce, wan_down[idx][c], e[c], tiebreak=cs)
            for name, vals in (("wan_start", ws), ("wan_end", we), ("cloud_arrive", we + prop), ("cloud_start", cs),
                               ("cloud_end", ce), ("wan_down_start", ds), ("wan_down_end", de)):
                out[name][idx[c]] = vals
            back[c] = de + prop
        ds, de = _fifo_stage(back, down[idx], mob, tiebreak=np.where(computed, out["tail_start"][idx], us))
        out["down_start"][idx], out["down_end"][idx] = ds, de
        out["done"][idx] = _propagated(de, plan, 1, idx, mob, topo, out, "prop_down_s")
    out["batch_wait"] = np.where(np.isnan(out["cloud_start"]), np.nan, 0.0)
    out["batch_size"] = np.where(np.isnan(out["cloud_start"]), np.nan, 1.0)
    return _with_status(out, plan, topo)


def _with_status(out: dict, plan: FramePlan, topo: Topology) -> dict:
    """Every frame completes (nothing is dropped without state), late past the deadline; the routes taken."""
    n = plan.capture_s.size
    out["status"] = np.zeros(n, dtype=np.int8)
    if topo.deadline_s is not None:
        out["status"][(out["done"] - plan.capture_s) > topo.deadline_s + 1e-12] = 1
    out["drop_stage"] = np.zeros(n, dtype=np.int8)
    out["route"] = plan.route
    return out
