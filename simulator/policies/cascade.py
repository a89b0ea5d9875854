"""Cascades of 000: the small model on the mobile device, the large one on the server for the frames deferred.

Each frame's deferral and prediction come from a per-sample trace of two real models (workload.dataset with
edge_pred and cloud_pred, plus the score columns); its time and energy come from the two models' profiles.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Optional

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from profilers.errors import EdgesimError
from simulator.deferral import defer_mask
from simulator.devices import Device, reference_model
from simulator.policies.base import BasePolicy, FrameInputs, PolicyEntry, PolicySpecBase, Route, make_route
from simulator.policies.fixed import InputEncoding, TensorEncoding


class CascadeSpec(PolicySpecBase):
    """The two models of a cascade and how the input reaches the large one."""

    edge_model: str = Field(description="the small model (000: edge), on the mobile device")
    cloud_model: str = Field(description="the large model (000: cloud), on the server")
    encoding: InputEncoding | TensorEncoding = Field(default="raw_uint8", description="how the input is sent to the large model")

    def models(self, scenario_model: str) -> list[str]:  # noqa: ARG002
        """The small model, then the large one."""
        return [self.edge_model, self.cloud_model]


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


SCORES = {"edge_max_prob": "uncertainty", "edge_margin": "margin", "edge_entropy": "entropy"}


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


class CascadePolicy(BasePolicy):
    """Routes: small model only (0), small then large (1), large only (2); the per-sample mask picks 0 or 1."""

    def __init__(self, spec: CascadeSpec, scenario_model: str, devices: dict[str, Device],
                 dataset: Optional[pd.DataFrame]) -> None:
        self.spec = spec
        if dataset is None:
            raise EdgesimError(f"policy '{spec.display}' replays a dataset trace: set workload.dataset")
        for col in ("edge_pred", "cloud_pred"):
            if col not in dataset.columns:
                raise EdgesimError(f"policy '{spec.display}': workload.dataset has no column '{col}'")
        self.dataset = dataset
        self.edge = reference_model(devices, spec.edge_model)
        self.cloud = reference_model(devices, spec.cloud_model)
        self.model_id = spec.edge_model

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        edge = make_route("edge", self.edge, "output", "float32", mobile, server, prediction="edge_pred")
        switcher_s = getattr(self.spec, "switcher_s", 0.0)
        if switcher_s and edge.head is not None:  # the switcher runs after the small model (000 Fig. 1)
            edge = Route(edge.decision, edge.model, edge.split_point, edge.encoding, edge.head.plus(switcher_s),
                         edge.up_bytes, edge.tail, edge.down_bytes, edge.prediction)
        cloud = make_route("cloud", self.cloud, "input", self.spec.encoding, mobile, server, prediction="cloud_pred")
        both = Route("edge+cloud", self.cloud.model_id, "input", cloud.encoding, edge.head, cloud.up_bytes,
                     cloud.tail, cloud.down_bytes, "cloud_pred")
        return [edge, both, cloud]

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
)
