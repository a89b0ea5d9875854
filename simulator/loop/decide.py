"""Decisions at capture on the compiled loop's arrays: the LOAD_VIEW record and the edge server assignment
(engine.StationPipeline._fill_view and _place), with the kernels of simulator.kernels.decisions."""

from __future__ import annotations

import numpy as np

from simulator.jit import njit
from simulator.kernels.decisions import expected_delay_s, least_loaded_after, load_per_server
from simulator.kernels.links import planning_bps, value_at
from simulator.kernels.stations import backlog_s, residual_s
from simulator.loop.layout import ASSIGN_FIXED, ASSIGN_LEAST_LOADED, K_EDGE
from simulator.loop.queues import residual


@njit(cache=True, inline="always")
def fill_view(c, m, e, link, now):
    """engine.StationPipeline._fill_view on the loop's records: the LOAD_VIEW record a decision reads."""
    v, run, st = c.load_view[0], c.run[0], c.stations
    v.now_s, v.link, v.uplink_rate_bps = now, link, value_at(c.links, link, now)
    v.mobile_backlog_s = backlog_s(residual(st, m, now), st[m].queued, 1)
    if run.tiered:
        edge = c.edges[e]
        up = edge.medium if edge.medium >= 0 else run.up0 + m
        server, servers = run.edge0 + e, edge.servers
    else:
        up = run.up0 + (0 if run.shared else m)
        server = run.edge0
        servers = st[server].servers
    v.uplink_residual_s, v.uplink_queued_bits = residual(st, up, now), st[up].queued
    v.server_backlog_s = backlog_s(residual(st, server, now), st[server].queued, servers)
    v.propagation_s, v.downlink_bps = run.propagation_s, run.downlink_bps
    if run.tiered and run.cloud_servers:
        wan = run.wan0 + e
        rate = planning_bps(value_at(c.links, c.edges[e].wan, now))
        v.wan_backlog_s, v.wan_bps = backlog_s(residual(st, wan, now), st[wan].queued, rate), rate
        v.wan_propagation_s, v.wan_down_bps = c.edges[e].wan_propagation_s, run.wan_down_bps
        cl = run.cloud
        if run.batching:
            bs = c.batches.state[0]
            idle = bs.idle
            in_batch = residual_s(idle, bs.busy_until_s, now)
            v.cloud_backlog_s = backlog_s(in_batch, st[cl].queued, idle if idle > 1 else 1)
        else:
            v.cloud_backlog_s = backlog_s(residual(st, cl, now), st[cl].queued, run.cloud_servers)


@njit(cache=True, inline="always")
def edge_servers(c, m):
    """The edge servers [lo, hi) a capture of mobile device m may go to: its own (fixed), the least loaded
    (decisions.least_loaded, as its tournament tree keeps it), or every one (the least decisions.expected_delay_s
    decides)."""
    run = c.run[0]
    if run.assign == ASSIGN_FIXED:
        lo = c.edge_of_mobile[m]
        return lo, lo + 1
    if run.assign == ASSIGN_LEAST_LOADED:  # kept up to date as edge servers' loads change (edge_load_changed)
        lo = c.least_loaded[1].edge
        return lo, lo + 1
    return 0, run.n_edges


@njit(cache=True, inline="always")
def place(c, decide, m, base, now):
    """engine.StationPipeline._place: route r' = edge x R + r at a capture, the edge server by the assignment
    (edge_servers), the route by the policy (else `base`) from mobile device m's list of routes."""
    run = c.run[0]
    per = run.routes_per_edge
    routes = c.routes[c.routes_of[m]]  # the ROUTE records of m's list (one per mobile group)
    lo, hi = edge_servers(c, m)
    best, best_s = -1, np.inf
    for e in range(lo, hi):
        rr = base
        if run.policy:
            fill_view(c, m, e, m, now)
            rr = decide(c.state, c.load_view, routes, e * per, (e + 1) * per)
        if hi - lo == 1:
            return e * per + rr
        if not run.policy:
            fill_view(c, m, e, m, now)
        edge = c.edges[e]
        expected = expected_delay_s(routes, e * per + rr, c.load_view,
                                    value_at(c.links, edge.uplink0 + (0 if edge.shared_medium else m), now))
        if expected < best_s:
            best, best_s = e * per + rr, expected
    return best


@njit(cache=True, inline="always")
def edge_load_changed(c, st):
    """Station st's frames in service or waiting changed: if it is an edge server under least-loaded assignment,
    its place in least_loaded's tree (decisions.least_loaded_after)."""
    run, s = c.run[0], c.stations[st]
    if run.assign == ASSIGN_LEAST_LOADED and s.kind == K_EDGE:
        least_loaded_after(c.least_loaded, st - run.edge0, load_per_server(s.servers - s.free, s.waiting, s.servers))
