"""The compiled loop's events in (time, sequence) order, as SimPy's: a binary heap, and queues for the events that
are mostly scheduled in that order (captures; arrivals after a propagation delay); arrays borrowed without reference
counts."""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.core import cgutils
from numba.extending import intrinsic
from simulator.loop.layout import CAPTURE, CLOUD_ARRIVE, DOWN_ARRIVE, FINISH, SERVER_ARRIVE



@intrinsic
def borrowed(typingctx, arr):
    """The same array with no owner: numba's reference counts on it become no-ops (atomic adds otherwise, on every
    call that takes it). Only for arrays that outlive the loop using the view: the caller keeps them."""
    def codegen(context, builder, sig, args):
        out = context.make_array(sig.return_type)(context, builder, args[0])
        out.meminfo = cgutils.get_null_value(out.meminfo.type)
        out.parent = cgutils.get_null_value(out.parent.type)
        return out._getvalue()
    return arr(arr), codegen


@njit(cache=True, inline="always")
def push(ht, hs, hc, meta, t, code):
    seq = meta[1]
    meta[1] = seq + 1
    push_seq(ht, hs, hc, meta, t, seq, code)


@njit(cache=True)
def push_seq(ht, hs, hc, meta, t, seq, code):
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


@njit(cache=True, inline="always")
def schedule(events, pend, t, code):
    """Number an event scheduled now (its place in the tie rule) and hold the earliest of one event's schedules
    back as `pend` (time, sequence, code; sequence -1: none), the rest onto the heap or a queue (push_event): the
    loop runs a held event without them when it would be taken next. Returns the event held back."""
    meta = events[3]
    pend_t, pend_seq, pend_code = pend
    seq = meta[1]
    meta[1] = seq + 1
    if pend_seq < 0:
        return t, seq, code
    if t < pend_t:
        push_event(events, pend_t, pend_seq, pend_code)
        return t, seq, code
    push_event(events, t, seq, code)
    return pend


@njit(cache=True)
def pop(ht, hs, hc, meta):
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


@njit(cache=True, inline="always")
def queue_of(code):
    """The queue an event waits in while it sorts after every event there: 0 the captures (a periodic workload's are
    scheduled in time order), 1 the arrivals after a fixed delay (propagation), -1 none (the heap)."""
    kind = code & 15
    if kind == CAPTURE:
        return 0
    if kind == SERVER_ARRIVE or kind == FINISH or kind == CLOUD_ARRIVE or kind == DOWN_ARRIVE:
        return 1
    return -1


@njit(cache=True, inline="always")
def push_event(events, t, seq, code):
    """An event, numbered seq, onto the end of its queue (queue_of) when it sorts after the last one there, else onto
    the heap. The queues stay sorted, so the next event is the earliest of the heap's top and the queues' heads
    (next_event): the one a single heap would pop, from a heap that holds only the events of no queue
    (meta: heap size, next sequence number, then each queue's head and length)."""
    ht, hs, hc, meta, qt, qs, qc = events
    q = queue_of(code)
    if q >= 0:
        n, size = meta[3 + 2 * q], qt.shape[1]
        if n < size:
            k = (meta[2 + 2 * q] + n) & (size - 1)  # size: a power of two
            last = (k - 1) & (size - 1)
            if n == 0 or qt[q, last] < t or (qt[q, last] == t and qs[q, last] < seq):
                qt[q, k], qs[q, k], qc[q, k] = t, seq, code
                meta[3 + 2 * q] = n + 1
                return
    push_seq(ht, hs, hc, meta, t, seq, code)


@njit(cache=True, inline="always")
def next_event(events):
    """Where the earliest scheduled event waits (0: nowhere, 1: the heap's top, 2 + q: queue q's head), its time,
    sequence number and code."""
    ht, hs, hc, meta, qt, qs, qc = events
    where, t, seq, code = 0, 0.0, -1, 0
    if meta[0] > 0:
        where, t, seq, code = 1, ht[0], hs[0], hc[0]
    for q in range(qt.shape[0]):
        if meta[3 + 2 * q] > 0:
            h = meta[2 + 2 * q]
            if where == 0 or qt[q, h] < t or (qt[q, h] == t and qs[q, h] < seq):
                where, t, seq, code = 2 + q, qt[q, h], qs[q, h], qc[q, h]
    return where, t, seq, code


@njit(cache=True, inline="always")
def take_event(events, where):
    """Remove the event next_event found at `where` (the heap's top or a queue's head)."""
    ht, hs, hc, meta, qt, qs, qc = events
    if where == 1:
        pop(ht, hs, hc, meta)
    else:
        q = where - 2
        meta[2 + 2 * q] = (meta[2 + 2 * q] + 1) & (qt.shape[1] - 1)
        meta[3 + 2 * q] -= 1


@njit(cache=True)
def start_captures(heap, queues, firsts, capture):
    """Each mobile device's first capture, in this order."""
    events = heap + queues
    meta = heap[3]
    for i in firsts:
        seq = meta[1]
        meta[1] = seq + 1
        push_event(events, capture[i], seq, (i << 4) | CAPTURE)


def new_queues(n_mobiles: int) -> tuple:
    """The event queues (push_event), each room for a capture per mobile device (a full queue sends to the heap)."""
    size = 1 << int(n_mobiles).bit_length()
    return np.empty((2, size)), np.empty((2, size), np.int64), np.empty((2, size), np.int64)


def first_time(heap: tuple, queues: tuple) -> float:
    """The time of the earliest scheduled event (heap or queues; inf: none)."""
    ht, _, _, meta = heap
    t = ht[0] if meta[0] > 0 else np.inf
    for q in range(queues[0].shape[0]):
        if meta[3 + 2 * q] > 0:
            t = min(t, queues[0][q, meta[2 + 2 * q]])
    return float(t)


def grown(heap: tuple) -> tuple:
    """The event heap at twice its size (same events, same order)."""
    ht, hs, hc, meta = heap
    out = (np.empty(2 * ht.size), np.empty(2 * ht.size, np.int64), np.empty(2 * ht.size, np.int64), meta)
    for a, b in zip(out, heap):
        a[:b.size] = b
    return out
