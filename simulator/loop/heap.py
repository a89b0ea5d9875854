"""The compiled loop's events in (time, sequence) order, as SimPy's: a binary heap, and the captures in a queue of
their own while they are scheduled in that order; arrays borrowed without reference counts."""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.core import cgutils
from numba.extending import intrinsic
from simulator.loop.layout import CAPTURE



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
def schedule(heap, pend, t, code):
    """Number an event scheduled now (its place in the tie rule) and hold the earliest of one event's schedules
    back as `pend` (time, sequence, code; sequence -1: none), the rest onto the heap: the loop runs a held event
    without the heap when it would be popped next. Returns the event held back."""
    ht, hs, hc, meta = heap
    pend_t, pend_seq, pend_code = pend
    seq = meta[1]
    meta[1] = seq + 1
    if pend_seq < 0:
        return t, seq, code
    if t < pend_t:
        push_seq(ht, hs, hc, meta, pend_t, pend_seq, pend_code)
        return t, seq, code
    push_seq(ht, hs, hc, meta, t, seq, code)
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
def push_capture(heap, captures, t, code):
    """Schedule a capture: at the end of the captures' queue when it sorts after every capture there (a periodic
    workload's always do), else on the heap. The next event is the earlier of the heap's top and the queue's head
    (next_event), the same one a single heap would pop, and the heap holds only the frames in flight: a capture per
    mobile device no longer sits in it (meta: heap size, sequence, queue head, queue length)."""
    ht, hs, hc, meta = heap
    ct, cs, cc = captures
    seq = meta[1]
    meta[1] = seq + 1
    n, size = meta[3], ct.size
    if n == 0 or t >= ct[(meta[2] + n - 1) % size]:  # equal times: this one was scheduled last
        k = (meta[2] + n) % size
        ct[k], cs[k], cc[k] = t, seq, code
        meta[3] = n + 1
    else:
        push_seq(ht, hs, hc, meta, t, seq, code)


@njit(cache=True, inline="always")
def next_event(heap, captures):
    """Where the earliest scheduled event is (0: nowhere, 1: the heap's top, 2: the captures' queue's head), its
    time, sequence number and code."""
    ht, hs, hc, meta = heap
    ct, cs, cc = captures
    where, t, seq, code = 0, 0.0, -1, 0
    if meta[0] > 0:
        where, t, seq, code = 1, ht[0], hs[0], hc[0]
    if meta[3] > 0:
        h = meta[2]
        if where == 0 or ct[h] < t or (ct[h] == t and cs[h] < seq):
            where, t, seq, code = 2, ct[h], cs[h], cc[h]
    return where, t, seq, code


@njit(cache=True)
def start_captures(heap, captures, firsts, capture):
    """Each mobile device's first capture, in this order."""
    for i in firsts:
        push_capture(heap, captures, capture[i], (i << 4) | CAPTURE)


def first_time(heap: tuple, captures: tuple) -> float:
    """The time of the earliest scheduled event (heap or captures' queue; inf: none)."""
    ht, _, _, meta = heap
    t = ht[0] if meta[0] > 0 else np.inf
    return min(t, captures[0][meta[2]]) if meta[3] > 0 else t


def grown(heap: tuple) -> tuple:
    """The event heap at twice its size (same events, same order)."""
    ht, hs, hc, meta = heap
    out = (np.empty(2 * ht.size), np.empty(2 * ht.size, np.int64), np.empty(2 * ht.size, np.int64), meta)
    for a, b in zip(out, heap):
        a[:b.size] = b
    return out
