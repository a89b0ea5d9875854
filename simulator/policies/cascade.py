"""Cascades of 000: the small model on the mobile device, the large one on the server for the frames deferred.

Each frame's deferral and prediction come from a per-sample trace of two real models (workload.dataset with
edge_pred and cloud_pred, plus the score columns); its time and energy come from the two models' profiles.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar, Literal, Optional

import numpy as np
from pydantic import Field, model_validator

from profilers.errors import EdgesimError
from simulator.deferral import SCORE_COLUMNS, defer_mask
from simulator.devices import Device, reference_model
from simulator.policies.base import BasePolicy, FrameInputs, PolicyEntry, PolicySpecBase, Route, make_route, place_route
from simulator.policies.fixed import InputEncoding, TensorEncoding

if TYPE_CHECKING:
    import pandas as pd


class CascadeSpec(PolicySpecBase):
    """The two models of a cascade, the tiers they run on, and how the input reaches them."""

    edge_model: str = Field(description="the small model (000: edge)")
    cloud_model: str = Field(description="the large model (000: cloud)")
    encoding: InputEncoding | TensorEncoding = Field(default="raw_uint8", description="how the input is sent to the large model")
    small_on: Literal["mobile", "edge"] = Field(default="mobile", description="where the small model runs")
    large_on: Literal["edge", "cloud"] = Field(default="edge", description="where the large model runs")

    @model_validator(mode="after")
    def _tiers(self):
        if self.small_on == "edge" and self.large_on == "edge":
            raise ValueError("small_on: edge needs large_on: cloud (a cascade spans two tiers)")
        return self

    def models(self, scenario_model: str) -> list[str]:  # noqa: ARG002
        """The small model, then the large one."""
        return [self.edge_model, self.cloud_model]

    def cloud_field(self) -> Optional[str]:
        """The field that needs a cloud in the scenario, if any."""
        return "large_on" if self.large_on == "cloud" else None


class EdgeOnlySpec(CascadeSpec):
    """Small model only (000 Table 1)."""

    name: Literal["edge-only"]
    deferral_method: ClassVar[Optional[str]] = "edge-only"


class CloudOnlySpec(CascadeSpec):
    """Large model only (000 Table 1): the input goes straight to the server."""

    name: Literal["cloud-only"]
    deferral_method: ClassVar[Optional[str]] = "cloud-only"


class _DeferralSpec(CascadeSpec):
    """A cascade that defers a share of frames: by a threshold on a score, or the lowest-scored fraction."""

    offload_fraction: Optional[float] = Field(default=None, ge=0, le=1, description="share of frames deferred")
    threshold: Optional[float] = Field(default=None, description="defer where the score is below this")

    @model_validator(mode="after")
    def _one_rule(self):
        if (self.offload_fraction is None) == (self.threshold is None):
            raise ValueError(f"policy '{self.name}' needs exactly one of 'offload_fraction' or 'threshold'")
        return self


class SwitcherSpec(_DeferralSpec):
    """The DMD switcher (000 section 2, A.3-A.4): defer where its agreement probability is lowest."""

    name: Literal["dmd-switcher"]
    switcher_s: float = Field(default=0.0, ge=0, description=(
        "measured time of the switcher MLP on the mobile device, added to every frame's head"))
    deferral_method: ClassVar[Optional[str]] = "switcher"


SCORES = {column: method for method, column in SCORE_COLUMNS.items()}
"""Deferral method of each score column (the inverse of deferral.SCORE_COLUMNS)."""


class UncertaintySpec(_DeferralSpec):
    """Uncertainty deferral (Narayan et al. 2022, ref. [14] of 000): the small model's least sure frames."""

    name: Literal["uncertainty"]
    score: Literal["edge_max_prob", "edge_margin", "edge_entropy"] = Field(
        default="edge_max_prob", description="the small model's confidence: max probability, margin or entropy")
    deferral_method: ClassVar[Optional[str]] = "uncertainty"


class RandomSpec(CascadeSpec):
    """Random deferral of a seeded fraction (000 A.4 baseline)."""

    name: Literal["random"]
    offload_fraction: float = Field(ge=0, le=1, description="share of frames deferred")
    deferral_method: ClassVar[Optional[str]] = "random"


class OracleSpec(CascadeSpec):
    """Oracle deferral (000 A.4 upper bound): first the frames the large model fixes."""

    name: Literal["oracle"]
    offload_fraction: float = Field(ge=0, le=1, description="share of frames deferred")
    deferral_method: ClassVar[Optional[str]] = "oracle"


def require_dataset(spec: PolicySpecBase, dataset: Optional[pd.DataFrame], columns: tuple[str, ...], why: str) -> None:
    """One line when a policy that reads per-sample columns has no dataset, or a dataset without them."""
    if dataset is None:
        raise EdgesimError(f"policy '{spec.display}' {why}: set workload.dataset")
    for col in columns:
        if col not in dataset.columns:
            raise EdgesimError(f"policy '{spec.display}': workload.dataset has no column '{col}'")


class CascadePolicy(BasePolicy):
    """Routes: small model only (0), small then large (1), large only (2); the per-sample mask picks 0 or 1."""

    def __init__(self, spec: CascadeSpec, scenario_model: str, devices: dict[str, Device],
                 dataset: Optional[pd.DataFrame]) -> None:
        require_dataset(spec, dataset, ("edge_pred", "cloud_pred"), "replays a dataset trace")
        super().__init__(spec, scenario_model, devices, dataset)  # its model: the small one (spec.models()[0])
        self.small = self.model
        self.large = reference_model(devices, spec.cloud_model)

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        spec, enc, switcher_s = self.spec, self.spec.encoding, getattr(self.spec, "switcher_s", 0.0)
        if spec.small_on == "mobile":
            small = make_route("edge", self.small, "output", "float32", mobile, server, prediction="edge_pred")
            if switcher_s and small.head is not None:  # the switcher runs after the small model (000 Fig. 1)
                small = replace(small, head=small.head.plus(switcher_s))
            if spec.large_on == "edge":
                large = make_route("cloud", self.large, "input", enc, mobile, server, prediction="cloud_pred")
            else:
                large = place_route("cloud", self.large, "input", "input", enc, enc, mobile, server, self.cloud,
                                    prediction="cloud_pred")
            return [small, replace(large, decision="edge+cloud", head=small.head), large]
        # the small model on the edge server, the large one in the cloud: the input goes to the edge first
        small = make_route("edge", self.small, "input", enc, mobile, server, prediction="edge_pred")
        if switcher_s:
            small = replace(small, tail=small.tail.plus(switcher_s))
        large = place_route("cloud", self.large, "input", "input", enc, enc, mobile, server, self.cloud,
                            prediction="cloud_pred")
        return [small, replace(large, decision="edge+cloud", tail=small.tail), large]

    def defer(self, frames: FrameInputs) -> np.ndarray:
        """True where the frame is deferred to the large model: the per-sample mask of 000 A.4, by sample."""
        spec = self.spec
        method = SCORES[spec.score] if isinstance(spec, UncertaintySpec) else spec.deferral_method
        per_sample = defer_mask(self.dataset, method, getattr(spec, "offload_fraction", None),
                                getattr(spec, "threshold", None), seed=frames.seed)
        return per_sample[frames.sample_index]

    def choose(self, frames: FrameInputs, routes: list[Route]) -> np.ndarray:
        """Route 1 (small model, then the large one) where deferred, route 0 (small model only) elsewhere."""
        return self.defer(frames).astype(np.int16)


class CloudOnlyPolicy(CascadePolicy):
    """Every frame's input goes straight to the large model; nothing runs on the mobile device."""

    def choose(self, frames: FrameInputs, routes: list[Route]) -> np.ndarray:
        """Route 2 for every frame."""
        return np.full(frames.sample_index.shape, 2, dtype=np.int16)


class EarlyExitSpec(PolicySpecBase):
    """Early exit: answer after the head when the sample's confidence clears a threshold, else send the tensor on."""

    name: Literal["early-exit"]
    model: Optional[str] = Field(default=None, description="default: the scenario's model")
    exit_point: str = Field(description="the split point where the exit branch answers")
    threshold: float = Field(description="answer at the exit where the confidence column is at least this")
    confidence_column: str = Field(default="edge_max_prob", description="per-sample confidence of the exit branch")
    exit_on: Literal["mobile", "edge"] = Field(default="edge", description="where the head and its exit run")
    rest_on: Literal["edge", "cloud"] = Field(default="cloud", description="where the rest of the model runs")
    encoding: TensorEncoding = Field(default="float32", description="how the exit point's tensor is sent on")
    input_encoding: InputEncoding = Field(default="raw_uint8", description="how the input reaches an edge head")

    @model_validator(mode="after")
    def _tiers(self):
        if self.exit_on == "edge" and self.rest_on == "edge":
            raise ValueError("exit_on: edge needs rest_on: cloud")
        return self

    def cloud_field(self) -> Optional[str]:
        """The field that needs a cloud in the scenario, if any."""
        return "rest_on" if self.rest_on == "cloud" else None


class EarlyExitPolicy(BasePolicy):
    """Route 0: answer at the exit (prediction edge_pred); route 1: the rest of the model (prediction cloud_pred)."""

    def __init__(self, spec: EarlyExitSpec, scenario_model: str, devices: dict[str, Device],
                 dataset: Optional[pd.DataFrame]) -> None:
        require_dataset(spec, dataset, ("edge_pred", "cloud_pred", spec.confidence_column),
                        "reads per-sample confidence")
        super().__init__(spec, scenario_model, devices, dataset)

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        s, x = self.spec, self.spec.exit_point
        if s.exit_on == "mobile":
            head = self.model.split_point(x)
            exit_ = Route("exit", self.model.model_id, x, "", mobile.head_time(self.model, head), 0, None, 0, "edge_pred")
            if s.rest_on == "edge":
                rest = make_route("forward", self.model, x, s.encoding, mobile, server, prediction="cloud_pred")
            else:
                rest = place_route("forward", self.model, x, x, s.encoding, s.encoding, mobile, server, self.cloud,
                                   prediction="cloud_pred")
            return [exit_, rest]
        rest = place_route("forward", self.model, "input", x, s.input_encoding, s.encoding, mobile, server, self.cloud,
                           prediction="cloud_pred")
        exit_ = Route("exit", self.model.model_id, x, s.input_encoding, None, rest.up_bytes, rest.tail,
                      self.model.result_bytes, "edge_pred")
        return [exit_, rest]

    def choose(self, frames: FrameInputs, routes: list[Route]) -> np.ndarray:
        """Route 0 where the sample's confidence clears the threshold, else route 1."""
        conf = self.dataset[self.spec.confidence_column].to_numpy(dtype=float)[frames.sample_index]
        return (conf < self.spec.threshold).astype(np.int16)


ENTRIES = (
    PolicyEntry("edge-only", EdgeOnlySpec, CascadePolicy, "the small model on the mobile device for every frame",
                "Small model only, 000 Table 1"),
    PolicyEntry("cloud-only", CloudOnlySpec, CloudOnlyPolicy, "send every frame to the large model in the cloud",
                "Large model only, 000 Table 1"),
    PolicyEntry("dmd-switcher", SwitcherSpec, CascadePolicy, "defer where the switcher's agreement probability is lowest",
                "Dual-Model Distillation switcher, 000 section 2 and A.3-A.4"),
    PolicyEntry("uncertainty", UncertaintySpec, CascadePolicy,
                "defer the frames the small model is least sure of (max probability, margin or entropy)",
                "uncertainty deferral, Narayan et al. 2022 (ref. [14] of 000)"),
    PolicyEntry("random", RandomSpec, CascadePolicy, "defer a random fraction of frames (seeded)",
                "random deferral baseline, 000 A.4"),
    PolicyEntry("oracle", OracleSpec, CascadePolicy, "defer first where the small model is wrong and the large one right",
                "oracle deferral (upper bound), 000 A.4"),
    PolicyEntry("early-exit", EarlyExitSpec, EarlyExitPolicy,
                "answer after the head where the per-sample confidence clears a threshold, else send the tensor on",
                "early exit (BranchyNet, Teerapittayanon et al. 2016) over the tiers of a hybrid edge-cloud system"),
)
