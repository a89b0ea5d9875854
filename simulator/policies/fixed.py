"""Policies with one fixed route: local processing, full offloading, a split at a named point, Mimic w/B (002)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from simulator.devices import Device
from simulator.policies.base import BasePolicy, PolicyEntry, PolicySpecBase, Route, make_route, place_route

InputEncoding = Literal["raw_uint8", "float32", "jpeg", "png"]
TensorEncoding = Literal["float32", "float16", "int8", "zlib_float32", "zlib_int8"]


class LocalSpec(PolicySpecBase):
    """Org. MD of 002 section 4: the whole model on the mobile device."""

    name: Literal["local"]
    model: Optional[str] = Field(default=None, description="default: the scenario's model")


class LocalPolicy(BasePolicy):
    """Local processing: the head is the whole model, nothing is sent."""

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        return [make_route("local", self.model, "output", "float32", mobile, server)]


class OffloadSpec(PolicySpecBase):
    """Org. ES of 002 section 4: the input crosses the link and the whole model runs on the server."""

    name: Literal["offload"]
    model: Optional[str] = Field(default=None, description="default: the scenario's model")
    encoding: InputEncoding = Field(default="raw_uint8", description="how the input image is sent")
    tier: Literal["edge", "cloud"] = Field(default="edge", description="where the model runs (cloud: through the edge)")

    def cloud_field(self) -> Optional[str]:
        """The field that needs a cloud in the scenario, if any."""
        return "tier" if self.tier == "cloud" else None


class OffloadPolicy(BasePolicy):
    """Full offloading: the head is empty and the input image crosses the link (and the WAN, to the cloud)."""

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        enc = self.spec.encoding
        if self.spec.tier == "cloud":
            return [place_route(f"offload-cloud/{enc}", self.model, "input", "input", enc, enc, mobile, server,
                                self.cloud)]
        return [make_route(f"offload/{enc}", self.model, "input", enc, mobile, server)]


class SplitSpec(PolicySpecBase):
    """Split computing at a natural split point of the original model (002 section 2)."""

    name: Literal["split"]
    model: Optional[str] = Field(default=None, description="default: the scenario's model")
    split_point: str = Field(description="a split point of the model's profile (edgesim profile prints them)")
    encoding: TensorEncoding = Field(default="float32", description="how the head's output tensor is sent")
    between: tuple[Literal["mobile", "edge"], Literal["edge", "cloud"]] = Field(
        default=("mobile", "edge"), description="the tiers running the head and the tail")
    input_encoding: InputEncoding = Field(default="raw_uint8", description="how the input reaches an edge head")

    def cloud_field(self) -> Optional[str]:
        """The field that needs a cloud in the scenario, if any."""
        return "between" if self.between[1] == "cloud" else None


class SplitPolicy(BasePolicy):
    """Straightforward splitting: the head up to split_point on one tier, its output over the link, the tail on the next."""

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        sp, enc = self.spec.split_point, self.spec.encoding
        head_on, tail_on = self.spec.between
        if tail_on == "edge":
            return [make_route(f"split@{sp}/{enc}", self.model, sp, enc, mobile, server)]
        if head_on == "mobile":  # the edge server relays the tensor to the cloud
            return [place_route(f"split@{sp}/{enc}->cloud", self.model, sp, sp, enc, enc, mobile, server, self.cloud)]
        inp = self.spec.input_encoding
        return [place_route(f"edge-split@{sp}/{enc}->cloud", self.model, "input", sp, inp, enc, mobile, server,
                            self.cloud)]


class Split2Spec(PolicySpecBase):
    """Split twice: head on the mobile device, middle on the edge server, tail in the cloud (002's split, cut twice)."""

    name: Literal["split2"]
    model: Optional[str] = Field(default=None, description="default: the scenario's model")
    split_points: tuple[str, str] = Field(description="[mobile -> edge, edge -> cloud], in the model's order")
    encoding: TensorEncoding = Field(default="float32", description="how the head's output crosses the uplink")
    wan_encoding: TensorEncoding = Field(default="float32", description="how the middle's output crosses the WAN")

    def cloud_field(self) -> Optional[str]:
        """A two-point split always needs a cloud."""
        return "split_points"


class Split2Policy(BasePolicy):
    """Head, middle and tail on the three tiers."""

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        a, b = self.spec.split_points
        return [place_route(f"split2@{a}|{b}", self.model, a, b, self.spec.encoding, self.spec.wan_encoding, mobile,
                            server, self.cloud)]


class MimicSpec(PolicySpecBase):
    """Mimic w/B of 002 section 3: the distilled head with its bottleneck on the mobile device."""

    name: Literal["mimic"]
    model: Optional[str] = Field(default=None, description="default: '<scenario model>-mimic'")
    split_point: str = Field(default="bottleneck", description="where the distilled model is split")
    encoding: TensorEncoding = Field(default="float32", description="how the bottleneck tensor is sent")
    tier: Literal["edge", "cloud"] = Field(default="edge", description="where the tail runs (cloud: relayed by the edge)")

    def cloud_field(self) -> Optional[str]:
        """The field that needs a cloud in the scenario, if any."""
        return "tier" if self.tier == "cloud" else None

    def models(self, scenario_model: str) -> list[str]:
        """The distilled model: '<scenario model>-mimic' unless the entry names one."""
        return [self.model or f"{scenario_model}-mimic"]


class MimicPolicy(BasePolicy):
    """The student head runs up to its bottleneck; the server runs the rest of the student and the original tail."""

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        sp, enc = self.spec.split_point, self.spec.encoding
        if self.spec.tier == "cloud":
            return [place_route(f"mimic@{sp}/{enc}->cloud", self.model, sp, sp, enc, enc, mobile, server, self.cloud)]
        return [make_route(f"mimic@{sp}/{enc}", self.model, sp, enc, mobile, server)]


ENTRIES = (
    PolicyEntry("local", LocalSpec, LocalPolicy, "run the whole model on the mobile device", "Org. MD, 002 section 4"),
    PolicyEntry("offload", OffloadSpec, OffloadPolicy,
                "send the input (raw, JPEG or tensor) and run the whole model on the server", "Org. ES, 002 section 4"),
    PolicyEntry("split", SplitSpec, SplitPolicy,
                "run the head up to a named split point, send its output with an encoding",
                "split computing, 002 section 2 (tau_head + tau_data + tau_tail)"),
    PolicyEntry("split2", Split2Spec, Split2Policy, "head on the mobile device, middle on the edge, tail in the cloud",
                "002 section 2's split computing with two split points (three tiers)"),
    PolicyEntry("mimic", MimicSpec, MimicPolicy,
                "distilled head with an injected bottleneck on the mobile device, original tail on the server",
                "Mimic w/B, 002 section 3 (head network distillation, bottleneck injection)"),
)
