"""The compiled event loop: the SimPy engine's callbacks (engine.StationPipeline) as one numba state machine."""

from __future__ import annotations

from numba import njit

from simulator.kernels.links import finish_time, transfer_end
from simulator.kernels.stations import busy_until_after, queued_after_start
from simulator.link import PackedSteps
from simulator.loop.decide import fill_view, place
from simulator.loop.heap import borrowed, pop, push, push_seq
from simulator.loop.layout import (
    ASSIGN_FIXED,
    BATCH_FIN,
    BATCH_TIMER,
    BUSY,
    CA,
    CAP,
    CAPTURE,
    CE,
    CLOUD_ARRIVE,
    CLOUD_FIN,
    CS,
    DE,
    DONE,
    DONE_RUN,
    DOWN_ARRIVE,
    DOWN_FIN,
    DS,
    EA,
    EDGE_FIN,
    FINISH,
    FREE,
    GROW,
    HE,
    HS,
    K_DOWN,
    K_EDGE,
    K_MOBILE,
    K_UP,
    K_WAN,
    K_WDOWN,
    LOAD,
    MOBILE_FIN,
    NEXT_WINDOW,
    P_DEADLINE,
    P_PROP,
    QHEAD,
    QLEN,
    QUEUED,
    Q_ASSIGN,
    Q_BATCH,
    Q_CLOUD,
    Q_DEADLINE,
    Q_DELAY,
    Q_DOWN0,
    Q_EDGE0,
    Q_MAXB,
    Q_NBATCH,
    Q_NFREE,
    Q_PER,
    Q_POLICY,
    Q_ROWPD,
    Q_ROWPU,
    Q_SHARED,
    Q_STALE,
    Q_TIERED,
    Q_UP0,
    Q_WAN0,
    Q_WDOWN0,
    SERVER_ARRIVE,
    SKIND,
    TE,
    TS,
    UE,
    UP_FIN,
    US,
    WAN_DOWN_FIN,
    WAN_FIN,
    WDE,
    WDS,
    WE,
    WS,
)
from simulator.loop.queues import batch_dispatch, enqueue, unlink, varying_delay, work
from simulator.plan import DROPPED, LATE


# hand-overs inside one event (engine.StationPipeline's direct calls), run as a small state machine
# (A_PUSH schedules the event (push_t, push_code): every event of a frame is pushed at that one place)
(A_NONE, A_BEGIN, A_ARRIVE, A_CAPTURE, A_HEAD_DONE, A_UP_DONE, A_EDGE_ARRIVE, A_AFTER_EDGE, A_DOWN_ARRIVE,
 A_DOWN_DONE, A_FINISH, A_WAN_DONE, A_CLOUD_ARRIVE, A_TO_WAN_DOWN, A_WAN_DOWN_DONE, A_PUSH) = range(16)


@njit(cache=True)
def run_events(c, decide, observe, nxt, remaining, window_width, ht, hs, hc, meta):
    """Run events until none is left (returns DONE_RUN), the heap is nearly full (GROW: grow it and call again) or a
    capture's next frame is in a window not loaded yet (LOAD: load it, set nxt, call again).

    nxt: each slot's next capture of its mobile device (-1: none, NEXT_WINDOW: the first of the next window);
    remaining: per window of the ring (slot // window_width), its frames not ended yet; decide and observe: the
    stateful policy's kernels (policies.base.PolicyKernels) as C functions."""
    (T, plan, capture, mob, route, SI, NXT, PRV, SF, Q, P, E, EF, tr, status, drop_stage, dl, state, B, routes,
     view, edge_of_mobile, n_routes, routes_of, prow) = c
    head_s, bits_s, tail_s, down_s, wan_bits, cloud_s, wan_down_s = plan
    dl_kind, dl_fifo, dl_val, dtr, last_up, last_down = dl
    members, bsize, free_since, bfree = B[3], B[4], B[2], B[7]
    b = borrowed  # the caller holds every array while the loop runs
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
    routes_of, prow = b(routes_of), b(prow)  # each mobile device's row of `routes`; each route's row of the plan
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
                push_seq(ht, hs, hc, meta, pend_t, pend_seq, pend_code)
            if meta[0] == 0:
                break
            if meta[0] > limit:  # stale batch timers can pile up
                return GROW
            if hc[0] & 15 == CAPTURE and nxt[hc[0] >> 4] == NEXT_WINDOW:
                return LOAD
            now, code = pop(ht, hs, hc, meta)
        pend_seq = -1
        kind, i = code & 15, code >> 4
        ret_act = ret_i = 0
        batch_q = batch_hi = 0
        done_st, done_row, act = -1, 0, A_NONE
        if kind == CAPTURE:
            j = nxt[i]
            if j >= 0:
                push(ht, hs, hc, meta, now + (capture[j] - now), (j << 4) | CAPTURE)
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
            batch_dispatch(T, cloud_s, route, prow, SI, SF, NXT, PRV, Q, P, B, ht, hs, hc, meta, now)
        elif kind == BATCH_TIMER:
            batch_dispatch(T, cloud_s, route, prow, SI, SF, NXT, PRV, Q, P, B, ht, hs, hc, meta, now)
        elif kind == WAN_DOWN_FIN:
            done_st, done_row, act = wdown0 + route[i] // per, WDE, A_WAN_DOWN_DONE
        else:  # DOWN_ARRIVE
            act = A_DOWN_ARRIVE
        if done_st >= 0:  # _Station._finish: record the end, start the next queued frame, then hand this one on
            T[done_row, i] = now
            if SI[QLEN, done_st]:
                ret_act, ret_i = act, i
                i = SI[QHEAD, done_st]
                unlink(SI, NXT, PRV, done_st, i)
                SF[QUEUED, done_st] = queued_after_start(SF[QUEUED, done_st], work(plan, SI[SKIND, done_st],
                                                                                  prow[route[i]], i), SI[QLEN, done_st])
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
                    push_seq(ht, hs, hc, meta, pend_t, pend_seq, pend_code)
                    pend_t, pend_seq, pend_code = push_t, seq, push_code
                else:
                    push_seq(ht, hs, hc, meta, push_t, seq, push_code)
                act = A_NONE
                continue
            r = route[i]
            p = prow[r]  # the route's row of the plan's demands (routes via edge servers alike share one)
            if act == A_BEGIN:  # _Station._begin: frame i's service at station st starts now
                k = SI[SKIND, st]
                if k == K_MOBILE:
                    s, row, ev = head_s[p, i], HS, MOBILE_FIN
                elif k == K_UP:
                    if not tiered:
                        trace = 0 if shared else mob[i]
                    else:
                        e = r // per
                        trace = E[2, e] + (0 if E[0, e] else mob[i])
                    s, row, ev = transfer_end(links, trace, now, bits_s[p, i], SF[BUSY, st]) - now, US, UP_FIN
                elif k == K_EDGE:
                    s, row, ev = tail_s[p, i], TS, EDGE_FIN
                elif k == K_DOWN:
                    s, row, ev = down_s[p, i], DS, DOWN_FIN
                elif k == K_WAN:
                    s, row, ev = finish_time(links, E[4, st - wan0], now, wan_bits[p, i]) - now, WS, WAN_FIN
                elif k == K_WDOWN:
                    s, row, ev = wan_down_s[p, i], WDS, WAN_DOWN_FIN
                else:
                    s, row, ev = cloud_s[p, i], CS, CLOUD_FIN
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
                    enqueue(SI, NXT, PRV, st, i)
                    SF[QUEUED, st] += work(plan, SI[SKIND, st], p, i)
                act = A_NONE
            elif act == A_CAPTURE:  # engine._capture
                m = mob[i]
                if stale:
                    while SI[QLEN, m]:
                        j = SI[QHEAD, m]
                        unlink(SI, NXT, PRV, m, j)
                        SF[QUEUED, m] = queued_after_start(SF[QUEUED, m], head_s[prow[route[j]], j], SI[QLEN, m])
                        status[j], drop_stage[j] = DROPPED, 1
                        T[DONE, j] = now
                        remaining[j // width] -= 1
                if tiered and (assign != ASSIGN_FIXED or policy):  # engine._place
                    route[i] = place(view, SI, SF, Q, P, E, EF, links, routes[routes_of[m]], state, decide,
                                      edge_of_mobile, m, r % per, now)
                elif policy:  # engine._decide
                    link = 0 if shared else m
                    fill_view(view, SI, SF, Q, P, E, EF, links, m, 0, link, now)
                    route[i] = decide(state, view, routes[routes_of[m]], 0, n_routes[routes_of[m]])
                r = route[i]
                p = prow[r]
                if head_s[p, i] > 0:
                    st, stage, act = m, 1, A_ARRIVE
                else:
                    T[HS, i] = now
                    T[HE, i] = now
                    act = A_HEAD_DONE
            elif act == A_HEAD_DONE:  # engine._head_done
                if bits_s[p, i] > 0 or tail_s[p, i] == tail_s[p, i] or (tiered and cloud_s[p, i] == cloud_s[p, i]):
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
                    observe(state, link, bits_s[p, i], T[UE, i] - T[US, i])
                d = prop
                if delay:
                    d = varying_delay(dl_kind, dl_fifo, dl_val, delays, last_up, i, m, link, 0, now)
                    T[row_pu, i] = d
                push_t, push_code = now + d, (i << 4) | SERVER_ARRIVE
                act = A_PUSH if delay != 0 or prop > 0 else A_EDGE_ARRIVE  # an event after the delay, else at once
            elif act == A_EDGE_ARRIVE:  # engine._edge_arrive
                if not tiered:
                    st, stage, act = edge0, 3, A_ARRIVE
                else:
                    T[EA, i] = now
                    if tail_s[p, i] == tail_s[p, i]:
                        st, stage, act = edge0 + r // per, 3, A_ARRIVE
                    else:
                        act = A_AFTER_EDGE
            elif act == A_AFTER_EDGE:
                if cloud_s[p, i] == cloud_s[p, i]:
                    st, stage, act = wan0 + r // per, 5, A_ARRIVE
                else:
                    act = A_DOWN_ARRIVE
            elif act == A_DOWN_ARRIVE:
                st, stage, act = down0 + mob[i], 4, A_ARRIVE
            elif act == A_DOWN_DONE:  # engine._down_done
                d = prop
                if delay:
                    m = mob[i]
                    d = varying_delay(dl_kind, dl_fifo, dl_val, delays, last_down, i, m, m, 1, now)
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
                    enqueue(SI, NXT, PRV, cloud, i)
                    SF[QUEUED, cloud] += cloud_s[p, i]
                    batch_dispatch(T, cloud_s, route, prow, SI, SF, NXT, PRV, Q, P, B, ht, hs, hc, meta, now)
                    act = A_NONE
                else:
                    st, stage, act = cloud, 6, A_ARRIVE
            elif act == A_TO_WAN_DOWN:
                st, stage, act = wdown0 + r // per, 5, A_ARRIVE
            else:  # A_WAN_DOWN_DONE
                e = r // per
                push_t, push_code = now + EF[e], (i << 4) | DOWN_ARRIVE
                act = A_PUSH if EF[e] > 0 else A_DOWN_ARRIVE  # an event after the delay, else at once
