"""The compiled loop's event heap in (time, sequence) order, as SimPy's; arrays borrowed without reference counts."""

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


@njit(cache=True)
def start_captures(heap, firsts, capture):
    """Each mobile device's first capture on the heap."""
    ht, hs, hc, meta = heap
    for i in firsts:
        push(ht, hs, hc, meta, capture[i], (i << 4) | CAPTURE)


def grown(heap: tuple) -> tuple:
    """The event heap at twice its size (same events, same order)."""
    ht, hs, hc, meta = heap
    out = (np.empty(2 * ht.size), np.empty(2 * ht.size, np.int64), np.empty(2 * ht.size, np.int64), meta)
    for a, b in zip(out, heap):
        a[:b.size] = b
    return out
