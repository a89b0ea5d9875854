"""The SimPy engine: frames flow through the mobile device, the uplink, the server and the downlink.

Every stage is a FIFO station with c servers (optionally bounded), driven by SimPy timeouts with callbacks
instead of one process per frame, which keeps the inner loop lean. Capture-to-output delay = mobile queue +
head + uplink queue + transfer + propagation + server queue + tail + return (002 section 2: T = tau_head +
tau_data + tau_tail, with the queueing terms made explicit). Frames live in a ring of slots (`FrameRing`),
so a run in memory and a long run in windows go through the same stations (`StationPipeline`).
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Optional

import numpy as np
import simpy

from profilers.errors import EdgesimError
from simulator.plan import COMPLETED, DROPPED, LATE, TIER_FIELDS, TIME_FIELDS, Batching, FramePlan, Topology
from simulator.kernels import decisions, links, python_entry, stations
from simulator.kernels.records import load_view
from simulator.policies import LoadView, Route, StatefulPolicy, policy_kernels
from simulator.policies.base import route_table

# the scalar kernels this engine runs per event, as the Python functions they are written as (the same code; numba's
# per-call dispatch from Python would cost more than the rule)
busy_until_after, queued_after_start = stations.busy_until_after.py_func, stations.queued_after_start.py_func
residual_s, backlog_s = stations.residual_s.py_func, stations.backlog_s.py_func
batch_size, batch_wait_s = stations.batch_size.py_func, stations.batch_wait_s.py_func
fifo_delay, planning_bps = links.fifo_delay.py_func, links.planning_bps.py_func
least_loaded = decisions.least_loaded.py_func

WindowLoader = Callable[[int], Optional[FramePlan]]
"""load_window(k): window k of frames (every mobile device's next frames), or None after the last one."""

WindowDone = Callable[[int, FramePlan, dict], None]
"""on_window(k, plan, times): window k has ended; times holds TIME_FIELDS, status, drop_stage and route per frame."""


class _Station:
    """FIFO queue with c servers; calls on_done(frame) when a frame's service ends.

    `queued` is the waiting frames' total work (work(i): seconds of service, or bits on a link), kept as a running
    sum in queue order and set to exactly 0 when the queue empties: a backlog costs O(1) per capture, and the compiled
    engine keeps the same sum with the same operations in the same order.
    """

    __slots__ = ("env", "free", "queue", "capacity", "service", "start", "end", "on_done", "on_drop", "busy_until", "stage",
                 "servers", "work", "queued")

    def __init__(self, env: simpy.Environment, servers: int, capacity: Optional[int],
                 service: Callable[[int, float], float], start: list, end: list,
                 on_done: Callable[[int], None], on_drop: Callable[[int, int], None], stage: int,
                 work: Callable[[int], float]) -> None:
        self.env, self.free, self.queue, self.capacity, self.servers = env, servers, deque(), capacity, servers
        self.service, self.start, self.end, self.on_done, self.on_drop = service, start, end, on_done, on_drop
        self.work, self.queued = work, 0.0
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
            self.queued += self.work(i)

    def _pop(self) -> int:
        """The oldest waiting frame, out of the queue and of the queued work."""
        j = self.queue.popleft()
        self.queued = queued_after_start(self.queued, self.work(j), len(self.queue))
        return j

    def _begin(self, i: int) -> None:
        now = self.env.now
        s = self.service(i, now)
        self.start[i] = now
        self.busy_until = busy_until_after(self.busy_until, now, s)
        self.env.timeout(s, i).callbacks.append(self._finish)

    def _finish(self, event: simpy.events.Event) -> None:
        i = event.value
        self.end[i] = self.env.now
        if self.queue:
            self._begin(self._pop())
        else:
            self.free += 1
        self.on_done(i)

    def drop_waiting(self) -> None:
        while self.queue:
            self.on_drop(self._pop(), self.stage)

    def residual_s(self) -> float:
        """What is left of the longest service in progress (0 when a server is free)."""
        return residual_s(self.free, self.busy_until, self.env.now)

    def backlog_s(self, servers: int = 1) -> float:
        """Predicted wait for a new arrival: residual service plus the queued frames' own work, over c servers (on a
        link, divide the queued bits by a bandwidth instead)."""
        return backlog_s(self.residual_s(), self.queued, servers)


class _BatchStation:
    """c servers behind Triton's dynamic batcher (plan.Batching): frames of one cloud key are served together.

    A free server takes the oldest frame's key and dispatches at once when that key's queued frames reach
    max_batch_size or a preferred size (the largest that fits), or when the oldest has waited max_queue_delay_s;
    otherwise it waits. Each frame records its batch size and its batching wait: the part of its wait after a
    server was free for it (the rest is queueing for a busy server).
    """

    def __init__(self, env: simpy.Environment, servers: int, batching: Batching, ring: "FrameRing",
                 on_done: Callable[[int], None]) -> None:
        self.env, self.batching, self.ring, self.on_done = env, batching, ring, on_done
        self.free_since = [0.0] * servers  # when each idle server became free
        self.queue: deque = deque()
        self.queued = 0.0  # the waiting frames' cloud service, as _Station.queued
        self.busy_until = 0.0
        self.timer_at = -1.0
        self.preferred = np.array(batching.preferred_batch_sizes, dtype=np.int64)

    def arrive(self, i: int) -> None:
        self.queue.append(i)
        self.queued += self.ring.cloud_s[i]
        self._dispatch()

    def _dispatch(self) -> None:
        b, ring, now = self.batching, self.ring, self.env.now
        while self.free_since and self.queue:
            key = ring.cloud_key[self.queue[0]]
            same = [j for j in self.queue if ring.cloud_key[j] == key][: b.max_batch_size]
            oldest = ring.t["cloud_arrive"][same[0]]
            size = batch_size(len(same), b.max_batch_size, self.preferred, now - oldest, b.max_queue_delay_s)
            if not size:
                due = oldest + b.max_queue_delay_s
                if self.timer_at != due:
                    self.timer_at = due
                    self.env.timeout(due - now).callbacks.append(lambda _e: self._dispatch())
                return
            self._start(same[:size])

    def _start(self, batch: list[int]) -> None:
        ring, now = self.ring, self.env.now
        free = self.free_since.pop(self.free_since.index(min(self.free_since)))
        for j in batch:
            self.queue.remove(j)
            self.queued = queued_after_start(self.queued, ring.cloud_s[j], len(self.queue))
            ring.t["cloud_start"][j] = now
            ring.t["batch_size"][j] = len(batch)
            ring.t["batch_wait"][j] = batch_wait_s(now, ring.t["cloud_arrive"][j], free)
        s = ring.cloud_s[batch[0]] * ring.batch_factor[batch[0]][len(batch)]
        self.busy_until = busy_until_after(self.busy_until, now, s)
        self.env.timeout(s, batch).callbacks.append(self._finish)

    def _finish(self, event: simpy.events.Event) -> None:
        batch, now = event.value, self.env.now
        self.free_since.append(now)
        for j in batch:
            self.ring.t["cloud_end"][j] = now
        self._dispatch()
        for j in batch:
            self.on_done(j)

    def backlog_s(self) -> float:
        """Predicted wait: the longest batch in progress, then the queued frames' own service over the servers."""
        residual = residual_s(len(self.free_since), self.busy_until, self.env.now)
        return backlog_s(residual, self.queued, max(len(self.free_since), 1))


class FrameRing:
    """Slots for the frames in flight: windows of frames are loaded on demand and handed back, in order, once ended.

    Window k holds every mobile device's next frames; it is loaded when a mobile device's captures reach it and
    handed to on_window once all its frames have ended. Memory stays flat as long as the frames in flight fit in
    ring_windows windows (a system that falls further behind gets one clear error). With a single window the
    ring is that window and slot = frame index.
    """

    def __init__(self, env: simpy.Environment, first: FramePlan, peeked: Optional[FramePlan],
                 load_window: WindowLoader, on_window: WindowDone, decide_at_capture: bool, ring_windows: int) -> None:
        self.env, self.first, self.peeked = env, first, peeked
        self.load_window, self.on_window, self.decide_at_capture = load_window, on_window, decide_at_capture
        self.single = peeked is None
        self.ring_windows = 1 if self.single else ring_windows
        size = first.capture_s.size
        cap = size if self.single else ring_windows * size
        nan = float("nan")
        self.cap, self.n_mobiles = cap, first.n_mobiles
        self.tiered = first.cloud_s is not None
        self.t = {k: [nan] * cap for k in TIME_FIELDS + (TIER_FIELDS if self.tiered else ())}
        self.routes_per_edge = first.routes_per_edge or 1
        self.wan_bits, self.cloud_s, self.wan_down_s = [0.0] * cap, [nan] * cap, [0.0] * cap
        self.cloud_key, self.batch_factor = [-1] * cap, [None] * cap
        self.status, self.drop_stage, self.route = [COMPLETED] * cap, [0] * cap, [0] * cap
        self.head_s, self.bits, self.tail_s, self.down_s = [0.0] * cap, [0.0] * cap, [nan] * cap, [0.0] * cap
        self.mobile_of, self.capture_s = [0] * cap, [0.0] * cap
        self.next_of = [-1] * cap  # next slot of the same mobile device inside the window, -1 at its last frame
        self.window_of, self.local_of = [0] * cap, [0] * cap
        self.delay_u = first.delay_u is not None
        self.u_up, self.u_down = [0.0] * cap, [0.0] * cap  # uniforms of a varying delay (common random numbers)
        self.prop_up, self.prop_down = [nan] * cap, [nan] * cap  # the delays the frame met (FIFO included)
        self.plans: dict[int, FramePlan] = {}
        self.offsets: dict[int, int] = {}
        self.remaining: dict[int, int] = {}
        self.firsts: dict[int, list[int]] = {}  # per window: first slot of each mobile device (-1 if none)
        self.loaded = self.flushed = self.next_offset = 0

    def load(self, k: int) -> bool:
        """Put window k into the ring; False when there is no window k."""
        wp = self.first if k == 0 else (self.peeked if k == 1 else self.load_window(k))
        if wp is None or wp.capture_s.size == 0:
            return False
        wp = wp.all_routes()  # demands read by route (a plan may share rows between routes: FramePlan.rows)
        n = wp.capture_s.size
        if k - self.flushed >= self.ring_windows:
            raise falls_behind(self.ring_windows, self.env.now)
        off = self.next_offset
        self.next_offset += n
        rows = np.arange(n)
        slots = (off + rows) % self.cap
        sl = slots.tolist()
        r = wp.route
        if self.decide_at_capture:
            vals = (np.zeros(n), np.zeros(n), np.full(n, float("nan")), np.zeros(n))
        else:
            vals = (wp.head_s[r, rows], wp.wire_bits[r, rows], wp.tail_s[r, rows], wp.down_s[r, rows])
        for lst, arr in zip((self.head_s, self.bits, self.tail_s, self.down_s), vals):
            for s_, v in zip(sl, arr.tolist()):
                lst[s_] = v
        if self.tiered:
            self._load_tiers(wp, sl, rows, r)
        nan = float("nan")
        if self.delay_u:
            for s_, up, down in zip(sl, wp.delay_u[0].tolist(), wp.delay_u[1].tolist()):
                self.u_up[s_], self.u_down[s_], self.prop_up[s_], self.prop_down[s_] = up, down, nan, nan
        for s_, m, c, loc in zip(sl, wp.mobile.tolist(), wp.capture_s.tolist(), range(n)):
            self.mobile_of[s_], self.capture_s[s_], self.window_of[s_], self.local_of[s_] = m, c, k, loc
            self.status[s_], self.drop_stage[s_], self.route[s_] = COMPLETED, 0, int(r[loc])
            for lst in self.t.values():
                lst[s_] = nan
        first_of, _, nxt = wp.capture_chain()
        for s_, j in zip(sl, np.where(nxt >= 0, slots[nxt], -1).tolist()):
            self.next_of[s_] = j
        heads = np.where(first_of >= 0, slots[first_of], -1).tolist()
        self.plans[k], self.offsets[k], self.remaining[k], self.firsts[k] = wp, off, n, heads
        self.loaded = k + 1
        return True

    def _load_tiers(self, wp: FramePlan, sl: list, rows: np.ndarray, r: np.ndarray) -> None:
        """The WAN and cloud demands of a window's frames (of their planned route until decided at capture)."""
        vals = (wp.wan_bits[r, rows], wp.cloud_s[r, rows], wp.wan_down_s[r, rows])
        for lst, arr in zip((self.wan_bits, self.cloud_s, self.wan_down_s), vals):
            for s_, v in zip(sl, arr.tolist()):
                lst[s_] = v
        for s_, rr in zip(sl, r.tolist()):
            self.cloud_key[s_], self.batch_factor[s_] = int(wp.cloud_key[rr]), wp.batch_factors[rr]

    def edge_of(self, i: int) -> int:
        """The edge server frame i goes to (its route r' = edge x routes per edge + r)."""
        return self.route[i] // self.routes_per_edge

    def next_slot(self, i: int) -> int:
        """The slot of the next capture of frame i's mobile device (loading the next window if needed), or -1."""
        nxt = self.next_of[i]
        if nxt >= 0:
            return nxt
        k = self.window_of[i] + 1
        if k >= self.loaded and not self.load(k):
            return -1
        return self.firsts[k][self.mobile_of[i]] if k in self.firsts else -1

    def decide(self, i: int, r: int) -> None:
        """Give frame i route r: its service demands become those of the route."""
        wp, loc = self.plans[self.window_of[i]], self.local_of[i]
        self.route[i] = r
        self.head_s[i] = float(wp.head_s[r, loc])
        self.bits[i] = float(wp.wire_bits[r, loc])
        self.tail_s[i] = float(wp.tail_s[r, loc])
        self.down_s[i] = float(wp.down_s[r, loc])
        if self.tiered:
            self.wan_bits[i], self.cloud_s[i] = float(wp.wan_bits[r, loc]), float(wp.cloud_s[r, loc])
            self.wan_down_s[i] = float(wp.wan_down_s[r, loc])
            self.cloud_key[i], self.batch_factor[i] = int(wp.cloud_key[r]), wp.batch_factors[r]

    def ended(self, i: int) -> None:
        """Frame i has ended: hand back every leading window whose frames have all ended."""
        self.remaining[self.window_of[i]] -= 1
        while self.flushed < self.loaded and self.remaining[self.flushed] == 0:
            self._flush(self.flushed)

    def _flush(self, k: int) -> None:
        wp, off = self.plans.pop(k), self.offsets.pop(k)
        n = wp.capture_s.size
        sl = ((off + np.arange(n)) % self.cap).tolist()
        times = {name: np.fromiter((lst[s_] for s_ in sl), dtype=float, count=n) for name, lst in self.t.items()}
        times["status"] = np.fromiter((self.status[s_] for s_ in sl), dtype=np.int8, count=n)
        times["drop_stage"] = np.fromiter((self.drop_stage[s_] for s_ in sl), dtype=np.int8, count=n)
        times["route"] = np.fromiter((self.route[s_] for s_ in sl), dtype=np.int16, count=n)
        if self.delay_u:
            times["prop_up_s"] = np.fromiter((self.prop_up[s_] for s_ in sl), dtype=float, count=n)
            times["prop_down_s"] = np.fromiter((self.prop_down[s_] for s_ in sl), dtype=float, count=n)
        del self.remaining[k], self.firsts[k]
        self.flushed = k + 1
        self.on_window(k, wp, times)

    def close(self) -> None:
        """After the last event: hand back the windows whose last frames ended with nothing after them."""
        while self.flushed < self.loaded:
            if self.remaining[self.flushed]:
                raise RuntimeError("simulation ended with frames still in flight")
            self._flush(self.flushed)


class StationPipeline:
    """The stations a frame crosses: its mobile device, its uplink (or a shared medium), an edge server pool, and with
    a cloud the edge server's WAN link, the cloud pool (or batcher) and the WAN back; then its downlink."""

    def __init__(self, env: simpy.Environment, topo: Topology, ring: FrameRing,
                 policy: Optional[StatefulPolicy], routes_of_mobile: Optional[list[list[Route]]]) -> None:
        self.env, self.topo, self.ring = env, topo, ring
        self.policy, self.routes_of_mobile = policy, routes_of_mobile
        n_mobiles, t = ring.n_mobiles, ring.t
        tiers = self.tiers = topo.tiers
        self.uplink_of = (lambda m: 0) if topo.shared_medium else (lambda m: m)
        self.downlinks = [_Station(env, 1, None, lambda i, now: ring.down_s[i], t["down_start"], t["down_end"],
                                   self._down_done, self._drop, 4, ring.down_s.__getitem__) for _ in range(n_mobiles)]
        pools = [e.servers for e in tiers.edges] if tiers is not None else [topo.servers]
        self.edges = [_Station(env, c, topo.server_capacity, lambda i, now: ring.tail_s[i], t["tail_start"],
                               t["tail_end"], self._tail_done, self._drop, 3, ring.tail_s.__getitem__) for c in pools]
        self.server = self.edges[0]
        if tiers is not None:
            self.media = {k: _Station(env, 1, None, self._up_service, t["up_start"], t["up_end"], self._up_done,
                                      self._drop, 2, ring.bits.__getitem__) for k, e in enumerate(tiers.edges)
                          if e.shared_medium}
            self.wans = [_Station(env, 1, None, self._wan_service, t["wan_start"], t["wan_end"], self._wan_done,
                                  self._drop, 5, ring.wan_bits.__getitem__) for _ in tiers.edges]
            self.wan_downs = [_Station(env, 1, None, lambda i, now: ring.wan_down_s[i], t["wan_down_start"],
                                       t["wan_down_end"], self._wan_down_done, self._drop, 5,
                                       ring.wan_down_s.__getitem__) for _ in tiers.edges]
            if tiers.batching is not None:
                self.cloud = _BatchStation(env, tiers.cloud_servers, tiers.batching, ring, self._cloud_done)
            else:
                self.cloud = _Station(env, max(tiers.cloud_servers, 1), None, lambda i, now: ring.cloud_s[i],
                                      t["cloud_start"], t["cloud_end"], self._cloud_done, self._drop, 6,
                                      ring.cloud_s.__getitem__)
        self.uplinks = [_Station(env, 1, None, self._up_service, t["up_start"], t["up_end"], self._up_done, self._drop, 2,
                                 ring.bits.__getitem__) for _ in range(1 if topo.shared_medium and tiers is None else n_mobiles)]
        self.mobiles = [_Station(env, 1, topo.mobile_capacity, lambda i, now: ring.head_s[i],
                                 t["head_start"], t["head_end"], self._head_done, self._drop, 1, ring.head_s.__getitem__)
                        for _ in range(n_mobiles)]
        self.kernels = policy_kernels(policy)  # a registered policy's decide and observe kernels
        if self.kernels is not None:
            self.policy_state = self.kernels.state(policy, topo.uplink)
        elif policy is not None:  # a Python policy: its own hooks (only this engine runs it)
            policy.start(topo.uplink)
        predicts = self.kernels is not None or (tiers is not None and tiers.dynamic)
        self.routes = route_table(routes_of_mobile, topo.packet_payload_bytes, topo.packet_overhead_bytes) \
            if predicts else None  # the routes as predictions read them
        self.view = load_view()
        if self.kernels is not None:  # the policy's kernels, called without numba's per-call dispatch
            self._kernel_decide = python_entry(self.kernels.decide, self.policy_state, self.view, self.routes[0], 0, 0)
            self._kernel_observe = python_entry(self.kernels.observe, self.policy_state, 0, 0.0, 0.0)
        if self.routes is not None:
            self._expected_delay_s = python_entry(decisions.expected_delay_s, self.routes[0], 0, self.view, 0.0)
        self.last_up = [0.0] * len(self.uplinks)  # latest arrival at the server per uplink (FIFO paths)
        self.last_down = [0.0] * n_mobiles  # latest arrival back at each mobile device

    def start(self) -> None:
        """Schedule each mobile device's first capture; every capture schedules the next one of its device."""
        ring = self.ring
        for i in sorted((j for j in ring.firsts[0] if j >= 0), key=lambda j: (ring.capture_s[j], j)):
            self.env.timeout(ring.capture_s[i], i).callbacks.append(self._capture_event)

    def _capture_event(self, event: simpy.events.Event) -> None:
        i = event.value
        nxt = self.ring.next_slot(i)
        if nxt >= 0:
            self.env.timeout(self.ring.capture_s[nxt] - self.env.now, nxt).callbacks.append(self._capture_event)
        self._capture(i)

    def _capture(self, i: int) -> None:
        ring, m = self.ring, self.ring.mobile_of[i]
        if self.topo.drop_stale:
            self.mobiles[m].drop_waiting()
        if self.tiers is not None and (self.tiers.dynamic or self.policy is not None):
            ring.decide(i, self._place(i, m))
        elif self.policy is not None:
            ring.decide(i, self._decide(m, 0, 0, len(self.routes_of_mobile[m])))
        if ring.head_s[i] > 0:
            self.mobiles[m].arrive(i)
        else:
            ring.t["head_start"][i] = ring.t["head_end"][i] = self.env.now
            self._head_done(i)

    def _decide(self, m: int, e: int, lo: int, hi: int) -> int:
        """The policy's route (offset from lo) for a frame of mobile device m bound for edge e, from what it sees."""
        self._fill_view(m, e)
        if self.kernels is not None:
            return int(self._kernel_decide(self.policy_state, self.view, self.routes[m], lo, hi))
        return self.policy.choose_one(self._python_view(), self.routes_of_mobile[m][lo:hi])

    def _place(self, i: int, m: int) -> int:
        """Route r' = edge x R + r of a frame at capture: the edge server by the assignment, the route by the policy."""
        tiers, ring, per = self.tiers, self.ring, self.ring.routes_per_edge
        base = ring.route[i] % per  # a stateless policy's planned route
        candidates = range(len(tiers.edges)) if tiers.dynamic else [int(tiers.edge_of_mobile[m])]
        if tiers.assignment == "least-loaded" and tiers.dynamic:
            candidates = [int(least_loaded(np.array([st.servers - st.free for st in self.edges]),
                                           np.array([len(st.queue) for st in self.edges]),
                                           np.array([st.servers for st in self.edges])))]
        best, best_s = None, float("inf")
        for e in candidates:
            r = self._decide(m, e, e * per, (e + 1) * per) if self.policy is not None else base
            if len(candidates) == 1:
                return e * per + r
            if self.policy is None:
                self._fill_view(m, e)
            rate = tiers.edges[e].uplink[0 if tiers.edges[e].shared_medium else m].rate_bps_at(self.env.now)
            expected = self._expected_delay_s(self.routes[m], e * per + r, self.view, float(rate))
            if expected < best_s:
                best, best_s = e * per + r, expected
        return best

    def _uplink_station(self, i: int) -> _Station:
        """The uplink frame i is sent on: its mobile device's radio, or a shared medium."""
        m = self.ring.mobile_of[i]
        if self.tiers is None:
            return self.uplinks[self.uplink_of(m)]
        return self.media.get(self.ring.edge_of(i)) or self.uplinks[m]

    def _fill_view(self, m: int, e: int = 0) -> None:
        """The LOAD_VIEW record a decision for mobile device m's frame bound for edge e reads (kernels.records)."""
        topo, k = self.topo, self.uplink_of(m)
        uplink = self.uplinks[k] if self.tiers is None else (self.media.get(e) or self.uplinks[m])
        link = k if self.tiers is None else m
        v, now = self.view[0], self.env.now
        v["now_s"], v["link"] = now, link
        v["uplink_rate_bps"] = topo.uplink[link].rate_bps_at(now) if link < len(topo.uplink) else 0.0
        v["mobile_backlog_s"] = self.mobiles[m].backlog_s()
        v["uplink_residual_s"], v["uplink_queued_bits"] = uplink.residual_s(), uplink.queued
        v["server_backlog_s"] = self.edges[e].backlog_s(self.tiers.edges[e].servers if self.tiers else topo.servers)
        v["propagation_s"], v["downlink_bps"] = topo.propagation_s, topo.downlink_bps
        if self.tiers is not None and self.tiers.cloud_servers:
            edge, wan = self.tiers.edges[e], self.wans[e]
            rate = planning_bps(edge.wan.rate_bps_at(now))
            v["wan_backlog_s"], v["wan_bps"] = backlog_s(wan.residual_s(), wan.queued, rate), rate
            v["wan_propagation_s"], v["wan_down_bps"] = edge.wan_propagation_s, self.tiers.wan_down_bps
            v["cloud_backlog_s"] = self.cloud.backlog_s() if isinstance(self.cloud, _BatchStation) \
                else self.cloud.backlog_s(self.tiers.cloud_servers)

    def _python_view(self) -> LoadView:
        """The view record as the LoadView a Python policy's choose_one reads."""
        v, topo = self.view[0], self.topo
        return LoadView(float(v["now_s"]), int(v["link"]), float(v["mobile_backlog_s"]), float(v["uplink_residual_s"]),
                        float(v["uplink_queued_bits"]), float(v["server_backlog_s"]), topo.propagation_s,
                        topo.downlink_bps, topo.packet_payload_bytes, topo.packet_overhead_bytes,
                        0.0, float(v["wan_backlog_s"]), float(v["wan_bps"]),
                        float(v["wan_propagation_s"]), float(v["wan_down_bps"]), float(v["cloud_backlog_s"]))

    def _head_done(self, i: int) -> None:
        ring = self.ring
        if ring.bits[i] > 0 or ring.tail_s[i] == ring.tail_s[i] or (ring.tiered and ring.cloud_s[i] == ring.cloud_s[i]):
            self._uplink_station(i).arrive(i)  # something to send, or a tail to run (not NaN)
        else:
            self._finish(i)

    def _up_service(self, i: int, now: float) -> float:
        ring = self.ring
        if self.tiers is None:
            trace = self.topo.uplink[self.uplink_of(ring.mobile_of[i])]
        else:
            edge = self.tiers.edges[ring.edge_of(i)]
            trace = edge.uplink[0 if edge.shared_medium else ring.mobile_of[i]]
        return trace.transfer_end(now, ring.bits[i], self._uplink_station(i).busy_until) - now  # before _begin sets it

    def _up_done(self, i: int) -> None:
        ring = self.ring
        k = self.uplink_of(ring.mobile_of[i]) if self.tiers is None else ring.mobile_of[i]
        if self.kernels is not None:
            self._kernel_observe(self.policy_state, k, float(ring.bits[i]),
                                 ring.t["up_end"][i] - ring.t["up_start"][i])
        elif self.policy is not None:
            self.policy.observe_transfer(k, ring.bits[i], ring.t["up_end"][i] - ring.t["up_start"][i])
        self._after_delay(i, ring.u_up, self.last_up, k, ring.prop_up, self._server_arrive_event, self._edge_arrive)

    def _server_arrive_event(self, event: simpy.events.Event) -> None:
        self._edge_arrive(event.value)

    def _edge_arrive(self, i: int) -> None:
        ring = self.ring
        if not ring.tiered:
            self.server.arrive(i)
            return
        ring.t["edge_arrive"][i] = self.env.now
        if ring.tail_s[i] == ring.tail_s[i]:
            self.edges[ring.edge_of(i)].arrive(i)
        else:  # nothing to run here: the edge server relays the frame to the cloud
            self._after_edge(i)

    def _tail_done(self, i: int) -> None:
        if self.ring.tiered:
            self._after_edge(i)
        else:
            self.downlinks[self.ring.mobile_of[i]].arrive(i)

    def _after_edge(self, i: int) -> None:
        ring = self.ring
        if ring.cloud_s[i] == ring.cloud_s[i]:
            self.wans[ring.edge_of(i)].arrive(i)
        else:
            self.downlinks[ring.mobile_of[i]].arrive(i)

    def _wan_service(self, i: int, now: float) -> float:
        return self.tiers.edges[self.ring.edge_of(i)].wan.finish_time(now, self.ring.wan_bits[i]) - now

    def _wan_done(self, i: int) -> None:
        self._after_wan_propagation(i, self._cloud_arrive)

    def _after_wan_propagation(self, i: int, then: Callable[[int], None]) -> None:
        """Frame i goes on after its edge server's WAN propagation delay (at once when there is none)."""
        prop = self.tiers.edges[self.ring.edge_of(i)].wan_propagation_s
        if prop > 0:
            self.env.timeout(prop, i).callbacks.append(lambda ev: then(ev.value))
        else:
            then(i)

    def _cloud_arrive(self, i: int) -> None:
        self.ring.t["cloud_arrive"][i] = self.env.now
        self.cloud.arrive(i)

    def _cloud_done(self, i: int) -> None:
        self.wan_downs[self.ring.edge_of(i)].arrive(i)

    def _wan_down_done(self, i: int) -> None:
        self._after_wan_propagation(i, self.downlinks[self.ring.mobile_of[i]].arrive)

    def _varying_delay(self, i: int, u: float, last: list, k: int) -> float:
        """The delay frame i meets on path k now: drawn (or traced), then held behind the frame sent before it (FIFO)."""
        now = self.env.now
        delay = self.topo.delay[self.ring.mobile_of[i]]
        d, last[k] = fifo_delay(now, float(delay.sample(now, u)), last[k], delay.fifo)
        return d

    def _down_done(self, i: int) -> None:
        ring = self.ring
        self._after_delay(i, ring.u_down, self.last_down, ring.mobile_of[i], ring.prop_down, self._finish_event,
                          self._finish)

    def _after_delay(self, i: int, u: list, last: list, k: int, met: list,
                     then_event: Callable[[simpy.events.Event], None], then: Callable[[int], None]) -> None:
        """Frame i goes on after the one-way delay of path k: a varying one (recorded in met) or the constant."""
        if self.topo.delay is not None:
            met[i] = d = self._varying_delay(i, u[i], last, k)
            self.env.timeout(d, i).callbacks.append(then_event)
        elif self.topo.propagation_s > 0:
            self.env.timeout(self.topo.propagation_s, i).callbacks.append(then_event)
        else:
            then(i)

    def _finish_event(self, event: simpy.events.Event) -> None:
        self._finish(event.value)

    def _finish(self, i: int) -> None:
        ring, now = self.ring, self.env.now
        ring.t["done"][i] = now
        if self.topo.deadline_s is not None and now - ring.capture_s[i] > self.topo.deadline_s + 1e-12:
            ring.status[i] = LATE
        ring.ended(i)

    def _drop(self, i: int, stage: int) -> None:
        ring = self.ring
        ring.status[i], ring.drop_stage[i] = DROPPED, stage
        ring.t["done"][i] = self.env.now
        ring.ended(i)


def simulate_windows(load_window: WindowLoader, topo: Topology, on_window: WindowDone,
                     policy: Optional[StatefulPolicy] = None, routes_of_mobile: Optional[list[list[Route]]] = None,
                     ring_windows: int = 4) -> None:
    """Simulate consecutive windows of frames in bounded memory; a stateful policy decides each frame at capture."""
    first = load_window(0)
    if first is None or first.capture_s.size == 0:
        return
    peeked = load_window(1)  # loaded once: a window loader may draw from random streams
    env = simpy.Environment()
    decide = policy is not None or (topo.tiers is not None and topo.tiers.dynamic)
    ring = FrameRing(env, first, peeked, load_window, on_window, decide, ring_windows)
    pipeline = StationPipeline(env, topo, ring, policy, routes_of_mobile)
    ring.load(0)
    pipeline.start()
    env.run()
    ring.close()


def falls_behind(windows: int, now: float) -> EdgesimError:
    """The error of a windowed run whose frames in flight outgrow its ring (either engine)."""
    return EdgesimError(f"more than {windows} windows of frames are in flight at t = {now:.6g} s: the system falls "
                        "behind without bound; shorten the run or raise workload.chunk_frames")


def in_memory(simulate_windows_fn: Callable, plan: FramePlan, topo: Topology, policy: Optional[StatefulPolicy] = None,
              routes_of_mobile: Optional[list[list[Route]]] = None) -> dict[str, np.ndarray]:
    """A windowed engine run on frames held in memory (one window): per-frame stage times, status and route."""
    out: dict[str, np.ndarray] = {}
    simulate_windows_fn(lambda k: plan if k == 0 else None, topo, lambda k, p, times: out.update(times),
                        policy, routes_of_mobile)
    return out


def simulate(plan: FramePlan, topo: Topology, policy: Optional[StatefulPolicy] = None,
             routes_of_mobile: Optional[list[list[Route]]] = None) -> dict[str, np.ndarray]:
    """Simulate frames held in memory (one window); per-frame stage times, status and route."""
    return in_memory(simulate_windows, plan, topo, policy, routes_of_mobile)
