"""The compiled event loop: the SimPy engine's callbacks (engine.StationPipeline) as numba handlers, one per event
and hand-over, on the loop's records (layout.Loop)."""

from __future__ import annotations

from simulator.jit import njit
from simulator.kernels.links import finish_time, transfer_end
from simulator.kernels.stations import busy_until_after, queued_after_start
from simulator.link import PackedSteps
from simulator.loop.decide import edge_load_changed, fill_view, place
from simulator.loop.heap import borrowed, next_event, push_event, schedule, take_event
from simulator.loop.layout import (
    ASSIGN_FIXED, BATCH_FIN, BATCH_TIMER, CA, CAPTURE, CE, CLOUD_ARRIVE, CLOUD_FIN, CS, DE, DONE, DONE_RUN,
    DOWN_ARRIVE, DOWN_FIN, DS, EA, EDGE_FIN, FINISH, GROW, HE, HS, K_CLOUD, K_EDGE, K_MOBILE, K_UP, K_WAN, LOAD,
    MOBILE_FIN, N_KINDS, NEXT_WINDOW, SERVER_ARRIVE, TE, TS, UE, UP_FIN, US, WAN_DOWN_FIN, WAN_FIN, WDE, WDS, WE,
    WS, Batches, Delays, Loop,
)
from simulator.loop.queues import batch_dispatch, demand, enqueue, take_demands, unlink, varying_delay
from simulator.plan import DROPPED, LATE

STARTS = (HS, US, TS, DS, WS, CS, WDS)  # per station kind (K_*): the time table's row of a service's start
ENDS = (MOBILE_FIN, UP_FIN, EDGE_FIN, DOWN_FIN, WAN_FIN, CLOUD_FIN, WAN_DOWN_FIN)  # and the event that ends it
# hand-overs inside one event (engine.StationPipeline's direct calls), each the next step of one frame
(A_NONE, A_BEGIN, A_ARRIVE, A_CAPTURE, A_HEAD_DONE, A_UP_DONE, A_EDGE_ARRIVE, A_AFTER_EDGE, A_DOWN_ARRIVE,
 A_DOWN_DONE, A_FINISH, A_WAN_DONE, A_CLOUD_ARRIVE, A_TO_WAN_DOWN, A_WAN_DOWN_DONE, A_PUSH) = range(16)


@njit(cache=True)
def run_events(c, decide, observe, nxt, remaining, window_width, h, meta, queues):
    """Run events until none is left (returns DONE_RUN), the heap is nearly full (GROW: grow it and call again) or a
    capture's next frame is in a window not loaded yet (LOAD: load it, set nxt, call again).

    nxt: each slot's next capture of its mobile device (-1: none, NEXT_WINDOW: the first of the next window);
    remaining: per window of the ring (slot // window_width), its frames not ended yet; decide and observe: the
    stateful policy's kernels (policies.base.PolicyKernels) as C functions; h, meta and queues the events (EVENT
    records: heap.push_event)."""
    c = borrowed_loop(c)  # the caller holds every array while the loop runs
    b = borrowed
    nxt, remaining = b(nxt), b(remaining)
    heap = (b(h), b(meta), b(queues))  # the heap and the queues
    meta = heap[1]
    limit = h.size - 16 - c.batches.state[0].max_size  # one event pushes at most this many
    pend = (0.0, -1, 0)  # an event scheduled by the last one, not on the heap yet (heap.schedule)
    while True:
        pend_t, pend_seq, pend_code = pend
        where, t, seq, code = next_event(heap)
        if pend_seq >= 0 and (where == 0 or pend_t < t or (pend_t == t and pend_seq < seq)):
            now, code = pend_t, pend_code  # it would be popped next: run it without the heap (same order)
        else:
            if pend_seq >= 0:  # later than the next event: that one stays the next
                push_event(heap, pend_t, pend_seq, pend_code)
            if where == 0:
                break
            if meta[0] > limit:  # stale batch timers can pile up
                return GROW
            if code & 15 == CAPTURE and nxt[code >> 4] == NEXT_WINDOW:
                return LOAD
            take_event(heap, where)
            now = t
        pend = run_event(c, decide, observe, code, now, nxt, remaining, window_width, heap)
    return DONE_RUN


@njit(cache=True, inline="always")
def run_event(c, decide, observe, code, now, nxt, remaining, width, heap):
    """One event (code = frame << 4 | kind) at `now` and the hand-overs it causes, in the SimPy engine's callback
    order; returns the earliest event it scheduled, held back (heap.schedule)."""
    kind, i = code & 15, code >> 4
    pend = (0.0, -1, 0)
    st, started, batch, n = -1, -1, -1, 1  # the station that ended a service and the frame it starts next; a batch
    if kind == CAPTURE:  # engine._capture_event: the device's next capture first, then this one
        j = nxt[i]
        if j >= 0:
            meta = heap[1]
            seq = meta[1]
            meta[1] = seq + 1
            push_event(heap, now + (c.capture[j] - now), seq, (j << 4) | CAPTURE)
        act = A_CAPTURE
    elif kind == BATCH_FIN:
        batch, n, act = i, batch_ended(c, i, now, heap), A_TO_WAN_DOWN
    elif kind == BATCH_TIMER:
        batch_dispatch(c, heap, now)
        return pend
    else:
        st, row, act = ended(c, kind, i)
        if st >= 0:  # _Station._finish: record the end, start the next queued frame, then hand this one on
            c.T[i, row] = now
            started = next_queued(c, st)
    # the frames handed on, in order: the one the station starts, then this one; or the batch's, in batch order
    for q in range(-1 if started >= 0 else 0, n):
        step, f, at = (A_BEGIN, started, st) if q < 0 else (act, i if batch < 0 else c.batches.members[batch, q], -1)
        pend = hand_over(c, decide, observe, step, f, at, now, pend, remaining, width, heap)
    if batch >= 0:  # its frames are on their way: the batch slot is free again
        bs = c.batches.state[0]
        c.batches.free_slot[bs.free_slots] = batch
        bs.free_slots += 1
    return pend


@njit(cache=True, inline="always")
def hand_over(c, decide, observe, act, i, st, now, pend, remaining, width, heap):
    """Frame i's steps from `act` (at station st for A_BEGIN) until it waits in a queue, has an event scheduled or
    ends (engine.StationPipeline's direct calls); returns the event held back (heap.schedule)."""
    stage = 0
    while True:
        if act == A_BEGIN:
            t, ev = begin(c, st, i, now)
            return schedule(heap, pend, t, (i << 4) | ev)
        if act == A_ARRIVE:
            act = arrive(c, st, stage, i, now, remaining, width)
        elif act == A_CAPTURE:
            st, stage, act = capture(c, decide, i, now, remaining, width)
        elif act == A_UP_DONE or act == A_DOWN_DONE:
            t, ev, act = link_done(c, observe, act, i, now)
            if act == A_PUSH:
                return schedule(heap, pend, t, (i << 4) | ev)
        elif act == A_WAN_DONE or act == A_WAN_DOWN_DONE:  # the WAN's propagation, then the cloud or the edge
            d = c.edges[c.route[i] // c.run[0].routes_per_edge].wan_propagation_s
            ev, act = (CLOUD_ARRIVE, A_CLOUD_ARRIVE) if act == A_WAN_DONE else (DOWN_ARRIVE, A_DOWN_ARRIVE)
            if d > 0:  # an event after the delay, else at once
                return schedule(heap, pend, now + d, (i << 4) | ev)
        elif act == A_CLOUD_ARRIVE:
            st, stage, act = cloud_arrive(c, i, now, heap)
        elif act == A_FINISH:
            finish(c, i, now, remaining, width)
            return pend
        elif act == A_NONE:
            return pend
        else:
            st, stage, act = next_station(c, act, i, now)


@njit(cache=True, inline="always")
def ended(c, kind, i):
    """What event `kind` of frame i ends: the station whose service ended (-1: none), the time table's row of that
    end, and the frame's next step."""
    run, r = c.run[0], c.route[i]
    if kind == MOBILE_FIN:
        return c.mobile[i], HE, A_HEAD_DONE
    if kind == UP_FIN:
        return uplink_station(c, i, r), UE, A_UP_DONE
    if kind == EDGE_FIN:
        if run.tiered:
            return run.edge0 + r // run.routes_per_edge, TE, A_AFTER_EDGE
        return run.edge0, TE, A_DOWN_ARRIVE
    if kind == DOWN_FIN:
        return run.down0 + c.mobile[i], DE, A_DOWN_DONE
    if kind == WAN_FIN:
        return run.wan0 + r // run.routes_per_edge, WE, A_WAN_DONE
    if kind == CLOUD_FIN:
        return run.cloud, CE, A_TO_WAN_DOWN
    if kind == WAN_DOWN_FIN:
        return run.wan_down0 + r // run.routes_per_edge, WDE, A_WAN_DOWN_DONE
    if kind == SERVER_ARRIVE:
        return -1, 0, A_EDGE_ARRIVE
    if kind == FINISH:
        return -1, 0, A_FINISH
    if kind == CLOUD_ARRIVE:
        return -1, 0, A_CLOUD_ARRIVE
    return -1, 0, A_DOWN_ARRIVE


@njit(cache=True, inline="always")
def next_queued(c, st):
    """_Station._finish: the frame station st starts next, out of its queue (-1: none; a server is idle)."""
    s = c.stations[st]
    if s.waiting:
        j = s.first
        unlink(c.stations, c.NXT, c.PRV, st, j)
        s.queued = queued_after_start(s.queued, demand(c, s.kind, j), s.waiting)
        edge_load_changed(c, st)
        return j
    s.free += 1
    edge_load_changed(c, st)
    return -1


@njit(cache=True, inline="always")
def begin(c, st, i, now):
    """_Station._begin: frame i's service at station st starts now; returns when it ends and that event's kind."""
    station = c.stations[st]
    k = station.kind
    s = demand(c, k, i)
    if k == K_UP:  # bits over the link's rate trace
        s = transfer_end(c.links, uplink_trace(c, i, c.route[i]), now, s, station.busy_until_s) - now
    elif k == K_WAN:
        s = finish_time(c.links, c.edges[st - c.run[0].wan0].wan, now, s) - now
    c.T[i, STARTS[k]] = now
    station.busy_until_s = busy_until_after(station.busy_until_s, now, s)
    return now + s, ENDS[k]


@njit(cache=True, inline="always")
def arrive(c, st, stage, i, now, remaining, width):
    """_Station.arrive: frame i starts at station st (A_BEGIN), waits in its queue, or is dropped at a full one."""
    s = c.stations[st]
    if s.free:
        s.free -= 1
        edge_load_changed(c, st)
        return A_BEGIN
    if s.capacity >= 0 and s.waiting >= s.capacity:
        drop(c, i, stage, now, remaining, width)
    else:
        enqueue(c.stations, c.NXT, c.PRV, st, i)
        s.queued += demand(c, s.kind, i)
        edge_load_changed(c, st)
    return A_NONE


@njit(cache=True, inline="always")
def drop(c, i, stage, now, remaining, width):
    """engine._drop: frame i ends here, dropped at `stage` (plan.STAGES)."""
    c.status[i], c.drop_stage[i] = DROPPED, stage
    c.T[i, DONE] = now
    remaining[i // width] -= 1


@njit(cache=True, inline="always")
def capture(c, decide, i, now, remaining, width):
    """engine._capture: drop-stale, the decision (edge server and route), then the mobile device or, without a
    head, straight on; returns the next station, stage and step."""
    run, m = c.run[0], c.mobile[i]
    if run.drop_stale:  # _Station.drop_waiting
        s = c.stations[m]
        while s.waiting:
            j = s.first
            unlink(c.stations, c.NXT, c.PRV, m, j)
            s.queued = queued_after_start(s.queued, demand(c, K_MOBILE, j), s.waiting)
            drop(c, j, 1, now, remaining, width)
    if run.tiered and (run.assign != ASSIGN_FIXED or run.policy):  # engine._place
        c.route[i] = place(c, decide, m, c.route[i] % run.routes_per_edge, now)
    elif run.policy:  # engine._decide
        fill_view(c, m, 0, 0 if run.shared else m, now)
        g = c.routes_of[m]  # m's list of routes (one per mobile group)
        c.route[i] = decide(c.state, c.load_view, c.routes[g], 0, c.n_routes[g])
    take_demands(c, i, N_KINDS if run.tiered else K_WAN, width)  # a run without tiers has no WAN or cloud demands
    if demand(c, K_MOBILE, i) > 0:
        return m, 1, A_ARRIVE
    c.T[i, HS] = now
    c.T[i, HE] = now
    return -1, 0, A_HEAD_DONE


@njit(cache=True, inline="always")
def link_done(c, observe, act, i, now):
    """engine._up_done (the estimator learns, then the delay to the server) or _down_done (the delay back): the
    event after the delay (its time and kind, A_PUSH) or, with none, the next step at once."""
    run, m = c.run[0], c.mobile[i]
    up = act == A_UP_DONE
    link = m
    if up:
        link = m if (run.tiered or not run.shared) else 0
        if run.policy:
            observe(c.state, link, demand(c, K_UP, i), c.T[i, UE] - c.T[i, US])
    d = run.propagation_s
    if run.delay:
        d = varying_delay(c.delays, 0 if up else 1, c.delays.last_up if up else c.delays.last_down, i, m, link, now)
        c.T[i, run.row_delay_up if up else run.row_delay_down] = d
    ev, then = (SERVER_ARRIVE, A_EDGE_ARRIVE) if up else (FINISH, A_FINISH)
    return now + d, ev, (A_PUSH if run.delay != 0 or run.propagation_s > 0 else then)


@njit(cache=True, inline="always")
def next_station(c, act, i, now):
    """Where frame i goes after the mobile device (A_HEAD_DONE), at the edge (A_EDGE_ARRIVE, A_AFTER_EDGE), back
    (A_DOWN_ARRIVE, A_TO_WAN_DOWN): the station, its stage and A_ARRIVE, or the next step."""
    run, r = c.run[0], c.route[i]
    per = run.routes_per_edge
    tail = demand(c, K_EDGE, i)  # NaN where the route skips it (likewise the cloud)
    if act == A_HEAD_DONE:  # engine._head_done: something to send, or a tail to run
        if demand(c, K_UP, i) > 0 or tail == tail or (run.tiered and runs_in_cloud(c, i)):
            return uplink_station(c, i, r), 2, A_ARRIVE
        return -1, 0, A_FINISH
    if act == A_EDGE_ARRIVE:  # engine._edge_arrive
        if not run.tiered:
            return run.edge0, 3, A_ARRIVE
        c.T[i, EA] = now
        if tail == tail:
            return run.edge0 + r // per, 3, A_ARRIVE
        return -1, 0, A_AFTER_EDGE
    if act == A_AFTER_EDGE:  # engine._after_edge: the WAN if the route runs in the cloud
        if runs_in_cloud(c, i):
            return run.wan0 + r // per, 5, A_ARRIVE
        return -1, 0, A_DOWN_ARRIVE
    if act == A_TO_WAN_DOWN:
        return run.wan_down0 + r // per, 5, A_ARRIVE
    return run.down0 + c.mobile[i], 4, A_ARRIVE  # A_DOWN_ARRIVE


@njit(cache=True, inline="always")
def cloud_arrive(c, i, now, heap):
    """engine._cloud_arrive: into the batcher's queue (which dispatches) or to the cloud's servers."""
    run = c.run[0]
    c.T[i, CA] = now
    if run.batching:
        enqueue(c.stations, c.NXT, c.PRV, run.cloud, i)
        c.stations[run.cloud].queued += demand(c, K_CLOUD, i)
        batch_dispatch(c, heap, now)
        return -1, 0, A_NONE
    return run.cloud, 6, A_ARRIVE


@njit(cache=True, inline="always")
def batch_ended(c, b, now, heap):
    """_BatchStation._finish: batch slot b's server is idle again, its frames' cloud service ends now, and the batcher
    dispatches; returns the batch's size (its frames then go back over the WAN in batch order)."""
    bs, members = c.batches.state[0], c.batches.members
    c.batches.idle_since[bs.idle] = now
    bs.idle += 1
    n = c.batches.size[b]
    for q in range(n):
        c.T[members[b, q], CE] = now
    batch_dispatch(c, heap, now)
    return n


@njit(cache=True, inline="always")
def finish(c, i, now, remaining, width):
    """engine._finish: frame i is done (late past the deadline)."""
    c.T[i, DONE] = now
    run = c.run[0]
    if run.has_deadline and now - c.capture[i] > run.deadline_s + 1e-12:
        c.status[i] = LATE
    remaining[i // width] -= 1


@njit(cache=True, inline="always")
def runs_in_cloud(c, i):
    """Whether frame i's route runs a part in the cloud (tiered runs only: the plan has cloud demands)."""
    cloud = demand(c, K_CLOUD, i)
    return cloud == cloud


@njit(cache=True, inline="always")
def uplink_station(c, i, r):
    """The uplink station frame i (route r) is sent on: its mobile device's radio, or a shared medium."""
    run = c.run[0]
    if not run.tiered:
        return run.up0 + (0 if run.shared else c.mobile[i])
    medium = c.edges[r // run.routes_per_edge].medium
    return medium if medium >= 0 else run.up0 + c.mobile[i]


@njit(cache=True, inline="always")
def uplink_trace(c, i, r):
    """The rate trace of the uplink frame i (route r) is sent on (in c.links)."""
    run = c.run[0]
    if not run.tiered:
        return 0 if run.shared else c.mobile[i]
    edge = c.edges[r // run.routes_per_edge]
    return edge.uplink0 + (0 if edge.shared_medium else c.mobile[i])


@njit(cache=True, inline="always")
def borrowed_loop(c):
    """The loop's state with every array borrowed (heap.borrowed: no reference counts while the loop runs)."""
    b = borrowed
    d, q = c.delays, c.batches
    delays = Delays(b(d.traced), b(d.fifo), b(d.drawn), steps(d.traces), b(d.last_up), b(d.last_down))
    batches = Batches(b(q.state), b(q.key_of), b(q.preferred), b(q.idle_since), b(q.members), b(q.size), b(q.same),
                      b(q.factors), b(q.free_slot))
    return Loop(b(c.T), b(c.demand_at), b(c.demand_frames), b(c.column), b(c.capture), b(c.mobile), b(c.route),
                b(c.stations), b(c.NXT), b(c.PRV), b(c.run), b(c.edges), steps(c.links), b(c.status),
                b(c.drop_stage), delays, b(c.state), batches, b(c.routes), b(c.load_view), b(c.edge_of_mobile),
                b(c.n_routes), b(c.routes_of), b(c.prow), b(c.least_loaded))


@njit(cache=True, inline="always")
def steps(s):
    """PackedSteps borrowed."""
    return PackedSteps(borrowed(s.offsets), borrowed(s.steps), borrowed(s.periods))
