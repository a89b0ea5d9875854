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

from simulator.link import RateTrace
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
                 service: Callable[[int, float], float], start: np.ndarray, end: np.ndarray,
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
        self.busy_until = max(self.busy_until, now + s)
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

    def backlog_s(self, mean_service_s: float) -> float:
        """Predicted wait for a new arrival: residual service plus queued frames at their mean service."""
        residual = max(self.busy_until - self.env.now, 0.0) if not self.free else 0.0
        return residual + len(self.queue) * mean_service_s


def simulate(plan: FramePlan, topo: Topology, choose_one: Optional[Callable[[LoadView, int], int]] = None,
             bandwidth_estimate: str = "ewma", ewma_alpha: float = 0.3) -> dict[str, np.ndarray]:
    """Run the discrete-event simulation; returns per-frame stage times, status and chosen route."""
    n = plan.capture_s.size
    env = simpy.Environment()
    t = {k: np.full(n, np.nan) for k in ("head_start", "head_end", "up_start", "up_end", "tail_start", "tail_end", "down_start", "down_end", "done")}
    status = np.zeros(n, dtype=np.int8)
    drop_stage = np.zeros(n, dtype=np.int8)
    route = plan.route
    rows = np.arange(n)
    head_s, wire_bits, tail_s, down_s = plan.head_s, plan.wire_bits, plan.tail_s, plan.down_s
    prop = topo.propagation_s
    bw_est = [tr.rate_bps_at(0.0) for tr in topo.uplink]

    def drop(i: int, stage: int) -> None:
        status[i], drop_stage[i] = DROPPED, stage
        t["done"][i] = env.now

    def finish(i: int) -> None:
        t["done"][i] = env.now
        if topo.deadline_s is not None and env.now - plan.capture_s[i] > topo.deadline_s + 1e-12:
            status[i] = LATE

    def finish_event(event) -> None:
        finish(event._value)

    def down_done(i: int) -> None:
        if prop > 0:
            env.timeout(prop, i).callbacks.append(finish_event)
        else:
            finish(i)

    downlinks = [_Station(env, 1, None, lambda i, now: down_s[route[i], i], t["down_start"], t["down_end"], down_done, drop, 4)
                 for _ in range(plan.n_mobiles)]

    def tail_done(i: int) -> None:
        downlinks[plan.mobile[i]].arrive(i)

    server = _Station(env, topo.servers, topo.server_capacity, lambda i, now: tail_s[route[i], i],
                      t["tail_start"], t["tail_end"], tail_done, drop, 3)

    def server_arrive_event(event) -> None:
        server.arrive(event._value)

    def uplink_index(i: int) -> int:
        return 0 if topo.shared_medium else int(plan.mobile[i])

    def up_service(i: int, now: float) -> float:
        return topo.uplink[uplink_index(i)].finish_time(now, wire_bits[route[i], i]) - now

    def up_done(i: int) -> None:
        k = uplink_index(i)
        dur = t["up_end"][i] - t["up_start"][i]
        if dur > 0:
            bw_est[k] = (1 - ewma_alpha) * bw_est[k] + ewma_alpha * wire_bits[route[i], i] / dur
        if prop > 0:
            env.timeout(prop, i).callbacks.append(server_arrive_event)
        else:
            server.arrive(i)

    uplinks = [_Station(env, 1, None, up_service, t["up_start"], t["up_end"], up_done, drop, 2)
               for _ in range(1 if topo.shared_medium else plan.n_mobiles)]

    def head_done(i: int) -> None:
        r = route[i]
        if wire_bits[r, i] > 0 or not np.isnan(tail_s[r, i]):
            uplinks[uplink_index(i)].arrive(i)
        else:
            finish(i)

    mobiles = [_Station(env, 1, topo.mobile_capacity, lambda i, now: head_s[route[i], i],
                        t["head_start"], t["head_end"], head_done, drop, 1) for _ in range(plan.n_mobiles)]

    mean_head = head_s.mean(axis=1) if n else np.zeros(head_s.shape[0])
    mean_tail = np.nan_to_num(tail_s).mean(axis=1) if n else mean_head

    def capture(i: int) -> None:
        m = plan.mobile[i]
        if topo.drop_stale:
            mobiles[m].drop_waiting()
        if choose_one is not None:
            k = uplink_index(i)
            r_prev = route[i]
            view = LoadView(
                now_s=env.now,
                mobile_backlog_s=mobiles[m].backlog_s(float(mean_head[r_prev])),
                uplink_backlog_s=uplinks[k].backlog_s(0.0),
                server_backlog_s=server.backlog_s(float(mean_tail[r_prev])) / topo.servers,
                bandwidth_bps=bw_est[k] if bandwidth_estimate == "ewma" else topo.uplink[k].rate_bps_at(env.now),
                propagation_s=prop,
                downlink_bps=topo.downlink_bps,
                packet_payload_bytes=topo.packet_payload_bytes,
                packet_overhead_bytes=topo.packet_overhead_bytes,
            )
            route[i] = choose_one(view, m)
        if head_s[route[i], i] > 0:
            mobiles[m].arrive(i)
        else:
            t["head_start"][i] = t["head_end"][i] = env.now
            head_done(i)

    # one source per mobile device: each capture schedules the next one of its device (a short event heap)
    order = np.lexsort((rows, plan.capture_s))
    next_frame = np.full(n, -1, dtype=np.int64)
    firsts = []
    for m in range(plan.n_mobiles):
        seq = order[plan.mobile[order] == m]
        next_frame[seq[:-1]] = seq[1:]
        if seq.size:
            firsts.append(int(seq[0]))
    capture_s = plan.capture_s

    def capture_event(event) -> None:
        i = event._value
        nxt = next_frame[i]
        if nxt >= 0:
            env.timeout(capture_s[nxt] - env.now, int(nxt)).callbacks.append(capture_event)
        capture(i)

    for i in sorted(firsts, key=lambda j: (capture_s[j], j)):
        env.timeout(float(capture_s[i]), i).callbacks.append(capture_event)
    env.run()
    out = {k: v for k, v in t.items()}
    out["status"] = status
    out["drop_stage"] = drop_stage
    out["route"] = route
    return out
