"""The compiled loop's stations: FIFO queues linked through the frames (engine._Station), the dynamic batcher
(engine._BatchStation) and the varying delay, on the loop's arrays; their arithmetic is simulator.kernels'."""

from __future__ import annotations

from simulator.jit import njit
from simulator.kernels.links import fifo_delay, value_at
from simulator.kernels.stations import batch_size, batch_wait_s, busy_until_after, queued_after_start, residual_s
from simulator.loop.heap import float_at, push
from simulator.loop.layout import BATCH_FIN, BATCH_TIMER, BSZ, BW, CA, CS, K_CLOUD


@njit(cache=True, inline="always")
def enqueue(stations, NXT, PRV, st, i):
    """Frame i joins the end of station st's queue."""
    s = stations[st]
    NXT[i] = -1
    PRV[i] = s.last
    if s.waiting:
        NXT[s.last] = i
    else:
        s.first = i
    s.last = i
    s.waiting += 1


@njit(cache=True, inline="always")
def unlink(stations, NXT, PRV, st, i):
    """Frame i leaves station st's queue (from wherever it waits)."""
    s = stations[st]
    p, n = PRV[i], NXT[i]
    if s.first == i:
        s.first = n
    else:
        NXT[p] = n
    if s.last == i:
        s.last = p
    else:
        PRV[n] = p
    s.waiting -= 1


@njit(cache=True, inline="always")
def demand(c, kind, i):
    """What frame i asks of a station of `kind` (K_*) on its route: seconds of service, bits on a link (NaN or 0
    where the route skips it); also what it adds to the station's queued work (engine._Station.work). Read from
    the frame's row of T, where take_demands put it at capture."""
    return c.T[i, kind]


@njit(cache=True, inline="always")
def take_demands(c, i, kinds, width):
    """Frame i's demands on the route it takes (decided at its capture) into its row of T, from its window's own
    (rows x frames) arrays: the loop then reads a frame's demands beside its times, slot after slot, and the ring
    copies no window's demands on every route (docs/round4/issue26c.md)."""
    place, T = i // width, c.T
    at = c.prow[c.route[i]] * c.demand_frames[place] + c.column[i]  # routes with the same demands share a row
    for k in range(kinds):
        T[i, k] = float_at(c.demand_at[place, k], at)


@njit(cache=True, inline="always")
def residual(stations, st, now):
    """_Station.residual_s of station st."""
    s = stations[st]
    return residual_s(s.free, s.busy_until_s, now)


@njit(cache=True, inline="always")
def batch_dispatch(c, heap, now):
    """_BatchStation._dispatch and start_captures: batches of one cloud key while a server is idle, else a timer."""
    T, route, stations, NXT, PRV, batches = c.T, c.route, c.stations, c.NXT, c.PRV, c.batches
    h, meta = heap[0], heap[1]
    cloud, bs = c.run[0].cloud, batches.state[0]
    key_of, same, idle_since = batches.key_of, batches.same, batches.idle_since
    maxb, q = bs.max_size, stations[cloud]
    while bs.idle > 0 and q.waiting > 0:
        first = q.first
        key = key_of[route[first]]
        n = 0
        j = first
        while j >= 0 and n < maxb:
            if key_of[route[j]] == key:
                same[n] = j
                n += 1
            j = NXT[j]
        oldest = T[same[0], CA]
        size = batch_size(n, maxb, batches.preferred, now - oldest, bs.max_queue_delay_s)
        if size == 0:
            due = oldest + bs.max_queue_delay_s
            if bs.timer_s != due:
                bs.timer_s = due
                push(h, meta, now + (due - now), BATCH_TIMER)
            return
        nf = bs.idle  # the idle server free for longest takes the batch (only its free time matters)
        k_min = 0
        for k in range(1, nf):
            if idle_since[k] < idle_since[k_min]:
                k_min = k
        free = idle_since[k_min]
        idle_since[k_min] = idle_since[nf - 1]
        bs.idle = nf - 1
        bs.free_slots -= 1  # a free batch slot (one per cloud server, and one for a batch handing its frames on)
        b = batches.free_slot[bs.free_slots]
        for k in range(size):
            j = same[k]
            unlink(stations, NXT, PRV, cloud, j)
            q.queued = queued_after_start(q.queued, demand(c, K_CLOUD, j), q.waiting)
            batches.members[b, k] = j
            T[j, CS] = now
            T[j, BSZ] = size
            T[j, BW] = batch_wait_s(now, T[j, CA], free)
        batches.size[b] = size
        head = same[0]
        s = demand(c, K_CLOUD, head) * batches.factors[route[head], size]
        bs.busy_until_s = busy_until_after(bs.busy_until_s, now, s)
        push(h, meta, now + s, (b << 4) | BATCH_FIN)


@njit(cache=True, inline="always")
def varying_delay(delays, drawn_row, last, i, m, k, now):
    """engine._varying_delay: frame i's delay now (a trace's step, or its draw), held behind the one sent before."""
    d = value_at(delays.traces, m, now) if delays.traced[m] == 1 else delays.drawn[drawn_row, i]
    d, last[k] = fifo_delay(now, d, last[k], delays.fifo[m])
    return d
