"""Bandwidth-adaptive split (Neurosurgeon, Kang et al. 2017, ref. [10] of 002): per frame, the least predicted delay."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from simulator.devices import Device
from simulator.link import RateTrace
from simulator.policies.base import (
    LoadView,
    PolicyEntry,
    PolicySpecBase,
    Route,
    StatefulPolicy,
    make_route,
    place_route,
)
from simulator.policies.fixed import InputEncoding, TensorEncoding


class BestSplitSpec(PolicySpecBase):
    """Choose the split point per frame from the bandwidth estimate and the queue backlogs."""

    name: Literal["best-split"]
    model: Optional[str] = Field(default=None, description="default: the scenario's model")
    candidates: Optional[list[str]] = Field(default=None, description="split points to choose from (default: all)")
    encoding: TensorEncoding = Field(default="float32", description="how a split point's tensor is sent")
    input_encoding: InputEncoding = Field(default="raw_uint8", description="how the input is sent at split 'input'")
    bandwidth_estimate: Literal["ewma", "oracle"] = Field(
        default="ewma", description="ewma of observed transfers, or the link's true rate at capture (an upper bound)")
    ewma_alpha: float = Field(default=0.3, gt=0, le=1, description="weight of the newest transfer in the EWMA")


MIN_PLANNING_BPS = 1.0
"""The least bandwidth a prediction divides by (1 bit/s): during an outage every transfer looks ~forever away."""


class BandwidthEstimator:
    """Uplink bandwidth as best-split sees it: an EWMA of observed transfers (bits/duration), or the true rate."""

    def __init__(self, kind: str, alpha: float, uplinks: list[RateTrace]) -> None:
        self.kind, self.alpha, self.uplinks = kind, alpha, uplinks
        self.estimate_bps = [tr.rate_bps_at(0.0) for tr in uplinks]

    def observe(self, link: int, bits: float, duration_s: float) -> None:
        """Fold one finished transfer into the link's estimate."""
        if duration_s > 0:
            self.estimate_bps[link] = (1 - self.alpha) * self.estimate_bps[link] + self.alpha * bits / duration_s

    def at(self, link: int, now_s: float) -> float:
        """The bandwidth to plan with on `link` at now_s (at least MIN_PLANNING_BPS: an outage makes sending look
        very slow, not undefined)."""
        bw = self.estimate_bps[link] if self.kind == "ewma" else self.uplinks[link].rate_bps_at(now_s)
        return max(bw, MIN_PLANNING_BPS)


class BestSplitPolicy(StatefulPolicy):
    """Predict head + waits + transfer + tail + return for each candidate split point and take the least."""

    estimator: Optional[BandwidthEstimator] = None

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        names = self.spec.candidates or [sp.name for sp in self.model.split_points]
        out = []
        for name in names:
            full_offload = self.model.split_point(name).layer_index == 0
            enc = self.spec.input_encoding if full_offload else self.spec.encoding
            local = self.model.split_point(name) is self.model.split_points[-1]  # the all-local decision
            out.append(make_route("local" if local else f"best-split@{name}/{enc}", self.model, name, enc, mobile,
                                  server))
        return out

    def start(self, uplinks: list[RateTrace]) -> None:
        self.estimator = BandwidthEstimator(self.spec.bandwidth_estimate, self.spec.ewma_alpha, uplinks)

    def observe_transfer(self, link: int, bits: float, duration_s: float) -> None:
        self.estimator.observe(link, bits, duration_s)

    def choose_one(self, view: LoadView, routes: list[Route]) -> int:
        bw = self.estimator.at(view.link, view.now_s)
        uplink_wait = view.uplink_backlog_s(bw)
        best, best_s = 0, float("inf")
        for k, r in enumerate(routes):
            t = predicted_delay_s(view, r, bw, uplink_wait)
            if t < best_s:
                best, best_s = k, t
        return best


def predicted_delay_s(view: LoadView, r: Route, bw: float, uplink_wait: float) -> float:
    """Neurosurgeon's prediction of a route's capture-to-output delay: every station's backlog plus its own service."""
    t = view.mobile_backlog_s + (r.head.expected_s if r.head else 0.0)
    if r.cloud is None:
        if r.tail is not None:
            t += uplink_wait + view.wire_bits(r.up_bytes) / bw
            t += view.propagation_s + view.server_backlog_s + r.tail.expected_s
            t += view.wire_bits(r.down_bytes) / view.downlink_bps + view.propagation_s
        return t
    t += uplink_wait + view.wire_bits(r.up_bytes) / bw + view.propagation_s
    if r.tail is not None:
        t += view.server_backlog_s + r.tail.expected_s
    t += view.wan_backlog_s + view.wire_bits(r.wan_bytes) / view.wan_bps + view.wan_propagation_s
    t += view.cloud_backlog_s + r.cloud.expected_s
    t += view.wire_bits(r.down_bytes) / view.wan_down_bps + view.wan_propagation_s
    return t + view.wire_bits(r.down_bytes) / view.downlink_bps + view.propagation_s


class BestPlacementSpec(BestSplitSpec):
    """Best placement over the three tiers: every (split points, tiers) pair, per frame (Neurosurgeon generalised)."""

    name: Literal["best-placement"]
    wan_encoding: TensorEncoding = Field(default="float32", description="how a tensor crosses the WAN")


class BestPlacementPolicy(BestSplitPolicy):
    """Local, mobile|edge at each split point, and with a cloud: mobile|edge|cloud at every ordered pair of points."""

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        names = self.spec.candidates or [sp.name for sp in self.model.split_points]
        order = sorted(names, key=lambda n: self.model.split_point(n).layer_index)
        out = []
        for i, a in enumerate(order):
            enc = self.spec.input_encoding if self.model.split_point(a).layer_index == 0 else self.spec.encoding
            local = self.model.split_point(a) is self.model.split_points[-1]  # nothing leaves the mobile device
            out.append(make_route("local" if local else f"place@{a}/{enc}", self.model, a, enc, mobile, server))
            if self.cloud is None or a == "output":
                continue
            for b in order[i:]:
                if b == "output":
                    continue
                wan = self.spec.input_encoding if self.model.split_point(b).layer_index == 0 else self.spec.wan_encoding
                out.append(place_route(f"place@{a}|{b}", self.model, a, b, enc, wan, mobile, server, self.cloud))
        return out


ENTRY_PLACEMENT = PolicyEntry("best-placement", BestPlacementSpec, BestPlacementPolicy,
                              "per frame, the least predicted delay over every split and tier (mobile, edge, cloud)",
                              "Neurosurgeon (Kang et al. 2017) generalised to three tiers, with backlogs per station")


ENTRY = PolicyEntry("best-split", BestSplitSpec, BestSplitPolicy,
                    "per frame, the split point with the least predicted capture-to-output delay",
                    "Neurosurgeon (Kang et al. 2017, ref. [10] of 002), with queue backlogs and a bandwidth estimate")
