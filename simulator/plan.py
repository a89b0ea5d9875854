"""What the engines read: per-frame service demands by route (FramePlan) and the stations they cross (Topology)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from simulator.link import DEFAULT_PACKET_PAYLOAD_BYTES, LinkDelay, RateTrace

COMPLETED, LATE, DROPPED = 0, 1, 2
STATUS_NAMES = np.array(["completed", "late", "dropped"])
STAGES = np.array(["", "mobile", "uplink", "server", "downlink"])
TIME_FIELDS = ("head_start", "head_end", "up_start", "up_end", "tail_start", "tail_end", "down_start", "down_end", "done")
"""Per-frame stage times every engine returns (NaN where a frame never reached the stage)."""


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

    def rows(self, lo: int, hi: int) -> "FramePlan":
        """Frames lo..hi-1 of this plan."""
        sl = slice(lo, hi)
        return FramePlan(self.capture_s[sl], self.mobile[sl], self.route[sl], self.head_s[:, sl], self.wire_bits[:, sl],
                         self.tail_s[:, sl], self.down_s[:, sl], self.n_mobiles,
                         None if self.delay_u is None else self.delay_u[:, sl])


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
    packet_payload_bytes: int = DEFAULT_PACKET_PAYLOAD_BYTES
    packet_overhead_bytes: int = 0
    delay: Optional[list[LinkDelay]] = None  # per mobile device: a varying one-way delay (None: propagation_s)
