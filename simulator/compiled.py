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

Covered (`supports`): one edge pool with per-mobile or shared uplinks, constant and traced links (with a period),
c servers, propagation, deadlines, bounded mobile and server queues with drop-stale, best-split / best-placement
(EWMA or oracle bandwidth, 002 ref. [10]), several edge servers with static, round-robin, least-loaded or
shortest-expected-delay assignment, the cloud behind per-edge WAN links, Triton-style dynamic batching, and
varying delays with FIFO. Other stateful policies need the SimPy engine.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from numba import njit

from profilers.errors import EdgesimError
from simulator.link import Packetiser, RateTrace
from simulator.plan import DROPPED, LATE, TIER_FIELDS, TIME_FIELDS, FramePlan, Topology
from simulator.policies import Route, StatefulPolicy
from simulator.policies.best_split import MIN_PLANNING_BPS, BestPlacementPolicy, BestSplitPolicy

# event kinds (code = frame << 4 | kind; a batch's id stands in for the frame of BATCH_FIN)
CAPTURE, MOBILE_FIN, UP_FIN, SERVER_ARRIVE, EDGE_FIN, DOWN_FIN, FINISH = 1, 2, 3, 4, 5, 6, 7
WAN_FIN, CLOUD_ARRIVE, CLOUD_FIN, BATCH_FIN, BATCH_TIMER, WAN_DOWN_FIN, DOWN_ARRIVE = 8, 9, 10, 11, 12, 13, 14

# rows of the time table T (TIME_FIELDS, then TIER_FIELDS when tiered, then the varying delays)
HS, HE, US, UE, TS, TE, DS, DE, DONE = 0, 1, 2, 3, 4, 5, 6, 7, 8
EA, WS, WE, CA, CS, CE, WDS, WDE, BW, BSZ = 9, 10, 11, 12, 13, 14, 15, 16, 17, 18

# per-station int columns (SI[k, station]) and station kinds
FREE, SERVERS, CAP, QHEAD, QTAIL, QLEN, SKIND = 0, 1, 2, 3, 4, 5, 6
K_MOBILE, K_UP, K_EDGE, K_DOWN, K_WAN, K_WDOWN, K_CLOUD = 0, 1, 2, 3, 4, 5, 6

# int parameters Q[...]
(Q_M, Q_UP0, Q_EDGE0, Q_DOWN0, Q_WAN0, Q_WDOWN0, Q_CLOUD, Q_SHARED, Q_TIERED, Q_NE, Q_PER, Q_POLICY, Q_ASSIGN,
 Q_DELAY, Q_STALE, Q_DEADLINE, Q_BATCH, Q_MAXB, Q_ROWPU, Q_ROWPD, Q_CLOUDSRV, Q_NBATCH, Q_NFREE, Q_LAST) = range(24)
# float parameters P[...]
P_PROP, P_DEADLINE, P_ALPHA, P_DLBPS, P_WANDBPS, P_MAXQD, P_TIMER, P_CBUSY, P_LAST = range(9)
# columns of the route table RT[m, r, ...]
RT_HEAD, RT_TAIL_ON, RT_TAIL, RT_CLOUD_ON, RT_CLOUD, RT_UPW, RT_DOWNW, RT_WANW = range(8)
POLICY_NONE, POLICY_EWMA, POLICY_ORACLE = 0, 1, 2
ASSIGN_FIXED, ASSIGN_LEAST_LOADED, ASSIGN_SED = 0, 1, 2


# ---------------------------------------------------------------- event heap: (time, sequence) order, as SimPy's

@njit(cache=True)
def _push(ht, hs, hc, meta, t, code):
    n, seq = meta[0], meta[1]
    meta[1] = seq + 1
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


# ---------------------------------------------------------------- link traces (RateTrace, scalar and exact)

@njit(cache=True)
def _search(a, lo, hi, v, right):
    """numpy.searchsorted on a[lo:hi] (side right or left), as an offset from lo."""
    a_lo, a_hi = lo, hi
    while a_lo < a_hi:
        mid = (a_lo + a_hi) >> 1
        if a[mid] < v or (right and a[mid] == v):
            a_lo = mid + 1
        else:
            a_hi = mid
    return a_lo - lo


@njit(cache=True)
def _segment(tr, k, t):
    """RateTrace's _segment: (step index, t within the period) on trace k."""
    off, times, period = tr[0], tr[1], tr[4]
    lo, hi = off[k], off[k + 1]
    if period[k] != 0.0:
        t = np.mod(t, period[k])
    j = _search(times, lo, hi, t, True) - 1
    if j < 0:
        j = 0
    return j, t


@njit(cache=True)
def _rate_at(tr, k, t):
    j, _ = _segment(tr, k, t)
    return tr[2][tr[0][k] + j]


@njit(cache=True)
def _bits_until(tr, k, t_s):
    off, times, rates, cum, period, pbits = tr
    j, t = _segment(tr, k, t_s)
    b = off[k] + j
    out = cum[b] + (t - times[b]) * rates[b]
    if period[k] != 0.0:
        out = out + np.floor(t_s / period[k]) * pbits[k]
    return out


@njit(cache=True)
def _finish_time(tr, k, start, bits):
    """RateTrace.finish_time(start, bits) on trace k."""
    off, times, rates, cum, period, pbits = tr
    lo, hi = off[k], off[k + 1]
    if hi - lo == 1:
        return start + bits / rates[lo]
    target = _bits_until(tr, k, start) + bits
    if period[k] != 0.0:
        n = np.floor(target / pbits[k])
        rem = target - n * pbits[k]
        if rem <= 0 and n > 0:
            n, rem = n - 1, pbits[k]
        j = _search(cum, lo, hi, rem, False) - 1
        j = min(max(j, 0), hi - lo - 1)
        rate = rates[lo + j] if rates[lo + j] > 0 else np.inf
        out = n * period[k] + times[lo + j] + (rem - cum[lo + j]) / rate
        return max(out, start)
    j = _search(cum, lo, hi, target, True) - 1
    if j < 0:
        j = 0
    if not rates[lo + j] > 0:
        j = min(j + 1, hi - lo - 1)
    out = times[lo + j] + (target - cum[lo + j]) / rates[lo + j]
    return max(out, start)


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


@njit(cache=True)
def _residual(SI, SF, st, now):
    """_Station.residual_s: what is left of the longest service in progress (0 when a server is free)."""
    if SI[FREE, st]:
        return 0.0
    r = SF[st] - now
    return r if r > 0.0 else 0.0


@njit(cache=True)
def _queue_sum(vals, route, NXT, j, scale):
    """Python's sum over a queue (from frame j on) of each frame's value at its route / scale, left to right."""
    acc = 0.0
    while j >= 0:
        acc += vals[route[j], j] / scale  # x / 1.0 is x exactly
        j = NXT[j]
    return acc


# ---------------------------------------------------------------- decisions at capture (best-split, assignment)

@njit(cache=True)
def _backlogs(SI, SF, NXT, route, plan, Q, P, E, tr, m, e, now):
    """engine._load_view as numbers: mobile backlog, uplink station, server, WAN backlog, WAN rate, cloud backlog."""
    mobile_backlog = _residual(SI, SF, m, now) + _queue_sum(plan[0], route, NXT, SI[QHEAD, m], 1.0) / 1
    if Q[Q_TIERED]:
        up = E[3, e] if E[3, e] >= 0 else Q[Q_UP0] + m
        server, servers = Q[Q_EDGE0] + e, E[1, e]
    else:
        up = Q[Q_UP0] + (0 if Q[Q_SHARED] else m)
        server = Q[Q_EDGE0]
        servers = SI[SERVERS, server]
    server_backlog = _residual(SI, SF, server, now) + _queue_sum(plan[2], route, NXT, SI[QHEAD, server], 1.0) / servers
    wan_backlog, wan_bps, cloud_backlog = 0.0, np.inf, 0.0
    if Q[Q_TIERED] and Q[Q_CLOUDSRV]:
        wan = Q[Q_WAN0] + e
        wan_bps = _rate_at(tr, E[4, e], now)
        wan_backlog = _residual(SI, SF, wan, now) + _queue_sum(plan[4], route, NXT, SI[QHEAD, wan], 1.0) / wan_bps
        cl = Q[Q_CLOUD]
        queued = _queue_sum(plan[5], route, NXT, SI[QHEAD, cl], 1.0)
        if Q[Q_BATCH]:
            residual = 0.0
            if Q[Q_NFREE] == 0:
                residual = max(P[P_CBUSY] - now, 0.0)
            cloud_backlog = residual + queued / max(Q[Q_NFREE], 1)
        else:
            cloud_backlog = _residual(SI, SF, cl, now) + queued / Q[Q_CLOUDSRV]
    return mobile_backlog, up, server_backlog, wan_backlog, wan_bps, cloud_backlog


@njit(cache=True)
def _predicted(RT, m, r, view, bw, uplink_wait, prop, dl_bps, wan_down_bps, wan_prop):
    """best_split.predicted_delay_s, term by term in the same order."""
    mobile_backlog, _, server_backlog, wan_backlog, wan_bps, cloud_backlog = view
    t = mobile_backlog + RT[m, r, RT_HEAD]
    if not RT[m, r, RT_CLOUD_ON]:
        if RT[m, r, RT_TAIL_ON]:
            t += uplink_wait + RT[m, r, RT_UPW] / bw
            t += prop + server_backlog + RT[m, r, RT_TAIL]
            t += RT[m, r, RT_DOWNW] / dl_bps + prop
        return t
    t += uplink_wait + RT[m, r, RT_UPW] / bw + prop
    if RT[m, r, RT_TAIL_ON]:
        t += server_backlog + RT[m, r, RT_TAIL]
    t += wan_backlog + RT[m, r, RT_WANW] / wan_bps + wan_prop
    t += cloud_backlog + RT[m, r, RT_CLOUD]
    t += RT[m, r, RT_DOWNW] / wan_down_bps + wan_prop
    return t + RT[m, r, RT_DOWNW] / dl_bps + prop


@njit(cache=True)
def _choose(RT, m, lo, hi, view, bw, uplink_wait, P, wan_prop):
    """BestSplitPolicy.choose_one over routes lo..hi-1: the least predicted delay, the first of equals."""
    best, best_s = 0, np.inf
    for k in range(hi - lo):
        t = _predicted(RT, m, lo + k, view, bw, uplink_wait, P[P_PROP], P[P_DLBPS], P[P_WANDBPS], wan_prop)
        if t < best_s:
            best, best_s = k, t
    return best


# ---------------------------------------------------------------- the cloud's dynamic batcher (_BatchStation)

@njit(cache=True)
def _batch_dispatch(T, cloud_s, route, SI, NXT, PRV, Q, P, B, ht, hs, hc, meta, now):
    """_BatchStation._dispatch and _start: batches of one cloud key while a server is idle, else a timer."""
    key_of, pref, free_since, members, boff, same, factors = B
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
        size = 0
        if n == maxb:
            size = n
        else:
            for p in pref:
                if p <= n:
                    size = p
                    break
        if size == 0 and now - oldest >= P[P_MAXQD] - 1e-12:
            size = n
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
        b = Q[Q_NBATCH]
        Q[Q_NBATCH] = b + 1
        lo = boff[b]
        for q in range(size):
            j = same[q]
            _unlink(SI, NXT, PRV, st, j)
            members[lo + q] = j
            T[CS, j] = now
            T[BSZ, j] = size
            arr = T[CA, j]
            T[BW, j] = now - (free if free > arr else arr)
        boff[b + 1] = lo + size
        head = same[0]
        s = cloud_s[route[head], head] * factors[route[head], size]
        if now + s > P[P_CBUSY]:
            P[P_CBUSY] = now + s
        _push(ht, hs, hc, meta, now + s, (b << 4) | BATCH_FIN)


# ---------------------------------------------------------------- the loop

# hand-overs inside one event (engine.StationPipeline's direct calls), run as a small state machine
(A_NONE, A_BEGIN, A_ARRIVE, A_CAPTURE, A_HEAD_DONE, A_UP_DONE, A_EDGE_ARRIVE, A_AFTER_EDGE, A_DOWN_ARRIVE,
 A_DOWN_DONE, A_FINISH, A_WAN_DONE, A_CLOUD_ARRIVE, A_TO_WAN_DOWN, A_WAN_DOWN_DONE) = range(15)


@njit(cache=True)
def _hand_on(ht, hs, hc, meta, now, d, as_event, code, direct):
    """A frame goes on after d seconds: as an event at now + d, or (as_event false) at once, as action `direct`."""
    if as_event:
        _push(ht, hs, hc, meta, now + d, code)
        return A_NONE
    return direct


@njit(cache=True)
def _run(c, firsts, nxt, heap_size):
    (T, plan, capture, mob, route, SI, NXT, PRV, SF, Q, P, E, EF, tr, status, drop_stage, dl, est, B, RT,
     oracle, edge_of_mobile, n_routes) = c
    head_s, bits_s, tail_s, down_s, wan_bits, cloud_s, wan_down_s = plan
    dl_kind, dl_fifo, dl_val, dtr, last_up, last_down = dl
    members, boff, free_since = B[3], B[4], B[2]
    tiered, shared, policy, assign, per = Q[Q_TIERED], Q[Q_SHARED], Q[Q_POLICY], Q[Q_ASSIGN], Q[Q_PER]
    delay, stale, has_deadline, batch = Q[Q_DELAY], Q[Q_STALE], Q[Q_DEADLINE], Q[Q_BATCH]
    up0, edge0, down0, wan0, wdown0, cloud = Q[Q_UP0], Q[Q_EDGE0], Q[Q_DOWN0], Q[Q_WAN0], Q[Q_WDOWN0], Q[Q_CLOUD]
    prop, deadline, alpha = P[P_PROP], P[P_DEADLINE], P[P_ALPHA]
    row_pu, row_pd = Q[Q_ROWPU], Q[Q_ROWPD]
    ht = np.empty(heap_size)
    hs = np.empty(heap_size, np.int64)
    hc = np.empty(heap_size, np.int64)
    meta = np.zeros(2, np.int64)
    for i in firsts:
        _push(ht, hs, hc, meta, capture[i], (i << 4) | CAPTURE)
    margin = 16 + Q[Q_MAXB]
    st = stage = 0
    while meta[0]:
        if meta[0] + margin > ht.size:  # grow the heap (stale batch timers can pile up)
            ht2, hs2, hc2 = np.empty(2 * ht.size), np.empty(2 * ht.size, np.int64), np.empty(2 * ht.size, np.int64)
            ht2[:ht.size], hs2[:ht.size], hc2[:ht.size] = ht, hs, hc
            ht, hs, hc = ht2, hs2, hc2
        now, code = _pop(ht, hs, hc, meta)
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
            batch_q, batch_hi = boff[i], boff[i + 1]
            for q in range(batch_q, batch_hi):
                T[CE, members[q]] = now
            _batch_dispatch(T, cloud_s, route, SI, NXT, PRV, Q, P, B, ht, hs, hc, meta, now)
        elif kind == BATCH_TIMER:
            _batch_dispatch(T, cloud_s, route, SI, NXT, PRV, Q, P, B, ht, hs, hc, meta, now)
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
                st, act = done_st, A_BEGIN
            else:
                SI[FREE, done_st] += 1
        while True:
            if act == A_NONE:
                if ret_act:
                    act, i, ret_act = ret_act, ret_i, 0
                elif batch_q < batch_hi:
                    i = members[batch_q]
                    batch_q += 1
                    act = A_TO_WAN_DOWN
                else:
                    break
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
                    s, row, ev = _finish_time(tr, trace, now, bits_s[r, i]) - now, US, UP_FIN
                elif k == K_EDGE:
                    s, row, ev = tail_s[r, i], TS, EDGE_FIN
                elif k == K_DOWN:
                    s, row, ev = down_s[r, i], DS, DOWN_FIN
                elif k == K_WAN:
                    s, row, ev = _finish_time(tr, E[4, st - wan0], now, wan_bits[r, i]) - now, WS, WAN_FIN
                elif k == K_WDOWN:
                    s, row, ev = wan_down_s[r, i], WDS, WAN_DOWN_FIN
                else:
                    s, row, ev = cloud_s[r, i], CS, CLOUD_FIN
                T[row, i] = now
                if now + s > SF[st]:
                    SF[st] = now + s
                _push(ht, hs, hc, meta, now + s, (i << 4) | ev)
                act = A_NONE
            elif act == A_ARRIVE:  # _Station.arrive
                if SI[FREE, st]:
                    SI[FREE, st] -= 1
                    act = A_BEGIN
                    continue
                if SI[CAP, st] >= 0 and SI[QLEN, st] >= SI[CAP, st]:
                    status[i], drop_stage[i] = DROPPED, stage
                    T[DONE, i] = now
                else:
                    _enqueue(SI, NXT, PRV, st, i)
                act = A_NONE
            elif act == A_CAPTURE:  # engine._capture
                m = mob[i]
                if stale:
                    while SI[QLEN, m]:
                        j = SI[QHEAD, m]
                        _unlink(SI, NXT, PRV, m, j)
                        status[j], drop_stage[j] = DROPPED, 1
                        T[DONE, j] = now
                if tiered and (assign != ASSIGN_FIXED or policy):  # engine._place
                    if assign == ASSIGN_FIXED:
                        lo = edge_of_mobile[m]
                        hi = lo + 1
                    elif assign == ASSIGN_LEAST_LOADED:
                        lo, best_load = 0, np.inf
                        for e in range(Q[Q_NE]):
                            sx = edge0 + e
                            load = (SI[SERVERS, sx] - SI[FREE, sx] + SI[QLEN, sx]) / SI[SERVERS, sx]
                            if load < best_load:
                                lo, best_load = e, load
                        hi = lo + 1
                    else:
                        lo, hi = 0, Q[Q_NE]
                    best, best_s = -1, np.inf
                    for e in range(lo, hi):
                        view = _backlogs(SI, SF, NXT, route, plan, Q, P, E, tr, m, e, now)
                        up = view[1]
                        rr = r % per
                        if policy:
                            bw = max(est[m] if policy == POLICY_EWMA else _rate_at(tr, oracle[m], now), MIN_PLANNING_BPS)
                            wait = _residual(SI, SF, up, now) + _queue_sum(bits_s, route, NXT, SI[QHEAD, up], bw) / 1
                            rr = _choose(RT, m, e * per, (e + 1) * per, view, bw, wait, P, EF[e])
                        if hi - lo == 1:
                            best = e * per + rr
                            break
                        bw = max(_rate_at(tr, E[2, e] + (0 if E[0, e] else m), now), MIN_PLANNING_BPS)
                        wait = _residual(SI, SF, up, now) + _queue_sum(bits_s, route, NXT, SI[QHEAD, up], bw) / 1
                        expected = _predicted(RT, m, e * per + rr, view, bw, wait, P[P_PROP], P[P_DLBPS],
                                              P[P_WANDBPS], EF[e])
                        if expected < best_s:
                            best, best_s = e * per + rr, expected
                    route[i] = best
                elif policy:  # BestSplitPolicy.choose_one
                    view = _backlogs(SI, SF, NXT, route, plan, Q, P, E, tr, m, 0, now)
                    link = 0 if shared else m
                    bw = max(est[link] if policy == POLICY_EWMA else _rate_at(tr, oracle[link], now), MIN_PLANNING_BPS)
                    up = view[1]
                    wait = _residual(SI, SF, up, now) + _queue_sum(bits_s, route, NXT, SI[QHEAD, up], bw) / 1
                    route[i] = _choose(RT, m, 0, n_routes[m], view, bw, wait, P, 0.0)
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
                    duration = T[UE, i] - T[US, i]
                    if duration > 0:
                        est[link] = (1 - alpha) * est[link] + alpha * bits_s[r, i] / duration
                d = prop
                if delay:
                    d = _delay(dl_kind, dl_fifo, dl_val, dtr, last_up, i, m, link, 0, now)
                    T[row_pu, i] = d
                act = _hand_on(ht, hs, hc, meta, now, d, delay != 0 or prop > 0, (i << 4) | SERVER_ARRIVE,
                               A_EDGE_ARRIVE)
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
                    d = _delay(dl_kind, dl_fifo, dl_val, dtr, last_down, i, m, m, 1, now)
                    T[row_pd, i] = d
                act = _hand_on(ht, hs, hc, meta, now, d, delay != 0 or prop > 0, (i << 4) | FINISH, A_FINISH)
            elif act == A_FINISH:  # engine._finish
                T[DONE, i] = now
                if has_deadline and now - capture[i] > deadline + 1e-12:
                    status[i] = LATE
                act = A_NONE
            elif act == A_WAN_DONE:
                e = r // per
                act = _hand_on(ht, hs, hc, meta, now, EF[e], EF[e] > 0, (i << 4) | CLOUD_ARRIVE, A_CLOUD_ARRIVE)
            elif act == A_CLOUD_ARRIVE:
                T[CA, i] = now
                if batch:
                    _enqueue(SI, NXT, PRV, cloud, i)
                    _batch_dispatch(T, cloud_s, route, SI, NXT, PRV, Q, P, B, ht, hs, hc, meta, now)
                    act = A_NONE
                else:
                    st, stage, act = cloud, 6, A_ARRIVE
            elif act == A_TO_WAN_DOWN:
                st, stage, act = wdown0 + r // per, 5, A_ARRIVE
            else:  # A_WAN_DOWN_DONE
                e = r // per
                act = _hand_on(ht, hs, hc, meta, now, EF[e], EF[e] > 0, (i << 4) | DOWN_ARRIVE, A_DOWN_ARRIVE)


@njit(cache=True)
def _delay(kinds, fifo, values, dtr, last, i, m, k, row, now):
    """engine._varying_delay: frame i's delay now (a trace's step, or its draw), held behind the one sent before."""
    if kinds[m] == 1:
        j, _ = _segment(dtr, m, now)
        d = dtr[2][dtr[0][m] + j]
    else:
        d = values[row, i]
    arrive = now + d
    if fifo[m] and arrive < last[k]:
        arrive = last[k]
    if arrive > last[k]:
        last[k] = arrive
    return arrive - now


# ---------------------------------------------------------------- the Python side: arrays in, arrays out

_POLICIES = {BestSplitPolicy: True, BestPlacementPolicy: True}


def supports(plan: FramePlan, topo: Topology, policy: Optional[StatefulPolicy] = None) -> bool:
    """True when simulate_compiled gives this run the SimPy engine's times (else run engine.simulate)."""
    if policy is not None and (type(policy) not in _POLICIES
                               or policy.spec.bandwidth_estimate not in ("ewma", "oracle")):
        return False
    if topo.delay is not None and plan.delay_u is None:
        return False
    tiers = topo.tiers
    if tiers is None:
        return plan.cloud_s is None and len(topo.uplink) >= (1 if topo.shared_medium else plan.n_mobiles)
    if plan.cloud_s is None or plan.cloud_key is None or plan.batch_factors is None:
        return False
    if tiers.assignment not in ("static", "round-robin", "least-loaded", "shortest-expected-delay"):
        return False
    if tiers.batching is not None and tiers.cloud_servers < 1:
        return False
    if tiers.cloud_servers and any(e.wan is None for e in tiers.edges):
        return False
    # the SimPy engine's estimator keeps one estimate per entry of topo.uplink and observes link = mobile device
    return policy is None or len(topo.uplink) >= plan.n_mobiles


def _pack_traces(traces: list[RateTrace]) -> tuple:
    """Every RateTrace's steps in flat arrays: (offsets, times, rates, cumulative bits, period, bits per period)."""
    off = np.cumsum([0] + [len(t.rates_bps) for t in traces]).astype(np.int64)
    cat = (lambda xs: np.ascontiguousarray(np.concatenate(xs), dtype=float)) if traces else (lambda xs: np.zeros(1))
    return (off, cat([t.times_s for t in traces]), cat([t.rates_bps for t in traces]),
            cat([t._cum_bits for t in traces]), np.array([t.period_s for t in traces] or [0.0], dtype=float),
            np.array([getattr(t, "_period_bits", 0.0) for t in traces] or [0.0], dtype=float))


def _route_table(topo: Topology, routes_of_mobile: Optional[list[list[Route]]], n_mobiles: int):
    """Per mobile device and route: expected head, tail and cloud times, and wire bits (best-split's inputs)."""
    if routes_of_mobile is None:
        return np.zeros((max(n_mobiles, 1), 1, 8)), np.ones(max(n_mobiles, 1), np.int64)
    width = max(len(r) for r in routes_of_mobile)
    rt = np.zeros((n_mobiles, width, 8))
    packetiser = Packetiser(topo.packet_payload_bytes, topo.packet_overhead_bytes)

    def wire_bits(size_bytes: int) -> float:  # LoadView.wire_bits: payload plus per-packet overhead (no resends)
        return float(packetiser.wire_bytes(size_bytes)) * 8.0

    for m, routes in enumerate(routes_of_mobile):
        for k, r in enumerate(routes):
            rt[m, k] = (r.head.expected_s if r.head else 0.0, r.tail is not None,
                        r.tail.expected_s if r.tail is not None else 0.0, r.cloud is not None,
                        r.cloud.expected_s if r.cloud is not None else 0.0, wire_bits(r.up_bytes),
                        wire_bits(r.down_bytes), wire_bits(r.wan_bytes))
    return rt, np.array([len(r) for r in routes_of_mobile], dtype=np.int64)


def _capture_chain(plan: FramePlan) -> tuple[np.ndarray, np.ndarray]:
    """Each mobile device's first frame (in the SimPy engine's start order) and each frame's next capture."""
    n = plan.capture_s.size
    order = np.lexsort((np.arange(n), plan.capture_s))
    order = order[np.argsort(plan.mobile[order], kind="stable")]
    nxt = np.full(n, -1, dtype=np.int64)
    same = plan.mobile[order[1:]] == plan.mobile[order[:-1]]
    nxt[order[:-1][same]] = order[1:][same]
    starts = order[np.concatenate(([True], ~same))] if n else order
    firsts = starts[np.lexsort((starts, plan.capture_s[starts]))]
    return firsts.astype(np.int64), nxt


def _delays(plan: FramePlan, topo: Topology, n_mobiles: int, n_up: int):
    """The varying delays: per mobile device a trace (looked up at send time) or per-frame draws, and FIFO flags."""
    n = plan.capture_s.size
    kinds, fifo = np.zeros(n_mobiles, np.int64), np.zeros(n_mobiles, np.int64)
    dlv = np.zeros((2, n) if topo.delay is not None else (2, 1))
    traces = []
    for m, d in enumerate(topo.delay or []):
        fifo[m] = d.fifo
        if d.trace is not None:
            kinds[m] = 1
            traces.append(RateTrace(d.trace.times_s, d.trace.one_way_s, d.trace.period_s))
        else:
            traces.append(RateTrace(np.array([0.0]), np.array([1.0])))
            sel = plan.mobile == m
            for row in (0, 1):
                dlv[row, sel] = d.sample(np.zeros(int(sel.sum())), plan.delay_u[row, sel])
    return (kinds, fifo, dlv, _pack_traces(traces), np.zeros(max(n_up, 1)), np.zeros(max(n_mobiles, 1)))


def simulate_compiled(plan: FramePlan, topo: Topology, policy: Optional[StatefulPolicy] = None,
                      routes_of_mobile: Optional[list[list[Route]]] = None) -> dict[str, np.ndarray]:
    """engine.simulate's per-frame stage times, status and route, from the compiled event loop."""
    if not supports(plan, topo, policy):
        raise EdgesimError("the compiled engine does not cover this run (see simulator.compiled.supports); "
                           "use engine.simulate")
    n, n_mob, tiers = plan.capture_s.size, plan.n_mobiles, topo.tiers
    tiered = plan.cloud_s is not None
    delay = topo.delay is not None
    n_rows = len(TIME_FIELDS) + (len(TIER_FIELDS) if tiered else 0)
    T = np.full((n_rows + (2 if delay else 0), n), np.nan)
    f64 = (lambda a: np.ascontiguousarray(a, dtype=float))
    dummy = np.zeros((1, 1))
    planned = (f64(plan.head_s), f64(plan.wire_bits), f64(plan.tail_s), f64(plan.down_s),
               f64(plan.wan_bits) if tiered else dummy, f64(plan.cloud_s) if tiered else dummy,
               f64(plan.wan_down_s) if tiered else dummy)
    # stations: mobile devices, uplinks (then shared media), edge pools, downlinks, WAN links, WAN returns, cloud
    n_edges = len(tiers.edges) if tiers is not None else 1
    n_up = n_mob if tiers is not None or not topo.shared_medium else 1
    media = [e for e, spec in enumerate(tiers.edges) if spec.shared_medium] if tiers is not None else []
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
    batching = tiers.batching if tiers is not None else None
    Q = np.zeros(Q_LAST, np.int64)
    P = np.zeros(P_LAST)
    Q[Q_M], Q[Q_UP0], Q[Q_EDGE0], Q[Q_DOWN0], Q[Q_WAN0], Q[Q_WDOWN0], Q[Q_CLOUD] = (n_mob, up0, edge0, down0, wan0,
                                                                                   wdown0, cloud)
    Q[Q_SHARED], Q[Q_TIERED], Q[Q_NE] = topo.shared_medium, tiered, n_edges
    Q[Q_PER] = (plan.routes_per_edge or 1) if tiered else 1
    if policy is not None:
        Q[Q_POLICY] = POLICY_EWMA if policy.spec.bandwidth_estimate == "ewma" else POLICY_ORACLE
        P[P_ALPHA] = policy.spec.ewma_alpha
    if tiers is not None:
        Q[Q_ASSIGN] = {"least-loaded": ASSIGN_LEAST_LOADED, "shortest-expected-delay": ASSIGN_SED}.get(
            tiers.assignment, ASSIGN_FIXED)
        Q[Q_CLOUDSRV] = tiers.cloud_servers
        P[P_WANDBPS] = tiers.wan_down_bps
    else:
        P[P_WANDBPS] = np.inf
    Q[Q_DELAY], Q[Q_STALE], Q[Q_DEADLINE] = delay, topo.drop_stale, topo.deadline_s is not None
    Q[Q_ROWPU], Q[Q_ROWPD] = n_rows, n_rows + 1
    P[P_PROP], P[P_DEADLINE], P[P_DLBPS] = topo.propagation_s, topo.deadline_s or 0.0, topo.downlink_bps
    P[P_TIMER] = -1.0
    if batching is not None:
        Q[Q_BATCH], Q[Q_MAXB], Q[Q_NFREE] = 1, batching.max_batch_size, tiers.cloud_servers
        P[P_MAXQD] = batching.max_queue_delay_s
        B = (np.ascontiguousarray(plan.cloud_key, dtype=np.int64),
             np.array(batching.preferred_batch_sizes, dtype=np.int64),
             np.zeros(tiers.cloud_servers), np.zeros(n, np.int64), np.zeros(n + 1, np.int64),
             np.zeros(batching.max_batch_size, np.int64), f64(plan.batch_factors))
    else:
        B = (np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(1), np.zeros(1, np.int64), np.zeros(2, np.int64),
             np.zeros(1, np.int64), np.zeros((1, 1)))
    estimate = np.array([tr.rate_bps_at(0.0) for tr in topo.uplink], dtype=float)
    rt, n_routes = _route_table(topo, routes_of_mobile, n_mob)
    edge_of_mobile = np.ascontiguousarray(tiers.edge_of_mobile if tiers is not None and tiers.edge_of_mobile is not None
                                          else np.zeros(n_mob), dtype=np.int64)
    status, drop_stage = np.zeros(n, np.int8), np.zeros(n, np.int8)
    route = plan.route.astype(np.int64)
    firsts, nxt = _capture_chain(plan)
    c = (T, planned, f64(plan.capture_s), np.ascontiguousarray(plan.mobile, dtype=np.int64), route, SI,
         np.full(n, -1, np.int64), np.full(n, -1, np.int64), np.zeros(n_st), Q, P, E, EF, _pack_traces(traces),
         status, drop_stage, _delays(plan, topo, n_mob, n_up), estimate, B, rt, np.arange(len(topo.uplink),
                                                                                             dtype=np.int64),
         edge_of_mobile, n_routes)
    if n:
        _run(c, firsts, nxt, max(1024, 4 * n_mob))
    fields = TIME_FIELDS + (TIER_FIELDS if tiered else ())
    out = {name: T[k] for k, name in enumerate(fields)}
    out["status"], out["drop_stage"], out["route"] = status, drop_stage, route.astype(np.int16)
    if plan.delay_u is not None:
        out["prop_up_s"], out["prop_down_s"] = T[n_rows], T[n_rows + 1]
    return out
