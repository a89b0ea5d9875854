"""The compiled loop's event store (simulator.loop.heap): the heap and its queues give back events in the order one
heap would, (time, sequence), whatever order they are pushed in."""

import heapq

import numpy as np
from numba import njit

from simulator.loop.heap import new_events, next_event, push_event, take_event
from simulator.loop.layout import CAPTURE, DOWN_FIN, EDGE_FIN, FINISH, MOBILE_FIN, SERVER_ARRIVE, UP_FIN, WAN_FIN


@njit(cache=False)
def _drive(h, meta, queues, t, seq, code, pop, out_t, out_seq):
    """Push or take (pop[k]) event k in turn, then take what is left; the events taken, in order."""
    events = (h, meta, queues)
    n = 0
    for k in range(t.size):
        if pop[k]:
            where, te, se, _ = next_event(events)
            if where:
                take_event(events, where)
                out_t[n], out_seq[n] = te, se
                n += 1
        else:
            push_event(events, t[k], seq[k], code[k])
    while True:
        where, te, se, _ = next_event(events)
        if where == 0:
            break
        take_event(events, where)
        out_t[n], out_seq[n] = te, se
        n += 1
    return n


def test_heap_and_queues_give_events_back_in_time_then_sequence_order():
    rng = np.random.default_rng(26)
    kinds = np.array([CAPTURE, FINISH, SERVER_ARRIVE, MOBILE_FIN, UP_FIN, EDGE_FIN, DOWN_FIN, WAN_FIN])  # WAN: heap
    for trial in range(20):
        n = 600
        # times mostly rising (as a run schedules them), some earlier, many equal; sequence numbers unique but not
        # in push order (an event held back is pushed after later-numbered ones)
        t = np.round(np.cumsum(rng.exponential(0.2, n)) - rng.exponential(0.5, n) * (rng.random(n) < 0.3), 1)
        seq = rng.permutation(n).astype(np.int64)
        code = (np.arange(n, dtype=np.int64) << 4) | kinds[rng.integers(0, kinds.size, n)]
        pop = rng.random(n) < 0.4
        h, meta, queues = new_events(1 + trial % 5)  # small queues: full ones send events to the heap
        out_t, out_seq = np.zeros(n), np.zeros(n, np.int64)
        got = _drive(h, meta, queues, t, seq, code, pop, out_t, out_seq)
        ref, want = [], []
        for k in range(n):
            if pop[k]:
                if ref:
                    want.append(heapq.heappop(ref))
            else:
                heapq.heappush(ref, (t[k], seq[k]))
        want += sorted(ref)
        assert got == len(want) == int((~pop).sum())
        assert list(zip(out_t[:got], out_seq[:got])) == want
        assert not meta[3::2].any()  # queues empty at the end
