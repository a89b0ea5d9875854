"""The compiled exact engine: the SimPy engine's stations and policies as one numba event loop (issue 17).

Same contract as engine.simulate: a FramePlan and a Topology in, per-frame stage times out. The loop is a binary
heap of events (time, sequence, kind, frame) in numpy arrays; every station is a FIFO with c servers whose queue
is a list linked through the frames (a frame waits in at most one queue at a time, so one `next` slot per frame
holds every queue in O(N) memory). Each handler mirrors a callback of engine.StationPipeline, computing the same
floating-point expressions in the same order (a service is scheduled at now + (finish - now), a capture at
now + (capture - now)), so the times are the SimPy engine's, bit for bit up to libm.

Tie rule (the SimPy engine's, shared): events at the same instant run in the order they were scheduled (SimPy's
event id; here a global sequence number). Inside one event the follow-ups happen in the SimPy engine's callback
order: a capture first schedules its mobile device's next capture, then enters the mobile device; a station that
ends a service first starts its next queued frame, then hands the finished frame on; zero-length propagation is a
direct hand-over, not an event.

Covered (`supports`): every station and policy of the SimPy engine: per-mobile or shared uplinks, constant and
traced links (outages, a period; resends are in the planned wire bits), c servers, propagation and varying delays
with FIFO, deadlines, bounded mobile and server queues with drop-stale, best-split / best-placement (EWMA or oracle
bandwidth, 002 ref. [10]; backlogs are running sums kept as the SimPy engine keeps them), several edge servers with
static, round-robin, least-loaded or shortest-expected-delay assignment, the cloud behind per-edge WAN links and
Triton-style dynamic batching. Runs in memory or window by window (a ring of frame slots: the loop returns to load
the next window when a capture reaches it, and windows go back in order once all their frames have ended).

Speed: numba's reference counts on arrays passed between functions are atomic adds; the loop works on borrowed
views (`_borrowed`) so that they cost nothing. An event that would be the next one popped (earlier than the heap's
top, or equal with a smaller sequence number) runs without going through the heap. A run in which no station is
shared (one mobile device, one server, unbounded queues: `_lindley_applies`) goes frame by frame by Lindley's
recursion with the loop's own expressions, best-split's decisions included (each station's backlog at a capture
is replayed from the times of the frames before it, `_replay`), and falls back to the event loop if a station
would meet its frames out of order or something happens at a capture's own instant (`_lindley`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from numba import njit
from numba.core import cgutils
from numba.extending import intrinsic

from profilers.errors import EdgesimError
from simulator.engine import WindowDone, WindowLoader, falls_behind, in_memory
from simulator.kernels.decisions import expected_delay_s, least_loaded, no_decide, no_observe
from simulator.kernels.links import fifo_delay, finish_time, planning_bps, value_at
from simulator.kernels.stations import (
    backlog_s,
    batch_size,
    batch_wait_s,
    busy_until_after,
    lindley,
    queued_after_start,
    residual_s,
)
from simulator.link import Packetiser, PackedSteps, RateTrace, pack_steps
from simulator.plan import DROPPED, LATE, TIER_FIELDS, TIME_FIELDS, FramePlan, Topology
from simulator.kernels.records import ROUTE, load_view
from simulator.policies import Route, StatefulPolicy, policy_kernels
from simulator.policies.base import _c_functions, route_table

# event kinds (code = frame << 4 | kind; a batch's id stands in for the frame of BATCH_FIN)
CAPTURE, MOBILE_FIN, UP_FIN, SERVER_ARRIVE, EDGE_FIN, DOWN_FIN, FINISH = 1, 2, 3, 4, 5, 6, 7
WAN_FIN, CLOUD_ARRIVE, CLOUD_FIN, BATCH_FIN, BATCH_TIMER, WAN_DOWN_FIN, DOWN_ARRIVE = 8, 9, 10, 11, 12, 13, 14

# rows of the time table T (TIME_FIELDS, then TIER_FIELDS when tiered, then the varying delays)
HS, HE, US, UE, TS, TE, DS, DE, DONE = 0, 1, 2, 3, 4, 5, 6, 7, 8
EA, WS, WE, CA, CS, CE, WDS, WDE, BW, BSZ = 9, 10, 11, 12, 13, 14, 15, 16, 17, 18

# per-station float rows (SF[k, station]): when its longest service in progress ends, the waiting frames' total work
BUSY, QUEUED = 0, 1
# per-station int columns (SI[k, station]) and station kinds
FREE, SERVERS, CAP, QHEAD, QTAIL, QLEN, SKIND = 0, 1, 2, 3, 4, 5, 6
# (a kind is also the index of its demand in the plan tuple: head, bits, tail, down, WAN bits, cloud, WAN return)
K_MOBILE, K_UP, K_EDGE, K_DOWN, K_WAN, K_CLOUD, K_WDOWN = 0, 1, 2, 3, 4, 5, 6

# int parameters Q[...]
(Q_M, Q_UP0, Q_EDGE0, Q_DOWN0, Q_WAN0, Q_WDOWN0, Q_CLOUD, Q_SHARED, Q_TIERED, Q_NE, Q_PER, Q_POLICY, Q_ASSIGN,
 Q_DELAY, Q_STALE, Q_DEADLINE, Q_BATCH, Q_MAXB, Q_ROWPU, Q_ROWPD, Q_CLOUDSRV, Q_NBATCH, Q_NFREE, Q_LAST) = range(24)
# float parameters P[...]
P_PROP, P_DEADLINE, P_ALPHA, P_DLBPS, P_WANDBPS, P_MAXQD, P_TIMER, P_CBUSY, P_LAST = range(9)
# columns of the route table RT[m, r, ...]
RT_HEAD, RT_TAIL_ON, RT_TAIL, RT_CLOUD_ON, RT_CLOUD, RT_UPW, RT_DOWNW, RT_WANW = range(8)
POLICY_NONE, POLICY_EWMA, POLICY_ORACLE = 0, 1, 2
DONE_RUN, GROW, LOAD = 0, 1, 2  # why _run returned
NEXT_WINDOW = -2  # nxt of a mobile device's last frame in a window while the next window is not loaded
ASSIGN_FIXED, ASSIGN_LEAST_LOADED, ASSIGN_SED = 0, 1, 2


# ---------------------------------------------------------------- arrays without reference counts

@intrinsic
def _borrowed(typingctx, arr):
    """The same array with no owner: numba's reference counts on it become no-ops (atomic adds otherwise, on every
    call that takes it). Only for arrays that outlive the loop using the view: the caller keeps them."""
    def codegen(context, builder, sig, args):
        out = context.make_array(sig.return_type)(context, builder, args[0])
        out.meminfo = cgutils.get_null_value(out.meminfo.type)
        out.parent = cgutils.get_null_value(out.parent.type)
        return out._getvalue()
    return arr(arr), codegen


# ---------------------------------------------------------------- event heap: (time, sequence) order, as SimPy's

@njit(cache=True, inline="always")
def _push(ht, hs, hc, meta, t, code):
    seq = meta[1]
    meta[1] = seq + 1
    _push_seq(ht, hs, hc, meta, t, seq, code)


@njit(cache=True)
def _push_seq(ht, hs, hc, meta, t, seq, code):
    """Put an event on the heap with the sequence number it was given when it was scheduled."""
    n = meta[0]
    k = n
    while k > 0:
        p = (k - 1) >> 1
        if ht[p] < t or (ht[p] == t and hs[p] < seq):
            break
        ht[k], hs[k], hc[k] = ht[p], hs[p], hc[p]
        k = p
    ht[k], hs[k], hc[k] = t, seq, code
    meta[0] = n + 1


@njit(cache=True)
def _pop(ht, hs, hc, meta):
    t0, c0 = ht[0], hc[0]
    n = meta[0] - 1
    meta[0] = n
    if n > 0:
        t, s, c = ht[n], hs[n], hc[n]
        k = 0
        while True:
            j = 2 * k + 1
            if j >= n:
                break
            r = j + 1
            if r < n and (ht[r] < ht[j] or (ht[r] == ht[j] and hs[r] < hs[j])):
                j = r
            if t < ht[j] or (t == ht[j] and s < hs[j]):
                break
            ht[k], hs[k], hc[k] = ht[j], hs[j], hc[j]
            k = j
        ht[k], hs[k], hc[k] = t, s, c
    return t0, c0


# ---------------------------------------------------------------- stations: FIFO queues linked through the frames

@njit(cache=True)
def _enqueue(SI, NXT, PRV, st, i):
    NXT[i] = -1
    PRV[i] = SI[QTAIL, st]
    if SI[QLEN, st]:
        NXT[SI[QTAIL, st]] = i
    else:
        SI[QHEAD, st] = i
    SI[QTAIL, st] = i
    SI[QLEN, st] += 1


@njit(cache=True)
def _unlink(SI, NXT, PRV, st, i):
    p, n = PRV[i], NXT[i]
    if SI[QHEAD, st] == i:
        SI[QHEAD, st] = n
    else:
        NXT[p] = n
    if SI[QTAIL, st] == i:
        SI[QTAIL, st] = p
    else:
        PRV[n] = p
    SI[QLEN, st] -= 1


@njit(cache=True, inline="always")
def _work(plan, kind, r, i):
    """What frame i adds to a station's queued work (engine._Station.work): seconds of service, bits on a link."""
    return plan[kind][r, i]


@njit(cache=True)
def _residual(SI, SF, st, now):
    """_Station.residual_s of station st."""
    return residual_s(SI[FREE, st], SF[BUSY, st], now)


# ---------------------------------------------------------------- decisions at capture (best-split, assignment)

@njit(cache=True)
def _fill_view(view, SI, SF, Q, P, E, EF, links, m, e, link, now):
    """engine.StationPipeline._fill_view on the loop's arrays: the LOAD_VIEW record a decision reads."""
    v = view[0]
    v.now_s, v.link, v.uplink_rate_bps = now, link, value_at(links, link, now)
    v.mobile_backlog_s = backlog_s(_residual(SI, SF, m, now), SF[QUEUED, m], 1)
    if Q[Q_TIERED]:
        up = E[3, e] if E[3, e] >= 0 else Q[Q_UP0] + m
        server, servers = Q[Q_EDGE0] + e, E[1, e]
    else:
        up = Q[Q_UP0] + (0 if Q[Q_SHARED] else m)
        server = Q[Q_EDGE0]
        servers = SI[SERVERS, server]
    v.uplink_residual_s, v.uplink_queued_bits = _residual(SI, SF, up, now), SF[QUEUED, up]
    v.server_backlog_s = backlog_s(_residual(SI, SF, server, now), SF[QUEUED, server], servers)
    v.propagation_s, v.downlink_bps = P[P_PROP], P[P_DLBPS]
    if Q[Q_TIERED] and Q[Q_CLOUDSRV]:
        wan = Q[Q_WAN0] + e
        rate = planning_bps(value_at(links, E[4, e], now))
        v.wan_backlog_s, v.wan_bps = backlog_s(_residual(SI, SF, wan, now), SF[QUEUED, wan], rate), rate
        v.wan_propagation_s, v.wan_down_bps = EF[e], P[P_WANDBPS]
        cl = Q[Q_CLOUD]
        if Q[Q_BATCH]:
            nfree = Q[Q_NFREE]
            residual = residual_s(nfree, P[P_CBUSY], now)
            v.cloud_backlog_s = backlog_s(residual, SF[QUEUED, cl], nfree if nfree > 1 else 1)
        else:
            v.cloud_backlog_s = backlog_s(_residual(SI, SF, cl, now), SF[QUEUED, cl], Q[Q_CLOUDSRV])


@njit(cache=True)
def _place(view, SI, SF, Q, P, E, EF, links, routes, state, decide, edge_of_mobile, m, base, now):
    """engine.StationPipeline._place: route r' = edge x R + r at a capture, the edge server by the assignment
    (decisions.least_loaded, or the least decisions.expected_delay_s), the route by the policy (else `base`)."""
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
        _fill_view(view, SI, SF, Q, P, E, EF, links, m, e, m, now)
        rr = base
        if Q[Q_POLICY]:
            rr = decide(state, view, routes[m], e * per, (e + 1) * per)
        if hi - lo == 1:
            return e * per + rr
        expected = expected_delay_s(routes[m, e * per + rr], view, value_at(links, E[2, e] + (0 if E[0, e] else m),
                                                                             now))
        if expected < best_s:
            best, best_s = e * per + rr, expected
    return best


# ---------------------------------------------------------------- the cloud's dynamic batcher (_BatchStation)

@njit(cache=True)
def _batch_dispatch(T, cloud_s, route, SI, SF, NXT, PRV, Q, P, B, ht, hs, hc, meta, now):
    """_BatchStation._dispatch and _start: batches of one cloud key while a server is idle, else a timer."""
    key_of, pref, free_since, members, bsize, same, factors, bfree = B
    st, maxb = Q[Q_CLOUD], Q[Q_MAXB]
    while Q[Q_NFREE] > 0 and SI[QLEN, st] > 0:
        first = SI[QHEAD, st]
        key = key_of[route[first]]
        n = 0
        j = first
        while j >= 0 and n < maxb:
            if key_of[route[j]] == key:
                same[n] = j
                n += 1
            j = NXT[j]
        oldest = T[CA, same[0]]
        size = batch_size(n, maxb, pref, now - oldest, P[P_MAXQD])
        if size == 0:
            due = oldest + P[P_MAXQD]
            if P[P_TIMER] != due:
                P[P_TIMER] = due
                _push(ht, hs, hc, meta, now + (due - now), BATCH_TIMER)
            return
        nf = Q[Q_NFREE]  # the idle server free for longest takes the batch (only its free time matters)
        k_min = 0
        for k in range(1, nf):
            if free_since[k] < free_since[k_min]:
                k_min = k
        free = free_since[k_min]
        free_since[k_min] = free_since[nf - 1]
        Q[Q_NFREE] = nf - 1
        Q[Q_NBATCH] -= 1  # a free batch slot (one per cloud server, and one for a batch handing its frames on)
        b = bfree[Q[Q_NBATCH]]
        for q in range(size):
            j = same[q]
            _unlink(SI, NXT, PRV, st, j)
            SF[QUEUED, st] = queued_after_start(SF[QUEUED, st], cloud_s[route[j], j], SI[QLEN, st])
            members[b, q] = j
            T[CS, j] = now
            T[BSZ, j] = size
            T[BW, j] = batch_wait_s(now, T[CA, j], free)
        bsize[b] = size
        head = same[0]
        s = cloud_s[route[head], head] * factors[route[head], size]
        P[P_CBUSY] = busy_until_after(P[P_CBUSY], now, s)
        _push(ht, hs, hc, meta, now + s, (b << 4) | BATCH_FIN)


# ---------------------------------------------------------------- the loop

# hand-overs inside one event (engine.StationPipeline's direct calls), run as a small state machine
# (A_PUSH schedules the event (push_t, push_code): every event of a frame is pushed at that one place)
(A_NONE, A_BEGIN, A_ARRIVE, A_CAPTURE, A_HEAD_DONE, A_UP_DONE, A_EDGE_ARRIVE, A_AFTER_EDGE, A_DOWN_ARRIVE,
 A_DOWN_DONE, A_FINISH, A_WAN_DONE, A_CLOUD_ARRIVE, A_TO_WAN_DOWN, A_WAN_DOWN_DONE, A_PUSH) = range(16)


@njit(cache=True)
def _run(c, decide, observe, nxt, remaining, window_width, ht, hs, hc, meta):
    """Run events until none is left (returns DONE_RUN), the heap is nearly full (GROW: grow it and call again) or a
    capture's next frame is in a window not loaded yet (LOAD: load it, set nxt, call again).

    nxt: each slot's next capture of its mobile device (-1: none, NEXT_WINDOW: the first of the next window);
    remaining: per window of the ring (slot // window_width), its frames not ended yet; decide and observe: the
    stateful policy's kernels (policies.base.PolicyKernels) as C functions."""
    (T, plan, capture, mob, route, SI, NXT, PRV, SF, Q, P, E, EF, tr, status, drop_stage, dl, state, B, routes,
     view, edge_of_mobile, n_routes) = c
    head_s, bits_s, tail_s, down_s, wan_bits, cloud_s, wan_down_s = plan
    dl_kind, dl_fifo, dl_val, dtr, last_up, last_down = dl
    members, bsize, free_since, bfree = B[3], B[4], B[2], B[7]
    b = _borrowed  # the caller holds every array while the loop runs
    T, capture, mob, route, SI, NXT, PRV, SF, Q, P, E, EF = (b(T), b(capture), b(mob), b(route), b(SI), b(NXT),
                                                              b(PRV), b(SF), b(Q), b(P), b(E), b(EF))
    status, drop_stage, state, routes, view, edge_of_mobile = b(status), b(drop_stage), b(state), b(routes), \
        b(view), b(edge_of_mobile)
    head_s, bits_s, tail_s, down_s, wan_bits, cloud_s, wan_down_s = (b(head_s), b(bits_s), b(tail_s), b(down_s),
                                                                     b(wan_bits), b(cloud_s), b(wan_down_s))
    plan = (head_s, bits_s, tail_s, down_s, wan_bits, cloud_s, wan_down_s)
    links = PackedSteps(b(tr.offsets), b(tr.steps), b(tr.periods))
    delays = PackedSteps(b(dtr.offsets), b(dtr.steps), b(dtr.periods))
    dl_kind, dl_fifo, dl_val, last_up, last_down = b(dl_kind), b(dl_fifo), b(dl_val), b(last_up), b(last_down)
    members, bsize, free_since, bfree, n_routes = b(members), b(bsize), b(free_since), b(bfree), b(n_routes)
    remaining, width = b(remaining), window_width
    ht, hs, hc, meta, nxt = b(ht), b(hs), b(hc), b(meta), b(nxt)
    tiered, shared, policy, assign, per = Q[Q_TIERED], Q[Q_SHARED], Q[Q_POLICY], Q[Q_ASSIGN], Q[Q_PER]
    delay, stale, has_deadline, batch = Q[Q_DELAY], Q[Q_STALE], Q[Q_DEADLINE], Q[Q_BATCH]
    up0, edge0, down0, wan0, wdown0, cloud = Q[Q_UP0], Q[Q_EDGE0], Q[Q_DOWN0], Q[Q_WAN0], Q[Q_WDOWN0], Q[Q_CLOUD]
    prop, deadline = P[P_PROP], P[P_DEADLINE]
    row_pu, row_pd = Q[Q_ROWPU], Q[Q_ROWPD]
    limit = ht.size - 16 - Q[Q_MAXB]  # one event pushes at most this many
    st = stage = push_code = 0
    push_t = 0.0
    batch_slot = -1
    pend_t, pend_seq, pend_code = 0.0, -1, 0  # an event scheduled by this one, not on the heap yet
    while True:
        if pend_seq >= 0 and (meta[0] == 0 or pend_t < ht[0] or (pend_t == ht[0] and pend_seq < hs[0])):
            now, code = pend_t, pend_code  # it would be popped next: run it without the heap (same order)
        else:
            if pend_seq >= 0:
                _push_seq(ht, hs, hc, meta, pend_t, pend_seq, pend_code)
            if meta[0] == 0:
                break
            if meta[0] > limit:  # stale batch timers can pile up
                return GROW
            if hc[0] & 15 == CAPTURE and nxt[hc[0] >> 4] == NEXT_WINDOW:
                return LOAD
            now, code = _pop(ht, hs, hc, meta)
        pend_seq = -1
        kind, i = code & 15, code >> 4
        ret_act = ret_i = 0
        batch_q = batch_hi = 0
        done_st, done_row, act = -1, 0, A_NONE
        if kind == CAPTURE:
            j = nxt[i]
            if j >= 0:
                _push(ht, hs, hc, meta, now + (capture[j] - now), (j << 4) | CAPTURE)
            act = A_CAPTURE
        elif kind == MOBILE_FIN:
            done_st, done_row, act = mob[i], HE, A_HEAD_DONE
        elif kind == UP_FIN:
            if not tiered:
                done_st = up0 + (0 if shared else mob[i])
            else:
                medium = E[3, route[i] // per]
                done_st = medium if medium >= 0 else up0 + mob[i]
            done_row, act = UE, A_UP_DONE
        elif kind == SERVER_ARRIVE:
            act = A_EDGE_ARRIVE
        elif kind == EDGE_FIN:
            done_st, done_row = edge0 + (route[i] // per if tiered else 0), TE
            act = A_AFTER_EDGE if tiered else A_DOWN_ARRIVE
        elif kind == DOWN_FIN:
            done_st, done_row, act = down0 + mob[i], DE, A_DOWN_DONE
        elif kind == FINISH:
            act = A_FINISH
        elif kind == WAN_FIN:
            done_st, done_row, act = wan0 + route[i] // per, WE, A_WAN_DONE
        elif kind == CLOUD_ARRIVE:
            act = A_CLOUD_ARRIVE
        elif kind == CLOUD_FIN:
            done_st, done_row, act = cloud, CE, A_TO_WAN_DOWN
        elif kind == BATCH_FIN:
            free_since[Q[Q_NFREE]] = now
            Q[Q_NFREE] += 1
            batch_slot, batch_q, batch_hi = i, 0, bsize[i]
            for q in range(batch_hi):
                T[CE, members[i, q]] = now
            _batch_dispatch(T, cloud_s, route, SI, SF, NXT, PRV, Q, P, B, ht, hs, hc, meta, now)
        elif kind == BATCH_TIMER:
            _batch_dispatch(T, cloud_s, route, SI, SF, NXT, PRV, Q, P, B, ht, hs, hc, meta, now)
        elif kind == WAN_DOWN_FIN:
            done_st, done_row, act = wdown0 + route[i] // per, WDE, A_WAN_DOWN_DONE
        else:  # DOWN_ARRIVE
            act = A_DOWN_ARRIVE
        if done_st >= 0:  # _Station._finish: record the end, start the next queued frame, then hand this one on
            T[done_row, i] = now
            if SI[QLEN, done_st]:
                ret_act, ret_i = act, i
                i = SI[QHEAD, done_st]
                _unlink(SI, NXT, PRV, done_st, i)
                SF[QUEUED, done_st] = queued_after_start(SF[QUEUED, done_st],
                                                         _work(plan, SI[SKIND, done_st], route[i], i), SI[QLEN, done_st])
                st, act = done_st, A_BEGIN
            else:
                SI[FREE, done_st] += 1
        while True:
            if act == A_NONE:
                if ret_act:
                    act, i, ret_act = ret_act, ret_i, 0
                elif batch_q < batch_hi:
                    i = members[batch_slot, batch_q]
                    batch_q += 1
                    act = A_TO_WAN_DOWN
                else:
                    if batch_slot >= 0:  # its frames are on their way: the batch slot is free again
                        bfree[Q[Q_NBATCH]] = batch_slot
                        Q[Q_NBATCH] += 1
                        batch_slot = -1
                    break
            if act == A_PUSH:  # numbered now; the earliest of an event's pushes is held back (see the loop's top)
                seq = meta[1]
                meta[1] = seq + 1
                if pend_seq < 0:
                    pend_t, pend_seq, pend_code = push_t, seq, push_code
                elif push_t < pend_t:
                    _push_seq(ht, hs, hc, meta, pend_t, pend_seq, pend_code)
                    pend_t, pend_seq, pend_code = push_t, seq, push_code
                else:
                    _push_seq(ht, hs, hc, meta, push_t, seq, push_code)
                act = A_NONE
                continue
            r = route[i]
            if act == A_BEGIN:  # _Station._begin: frame i's service at station st starts now
                k = SI[SKIND, st]
                if k == K_MOBILE:
                    s, row, ev = head_s[r, i], HS, MOBILE_FIN
                elif k == K_UP:
                    if not tiered:
                        trace = 0 if shared else mob[i]
                    else:
                        e = r // per
                        trace = E[2, e] + (0 if E[0, e] else mob[i])
                    s, row, ev = finish_time(links, trace, now, bits_s[r, i]) - now, US, UP_FIN
                elif k == K_EDGE:
                    s, row, ev = tail_s[r, i], TS, EDGE_FIN
                elif k == K_DOWN:
                    s, row, ev = down_s[r, i], DS, DOWN_FIN
                elif k == K_WAN:
                    s, row, ev = finish_time(links, E[4, st - wan0], now, wan_bits[r, i]) - now, WS, WAN_FIN
                elif k == K_WDOWN:
                    s, row, ev = wan_down_s[r, i], WDS, WAN_DOWN_FIN
                else:
                    s, row, ev = cloud_s[r, i], CS, CLOUD_FIN
                T[row, i] = now
                SF[BUSY, st] = busy_until_after(SF[BUSY, st], now, s)
                push_t, push_code, act = now + s, (i << 4) | ev, A_PUSH
            elif act == A_ARRIVE:  # _Station.arrive
                if SI[FREE, st]:
                    SI[FREE, st] -= 1
                    act = A_BEGIN
                    continue
                if SI[CAP, st] >= 0 and SI[QLEN, st] >= SI[CAP, st]:
                    status[i], drop_stage[i] = DROPPED, stage
                    T[DONE, i] = now
                    remaining[i // width] -= 1
                else:
                    _enqueue(SI, NXT, PRV, st, i)
                    SF[QUEUED, st] += _work(plan, SI[SKIND, st], r, i)
                act = A_NONE
            elif act == A_CAPTURE:  # engine._capture
                m = mob[i]
                if stale:
                    while SI[QLEN, m]:
                        j = SI[QHEAD, m]
                        _unlink(SI, NXT, PRV, m, j)
                        SF[QUEUED, m] = queued_after_start(SF[QUEUED, m], head_s[route[j], j], SI[QLEN, m])
                        status[j], drop_stage[j] = DROPPED, 1
                        T[DONE, j] = now
                        remaining[j // width] -= 1
                if tiered and (assign != ASSIGN_FIXED or policy):  # engine._place
                    route[i] = _place(view, SI, SF, Q, P, E, EF, links, routes, state, decide, edge_of_mobile, m,
                                      r % per, now)
                elif policy:  # engine._decide
                    link = 0 if shared else m
                    _fill_view(view, SI, SF, Q, P, E, EF, links, m, 0, link, now)
                    route[i] = decide(state, view, routes[m], 0, n_routes[m])
                r = route[i]
                if head_s[r, i] > 0:
                    st, stage, act = m, 1, A_ARRIVE
                else:
                    T[HS, i] = now
                    T[HE, i] = now
                    act = A_HEAD_DONE
            elif act == A_HEAD_DONE:  # engine._head_done
                if bits_s[r, i] > 0 or tail_s[r, i] == tail_s[r, i] or (tiered and cloud_s[r, i] == cloud_s[r, i]):
                    if not tiered:
                        st = up0 + (0 if shared else mob[i])
                    else:
                        medium = E[3, r // per]
                        st = medium if medium >= 0 else up0 + mob[i]
                    stage, act = 2, A_ARRIVE
                else:
                    act = A_FINISH
            elif act == A_UP_DONE:  # engine._up_done: the estimator learns, then propagation
                m = mob[i]
                link = m if (tiered or not shared) else 0
                if policy:
                    observe(state, link, bits_s[r, i], T[UE, i] - T[US, i])
                d = prop
                if delay:
                    d = _delay(dl_kind, dl_fifo, dl_val, delays, last_up, i, m, link, 0, now)
                    T[row_pu, i] = d
                push_t, push_code = now + d, (i << 4) | SERVER_ARRIVE
                act = A_PUSH if delay != 0 or prop > 0 else A_EDGE_ARRIVE  # an event after the delay, else at once
            elif act == A_EDGE_ARRIVE:  # engine._edge_arrive
                if not tiered:
                    st, stage, act = edge0, 3, A_ARRIVE
                else:
                    T[EA, i] = now
                    if tail_s[r, i] == tail_s[r, i]:
                        st, stage, act = edge0 + r // per, 3, A_ARRIVE
                    else:
                        act = A_AFTER_EDGE
            elif act == A_AFTER_EDGE:
                if cloud_s[r, i] == cloud_s[r, i]:
                    st, stage, act = wan0 + r // per, 5, A_ARRIVE
                else:
                    act = A_DOWN_ARRIVE
            elif act == A_DOWN_ARRIVE:
                st, stage, act = down0 + mob[i], 4, A_ARRIVE
            elif act == A_DOWN_DONE:  # engine._down_done
                d = prop
                if delay:
                    m = mob[i]
                    d = _delay(dl_kind, dl_fifo, dl_val, delays, last_down, i, m, m, 1, now)
                    T[row_pd, i] = d
                push_t, push_code = now + d, (i << 4) | FINISH
                act = A_PUSH if delay != 0 or prop > 0 else A_FINISH  # an event after the delay, else at once
            elif act == A_FINISH:  # engine._finish
                T[DONE, i] = now
                if has_deadline and now - capture[i] > deadline + 1e-12:
                    status[i] = LATE
                remaining[i // width] -= 1
                act = A_NONE
            elif act == A_WAN_DONE:
                e = r // per
                push_t, push_code = now + EF[e], (i << 4) | CLOUD_ARRIVE
                act = A_PUSH if EF[e] > 0 else A_CLOUD_ARRIVE  # an event after the delay, else at once
            elif act == A_CLOUD_ARRIVE:
                T[CA, i] = now
                if batch:
                    _enqueue(SI, NXT, PRV, cloud, i)
                    SF[QUEUED, cloud] += cloud_s[r, i]
                    _batch_dispatch(T, cloud_s, route, SI, SF, NXT, PRV, Q, P, B, ht, hs, hc, meta, now)
                    act = A_NONE
                else:
                    st, stage, act = cloud, 6, A_ARRIVE
            elif act == A_TO_WAN_DOWN:
                st, stage, act = wdown0 + r // per, 5, A_ARRIVE
            else:  # A_WAN_DOWN_DONE
                e = r // per
                push_t, push_code = now + EF[e], (i << 4) | DOWN_ARRIVE
                act = A_PUSH if EF[e] > 0 else A_DOWN_ARRIVE  # an event after the delay, else at once


# state the recursion keeps per station for best-split (_replay): cursors C[x] and numbers F[x]
C_ARRIVE, C_START, C_QLEN = 0, 1, 2  # next frame to arrive, next frame to start, frames waiting
F_QUEUED, F_END, F_CHAIN = 0, 1, 2  # queued work (the loop's running sum), end of the last service begun, capture


@njit(cache=True, inline="always")
def _replay(C, F, x, t, i, nxt, capture, T, work, route, a_row, s_row, e_row, prop):
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
            if T[s_row, ak] > ta:  # it waits: the loop's _enqueue
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
def _lindley(first, nxt, capture, route, plan, tr, T, status, prop, has_deadline, deadline, decisions, decide,
             observe):
    """One mobile device's frames through its own stations (mobile device, uplink, edge server, downlink; none
    shared, one server each, unbounded), frame by frame by Lindley's recursion instead of events.

    The same floating-point expressions as the loop (captures at now + (capture - now), services at now + s), so
    the same times, provided every station meets its frames in the order they are served here: a frame that skips
    the mobile device (no head) can reach the uplink before one captured earlier. Returns False as soon as a
    station would meet a frame earlier than the one before it (or at the same instant by another path, whose
    order the event tie rule decides); the caller then runs the event loop.

    decisions = (policy, state, routes, n_routes, view, P, C, F): the stateful policy's decide kernel at each capture
    (policy != 0) on the state the loop would have then: each station's backlog by _replay, and the policy's own
    state fed by its observe kernel with the uplink's ends before the capture, in order. Also False on a tie at a
    capture (see _replay)."""
    b = _borrowed
    capture, route, nxt, T, status = b(capture), b(route), b(nxt), b(T), b(status)
    head_s, bits_s, tail_s, down_s = b(plan[0]), b(plan[1]), b(plan[2]), b(plan[3])
    links = PackedSteps(b(tr.offsets), b(tr.steps), b(tr.periods))
    policy, state, routes, n_routes, view, P, C, F = decisions
    state, routes, n_routes, view, P, C, F = b(state), b(routes), b(n_routes), b(view), b(P), b(C), b(F)
    constant, rate = links.offsets[1] - links.offsets[0] == 1, links.steps[0].value  # finish_time's first case
    # when each station's last service ends, and when the uplink, edge and downlink met their last frame
    busy_m = busy_u = busy_e = busy_d = last_u = last_e = last_d = -np.inf
    last_skip = False  # whether the uplink's last frame skipped the mobile device
    i, now = first, capture[first]
    uk = first  # the next frame whose uplink end the estimate has not seen
    while i >= 0:
        if policy:  # engine._decide on the loop's backlogs of this instant
            res_m, queued_m, ok_m = _replay(C, F, 0, now, i, nxt, capture, T, head_s, route, -1, HS, HE, prop)
            res_u, queued_u, ok_u = _replay(C, F, 1, now, i, nxt, capture, T, bits_s, route, HE, US, UE, prop)
            res_e, queued_e, ok_e = _replay(C, F, 2, now, i, nxt, capture, T, tail_s, route, UE, TS, TE, prop)
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
            v.now_s, v.link, v.uplink_rate_bps = now, 0, value_at(links, 0, now)
            v.mobile_backlog_s, v.server_backlog_s = backlog_s(res_m, queued_m, 1), backlog_s(res_e, queued_e, 1)
            v.uplink_residual_s, v.uplink_queued_bits = res_u, queued_u
            v.propagation_s, v.downlink_bps = P[P_PROP], P[P_DLBPS]
            route[i] = decide(state, view, routes[0], 0, n_routes[0])
        r = route[i]
        t = now
        skip = not head_s[r, i] > 0
        if skip:
            T[HS, i] = t
        else:
            T[HS, i], t, busy_m = lindley(busy_m, t, head_s[r, i])
        T[HE, i] = t
        if bits_s[r, i] > 0 or tail_s[r, i] == tail_s[r, i]:
            if t < last_u or (t == last_u and skip != last_skip):
                return False
            last_u, last_skip = t, skip
            start = t if busy_u <= t else busy_u
            finish = start + bits_s[r, i] / rate if constant else finish_time(links, 0, start, bits_s[r, i])
            T[US, i], t, busy_u = lindley(busy_u, t, finish - start)
            T[UE, i] = t
            if prop > 0:
                t = t + prop
            if t < last_e:
                return False
            last_e = t
            T[TS, i], t, busy_e = lindley(busy_e, t, tail_s[r, i])
            T[TE, i] = t
            if t < last_d:
                return False
            last_d = t
            T[DS, i], t, busy_d = lindley(busy_d, t, down_s[r, i])
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


@njit(cache=True)
def _delay(kinds, fifo, values, delays, last, i, m, k, row, now):
    """engine._varying_delay: frame i's delay now (a trace's step, or its draw), held behind the one sent before."""
    d = value_at(delays, m, now) if kinds[m] == 1 else values[row, i]
    d, last[k] = fifo_delay(now, d, last[k], fifo[m])
    return d


@njit(cache=True)
def _start(heap, firsts, capture):
    """Each mobile device's first capture on the heap."""
    ht, hs, hc, meta = heap
    for i in firsts:
        _push(ht, hs, hc, meta, capture[i], (i << 4) | CAPTURE)


def _grown(heap: tuple) -> tuple:
    """The event heap at twice its size (same events, same order)."""
    ht, hs, hc, meta = heap
    out = (np.empty(2 * ht.size), np.empty(2 * ht.size, np.int64), np.empty(2 * ht.size, np.int64), meta)
    for a, b in zip(out, heap):
        a[:b.size] = b
    return out


# ---------------------------------------------------------------- the Python side: arrays in, arrays out

def why_not(plan: FramePlan, topo: Topology, policy: Optional[StatefulPolicy] = None) -> Optional[str]:
    """Why simulate_compiled cannot give this run the SimPy engine's times (None: it can)."""
    if policy is not None and policy_kernels(policy) is None:
        return (f"policy {type(policy).__name__} declares no kernels in its registry entry (PolicyKernels): only "
                "the SimPy engine runs its Python hooks")
    if topo.delay is not None and plan.delay_u is None:
        return "a varying delay without per-frame uniforms (FramePlan.delay_u)"
    tiers = topo.tiers
    if tiers is None:
        if plan.cloud_s is not None:
            return "cloud demands without tiers"
        if len(topo.uplink) < (1 if topo.shared_medium else plan.n_mobiles):
            return "fewer uplinks than mobile devices"
        return None
    if plan.cloud_s is None or plan.cloud_key is None or plan.batch_factors is None:
        return "tiers without the plan's cloud demands, keys and batch factors"
    if tiers.assignment not in ("static", "round-robin", "least-loaded", "shortest-expected-delay"):
        return f"assignment '{tiers.assignment}'"
    if tiers.batching is not None and tiers.cloud_servers < 1:
        return "batching without a cloud server"
    if tiers.cloud_servers and any(e.wan is None for e in tiers.edges):
        return "a cloud behind an edge server without a WAN link"
    # a policy observes link = mobile device on tiers: one uplink entry each
    if policy is not None and len(topo.uplink) < plan.n_mobiles:
        return "a stateful policy with fewer uplinks than mobile devices"
    return None


def supports(plan: FramePlan, topo: Topology, policy: Optional[StatefulPolicy] = None) -> bool:
    """True when simulate_compiled gives this run the SimPy engine's times (else run engine.simulate; why_not says
    why)."""
    return why_not(plan, topo, policy) is None


def _lindley_applies(plan: FramePlan, topo: Topology) -> bool:
    """True when no station is shared: one mobile device, one edge server with one server, no cloud, unbounded
    queues, no drop-stale, constant propagation; stateless or best-split's decisions at capture (see _lindley)."""
    return (plan.n_mobiles == 1 and topo.tiers is None and topo.servers == 1
            and topo.mobile_capacity is None and topo.server_capacity is None and not topo.drop_stale
            and topo.delay is None)


def _decisions(policy: Optional[StatefulPolicy], topo: Topology, routes_of_mobile: Optional[list[list[Route]]],
               n_mobiles: int) -> tuple:
    """(state, ROUTE table, routes per mobile device, decide, observe) of a run: the policy's kernels as C functions
    (decisions.no_decide and no_observe without one) and its state; the routes where a decision reads them."""
    kernels = policy_kernels(policy)
    decide, observe = _c_functions(*((kernels.decide, kernels.observe) if kernels is not None
                                     else (no_decide, no_observe)))
    state = kernels.state(policy, topo.uplink) if kernels is not None else np.zeros(1)
    if routes_of_mobile is None:
        return state, np.zeros((max(n_mobiles, 1), 1), ROUTE), np.ones(max(n_mobiles, 1), np.int64), decide, observe
    table = route_table(routes_of_mobile, topo.packet_payload_bytes, topo.packet_overhead_bytes)
    return state, table, np.array([len(r) for r in routes_of_mobile], dtype=np.int64), decide, observe


def _delay_model(topo: Topology, n_mobiles: int) -> tuple:
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


def _delay_draws(plan: FramePlan, topo: Topology) -> np.ndarray:
    """Each frame's one-way delay up (row 0) and down (row 1) from its uniforms, where the delay is drawn."""
    out = np.zeros((2, plan.capture_s.size))
    for m, d in enumerate(topo.delay):
        if d.trace is None:
            sel = plan.mobile == m
            for row in (0, 1):
                out[row, sel] = d.sample(np.zeros(int(sel.sum())), plan.delay_u[row, sel])
    return out


class _Ring:
    """The loop's frame slots: windows of frames, each in a place of `width` slots (slot = place x width + row).

    Window k is loaded into a free place once a mobile device's captures reach it, and handed back, in order, once
    all its frames have ended (engine.FrameRing's contract, with arrays). It starts with two places (the window
    running and the next) and grows to at most ring_windows (a system that falls further behind gets one clear
    error); a run of one window is that window, slot = frame index.
    """

    def __init__(self, first: FramePlan, single: bool, ring_windows: int, n_rows: int, delay: bool) -> None:
        self.width, self.max_places = first.capture_s.size, 1 if single else ring_windows
        self.single, self.n_rows, self.delay = single, n_rows, delay
        self.routes, self.tiered = first.head_s.shape[0], first.cloud_s is not None
        f64 = (lambda a: np.ascontiguousarray(a, dtype=float))
        dummy = np.zeros((1, 1))
        self.places = 0
        if single:  # the plan's own arrays (no copy)
            self.plan = (f64(first.head_s), f64(first.wire_bits), f64(first.tail_s), f64(first.down_s),
                         f64(first.wan_bits) if self.tiered else dummy, f64(first.cloud_s) if self.tiered else dummy,
                         f64(first.wan_down_s) if self.tiered else dummy)
            self.capture, self.mobile = f64(first.capture_s), np.ascontiguousarray(first.mobile, dtype=np.int64)
        else:
            self.plan = tuple(np.zeros((self.routes, 0)) if k < 4 or self.tiered else dummy for k in range(7))
            self.capture, self.mobile = np.zeros(0), np.zeros(0, np.int64)
        self.route, self.T = np.zeros(0, np.int64), np.zeros((n_rows, 0))
        self.status, self.drop_stage = np.zeros(0, np.int8), np.zeros(0, np.int8)
        self.nxt, self.NXT, self.PRV = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        self.delay_values = np.zeros((2, 0) if delay else (2, 1))
        self.remaining = np.zeros(0, np.int64)
        self.free: list[int] = []
        self._grow(1 if single else 2)
        self.windows: dict[int, tuple[FramePlan, int]] = {}  # window -> (plan, place)
        self.lasts: dict[int, np.ndarray] = {}  # per window: the slot of each mobile device's last frame (-1: none)
        self.loaded = self.flushed = 0
        self.more = not single

    def _grow(self, places: int) -> None:
        """Room for `places` windows; the slots in use keep their numbers."""
        old, cap = self.places * self.width, places * self.width

        def wider(a: np.ndarray, fill) -> np.ndarray:
            out = np.full(a.shape[:-1] + (cap,), fill, dtype=a.dtype)
            out[..., :old] = a
            return out

        if not self.single:
            self.plan = tuple(wider(a, 0.0) if k < 4 or self.tiered else a for k, a in enumerate(self.plan))
            self.capture, self.mobile = wider(self.capture, 0.0), wider(self.mobile, 0)
        self.route, self.T = wider(self.route, 0), wider(self.T, np.nan)
        self.status, self.drop_stage = wider(self.status, 0), wider(self.drop_stage, 0)
        self.nxt, self.NXT, self.PRV = wider(self.nxt, -1), wider(self.NXT, -1), wider(self.PRV, -1)
        if self.delay:
            self.delay_values = wider(self.delay_values, 0.0)
        self.remaining = wider(self.remaining, 0)
        self.free += list(range(self.places, places))
        self.places = places

    def load(self, k: int, wp: FramePlan, topo: Topology, now: float) -> np.ndarray:
        """Put window k into a free place; link each mobile device's last frame of window k-1 to its first here.
        Returns the window's first frame of each mobile device (slots, -1: none)."""
        if not self.free:
            if self.places >= self.max_places:
                raise falls_behind(self.max_places, now)
            self._grow(min(2 * self.places, self.max_places))
        n, place = wp.capture_s.size, self.free.pop(0)
        if n > self.width:
            raise EdgesimError(f"window {k} has {n} frames, more than the first window's {self.width}")
        base = place * self.width
        sl = slice(base, base + n)
        if not self.single:
            parts = (wp.head_s, wp.wire_bits, wp.tail_s, wp.down_s) + (
                (wp.wan_bits, wp.cloud_s, wp.wan_down_s) if self.tiered else ())
            for dst, src in zip(self.plan, parts):
                dst[:, sl] = src
            self.capture[sl], self.mobile[sl] = wp.capture_s, wp.mobile
            self.T[:, sl] = np.nan
            self.status[sl] = self.drop_stage[sl] = 0
        self.route[sl] = wp.route
        if topo.delay is not None:
            self.delay_values[:, sl] = _delay_draws(wp, topo)
        first_of, last_of, nxt = wp.capture_chain()
        self.nxt[sl] = np.where(nxt >= 0, nxt + base, -1)
        firsts = np.where(first_of >= 0, first_of + base, -1)
        lasts = np.where(last_of >= 0, last_of + base, -1)
        if self.more:
            self.nxt[lasts[lasts >= 0]] = NEXT_WINDOW
        prev = self.lasts.pop(k - 1, None)
        if prev is not None:
            self.nxt[prev[prev >= 0]] = firsts[prev >= 0]
        self.lasts[k] = lasts
        self.windows[k], self.remaining[place] = (wp, place), n
        self.loaded = k + 1
        return firsts

    def last_window(self) -> None:
        """No window follows the loaded ones: the last frames have no next capture."""
        self.more = False
        for lasts in self.lasts.values():
            self.nxt[lasts[lasts >= 0]] = -1

    def flush(self, on_window: WindowDone, fields: tuple, everything: bool = False) -> None:
        """Hand back every leading window whose frames have all ended (every loaded one when `everything`)."""
        while self.flushed < self.loaded and (everything or self.remaining[self.windows[self.flushed][1]] == 0):
            k = self.flushed
            wp, place = self.windows.pop(k)
            base = place * self.width
            sl = slice(base, base + wp.capture_s.size)
            take = (lambda a: a[sl]) if self.single else (lambda a: a[sl].copy())
            times = {name: take(self.T[row]) for row, name in enumerate(fields)}
            times["status"], times["drop_stage"] = take(self.status), take(self.drop_stage)
            times["route"] = self.route[sl].astype(np.int16)
            if self.delay:
                times["prop_up_s"], times["prop_down_s"] = take(self.T[len(fields)]), take(self.T[len(fields) + 1])
            self.flushed = k + 1
            self.free.append(place)
            on_window(k, wp, times)


def _stations(topo: Topology, first: FramePlan, n_rows: int) -> tuple:
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
        for e, spec in enumerate(tiers.edges):
            E[0, e], E[1, e], E[2, e] = spec.shared_medium, spec.servers, len(traces)
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


def simulate_compiled_windows(load_window: WindowLoader, topo: Topology, on_window: WindowDone,
                              policy: Optional[StatefulPolicy] = None,
                              routes_of_mobile: Optional[list[list[Route]]] = None, ring_windows: int = 4) -> None:
    """engine.simulate_windows in the compiled loop: windows of frames in bounded memory, handed back in order."""
    first = load_window(0)
    if first is None or first.capture_s.size == 0:
        return
    why = why_not(first, topo, policy)
    if why is not None:
        raise EdgesimError(f"the compiled engine does not cover this run ({why}); use engine.simulate")
    peeked = load_window(1)  # loaded once: a window loader may draw from random streams
    fields = TIME_FIELDS + (TIER_FIELDS if first.cloud_s is not None else ())
    delay = topo.delay is not None
    ring = _Ring(first, peeked is None, ring_windows, len(fields) + (2 if delay else 0), delay)
    SI, SF, Q, P, E, EF, traces, B, n_up = _stations(topo, first, len(fields))
    n_mob = first.n_mobiles
    Q[Q_POLICY] = policy is not None
    kinds, fifo, delay_traces = _delay_model(topo, n_mob)
    state, routes, n_routes, decide, observe = _decisions(policy, topo, routes_of_mobile, n_mob)
    view = load_view()
    tiers = topo.tiers
    edge_of_mobile = np.ascontiguousarray(tiers.edge_of_mobile if tiers is not None and tiers.edge_of_mobile is not None
                                          else np.zeros(n_mob), dtype=np.int64)
    last_up, last_down = np.zeros(max(n_up, 1)), np.zeros(max(n_mob, 1))
    firsts = ring.load(0, first, topo, 0.0)
    firsts = firsts[firsts >= 0]
    firsts = firsts[np.lexsort((firsts, ring.capture[firsts]))]  # the SimPy engine's start order
    if ring.single and _lindley_applies(first, topo):
        cursors, numbers = np.zeros((3, 3), np.int64), np.zeros((3, 3))  # _replay's state of each station
        cursors[:, C_ARRIVE] = cursors[:, C_START] = firsts[0]
        numbers[:, F_END], numbers[0, F_CHAIN] = -np.inf, ring.capture[firsts[0]]
        decisions = (Q[Q_POLICY], state.copy(), routes, n_routes, view, P, cursors, numbers)
        if _lindley(firsts[0], ring.nxt, ring.capture, ring.route, ring.plan, traces, ring.T, ring.status,
                    topo.propagation_s, topo.deadline_s is not None, topo.deadline_s or 0.0, decisions, decide,
                    observe):
            ring.flush(on_window, fields, everything=True)
            return
        ring.T[:] = np.nan  # frames met out of order: the event loop runs them from the start
        ring.status[:] = 0
    size = max(1024, 4 * n_mob)
    heap = (np.empty(size), np.empty(size, np.int64), np.empty(size, np.int64), np.zeros(2, np.int64))
    _start(heap, firsts, ring.capture)
    while True:
        dl = (kinds, fifo, ring.delay_values, delay_traces, last_up, last_down)
        c = (ring.T, ring.plan, ring.capture, ring.mobile, ring.route, SI, ring.NXT, ring.PRV, SF, Q, P, E, EF, traces,
             ring.status, ring.drop_stage, dl, state, B, routes, view, edge_of_mobile, n_routes)  # anew: rings grow
        why = _run(c, decide, observe, ring.nxt, ring.remaining, ring.width, *heap)
        if why == GROW:
            heap = _grown(heap)
        elif why == LOAD:
            k = ring.loaded
            wp = peeked if k == 1 else load_window(k)
            if wp is None or wp.capture_s.size == 0:
                ring.last_window()
            else:
                ring.flush(on_window, fields)
                ring.load(k, wp, topo, float(heap[0][0]))
        else:
            break
    ring.flush(on_window, fields, everything=True)


def simulate_compiled(plan: FramePlan, topo: Topology, policy: Optional[StatefulPolicy] = None,
                      routes_of_mobile: Optional[list[list[Route]]] = None) -> dict[str, np.ndarray]:
    """engine.simulate's per-frame stage times, status and route, from the compiled event loop (one window)."""
    return in_memory(simulate_compiled_windows, plan, topo, policy, routes_of_mobile)
