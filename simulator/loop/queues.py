"""The compiled loop's stations: FIFO queues linked through the frames (engine._Station), the dynamic batcher
(engine._BatchStation) and the varying delay, on the loop's arrays; their arithmetic is simulator.kernels'."""

from __future__ import annotations

from numba import njit

from simulator.kernels.links import fifo_delay, value_at
from simulator.kernels.stations import batch_size, batch_wait_s, busy_until_after, queued_after_start, residual_s
from simulator.loop.heap import push
from simulator.loop.layout import (
    BATCH_FIN,
    BATCH_TIMER,
    BSZ,
    BUSY,
    BW,
    CA,
    CS,
    FREE,
    P_CBUSY,
    P_MAXQD,
    P_TIMER,
    QHEAD,
    QLEN,
    QTAIL,
    QUEUED,
    Q_CLOUD,
    Q_MAXB,
    Q_NBATCH,
    Q_NFREE,
)


@njit(cache=True)
def enqueue(SI, NXT, PRV, st, i):
    NXT[i] = -1
    PRV[i] = SI[QTAIL, st]
    if SI[QLEN, st]:
        NXT[SI[QTAIL, st]] = i
    else:
        SI[QHEAD, st] = i
    SI[QTAIL, st] = i
    SI[QLEN, st] += 1


@njit(cache=True)
def unlink(SI, NXT, PRV, st, i):
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
def work(plan, kind, r, i):
    """What frame i adds to a station's queued work (engine._Station.work): seconds of service, bits on a link."""
    return plan[kind][r, i]


@njit(cache=True)
def residual(SI, SF, st, now):
    """_Station.residual_s of station st."""
    return residual_s(SI[FREE, st], SF[BUSY, st], now)


@njit(cache=True)
def batch_dispatch(T, cloud_s, route, prow, SI, SF, NXT, PRV, Q, P, B, ht, hs, hc, meta, now):
    """_BatchStation._dispatch and start_captures: batches of one cloud key while a server is idle, else a timer."""
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
                push(ht, hs, hc, meta, now + (due - now), BATCH_TIMER)
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
            unlink(SI, NXT, PRV, st, j)
            SF[QUEUED, st] = queued_after_start(SF[QUEUED, st], cloud_s[prow[route[j]], j], SI[QLEN, st])
            members[b, q] = j
            T[CS, j] = now
            T[BSZ, j] = size
            T[BW, j] = batch_wait_s(now, T[CA, j], free)
        bsize[b] = size
        head = same[0]
        s = cloud_s[prow[route[head]], head] * factors[route[head], size]
        P[P_CBUSY] = busy_until_after(P[P_CBUSY], now, s)
        push(ht, hs, hc, meta, now + s, (b << 4) | BATCH_FIN)


@njit(cache=True)
def varying_delay(kinds, fifo, values, delays, last, i, m, k, row, now):
    """engine._varying_delay: frame i's delay now (a trace's step, or its draw), held behind the one sent before."""
    d = value_at(delays, m, now) if kinds[m] == 1 else values[row, i]
    d, last[k] = fifo_delay(now, d, last[k], fifo[m])
    return d
