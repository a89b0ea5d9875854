"""The compiled loop's events in (time, sequence) order, as SimPy's: a binary heap, and queues for the events that
are mostly scheduled in that order (captures; arrivals after a propagation delay; the ends of services of about
fixed length); an event is one EVENT record, and arrays are borrowed without reference counts (or read by address:
float_at)."""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from simulator.jit import njit
from simulator.loop.layout import (CAPTURE, CLOUD_ARRIVE, DOWN_ARRIVE, DOWN_FIN, EDGE_FIN, FINISH, MOBILE_FIN,
                                   SERVER_ARRIVE, UP_FIN)

EVENT = np.dtype([("t", float), ("seq", np.int64), ("code", np.int64)])
"""A scheduled event: its time, sequence number (the tie rule: scheduled earlier, runs earlier) and code (frame << 4
| kind); one record, so that a step of the heap reads one place."""


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


@intrinsic
def float_at(typingctx, address, index):
    """The float at address + 8 x index: an element of a float64 array the caller keeps alive and whose data
    pointer (ndarray.ctypes.data) it passed in, so that the loop reads arrays it was not handed one by one."""
    def codegen(context, builder, sig, args):
        at = builder.inttoptr(args[0], ir.PointerType(ir.DoubleType()))
        return builder.load(builder.gep(at, [args[1]]))
    return types.float64(types.int64, types.int64), codegen


@njit(cache=True, inline="always")
def push(h, meta, t, code):
    seq = meta[1]
    meta[1] = seq + 1
    push_seq(h, meta, t, seq, code)


@njit(cache=True)
def push_seq(h, meta, t, seq, code):
    """Put an event on the heap with the sequence number it was given when it was scheduled."""
    n = meta[0]
    k = n
    while k > 0:
        p = (k - 1) >> 1
        e = h[p]
        if e.t < t or (e.t == t and e.seq < seq):
            break
        h[k] = e
        k = p
    e = h[k]
    e.t, e.seq, e.code = t, seq, code
    meta[0] = n + 1


@njit(cache=True, inline="always")
def schedule(events, pend, t, code):
    """Number an event scheduled now (its place in the tie rule) and hold the earliest of one event's schedules
    back as `pend` (time, sequence, code; sequence -1: none), the rest onto the heap or a queue (push_event): the
    loop runs a held event without them when it would be taken next. Returns the event held back."""
    meta = events[1]
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
def pop(h, meta):
    """Take the heap's top off."""
    n = meta[0] - 1
    meta[0] = n
    if n > 0:
        last = h[n]
        t, s, c = last.t, last.seq, last.code
        k = 0
        while True:
            j = 2 * k + 1
            if j >= n:
                break
            r = j + 1
            if r < n and (h[r].t < h[j].t or (h[r].t == h[j].t and h[r].seq < h[j].seq)):
                j = r
            e = h[j]
            if t < e.t or (t == e.t and s < e.seq):
                break
            h[k] = e
            k = j
        e = h[k]
        e.t, e.seq, e.code = t, s, c


@njit(cache=True, inline="always")
def queues_of(code):
    """The queues (first, how many) an event may wait in while it sorts after every event there (0 queues: the heap
    only): the captures (a periodic workload's are scheduled in time order), the arrivals after a fixed delay
    (propagation), and each service's ends (a fixed service after arrivals in about time order: two queues for the
    mobile devices', whose heads differ by device, so that two devices' ends interleaved each stay in order)."""
    kind = code & 15
    if kind == CAPTURE:
        return 0, 1
    if kind == SERVER_ARRIVE or kind == FINISH or kind == CLOUD_ARRIVE or kind == DOWN_ARRIVE:
        return 1, 1
    if kind == MOBILE_FIN:
        return 2, 2
    if kind == UP_FIN:
        return 4, 1
    if kind == EDGE_FIN:
        return 5, 1
    if kind == DOWN_FIN:
        return 6, 1
    return 0, 0


N_QUEUES = 7
"""Queues beside the heap (queues_of)."""


@njit(cache=True, inline="always")
def push_event(events, t, seq, code):
    """An event, numbered seq, onto the end of the first of its queues (queues_of) after whose last event it sorts,
    else onto the heap. The queues stay sorted, so the next event is the earliest of the heap's top and the queues'
    heads (next_event): the one a single heap would pop, from a heap that holds only the events of no queue
    (meta: heap size, next sequence number, then each queue's head and length)."""
    h, meta, queues = events
    first, count = queues_of(code)
    size = queues.shape[1]
    for q in range(first, first + count):
        n = meta[3 + 2 * q]
        if n < size:
            k = (meta[2 + 2 * q] + n) & (size - 1)  # size: a power of two
            last = queues[q, (k - 1) & (size - 1)]
            if n == 0 or last.t < t or (last.t == t and last.seq < seq):
                e = queues[q, k]
                e.t, e.seq, e.code = t, seq, code
                meta[3 + 2 * q] = n + 1
                return
    push_seq(h, meta, t, seq, code)


@njit(cache=True, inline="always")
def next_event(events):
    """Where the earliest scheduled event waits (0: nowhere, 1: the heap's top, 2 + q: queue q's head), its time,
    sequence number and code."""
    h, meta, queues = events
    where, t, seq, code = 0, 0.0, -1, 0
    if meta[0] > 0:
        e = h[0]
        where, t, seq, code = 1, e.t, e.seq, e.code
    for q in range(queues.shape[0]):
        if meta[3 + 2 * q] > 0:
            e = queues[q, meta[2 + 2 * q]]
            if where == 0 or e.t < t or (e.t == t and e.seq < seq):
                where, t, seq, code = 2 + q, e.t, e.seq, e.code
    return where, t, seq, code


@njit(cache=True, inline="always")
def take_event(events, where):
    """Remove the event next_event found at `where` (the heap's top or a queue's head)."""
    h, meta, queues = events
    if where == 1:
        pop(h, meta)
    else:
        q = where - 2
        meta[2 + 2 * q] = (meta[2 + 2 * q] + 1) & (queues.shape[1] - 1)
        meta[3 + 2 * q] -= 1


@njit(cache=True)
def start_captures(h, meta, queues, firsts, capture):
    """Each mobile device's first capture, in this order."""
    events = (h, meta, queues)
    for i in firsts:
        seq = meta[1]
        meta[1] = seq + 1
        push_event(events, capture[i], seq, (i << 4) | CAPTURE)


def new_events(n_mobiles: int) -> tuple:
    """The heap (room for 4 events a mobile device, grown when full) with its meta (push_event), and the N_QUEUES
    queues, each with room for an event per mobile device (a full queue sends to the next or the heap)."""
    size = 1 << int(n_mobiles).bit_length()
    return (np.empty(max(1024, 4 * n_mobiles), EVENT), np.zeros(2 + 2 * N_QUEUES, np.int64),
            np.empty((N_QUEUES, size), EVENT))


def first_time(h: np.ndarray, meta: np.ndarray, queues: np.ndarray) -> float:
    """The time of the earliest scheduled event (heap or queues; inf: none)."""
    t = h[0]["t"] if meta[0] > 0 else np.inf
    for q in range(queues.shape[0]):
        if meta[3 + 2 * q] > 0:
            t = min(t, queues[q, meta[2 + 2 * q]]["t"])
    return float(t)


def grown(h: np.ndarray) -> np.ndarray:
    """The event heap at twice its size (same events, same order)."""
    out = np.empty(2 * h.size, EVENT)
    out[:h.size] = h
    return out
