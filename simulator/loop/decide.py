"""Decisions at capture on the compiled loop's arrays: the LOAD_VIEW record and the edge server assignment
(engine.StationPipeline._fill_view and _place), with the kernels of simulator.kernels.decisions."""

from __future__ import annotations

import numpy as np
from numba import njit

from simulator.kernels.decisions import expected_delay_s, least_loaded
from simulator.kernels.links import planning_bps, value_at
from simulator.kernels.stations import backlog_s, residual_s
from simulator.loop.layout import (
    ASSIGN_FIXED,
    ASSIGN_LEAST_LOADED,
    FREE,
    P_CBUSY,
    P_DLBPS,
    P_PROP,
    P_WANDBPS,
    QLEN,
    QUEUED,
    Q_ASSIGN,
    Q_BATCH,
    Q_CLOUD,
    Q_CLOUDSRV,
    Q_EDGE0,
    Q_NE,
    Q_NFREE,
    Q_PER,
    Q_POLICY,
    Q_SHARED,
    Q_TIERED,
    Q_UP0,
    Q_WAN0,
    SERVERS,
)
from simulator.loop.queues import residual


@njit(cache=True)
def fill_view(view, SI, SF, Q, P, E, EF, links, m, e, link, now):
    """engine.StationPipeline._fill_view on the loop's arrays: the LOAD_VIEW record a decision reads."""
    v = view[0]
    v.now_s, v.link, v.uplink_rate_bps = now, link, value_at(links, link, now)
    v.mobile_backlog_s = backlog_s(residual(SI, SF, m, now), SF[QUEUED, m], 1)
    if Q[Q_TIERED]:
        up = E[3, e] if E[3, e] >= 0 else Q[Q_UP0] + m
        server, servers = Q[Q_EDGE0] + e, E[1, e]
    else:
        up = Q[Q_UP0] + (0 if Q[Q_SHARED] else m)
        server = Q[Q_EDGE0]
        servers = SI[SERVERS, server]
    v.uplink_residual_s, v.uplink_queued_bits = residual(SI, SF, up, now), SF[QUEUED, up]
    v.server_backlog_s = backlog_s(residual(SI, SF, server, now), SF[QUEUED, server], servers)
    v.propagation_s, v.downlink_bps = P[P_PROP], P[P_DLBPS]
    if Q[Q_TIERED] and Q[Q_CLOUDSRV]:
        wan = Q[Q_WAN0] + e
        rate = planning_bps(value_at(links, E[4, e], now))
        v.wan_backlog_s, v.wan_bps = backlog_s(residual(SI, SF, wan, now), SF[QUEUED, wan], rate), rate
        v.wan_propagation_s, v.wan_down_bps = EF[e], P[P_WANDBPS]
        cl = Q[Q_CLOUD]
        if Q[Q_BATCH]:
            nfree = Q[Q_NFREE]
            in_batch = residual_s(nfree, P[P_CBUSY], now)
            v.cloud_backlog_s = backlog_s(in_batch, SF[QUEUED, cl], nfree if nfree > 1 else 1)
        else:
            v.cloud_backlog_s = backlog_s(residual(SI, SF, cl, now), SF[QUEUED, cl], Q[Q_CLOUDSRV])


@njit(cache=True)
def place(view, SI, SF, Q, P, E, EF, links, routes, state, decide, edge_of_mobile, m, base, now):
    """engine.StationPipeline._place: route r' = edge x R + r at a capture, the edge server by the assignment
    (decisions.least_loaded, or the least decisions.expected_delay_s), the route by the policy (else `base`);
    routes: mobile device m's ROUTE records."""
    per, edge0 = Q[Q_PER], Q[Q_EDGE0]
    if Q[Q_ASSIGN] == ASSIGN_FIXED:
        lo = edge_of_mobile[m]
        hi = lo + 1
    elif Q[Q_ASSIGN] == ASSIGN_LEAST_LOADED:
        n = Q[Q_NE]
        lo = least_loaded(SI[SERVERS, edge0:edge0 + n] - SI[FREE, edge0:edge0 + n], SI[QLEN, edge0:edge0 + n],
                          SI[SERVERS, edge0:edge0 + n])
        hi = lo + 1
    else:
        lo, hi = 0, Q[Q_NE]
    best, best_s = -1, np.inf
    for e in range(lo, hi):
        fill_view(view, SI, SF, Q, P, E, EF, links, m, e, m, now)
        rr = base
        if Q[Q_POLICY]:
            rr = decide(state, view, routes, e * per, (e + 1) * per)
        if hi - lo == 1:
            return e * per + rr
        expected = expected_delay_s(routes, e * per + rr, view,
                                    value_at(links, E[2, e] + (0 if E[0, e] else m), now))
        if expected < best_s:
            best, best_s = e * per + rr, expected
    return best
