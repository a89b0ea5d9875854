"""What the engines read: per-frame service demands by route (FramePlan) and the stations they cross (Topology)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from simulator.link import TCP_IP_OVERHEAD_BYTES, TCP_PAYLOAD_BYTES, LinkDelay, RateTrace

COMPLETED, LATE, DROPPED = 0, 1, 2
STATUS_NAMES = np.array(["completed", "late", "dropped"])
STAGES = np.array(["", "mobile", "uplink", "server", "downlink"])
TIME_FIELDS = ("head_start", "head_end", "up_start", "up_end", "tail_start", "tail_end", "down_start", "down_end", "done")
"""Per-frame stage times every engine returns (NaN where a frame never reached the stage)."""
TIER_FIELDS = ("edge_arrive", "wan_start", "wan_end", "cloud_arrive", "cloud_start", "cloud_end", "wan_down_start",
               "wan_down_end", "batch_wait", "batch_size")
"""Also returned with several edge servers or a cloud: the WAN and cloud stages, and each frame's batch."""


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
    delay_u: Optional[np.ndarray] = None  # (2, N) uniforms of the uplink and downlink delays (varying delay only)
    wan_bits: Optional[np.ndarray] = None  # (R, N) bits from the edge server to the cloud (0: not to the cloud)
    cloud_s: Optional[np.ndarray] = None  # (R, N) cloud service at batch size 1 (NaN: nothing in the cloud)
    wan_down_s: Optional[np.ndarray] = None  # (R, N) WAN transfer time of the result back to the edge server
    routes_per_edge: int = 0  # with several edge servers, route r' = edge x routes_per_edge + the policy's route
    cloud_key: Optional[np.ndarray] = None  # (R,) what the cloud runs per route (-1: nothing): batches share a key
    batch_factors: Optional[np.ndarray] = None  # (R, B + 1) cloud time at batch size b / at batch size 1
    rows: Optional[np.ndarray] = None  # (R,) each route's row of the demand arrays (None: row r is route r)

    @property
    def n_routes(self) -> int:
        """Routes a frame can take (rows of the demand arrays where no two routes share one)."""
        return self.head_s.shape[0] if self.rows is None else self.rows.size

    def row_of(self, route):
        """The demand row(s) of route(s) `route`: routes with the same demands share one row (demand_rows)."""
        return route if self.rows is None else self.rows[route]

    def all_routes(self) -> "FramePlan":
        """The plan with a demand row per route (itself when it has one already), for an engine that reads the
        demand arrays by route."""
        if self.rows is None:
            return self
        take = (lambda a: None if a is None else a[self.rows])
        return replace(self, head_s=take(self.head_s), wire_bits=take(self.wire_bits), tail_s=take(self.tail_s),
                       down_s=take(self.down_s), wan_bits=take(self.wan_bits), cloud_s=take(self.cloud_s),
                       wan_down_s=take(self.wan_down_s), rows=None)

    def for_tables(self) -> "FramePlan":
        """The plan with only what a frame table reads (capture times, mobile devices, wire bits): the demands the
        engines alone read become read-only NaN views of the same shape, so a window an engine has copied holds no
        second copy of them while its frames run (a best-placement window: 15 rows x 7 arrays)."""
        gone = (lambda a: None if a is None else np.broadcast_to(np.float64(np.nan), a.shape))
        return replace(self, head_s=gone(self.head_s), tail_s=gone(self.tail_s), down_s=gone(self.down_s),
                       wan_bits=gone(self.wan_bits), cloud_s=gone(self.cloud_s), wan_down_s=gone(self.wan_down_s))

    def capture_chain(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per mobile device its first and last frame by capture time (-1: none), and each frame's next capture of
        its device (-1 at its last); equal capture times in frame order."""
        n = self.capture_s.size
        mob, cap = self.mobile, self.capture_s
        in_order = n < 2 or bool(np.all((mob[1:] > mob[:-1]) | ((mob[1:] == mob[:-1]) & (cap[1:] >= cap[:-1]))))
        if in_order:  # mobile-major and in capture order already (as windows are planned): no sort
            order = np.arange(n)
        else:
            order = np.lexsort((np.arange(n), cap))
            order = order[np.argsort(mob[order], kind="stable")]
        nxt = np.full(n, -1, dtype=np.int64)
        same = self.mobile[order[1:]] == self.mobile[order[:-1]]
        nxt[order[:-1][same]] = order[1:][same]
        first_of, last_of = np.full(self.n_mobiles, -1, np.int64), np.full(self.n_mobiles, -1, np.int64)
        if n:
            starts, ends = order[np.concatenate(([True], ~same))], order[np.concatenate((~same, [True]))]
            first_of[self.mobile[starts]], last_of[self.mobile[ends]] = starts, ends
        return first_of, last_of, nxt


def demand_rows(routes_by_group: list[list], edge_keys: list, lossy_uplink: bool,
                lossy_wan: bool) -> Optional[np.ndarray]:
    """Each route's row of a plan's demand arrays, so that a plan holds (distinct routes x frames), not (edge servers
    x routes x frames); None when every route has its own row.

    Route r' = e x R + r (R routes per edge server) shares the row of route r via the first edge server whose key
    (its device) is edge e's: the policy offers the same routes there, so a frame's uniforms give the same demands.
    A route that draws packet losses keeps its own row: its resends come from its own stream (per route number).
    """
    n_routes = len(routes_by_group[0])
    per = n_routes // max(len(edge_keys), 1)
    seen: dict = {}
    rows = np.empty(n_routes, dtype=np.int64)
    for r in range(n_routes):
        own = any((lossy_uplink and routes[r].offloads) or (lossy_wan and routes[r].cloud is not None)
                  for routes in routes_by_group)
        rows[r] = seen.setdefault(("route", r) if own else (edge_keys[r // per], r % per), len(seen))
    return None if len(seen) == n_routes else rows



@dataclass(frozen=True)
class Batching:
    """Triton's dynamic batcher at the cloud: dispatch at max_batch_size or a preferred size, else after max_queue_delay_s.

    A batch holds frames of one cloud key (one model part), oldest first; it takes cloud_s of its oldest frame x
    the route's batch factor t(b) / t(1) (FramePlan.batch_factors: a measured per-batch-size table, or a stated fit).
    """

    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]  # largest first
    max_queue_delay_s: float


@dataclass(frozen=True)
class EdgeTier:
    """One edge server of several: its pool, the uplinks to it, and its WAN link to the cloud and back."""

    name: str
    servers: int
    uplink: list[RateTrace]  # per mobile device to this server, or one medium shared by all frames sent to it
    shared_medium: bool
    wan: Optional[RateTrace] = None
    wan_propagation_s: float = 0.0


@dataclass(frozen=True)
class Tiers:
    """Edge servers, the cloud and how frames are assigned to edge servers (absent: one edge server, no cloud)."""

    edges: list[EdgeTier]
    assignment: str  # static | round-robin (decided per mobile device) | least-loaded | shortest-expected-delay
    cloud_servers: int = 0  # 0: no cloud
    batching: Optional[Batching] = None
    edge_of_mobile: Optional[np.ndarray] = None  # static and round-robin: each mobile device's edge server
    wan_down_bps: float = float("inf")

    @property
    def dynamic(self) -> bool:
        """True when the edge server is chosen per frame at capture from the load (both engines decide it at capture)."""
        return self.assignment in ("least-loaded", "shortest-expected-delay")


@dataclass(frozen=True)
class Topology:
    """Stations and their parameters: who shares what, bounds, propagation, link rates."""

    servers: int
    uplink: list[RateTrace]  # one per mobile device, or one for a shared medium
    shared_medium: bool
    propagation_s: float
    downlink_bps: float
    mobile_capacity: Optional[int] = None
    server_capacity: Optional[int] = None
    drop_stale: bool = False
    deadline_s: Optional[float] = None
    packet_payload_bytes: int = TCP_PAYLOAD_BYTES
    packet_overhead_bytes: int = TCP_IP_OVERHEAD_BYTES
    delay: Optional[list[LinkDelay]] = None  # per mobile device: a varying one-way delay (None: propagation_s)
    tiers: Optional[Tiers] = None  # several edge servers and/or a cloud (None: one edge server, as above)
