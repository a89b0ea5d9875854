"""Bandwidth-adaptive split (Neurosurgeon, Kang et al. 2017, ref. [10] of 002): per frame, the least predicted delay."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from simulator.devices import Device
from simulator.link import RateTrace
from simulator.policies.base import LoadView, PolicyEntry, PolicySpecBase, Route, StatefulPolicy, make_route
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
        """The bandwidth to plan with on `link` at now_s."""
        return self.estimate_bps[link] if self.kind == "ewma" else self.uplinks[link].rate_bps_at(now_s)


class BestSplitPolicy(StatefulPolicy):
    """Predict head + waits + transfer + tail + return for each candidate split point and take the least."""

    estimator: Optional[BandwidthEstimator] = None

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        names = self.spec.candidates or [sp.name for sp in self.model.split_points]
        out = []
        for name in names:
            full_offload = self.model.split_point(name).layer_index == 0
            enc = self.spec.input_encoding if full_offload else self.spec.encoding
            out.append(make_route(f"best-split@{name}/{enc}", self.model, name, enc, mobile, server))
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
            t = view.mobile_backlog_s + (r.head.expected_s if r.head else 0.0)
            if r.tail is not None:
                t += uplink_wait + view.wire_bits(r.up_bytes) / bw
                t += view.propagation_s + view.server_backlog_s + r.tail.expected_s
                t += view.wire_bits(r.down_bytes) / view.downlink_bps + view.propagation_s
            if t < best_s:
                best, best_s = k, t
        return best


ENTRY = PolicyEntry("best-split", BestSplitSpec, BestSplitPolicy,
                    "per frame, the split point with the least predicted capture-to-output delay",
                    "Neurosurgeon (Kang et al. 2017, ref. [10] of 002), with queue backlogs and a bandwidth estimate")
