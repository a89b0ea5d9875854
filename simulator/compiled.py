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
from simulator.link import RateTrace
from simulator.plan import TIER_FIELDS, TIME_FIELDS, FramePlan, Topology
from simulator.policies import Route, StatefulPolicy
from simulator.policies.best_split import BestPlacementPolicy, BestSplitPolicy

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
COMPLETED, LATE, DROPPED = 0, 1, 2


# ---------------------------------------------------------------- event heap: (time, sequence) order, as SimPy's

@njit(cache=True)
def _push(h, t, code):
    ht, hs, hc, meta = h
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
def _pop(h):
    ht, hs, hc, meta = h
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


# ---------------------------------------------------------------- stations: FIFO with c servers

@njit(cache=True)
def _enqueue(c, st, i):
    SI, NXT, PRV = c[5], c[6], c[7]
    NXT[i] = -1
    PRV[i] = SI[QTAIL, st]
    if SI[QLEN, st]:
        NXT[SI[QTAIL, st]] = i
    else:
        SI[QHEAD, st] = i
    SI[QTAIL, st] = i
    SI[QLEN, st] += 1


@njit(cache=True)
def _unlink(c, st, i):
    SI, NXT, PRV = c[5], c[6], c[7]
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
def _popleft(c, st):
    i = c[5][QHEAD, st]
    _unlink(c, st, i)
    return i


@njit(cache=True)
def _residual(c, st, now):
    """_Station.residual_s: what is left of the longest service in progress (0 when a server is free)."""
    if c[5][FREE, st]:
        return 0.0
    r = c[8][st] - now
    return r if r > 0.0 else 0.0


@njit(cache=True)
def _edge_of(c, i):
    return c[4][i] // c[10][Q_PER]


@njit(cache=True)
def _uplink_trace(c, i):
    """The trace frame i is sent on (engine._up_service)."""
    Q, m = c[10], c[3][i]
    if not Q[Q_TIERED]:
        return 0 if Q[Q_SHARED] else m
    E = c[12]
    e = _edge_of(c, i)
    return E[2, e] + (0 if E[0, e] else m)


@njit(cache=True)
def _uplink_station(c, i):
    Q, m = c[10], c[3][i]
    if not Q[Q_TIERED]:
        return Q[Q_UP0] + (0 if Q[Q_SHARED] else m)
    medium = c[12][3, _edge_of(c, i)]
    return medium if medium >= 0 else Q[Q_UP0] + m


@njit(cache=True)
def _begin(c, h, st, i, now):
    """_Station._begin: the service of frame i starts now; its end is scheduled."""
    T, plan, SI, SF, Q, tr, r = c[0], c[1], c[5], c[8], c[10], c[14], c[4][i]
    kind = SI[SKIND, st]
    if kind == K_MOBILE:
        s, row, ev = plan[0][r, i], HS, MOBILE_FIN
    elif kind == K_UP:
        s, row, ev = _finish_time(tr, _uplink_trace(c, i), now, plan[1][r, i]) - now, US, UP_FIN
    elif kind == K_EDGE:
        s, row, ev = plan[2][r, i], TS, EDGE_FIN
    elif kind == K_DOWN:
        s, row, ev = plan[3][r, i], DS, DOWN_FIN
    elif kind == K_WAN:
        s, row, ev = _finish_time(tr, c[12][4, st - Q[Q_WAN0]], now, plan[4][r, i]) - now, WS, WAN_FIN
    elif kind == K_WDOWN:
        s, row, ev = plan[6][r, i], WDS, WAN_DOWN_FIN
    else:
        s, row, ev = plan[5][r, i], CS, CLOUD_FIN
    T[row, i] = now
    if now + s > SF[st]:
        SF[st] = now + s
    _push(h, now + s, (i << 4) | ev)


@njit(cache=True)
def _arrive(c, h, st, i, now):
    """_Station.arrive: True when the frame was dropped (bounded queue full)."""
    SI = c[5]
    if SI[FREE, st]:
        SI[FREE, st] -= 1
        _begin(c, h, st, i, now)
        return False
    if SI[CAP, st] >= 0 and SI[QLEN, st] >= SI[CAP, st]:
        return True
    _enqueue(c, st, i)
    return False


@njit(cache=True)
def _station_done(c, h, st, i, now, row):
    """_Station._finish up to on_done: record the end, start the next queued frame or free a server."""
    c[0][row, i] = now
    if c[5][QLEN, st]:
        _begin(c, h, st, _popleft(c, st), now)
    else:
        c[5][FREE, st] += 1


# ---------------------------------------------------------------- frames: the pipeline's hand-overs

@njit(cache=True)
def _finish(c, i, now):
    T, P, Q = c[0], c[11], c[10]
    T[DONE, i] = now
    if Q[Q_DEADLINE] and now - c[2][i] > P[P_DEADLINE] + 1e-12:
        c[15][i] = LATE


@njit(cache=True)
def _drop(c, i, stage, now):
    c[15][i] = DROPPED
    c[16][i] = stage
    c[0][DONE, i] = now


@njit(cache=True)
def _varying_delay(c, i, now, up):
    """engine._varying_delay: the delay frame i meets now, held behind the frame sent before it on a FIFO path."""
    Q, m, dl = c[10], c[3][i], c[17]
    kinds, fifo, dlv, dtr = dl[0], dl[1], dl[2], dl[3]
    if kinds[m] == 1:  # a delay trace: the step holding now (DelayTrace.at)
        j, _ = _segment(dtr, m, now)
        d = dtr[2][dtr[0][m] + j]
    else:
        d = dlv[0 if up else 1, i]
    if up:
        k = m if (Q[Q_TIERED] or not Q[Q_SHARED]) else 0
        last = dl[4]
    else:
        k, last = m, dl[5]
    arrive = now + d
    if fifo[m] and arrive < last[k]:
        arrive = last[k]
    if arrive > last[k]:
        last[k] = arrive
    return arrive - now


@njit(cache=True)
def _downlink_arrive(c, h, i, now):
    _arrive(c, h, c[10][Q_DOWN0] + c[3][i], i, now)


@njit(cache=True)
def _after_edge(c, h, i, now):
    r = c[4][i]
    if c[1][5][r, i] == c[1][5][r, i]:
        _arrive(c, h, c[10][Q_WAN0] + _edge_of(c, i), i, now)
    else:
        _downlink_arrive(c, h, i, now)


@njit(cache=True)
def _edge_arrive(c, h, i, now):
    T, Q, r = c[0], c[10], c[4][i]
    if not Q[Q_TIERED]:
        if _arrive(c, h, Q[Q_EDGE0], i, now):
            _drop(c, i, 3, now)
        return
    T[EA, i] = now
    if c[1][2][r, i] == c[1][2][r, i]:
        if _arrive(c, h, Q[Q_EDGE0] + _edge_of(c, i), i, now):
            _drop(c, i, 3, now)
    else:
        _after_edge(c, h, i, now)


@njit(cache=True)
def _head_done(c, h, i, now):
    plan, r = c[1], c[4][i]
    if plan[1][r, i] > 0 or plan[2][r, i] == plan[2][r, i] or (c[10][Q_TIERED] and plan[5][r, i] == plan[5][r, i]):
        _arrive(c, h, _uplink_station(c, i), i, now)
    else:
        _finish(c, i, now)


@njit(cache=True)
def _up_done(c, h, i, now):
    T, Q, P, m = c[0], c[10], c[11], c[3][i]
    if Q[Q_POLICY]:  # BandwidthEstimator.observe
        link = m if (Q[Q_TIERED] or not Q[Q_SHARED]) else 0
        bits, dur = c[1][1][c[4][i], i], T[UE, i] - T[US, i]
        est = c[18]
        if dur > 0:
            est[link] = (1 - P[P_ALPHA]) * est[link] + P[P_ALPHA] * bits / dur
    if Q[Q_DELAY]:
        d = _varying_delay(c, i, now, True)
        T[Q[Q_ROWPU], i] = d
        _push(h, now + d, (i << 4) | SERVER_ARRIVE)
    elif P[P_PROP] > 0:
        _push(h, now + P[P_PROP], (i << 4) | SERVER_ARRIVE)
    else:
        _edge_arrive(c, h, i, now)


@njit(cache=True)
def _down_done(c, h, i, now):
    T, Q, P = c[0], c[10], c[11]
    if Q[Q_DELAY]:
        d = _varying_delay(c, i, now, False)
        T[Q[Q_ROWPD], i] = d
        _push(h, now + d, (i << 4) | FINISH)
    elif P[P_PROP] > 0:
        _push(h, now + P[P_PROP], (i << 4) | FINISH)
    else:
        _finish(c, i, now)


# ---------------------------------------------------------------- the cloud's dynamic batcher (_BatchStation)

@njit(cache=True)
def _batch_dispatch(c, h, now):
    T, plan, SI, Q, P, B = c[0], c[1], c[5], c[10], c[11], c[19]
    key_of, pref, free_since, members, boff, same, factors = B[0], B[1], B[2], B[3], B[4], B[5], B[6]
    st, maxb, route, NXT = Q[Q_CLOUD], Q[Q_MAXB], c[4], c[6]
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
                _push(h, now + (due - now), BATCH_TIMER)
            return
        # _start: the idle server that became free first takes the batch
        nf = Q[Q_NFREE]
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
            _unlink(c, st, j)
            members[lo + q] = j
            T[CS, j] = now
            T[BSZ, j] = size
            arr = T[CA, j]
            T[BW, j] = now - (free if free > arr else arr)
        boff[b + 1] = lo + size
        head = same[0]
        s = plan[5][route[head], head] * factors[route[head], size]
        if now + s > P[P_CBUSY]:
            P[P_CBUSY] = now + s
        _push(h, now + s, (b << 4) | BATCH_FIN)


@njit(cache=True)
def _cloud_arrive(c, h, i, now):
    Q = c[10]
    c[0][CA, i] = now
    if Q[Q_BATCH]:
        _enqueue(c, Q[Q_CLOUD], i)
        _batch_dispatch(c, h, now)
    else:
        _arrive(c, h, Q[Q_CLOUD], i, now)


@njit(cache=True)
def _wan_down_done(c, h, i, now):
    prop = c[13][_edge_of(c, i)]
    if prop > 0:
        _push(h, now + prop, (i << 4) | DOWN_ARRIVE)
    else:
        _downlink_arrive(c, h, i, now)


# ---------------------------------------------------------------- decisions at capture (best-split, assignment)

@njit(cache=True)
def _queue_sum(c, st, row, scale):
    """Sum over the queued frames of plan row `row` at their route, left to right (Python's sum), each / scale."""
    plan, NXT, route = c[1], c[6], c[4]
    acc = 0.0
    j = c[5][QHEAD, st]
    while j >= 0:
        if scale == 1.0:
            acc += plan[row][route[j], j]
        else:
            acc += plan[row][route[j], j] / scale
        j = NXT[j]
    return acc


@njit(cache=True)
def _view(c, m, e, now):
    """engine._load_view as numbers: mobile, uplink residual, server, WAN backlogs, WAN rate, cloud backlog."""
    SI, SF, Q, E = c[5], c[8], c[10], c[12]
    mob = m
    mobile_backlog = _residual(c, mob, now) + _queue_sum(c, mob, 0, 1.0) / 1
    if Q[Q_TIERED]:
        medium = E[3, e]
        up = medium if medium >= 0 else Q[Q_UP0] + m
        server = Q[Q_EDGE0] + e
        servers = E[1, e]
    else:
        up = Q[Q_UP0] + (0 if Q[Q_SHARED] else m)
        server = Q[Q_EDGE0]
        servers = SI[SERVERS, server]
    server_backlog = _residual(c, server, now) + _queue_sum(c, server, 2, 1.0) / servers
    wan_backlog, wan_bps, cloud_backlog = 0.0, np.inf, 0.0
    if Q[Q_TIERED] and Q[Q_CLOUDSRV]:
        wan = Q[Q_WAN0] + e
        wan_bps = _rate_at(c[14], E[4, e], now)
        wan_backlog = _residual(c, wan, now) + _queue_sum(c, wan, 4, 1.0) / wan_bps
        cl = Q[Q_CLOUD]
        if Q[Q_BATCH]:
            residual = 0.0
            if Q[Q_NFREE] == 0:
                residual = max(c[11][P_CBUSY] - now, 0.0)
            cloud_backlog = residual + _queue_sum(c, cl, 5, 1.0) / max(Q[Q_NFREE], 1)
        else:
            cloud_backlog = _residual(c, cl, now) + _queue_sum(c, cl, 5, 1.0) / Q[Q_CLOUDSRV]
    return mobile_backlog, up, server_backlog, wan_backlog, wan_bps, cloud_backlog


@njit(cache=True)
def _predicted(c, m, r, view, bw, uplink_wait):
    """best_split.predicted_delay_s, term by term in the same order."""
    RT, P = c[20], c[11]
    mobile_backlog, _, server_backlog, wan_backlog, wan_bps, cloud_backlog = view
    prop = P[P_PROP]
    t = mobile_backlog + RT[m, r, RT_HEAD]
    if not RT[m, r, RT_CLOUD_ON]:
        if RT[m, r, RT_TAIL_ON]:
            t += uplink_wait + RT[m, r, RT_UPW] / bw
            t += prop + server_backlog + RT[m, r, RT_TAIL]
            t += RT[m, r, RT_DOWNW] / P[P_DLBPS] + prop
        return t
    wan_prop = c[13][(r // c[10][Q_PER])] if c[10][Q_TIERED] else 0.0
    t += uplink_wait + RT[m, r, RT_UPW] / bw + prop
    if RT[m, r, RT_TAIL_ON]:
        t += server_backlog + RT[m, r, RT_TAIL]
    t += wan_backlog + RT[m, r, RT_WANW] / wan_bps + wan_prop
    t += cloud_backlog + RT[m, r, RT_CLOUD]
    t += RT[m, r, RT_DOWNW] / P[P_WANDBPS] + wan_prop
    return t + RT[m, r, RT_DOWNW] / P[P_DLBPS] + prop


@njit(cache=True)
def _choose(c, m, lo, hi, view, now):
    """BestSplitPolicy.choose_one over routes lo..hi-1 of mobile device m: the least predicted delay (first on ties)."""
    Q = c[10]
    link = m if (Q[Q_TIERED] or not Q[Q_SHARED]) else 0
    bw = c[18][link] if Q[Q_POLICY] == POLICY_EWMA else _rate_at(c[14], c[21][link], now)
    up = view[1]
    uplink_wait = _residual(c, up, now) + _queue_sum(c, up, 1, bw) / 1
    best, best_s = 0, np.inf
    for k in range(hi - lo):
        t = _predicted(c, m, lo + k, view, bw, uplink_wait)
        if t < best_s:
            best, best_s = k, t
    return best


@njit(cache=True)
def _place(c, i, m, now):
    """engine._place: route r' = edge x R + r, the edge by the assignment, the route by the policy."""
    Q, SI, E = c[10], c[5], c[12]
    per = Q[Q_PER]
    base = c[4][i] % per
    if Q[Q_ASSIGN] == ASSIGN_FIXED:
        lo, hi = c[22][m], c[22][m] + 1
    elif Q[Q_ASSIGN] == ASSIGN_LEAST_LOADED:
        best_e, best_load = 0, np.inf
        for e in range(Q[Q_NE]):
            st = Q[Q_EDGE0] + e
            load = (SI[SERVERS, st] - SI[FREE, st] + SI[QLEN, st]) / SI[SERVERS, st]
            if load < best_load:
                best_e, best_load = e, load
        lo, hi = best_e, best_e + 1
    else:
        lo, hi = 0, Q[Q_NE]
    best, best_s = -1, np.inf
    for e in range(lo, hi):
        view = _view(c, m, e, now)
        r = _choose(c, m, e * per, (e + 1) * per, view, now) if Q[Q_POLICY] else base
        if hi - lo == 1:
            return e * per + r
        bw = _rate_at(c[14], E[2, e] + (0 if E[0, e] else m), now)
        up = view[1]
        uplink_wait = _residual(c, up, now) + _queue_sum(c, up, 1, bw) / 1
        expected = _predicted(c, m, e * per + r, view, bw, uplink_wait)
        if expected < best_s:
            best, best_s = e * per + r, expected
    return best


@njit(cache=True)
def _capture(c, h, i, now):
    """engine._capture: drop-stale, the decision at capture, then the mobile device (or straight on)."""
    T, plan, Q, m = c[0], c[1], c[10], c[3][i]
    mob = m
    if Q[Q_STALE]:
        while c[5][QLEN, mob]:
            _drop(c, _popleft(c, mob), 1, now)
    if Q[Q_TIERED] and (Q[Q_ASSIGN] == ASSIGN_LEAST_LOADED or Q[Q_ASSIGN] == ASSIGN_SED or Q[Q_POLICY]):
        c[4][i] = _place(c, i, m, now)
    elif Q[Q_POLICY]:
        c[4][i] = _choose(c, m, 0, c[23][m], _view(c, m, 0, now), now)
    if plan[0][c[4][i], i] > 0:
        if _arrive(c, h, mob, i, now):
            _drop(c, i, 1, now)
    else:
        T[HS, i] = now
        T[HE, i] = now
        _head_done(c, h, i, now)


# ---------------------------------------------------------------- the loop

@njit(cache=True)
def _run(c, firsts, nxt, heap_size):
    ht = np.empty(heap_size)
    hs = np.empty(heap_size, np.int64)
    hc = np.empty(heap_size, np.int64)
    meta = np.zeros(2, np.int64)
    h = (ht, hs, hc, meta)
    capture, Q = c[2], c[10]
    for i in firsts:
        _push(h, capture[i], (i << 4) | CAPTURE)
    margin = 16 + Q[Q_MAXB]
    while meta[0]:
        if meta[0] + margin > ht.size:  # grow the heap (stale batch timers can pile up)
            ht2 = np.empty(2 * ht.size)
            hs2 = np.empty(2 * ht.size, np.int64)
            hc2 = np.empty(2 * ht.size, np.int64)
            ht2[:ht.size], hs2[:ht.size], hc2[:ht.size] = ht, hs, hc
            ht, hs, hc = ht2, hs2, hc2
            h = (ht, hs, hc, meta)
        now, code = _pop(h)
        kind, i = code & 15, code >> 4
        if kind == CAPTURE:
            j = nxt[i]
            if j >= 0:
                _push(h, now + (capture[j] - now), (j << 4) | CAPTURE)
            _capture(c, h, i, now)
        elif kind == MOBILE_FIN:
            _station_done(c, h, c[3][i], i, now, HE)
            _head_done(c, h, i, now)
        elif kind == UP_FIN:
            _station_done(c, h, _uplink_station(c, i), i, now, UE)
            _up_done(c, h, i, now)
        elif kind == SERVER_ARRIVE:
            _edge_arrive(c, h, i, now)
        elif kind == EDGE_FIN:
            _station_done(c, h, Q[Q_EDGE0] + (_edge_of(c, i) if Q[Q_TIERED] else 0), i, now, TE)
            if Q[Q_TIERED]:
                _after_edge(c, h, i, now)
            else:
                _downlink_arrive(c, h, i, now)
        elif kind == DOWN_FIN:
            _station_done(c, h, Q[Q_DOWN0] + c[3][i], i, now, DE)
            _down_done(c, h, i, now)
        elif kind == FINISH:
            _finish(c, i, now)
        elif kind == WAN_FIN:
            e = _edge_of(c, i)
            _station_done(c, h, Q[Q_WAN0] + e, i, now, WE)
            if c[13][e] > 0:
                _push(h, now + c[13][e], (i << 4) | CLOUD_ARRIVE)
            else:
                _cloud_arrive(c, h, i, now)
        elif kind == CLOUD_ARRIVE:
            _cloud_arrive(c, h, i, now)
        elif kind == CLOUD_FIN:
            _station_done(c, h, Q[Q_CLOUD], i, now, CE)
            _arrive(c, h, Q[Q_WDOWN0] + _edge_of(c, i), i, now)
        elif kind == BATCH_FIN:
            B = c[19]
            B[2][Q[Q_NFREE]] = now
            Q[Q_NFREE] += 1
            members, lo, hi = B[3], B[4][i], B[4][i + 1]
            for q in range(lo, hi):
                c[0][CE, members[q]] = now
            _batch_dispatch(c, h, now)
            for q in range(lo, hi):
                j = members[q]
                _arrive(c, h, Q[Q_WDOWN0] + _edge_of(c, j), j, now)
        elif kind == BATCH_TIMER:
            _batch_dispatch(c, h, now)
        elif kind == WAN_DOWN_FIN:
            _station_done(c, h, Q[Q_WDOWN0] + _edge_of(c, i), i, now, WDE)
            _wan_down_done(c, h, i, now)
        else:  # DOWN_ARRIVE
            _downlink_arrive(c, h, i, now)


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


def _wire_bits(topo: Topology, size_bytes: int) -> float:
    """LoadView.wire_bits: payload plus per-packet overhead, in bits."""
    packets = -(-size_bytes // topo.packet_payload_bytes)
    return 8.0 * (size_bytes + packets * topo.packet_overhead_bytes)


def _route_table(topo: Topology, routes_of_mobile: Optional[list[list[Route]]], n_mobiles: int):
    """Per mobile device and route: expected head, tail and cloud times, and wire bits (best-split's inputs)."""
    if routes_of_mobile is None:
        return np.zeros((max(n_mobiles, 1), 1, 8)), np.ones(max(n_mobiles, 1), np.int64)
    width = max(len(r) for r in routes_of_mobile)
    rt = np.zeros((n_mobiles, width, 8))
    for m, routes in enumerate(routes_of_mobile):
        for k, r in enumerate(routes):
            rt[m, k] = (r.head.expected_s if r.head else 0.0, r.tail is not None,
                        r.tail.expected_s if r.tail is not None else 0.0, r.cloud is not None,
                        r.cloud.expected_s if r.cloud is not None else 0.0, _wire_bits(topo, r.up_bytes),
                        _wire_bits(topo, r.down_bytes), _wire_bits(topo, r.wan_bytes))
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
    packed = _pack_traces(traces) if traces else _pack_traces([RateTrace(np.array([0.0]), np.array([1.0]))])
    dtr = (packed[0], packed[1], packed[2], packed[3], packed[4], packed[5])
    return (kinds, fifo, dlv, dtr, np.zeros(max(n_up, 1)), np.zeros(max(n_mobiles, 1)))


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
             np.array(batching.preferred_batch_sizes or (0,), dtype=np.int64) if batching.preferred_batch_sizes
             else np.zeros(0, np.int64),
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
         np.full(n, -1, np.int64), np.full(n, -1, np.int64), np.zeros(n_st), 0, Q, P, E, EF, _pack_traces(traces),
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
