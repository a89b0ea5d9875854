"""Lindley's recursion for a run in which no station is shared: the compiled loop's expressions frame by frame,
best-split's (any stateful policy's) decisions included, falling back to the event loop where the order is the
tie rule's."""

from __future__ import annotations

import numpy as np
from numba import njit

from simulator.kernels.links import fixed_rate, transfer_end, value_at
from simulator.kernels.stations import backlog_s, lindley_step
from simulator.link import PackedSteps
from simulator.loop.heap import borrowed
from simulator.loop.layout import DE, DONE, DS, HE, HS, P_DLBPS, P_PROP, TE, TS, UE, US
from simulator.plan import LATE, FramePlan, Topology

# state the recursion keeps per station for best-split (replay): cursors C[x] and numbers F[x]
C_ARRIVE, C_START, C_QLEN = 0, 1, 2  # next frame to arrive, next frame to start, frames waiting
F_QUEUED, F_END, F_CHAIN = 0, 1, 2  # queued work (the loop's running sum), end of the last service begun, capture

@njit(cache=True, inline="always")
def replay(C, F, x, t, i, nxt, capture, T, work, route, a_row, s_row, e_row, prop):
    """Station x (0 mobile device, 1 uplink, 2 edge server) just before a capture at t, from the times the
    recursion has already given the frames before i: (residual service, queued work, exact).

    The event loop's running sum of queued work is replayed op by op in its event order (an arrival that waits adds
    its work, a service that starts from the queue subtracts it, an emptied queue is 0.0), so the sum is the
    loop's float, not one equal in exact arithmetic. exact is False when anything happens at this station at t
    itself (or an arrival and a start from the queue coincide): the order of those events is the tie rule's, and
    the caller runs the event loop instead."""
    ak, sk, qlen = C[x, C_ARRIVE], C[x, C_START], C[x, C_QLEN]
    queued, last_end, chain = F[x, F_QUEUED], F[x, F_END], F[x, F_CHAIN]
    ta = ts = np.inf
    while True:
        while ak != i and not (work[route[ak], ak] > 0 if x == 0 else T[s_row, ak] == T[s_row, ak]):
            j = nxt[ak]  # a frame that does not visit this station (the mobile device's arrivals: the captures)
            if x == 0:
                chain = chain + (capture[j] - chain)
            ak = j
        if ak != i:
            ta = chain if x == 0 else (T[a_row, ak] + prop if x == 2 and prop > 0 else T[a_row, ak])
        else:
            ta = np.inf
        while sk != i and not (work[route[sk], sk] > 0 if x == 0 else T[s_row, sk] == T[s_row, sk]):
            sk = nxt[sk]
        ts = T[s_row, sk] if sk != i else np.inf
        if ta < ts or (ta == ts and ak == sk):
            if ta >= t:
                break
            if T[s_row, ak] > ta:  # it waits: the loop's enqueue
                queued += work[route[ak], ak]
                qlen += 1
            j = nxt[ak]
            if x == 0:
                chain = chain + (capture[j] - chain)
            ak = j
        else:
            if ts >= t:
                break
            if ta == ts:
                return 0.0, 0.0, False
            if qlen:  # it starts from the queue: the loop's _finish
                qlen -= 1
                queued = queued - work[route[sk], sk] if qlen else 0.0
            last_end = T[e_row, sk]
            sk = nxt[sk]
    C[x, C_ARRIVE], C[x, C_START], C[x, C_QLEN] = ak, sk, qlen
    F[x, F_QUEUED], F[x, F_END], F[x, F_CHAIN] = queued, last_end, chain
    if ta == t or ts == t or last_end == t:
        return 0.0, 0.0, False
    return (last_end - t if last_end > t else 0.0), queued, True

@njit(cache=True)
def lindley(first, nxt, capture, route, plan, tr, T, status, prop, has_deadline, deadline, decisions, decide,
             observe):
    """One mobile device's frames through its own stations (mobile device, uplink, edge server, downlink; none
    shared, one server each, unbounded), frame by frame by Lindley's recursion instead of events.

    The same floating-point expressions as the loop (captures at now + (capture - now), services at now + s), so
    the same times, provided every station meets its frames in the order they are served here: a frame that skips
    the mobile device (no head) can reach the uplink before one captured earlier. Returns False as soon as a
    station would meet a frame earlier than the one before it (or at the same instant by another path, whose
    order the event tie rule decides); the caller then runs the event loop.

    decisions = (policy, state, routes, n_routes, view, P, C, F): the stateful policy's decide kernel at each capture
    (policy != 0) on the state the loop would have then: each station's backlog by replay, and the policy's own
    state fed by its observe kernel with the uplink's ends before the capture, in order. Also False on a tie at a
    capture (see replay)."""
    b = borrowed
    capture, route, nxt, T, status = b(capture), b(route), b(nxt), b(T), b(status)
    head_s, bits_s, tail_s, down_s = b(plan[0]), b(plan[1]), b(plan[2]), b(plan[3])
    links = PackedSteps(b(tr.offsets), b(tr.steps), b(tr.periods))
    policy, state, routes, n_routes, view, P, C, F = decisions
    state, routes, n_routes, view, P, C, F = b(state), b(routes), b(n_routes), b(view), b(P), b(C), b(F)
    constant, rate = fixed_rate(links, 0), links.steps[0].value  # finish_time's first case
    # when each station's last service ends, and when the uplink, edge and downlink met their last frame
    busy_m = busy_u = busy_e = busy_d = last_u = last_e = last_d = -np.inf
    last_skip = False  # whether the uplink's last frame skipped the mobile device
    i, now = first, capture[first]
    view[0].propagation_s, view[0].downlink_bps, view[0].link = P[P_PROP], P[P_DLBPS], 0
    uk = first  # the next frame whose uplink end the estimate has not seen
    while i >= 0:
        if policy:  # engine._decide on the loop's backlogs of this instant
            res_m, queued_m, ok_m = replay(C, F, 0, now, i, nxt, capture, T, head_s, route, -1, HS, HE, prop)
            res_u, queued_u, ok_u = replay(C, F, 1, now, i, nxt, capture, T, bits_s, route, HE, US, UE, prop)
            res_e, queued_e, ok_e = replay(C, F, 2, now, i, nxt, capture, T, tail_s, route, UE, TS, TE, prop)
            if not (ok_m and ok_u and ok_e):
                return False
            while uk != i:  # engine._up_done's observations, uplink end by uplink end
                if T[US, uk] == T[US, uk]:
                    if T[UE, uk] >= now:
                        if T[UE, uk] == now:
                            return False
                        break
                    observe(state, 0, bits_s[route[uk], uk], T[UE, uk] - T[US, uk])
                uk = nxt[uk]
            v = view[0]
            v.now_s, v.uplink_rate_bps = now, value_at(links, 0, now)
            v.mobile_backlog_s, v.server_backlog_s = backlog_s(res_m, queued_m, 1), backlog_s(res_e, queued_e, 1)
            v.uplink_residual_s, v.uplink_queued_bits = res_u, queued_u
            route[i] = decide(state, view, routes[0], 0, n_routes[0])
        r = route[i]
        t = now
        skip = not head_s[r, i] > 0
        if skip:
            T[HS, i] = t
        else:
            T[HS, i], t, busy_m = lindley_step(busy_m, t, head_s[r, i])
        T[HE, i] = t
        if bits_s[r, i] > 0 or tail_s[r, i] == tail_s[r, i]:
            if t < last_u or (t == last_u and skip != last_skip):
                return False
            last_u, last_skip = t, skip
            start = t if busy_u <= t else busy_u
            finish = start + bits_s[r, i] / rate if constant else transfer_end(links, 0, start, bits_s[r, i], busy_u)
            T[US, i], t, busy_u = lindley_step(busy_u, t, finish - start)
            T[UE, i] = t
            if prop > 0:
                t = t + prop
            if t < last_e:
                return False
            last_e = t
            T[TS, i], t, busy_e = lindley_step(busy_e, t, tail_s[r, i])
            T[TE, i] = t
            if t < last_d:
                return False
            last_d = t
            T[DS, i], t, busy_d = lindley_step(busy_d, t, down_s[r, i])
            T[DE, i] = t
            if prop > 0:
                t = t + prop
        T[DONE, i] = t
        if has_deadline and t - capture[i] > deadline + 1e-12:
            status[i] = LATE
        j = nxt[i]
        if j >= 0:
            now = now + (capture[j] - now)
        i = j
    return True

def lindley_applies(plan: FramePlan, topo: Topology) -> bool:
    """True when no station is shared: one mobile device, one edge server with one server, no cloud, unbounded
    queues, no drop-stale, constant propagation; stateless or best-split's decisions at capture (see lindley)."""
    return (plan.n_mobiles == 1 and topo.tiers is None and topo.servers == 1
            and topo.mobile_capacity is None and topo.server_capacity is None and not topo.drop_stale
            and topo.delay is None)
