"""Bandwidth-adaptive split (Neurosurgeon, Kang et al. 2017, ref. [10] of 002): per frame, the least predicted delay."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from simulator.devices import Device
from simulator.link import RateTrace
from simulator.policies.base import (
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




class BandwidthEstimator:
    """Uplink bandwidth as best-split sees it, for Python policies: the same EWMA and clamp kernels (run as Python)."""

    def __init__(self, kind: str, alpha: float, uplinks: list[RateTrace]) -> None:
        from simulator.kernels.decisions import ewma_bps  # numba: imported where a run needs it
        from simulator.kernels.links import planning_bps

        self._ewma_bps, self._planning_bps = ewma_bps.py_func, planning_bps.py_func
        self.kind, self.alpha, self.uplinks = kind, alpha, uplinks
        self.estimate_bps = [tr.rate_bps_at(0.0) for tr in uplinks]

    def observe(self, link: int, bits: float, duration_s: float) -> None:
        """Fold one finished transfer into the link's estimate."""
        self.estimate_bps[link] = self._ewma_bps(self.estimate_bps[link], self.alpha, bits, duration_s)

    def at(self, link: int, now_s: float) -> float:
        """The bandwidth to plan with on `link` at now_s (the planning clamp of kernels.links)."""
        bw = self.estimate_bps[link] if self.kind == "ewma" else self.uplinks[link].rate_bps_at(now_s)
        return self._planning_bps(bw)


class BestSplitPolicy(StatefulPolicy):
    """Predict head + waits + transfer + tail + return for each candidate split point and take the least (its
    decisions and observations are best_split_kernels', declared in its registry entry)."""

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


KERNELS = "simulator.policies.best_split_kernels:KERNELS"
"""Best-split's and best-placement's kernels (numba), imported when a run first needs them (PolicyEntry.kernels)."""


ENTRY_PLACEMENT = PolicyEntry("best-placement", BestPlacementSpec, BestPlacementPolicy,
                              "per frame, the least predicted delay over every split and tier (mobile, edge, cloud)",
                              "Neurosurgeon (Kang et al. 2017) generalised to three tiers, with backlogs per station",
                              KERNELS)


ENTRY = PolicyEntry("best-split", BestSplitSpec, BestSplitPolicy,
                    "per frame, the split point with the least predicted capture-to-output delay",
                    "Neurosurgeon (Kang et al. 2017, ref. [10] of 002), with queue backlogs and a bandwidth estimate",
                    KERNELS)
