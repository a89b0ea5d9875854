"""Lindley's recursion for a run in which no station is shared: the compiled loop's expressions frame by frame,
best-split's (any stateful policy's) decisions included, falling back to the event loop where the order is the
tie rule's."""

from __future__ import annotations

import numpy as np

from simulator.jit import njit
from simulator.kernels.links import fixed_rate, transfer_end, value_at
from simulator.kernels.stations import backlog_s, lindley_step
from simulator.link import PackedSteps
from simulator.loop.heap import borrowed
from simulator.loop.layout import DE, DONE, DS, HE, HS, TE, TS, UE, US
from simulator.plan import LATE, FramePlan, Topology

REPLAY = np.dtype([("arrive", np.int64), ("start", np.int64), ("waiting", np.int64), ("queued", float),
                   ("last_end", float), ("chain", float)])
"""What the recursion keeps per station for a policy's decisions (replay): the next frame to arrive and to start,
the frames waiting, their queued work (the loop's running sum), when the last service begun ends, and (the mobile
device) the capture chain's time."""


def replay_state(first: int, capture_s: float) -> np.ndarray:
    """REPLAY records of the mobile device, uplink and edge server before frame `first`, captured at capture_s."""
    out = np.zeros(3, REPLAY)
    out["arrive"] = out["start"] = first
    out["last_end"] = -np.inf
    out["chain"][0] = capture_s
    return out


@njit(cache=True, inline="always")
def replay(R, x, t, i, nxt, capture, T, work, route, a_row, s_row, e_row, prop):
    """Station x (0 mobile device, 1 uplink, 2 edge server) just before a capture at t, from the times the
    recursion has already given the frames before i: (residual service, queued work, exact).

    The event loop's running sum of queued work is replayed op by op in its event order (an arrival that waits adds
    its work, a service that starts from the queue subtracts it, an emptied queue is 0.0), so the sum is the
    loop's float, not one equal in exact arithmetic. exact is False when anything happens at this station at t
    itself (or an arrival and a start from the queue coincide): the order of those events is the tie rule's, and
    the caller runs the event loop instead."""
    rx = R[x]
    ak, sk, qlen, queued, last_end, chain = rx.arrive, rx.start, rx.waiting, rx.queued, rx.last_end, rx.chain
    ta = ts = np.inf
    while True:
        while ak != i and not (work[route[ak], ak] > 0 if x == 0 else T[ak, s_row] == T[ak, s_row]):
            j = nxt[ak]  # a frame that does not visit this station (the mobile device's arrivals: the captures)
            if x == 0:
                chain = chain + (capture[j] - chain)
            ak = j
        if ak != i:
            ta = chain if x == 0 else (T[ak, a_row] + prop if x == 2 and prop > 0 else T[ak, a_row])
        else:
            ta = np.inf
        while sk != i and not (work[route[sk], sk] > 0 if x == 0 else T[sk, s_row] == T[sk, s_row]):
            sk = nxt[sk]
        ts = T[sk, s_row] if sk != i else np.inf
        if ta < ts or (ta == ts and ak == sk):
            if ta >= t:
                break
            if T[ak, s_row] > ta:  # it waits: the loop's enqueue
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
            last_end = T[sk, e_row]
            sk = nxt[sk]
    rx.arrive, rx.start, rx.waiting, rx.queued, rx.last_end, rx.chain = ak, sk, qlen, queued, last_end, chain
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

    decisions = (policy, state, routes, n_routes, view, run, R): the stateful policy's decide kernel at each
    capture (policy != 0) on the state the loop would have then (see decide_at); run the loop's RUN record, R the
    stations' REPLAY records."""
    b = borrowed
    capture, route, nxt, T, status = b(capture), b(route), b(nxt), b(T), b(status)
    demands = (b(plan[0]), b(plan[1]), b(plan[2]), b(plan[3]))  # head, bits, tail, down
    links = PackedSteps(b(tr.offsets), b(tr.steps), b(tr.periods))
    policy, state, routes, n_routes, view, run, R = decisions
    decisions = (policy, b(state), b(routes), b(n_routes), b(view), b(run), b(R))
    view[0].propagation_s, view[0].downlink_bps, view[0].link = run[0].propagation_s, run[0].downlink_bps, 0
    constant = fixed_rate(links, 0)  # a transfer on the uplink takes bits / rate wherever it starts
    # when the mobile device, uplink, edge and downlink end their last service; when the uplink, edge and downlink
    # met their last frame, and whether the uplink's last frame skipped the mobile device
    busy = (-np.inf, -np.inf, -np.inf, -np.inf)
    met = (-np.inf, -np.inf, -np.inf, 0.0)
    i, now = first, capture[first]
    uk = first  # the next frame whose uplink end the policy's estimate has not seen
    while i >= 0:
        if policy:
            uk = decide_at(i, now, uk, nxt, capture, route, demands, links, T, decisions, decide, observe)
            if uk < 0:
                return False
        t, busy, met = lindley_frame(i, now, route[i], demands, links, constant, prop, T, busy, met)
        if t != t:
            return False
        T[i, DONE] = t
        if has_deadline and t - capture[i] > deadline + 1e-12:
            status[i] = LATE
        j = nxt[i]
        if j >= 0:
            now = now + (capture[j] - now)
        i = j
    return True


@njit(cache=True, inline="always")
def lindley_frame(i, now, r, plan, links, constant, prop, T, busy, met):
    """Frame i, captured now on route r, through the mobile device, uplink, edge server and downlink (its stage times
    into T); returns (when it is done, busy, met), done NaN when a station would meet it out of order."""
    head_s, bits_s, tail_s, down_s = plan
    busy_m, busy_u, busy_e, busy_d = busy
    last_u, last_e, last_d, last_skip = met
    t = now
    skip = 0.0 if head_s[r, i] > 0 else 1.0
    if skip:
        T[i, HS] = t
    else:
        T[i, HS], t, busy_m = lindley_step(busy_m, t, head_s[r, i])
    T[i, HE] = t
    if bits_s[r, i] > 0 or tail_s[r, i] == tail_s[r, i]:
        if t < last_u or (t == last_u and skip != last_skip):
            return np.nan, busy, met
        last_u, last_skip = t, skip
        start = t if busy_u <= t else busy_u
        if constant:
            finish = start + bits_s[r, i] / links.steps[0].value
        else:
            finish = transfer_end(links, 0, start, bits_s[r, i], busy_u)
        T[i, US], t, busy_u = lindley_step(busy_u, t, finish - start)
        T[i, UE] = t
        if prop > 0:
            t = t + prop
        if t < last_e:
            return np.nan, busy, met
        last_e = t
        T[i, TS], t, busy_e = lindley_step(busy_e, t, tail_s[r, i])
        T[i, TE] = t
        if t < last_d:
            return np.nan, busy, met
        last_d = t
        T[i, DS], t, busy_d = lindley_step(busy_d, t, down_s[r, i])
        T[i, DE] = t
        if prop > 0:
            t = t + prop
    return t, (busy_m, busy_u, busy_e, busy_d), (last_u, last_e, last_d, last_skip)


@njit(cache=True, inline="always")
def decide_at(i, now, uk, nxt, capture, route, plan, links, T, decisions, decide, observe):
    """engine._decide for frame i captured now, on the state the loop would have then: each station's backlog by
    replay, the policy's own state fed by its observe kernel with the uplink's ends before now (from frame uk on, in
    order). Sets route[i]; returns the next frame whose uplink end is unseen, -1 on a tie at now (see replay)."""
    head_s, bits_s, tail_s, down_s = plan
    policy, state, routes, n_routes, view, run, R = decisions
    prop = run[0].propagation_s
    res_m, queued_m, ok_m = replay(R, 0, now, i, nxt, capture, T, head_s, route, -1, HS, HE, prop)
    res_u, queued_u, ok_u = replay(R, 1, now, i, nxt, capture, T, bits_s, route, HE, US, UE, prop)
    res_e, queued_e, ok_e = replay(R, 2, now, i, nxt, capture, T, tail_s, route, UE, TS, TE, prop)
    if not (ok_m and ok_u and ok_e):
        return -1
    while uk != i:  # engine._up_done's observations, uplink end by uplink end
        if T[uk, US] == T[uk, US]:
            if T[uk, UE] >= now:
                if T[uk, UE] == now:
                    return -1
                break
            observe(state, 0, bits_s[route[uk], uk], T[uk, UE] - T[uk, US])
        uk = nxt[uk]
    v = view[0]
    v.now_s, v.uplink_rate_bps = now, value_at(links, 0, now)
    v.mobile_backlog_s, v.server_backlog_s = backlog_s(res_m, queued_m, 1), backlog_s(res_e, queued_e, 1)
    v.uplink_residual_s, v.uplink_queued_bits = res_u, queued_u
    route[i] = decide(state, view, routes[0], 0, n_routes[0])
    return uk


def lindley_applies(plan: FramePlan, topo: Topology) -> bool:
    """True when no station is shared: one mobile device, one edge server with one server, no cloud, unbounded
    queues, no drop-stale, constant propagation; stateless or best-split's decisions at capture (see lindley)."""
    return (plan.n_mobiles == 1 and topo.tiers is None and topo.servers == 1
            and topo.mobile_capacity is None and topo.server_capacity is None and not topo.drop_stale
            and topo.delay is None)
