"""The SimPy engine: frames flow through the mobile device, the uplink, the server and the downlink.

Every stage is a FIFO station with c servers (optionally bounded), driven by SimPy timeouts with
callbacks instead of one process per frame, which keeps the inner loop lean. Capture-to-output
delay = mobile queue + head + uplink queue + transfer + propagation + server queue + tail + return
(002 section 2: T = tau_head + tau_data + tau_tail, with the queueing terms made explicit).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import simpy

from profilers.errors import EdgesimError
from simulator.policies import LoadView

COMPLETED, LATE, DROPPED = 0, 1, 2
STATUS_NAMES = np.array(["completed", "late", "dropped"])
STAGES = np.array(["", "mobile", "uplink", "server", "downlink"])


@dataclass
class FramePlan:
    """Per-frame inputs both engines read: capture times, where each frame goes, its service demands by route."""

    capture_s: np.ndarray  # (N,)
    mobile: np.ndarray  # (N,) mobile device instance index
    route: np.ndarray  # (N,) chosen route (filled at capture for stateful policies)
    head_s: np.ndarray  # (R, N) head service per route (0: no head)
    wire_bits: np.ndarray  # (R, N) uplink bits per route incl. overhead and resent packets (0: nothing sent)
    tail_s: np.ndarray  # (R, N) tail service per route (NaN: nothing on the server)
    down_s: np.ndarray  # (R, N) downlink transfer time per route
    n_mobiles: int


@dataclass(frozen=True)
class Topology:
    """Stations and their parameters: who shares what, bounds, propagation, link rates."""

    servers: int
    uplink: list  # RateTrace per uplink (one if shared_medium)
    shared_medium: bool
    propagation_s: float
    downlink_bps: float
    mobile_capacity: Optional[int] = None
    server_capacity: Optional[int] = None
    drop_stale: bool = False
    deadline_s: Optional[float] = None
    packet_payload_bytes: int = 1460
    packet_overhead_bytes: int = 0


class _Station:
    """FIFO queue with c servers; calls on_done(frame) when a frame's service ends."""

    __slots__ = ("env", "free", "queue", "capacity", "service", "start", "end", "on_done", "on_drop", "busy_until", "stage")

    def __init__(self, env: simpy.Environment, servers: int, capacity: Optional[int],
                 service: Callable[[int, float], float], start: list, end: list,
                 on_done: Callable[[int], None], on_drop: Callable[[int, int], None], stage: int) -> None:
        self.env, self.free, self.queue, self.capacity = env, servers, deque(), capacity
        self.service, self.start, self.end, self.on_done, self.on_drop = service, start, end, on_done, on_drop
        self.busy_until = 0.0
        self.stage = stage

    def arrive(self, i: int) -> None:
        if self.free:
            self.free -= 1
            self._begin(i)
        elif self.capacity is not None and len(self.queue) >= self.capacity:
            self.on_drop(i, self.stage)
        else:
            self.queue.append(i)

    def _begin(self, i: int) -> None:
        now = self.env.now
        s = self.service(i, now)
        self.start[i] = now
        if now + s > self.busy_until:
            self.busy_until = now + s
        self.env.timeout(s, i).callbacks.append(self._finish)

    def _finish(self, event: simpy.events.Event) -> None:
        i = event._value
        self.end[i] = self.env.now
        if self.queue:
            self._begin(self.queue.popleft())
        else:
            self.free += 1
        self.on_done(i)

    def drop_waiting(self) -> None:
        while self.queue:
            self.on_drop(self.queue.popleft(), self.stage)

    def backlog_s(self, service_of: Callable[[int], float], servers: int = 1) -> float:
        """Predicted wait for a new arrival: residual service plus the queued frames' own service, over c servers."""
        residual = max(self.busy_until - self.env.now, 0.0) if not self.free else 0.0
        return residual + sum(service_of(j) for j in self.queue) / servers


def simulate(plan: FramePlan, topo: Topology, choose_one: Optional[Callable[[LoadView, int], int]] = None,
             bandwidth_estimate: str = "ewma", ewma_alpha: float = 0.3) -> dict[str, np.ndarray]:
    """Run the discrete-event simulation on frames held in memory; per-frame stage times, status, route."""
    out: dict[str, np.ndarray] = {}
    simulate_windows(lambda k: plan if k == 0 else None, topo, lambda k, p, times: out.update(times),
                     choose_one, bandwidth_estimate, ewma_alpha)
    return out


def simulate_windows(load_window: Callable[[int], Optional[FramePlan]], topo: Topology,
                     on_window: Callable[[int, FramePlan, dict], None],
                     choose_one: Optional[Callable[[LoadView, int], int]] = None, bandwidth_estimate: str = "ewma",
                     ewma_alpha: float = 0.3, ring_windows: int = 4) -> None:
    """The same simulation over consecutive windows of frames, in bounded memory (long runs, soaks).

    Window k holds every mobile device's next frames; it is loaded when a mobile device's captures reach it
    and handed to on_window (in order) once all its frames have ended. Frames live in a ring of slots, so
    memory stays flat as long as frames in flight fit in ring_windows windows (an unstable system that
    falls further behind gets one clear error). One window is the in-memory case, frame index = slot.
    """
    first = load_window(0)
    if first is None or first.capture_s.size == 0:
        return
    peeked = load_window(1)  # loaded once: a window loader may draw from random streams
    single = peeked is None
    size = first.capture_s.size
    cap = size if single else ring_windows * size
    n_mobiles = first.n_mobiles
    env = simpy.Environment()
    nan = float("nan")
    t = {k: [nan] * cap for k in ("head_start", "head_end", "up_start", "up_end", "tail_start", "tail_end", "down_start", "down_end", "done")}
    status = [COMPLETED] * cap
    drop_stage = [0] * cap
    route = [0] * cap
    head_c, bits_c, tail_c, down_c = [0.0] * cap, [0.0] * cap, [nan] * cap, [0.0] * cap
    mobile_of = [0] * cap
    capture_s = [0.0] * cap
    next_of = [-1] * cap  # next slot of the same mobile device inside the window, -1 at its last frame
    window_of = [0] * cap
    local_of = [0] * cap
    plans: dict[int, FramePlan] = {}
    offsets: dict[int, int] = {}
    remaining: dict[int, int] = {}
    firsts: dict[int, list[int]] = {}  # per window: first slot of each mobile device (-1 if none)
    state = {"loaded": 0, "flushed": 0, "next_offset": 0}

    def load(k: int) -> bool:
        """Put window k into the ring; False when there is no window k."""
        wp = first if k == 0 else (peeked if k == 1 else load_window(k))
        if wp is None or wp.capture_s.size == 0:
            return False
        n = wp.capture_s.size
        if k - state["flushed"] >= (1 if single else ring_windows):

            raise EdgesimError(f"more than {ring_windows} windows of frames are in flight at t = {env.now:.6g} s: "
                               "the system falls behind without bound; shorten the run or raise workload.chunk_frames")
        off = state["next_offset"]
        state["next_offset"] += n
        rows = np.arange(n)
        slots = (off + rows) % cap
        sl = slots.tolist()
        r = wp.route
        if choose_one is None:
            vals = (wp.head_s[r, rows], wp.wire_bits[r, rows], wp.tail_s[r, rows], wp.down_s[r, rows])
        else:
            vals = (np.zeros(n), np.zeros(n), np.full(n, nan), np.zeros(n))
        for lst, arr in zip((head_c, bits_c, tail_c, down_c), vals):
            for s_, v in zip(sl, arr.tolist()):
                lst[s_] = v
        for s_, m, c, loc in zip(sl, wp.mobile.tolist(), wp.capture_s.tolist(), range(n)):
            mobile_of[s_], capture_s[s_], window_of[s_], local_of[s_] = m, c, k, loc
            status[s_], drop_stage[s_], route[s_] = COMPLETED, 0, int(r[loc])
            for lst in t.values():
                lst[s_] = nan
        order = np.lexsort((rows, wp.capture_s))
        heads = [-1] * n_mobiles
        for m in range(n_mobiles):
            seq = slots[order[wp.mobile[order] == m]].tolist()
            for a, b in zip(seq, seq[1:]):
                next_of[a] = b
            if seq:
                next_of[seq[-1]] = -1
                heads[m] = seq[0]
        plans[k], offsets[k], remaining[k], firsts[k] = wp, off, n, heads
        state["loaded"] = k + 1
        return True

    def frame_ended(i: int) -> None:
        k = window_of[i]
        remaining[k] -= 1
        while state["flushed"] < state["loaded"] and remaining[state["flushed"]] == 0:
            flush(state["flushed"])

    def flush(k: int) -> None:
        wp, off = plans.pop(k), offsets.pop(k)
        n = wp.capture_s.size
        sl = ((off + np.arange(n)) % cap).tolist()
        times = {name: np.fromiter((lst[s_] for s_ in sl), dtype=float, count=n) for name, lst in t.items()}
        times["status"] = np.fromiter((status[s_] for s_ in sl), dtype=np.int8, count=n)
        times["drop_stage"] = np.fromiter((drop_stage[s_] for s_ in sl), dtype=np.int8, count=n)
        times["route"] = np.fromiter((route[s_] for s_ in sl), dtype=np.int16, count=n)
        del remaining[k], firsts[k]
        state["flushed"] = k + 1
        on_window(k, wp, times)

    prop = topo.propagation_s
    deadline = topo.deadline_s
    bw_est = [tr.rate_bps_at(0.0) for tr in topo.uplink]
    t_done, t_up_start, t_up_end = t["done"], t["up_start"], t["up_end"]

    def drop(i: int, stage: int) -> None:
        status[i], drop_stage[i] = DROPPED, stage
        t_done[i] = env.now
        frame_ended(i)

    def finish(i: int) -> None:
        t_done[i] = env.now
        if deadline is not None and env.now - capture_s[i] > deadline + 1e-12:
            status[i] = LATE
        frame_ended(i)

    def finish_event(event) -> None:
        finish(event._value)

    def down_done(i: int) -> None:
        if prop > 0:
            env.timeout(prop, i).callbacks.append(finish_event)
        else:
            finish(i)

    downlinks = [_Station(env, 1, None, lambda i, now: down_c[i], t["down_start"], t["down_end"], down_done, drop, 4)
                 for _ in range(n_mobiles)]

    def tail_done(i: int) -> None:
        downlinks[mobile_of[i]].arrive(i)

    server = _Station(env, topo.servers, topo.server_capacity, lambda i, now: tail_c[i],
                      t["tail_start"], t["tail_end"], tail_done, drop, 3)

    def server_arrive_event(event) -> None:
        server.arrive(event._value)

    shared = topo.shared_medium
    links = topo.uplink

    def up_service(i: int, now: float) -> float:
        return links[0 if shared else mobile_of[i]].finish_time(now, bits_c[i]) - now

    def up_done(i: int) -> None:
        k = 0 if shared else mobile_of[i]
        dur = t_up_end[i] - t_up_start[i]
        if dur > 0:
            bw_est[k] = (1 - ewma_alpha) * bw_est[k] + ewma_alpha * bits_c[i] / dur
        if prop > 0:
            env.timeout(prop, i).callbacks.append(server_arrive_event)
        else:
            server.arrive(i)

    uplinks = [_Station(env, 1, None, up_service, t_up_start, t_up_end, up_done, drop, 2)
               for _ in range(1 if shared else n_mobiles)]

    def head_done(i: int) -> None:
        if bits_c[i] > 0 or tail_c[i] == tail_c[i]:  # something to send, or a tail to run (not NaN)
            uplinks[0 if shared else mobile_of[i]].arrive(i)
        else:
            finish(i)

    mobiles = [_Station(env, 1, topo.mobile_capacity, lambda i, now: head_c[i],
                        t["head_start"], t["head_end"], head_done, drop, 1) for _ in range(n_mobiles)]

    def capture(i: int) -> None:
        m = mobile_of[i]
        if topo.drop_stale:
            mobiles[m].drop_waiting()
        if choose_one is not None:
            k = 0 if shared else m
            bw = bw_est[k] if bandwidth_estimate == "ewma" else links[k].rate_bps_at(env.now)
            view = LoadView(
                now_s=env.now,
                mobile_backlog_s=mobiles[m].backlog_s(head_c.__getitem__),
                uplink_backlog_s=uplinks[k].backlog_s(lambda j: bits_c[j] / bw),
                server_backlog_s=server.backlog_s(lambda j: tail_c[j], topo.servers),
                bandwidth_bps=bw,
                propagation_s=prop,
                downlink_bps=topo.downlink_bps,
                packet_payload_bytes=topo.packet_payload_bytes,
                packet_overhead_bytes=topo.packet_overhead_bytes,
            )
            r = choose_one(view, m)
            wp, loc = plans[window_of[i]], local_of[i]
            route[i] = r
            head_c[i] = float(wp.head_s[r, loc])
            bits_c[i] = float(wp.wire_bits[r, loc])
            tail_c[i] = float(wp.tail_s[r, loc])
            down_c[i] = float(wp.down_s[r, loc])
        if head_c[i] > 0:
            mobiles[m].arrive(i)
        else:
            t["head_start"][i] = t["head_end"][i] = env.now
            head_done(i)

    # one source per mobile device: each capture schedules the next one of its device (a short event heap);
    # at the end of a window the next capture comes from the next window, loaded on demand
    def next_slot(i: int) -> int:
        nxt = next_of[i]
        if nxt >= 0:
            return nxt
        k = window_of[i] + 1
        if k >= state["loaded"] and not load(k):
            return -1
        return firsts[k][mobile_of[i]] if k in firsts else -1

    def capture_event(event) -> None:
        i = event._value
        nxt = next_slot(i)
        if nxt >= 0:
            env.timeout(capture_s[nxt] - env.now, nxt).callbacks.append(capture_event)
        capture(i)

    load(0)
    for i in sorted((j for j in firsts[0] if j >= 0), key=lambda j: (capture_s[j], j)):
        env.timeout(capture_s[i], i).callbacks.append(capture_event)
    env.run()
    while state["flushed"] < state["loaded"]:  # windows whose last frames ended with nothing after them
        if remaining[state["flushed"]]:
            raise RuntimeError("simulation ended with frames still in flight")
        flush(state["flushed"])
