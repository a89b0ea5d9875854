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
    """Run the discrete-event simulation; returns per-frame stage times, status and chosen route."""
    n = plan.capture_s.size
    env = simpy.Environment()
    nan = float("nan")
    t = {k: [nan] * n for k in ("head_start", "head_end", "up_start", "up_end", "tail_start", "tail_end", "down_start", "down_end", "done")}
    status = [COMPLETED] * n
    drop_stage = [0] * n
    route = plan.route
    rows = np.arange(n)
    # per-frame demands of the chosen route as Python lists (cheap to index in the inner loop)
    if choose_one is None:
        head_c = plan.head_s[route, rows].tolist()
        bits_c = plan.wire_bits[route, rows].tolist()
        tail_c = plan.tail_s[route, rows].tolist()
        down_c = plan.down_s[route, rows].tolist()
    else:
        head_c, bits_c, tail_c, down_c = [0.0] * n, [0.0] * n, [nan] * n, [0.0] * n
    mobile_of = plan.mobile.tolist()
    capture_s = plan.capture_s.tolist()
    prop = topo.propagation_s
    deadline = topo.deadline_s
    bw_est = [tr.rate_bps_at(0.0) for tr in topo.uplink]
    t_done, t_up_start, t_up_end = t["done"], t["up_start"], t["up_end"]

    def drop(i: int, stage: int) -> None:
        status[i], drop_stage[i] = DROPPED, stage
        t_done[i] = env.now

    def finish(i: int) -> None:
        t_done[i] = env.now
        if deadline is not None and env.now - capture_s[i] > deadline + 1e-12:
            status[i] = LATE

    def finish_event(event) -> None:
        finish(event._value)

    def down_done(i: int) -> None:
        if prop > 0:
            env.timeout(prop, i).callbacks.append(finish_event)
        else:
            finish(i)

    downlinks = [_Station(env, 1, None, lambda i, now: down_c[i], t["down_start"], t["down_end"], down_done, drop, 4)
                 for _ in range(plan.n_mobiles)]

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
               for _ in range(1 if shared else plan.n_mobiles)]

    def head_done(i: int) -> None:
        if bits_c[i] > 0 or tail_c[i] == tail_c[i]:  # something to send, or a tail to run (not NaN)
            uplinks[0 if shared else mobile_of[i]].arrive(i)
        else:
            finish(i)

    mobiles = [_Station(env, 1, topo.mobile_capacity, lambda i, now: head_c[i],
                        t["head_start"], t["head_end"], head_done, drop, 1) for _ in range(plan.n_mobiles)]

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
            route[i] = r
            head_c[i] = float(plan.head_s[r, i])
            bits_c[i] = float(plan.wire_bits[r, i])
            tail_c[i] = float(plan.tail_s[r, i])
            down_c[i] = float(plan.down_s[r, i])
        if head_c[i] > 0:
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
    next_of = next_frame.tolist()

    def capture_event(event) -> None:
        i = event._value
        nxt = next_of[i]
        if nxt >= 0:
            env.timeout(capture_s[nxt] - env.now, nxt).callbacks.append(capture_event)
        capture(i)

    for i in sorted(firsts, key=lambda j: (capture_s[j], j)):
        env.timeout(capture_s[i], i).callbacks.append(capture_event)
    env.run()
    out = {k: np.asarray(v, dtype=float) for k, v in t.items()}
    out["status"] = np.asarray(status, dtype=np.int8)
    out["drop_stage"] = np.asarray(drop_stage, dtype=np.int8)
    out["route"] = route
    return out
