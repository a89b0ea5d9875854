"""Policies: how each frame is processed (where the model is split and how the tensor is sent).

A policy offers routes (head on the mobile device, bytes on the uplink, tail on the server) and picks
one per frame. Stateless policies pick for all frames at once from the frames' own fields, so the
fast engine can replay them exactly; stateful ones (best-split) pick at capture time from the load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Optional, Protocol

import numpy as np
import pandas as pd

from profilers.errors import EdgesimError, unknown_name
from profilers.schema import ModelProfile
from simulator.deferral import defer_mask
from simulator.devices import Device, ServiceTime, reference_model
from simulator.scenario import PolicySpec


@dataclass(frozen=True)
class Route:
    """One way to process a frame: head here, payload over the uplink, tail there, result back."""

    decision: str
    model: str
    split_point: str
    encoding: str
    head: Optional[ServiceTime]  # None: nothing runs on the mobile device
    up_bytes: int  # payload on the uplink (0: nothing is sent)
    tail: Optional[ServiceTime]  # None: nothing runs on the server
    down_bytes: int  # result returned on the downlink
    prediction: Optional[str] = None  # dataset column with this route's prediction

    @property
    def offloads(self) -> bool:
        """True when the frame uses the server."""
        return self.tail is not None


@dataclass(frozen=True)
class FrameInputs:
    """Per-frame fields a stateless policy may read: which mobile device, which dataset sample."""

    mobile_index: np.ndarray
    sample_index: np.ndarray
    dataset: Optional[pd.DataFrame]
    seed: int


@dataclass(frozen=True)
class LoadView:
    """What a stateful policy sees at capture time (Neurosurgeon-style predictions)."""

    now_s: float
    mobile_backlog_s: float
    uplink_backlog_s: float
    server_backlog_s: float
    bandwidth_bps: float
    propagation_s: float
    downlink_bps: float
    packet_payload_bytes: int = 1460
    packet_overhead_bytes: int = 0

    def wire_bits(self, size_bytes: int) -> float:
        """Bits on the wire for a payload: per-packet overhead included (resends not predicted)."""
        packets = -(-size_bytes // self.packet_payload_bytes)
        return 8.0 * (size_bytes + packets * self.packet_overhead_bytes)


class Policy(Protocol):
    name: ClassVar[str]
    stateful: ClassVar[bool]

    def routes(self, mobile: Device, server: Device) -> list[Route]: ...

    def choose(self, frames: FrameInputs, routes: list[Route]) -> np.ndarray: ...

    def choose_one(self, view: LoadView, routes: list[Route]) -> int: ...


@dataclass(frozen=True)
class PolicyEntry:
    """A registered policy with the paper section it comes from."""

    name: str
    cls: type
    summary: str
    source: str


_POLICIES: dict[str, PolicyEntry] = {}


def register(name: str, summary: str, source: str) -> Callable[[type], type]:
    """Class decorator adding a policy to the registry."""

    def deco(cls: type) -> type:
        cls.name = name
        _POLICIES[name] = PolicyEntry(name, cls, summary, source)
        return cls

    return deco


def policy_entries() -> dict[str, PolicyEntry]:
    """All registered policies by name."""
    return dict(_POLICIES)


def make_policy(spec: PolicySpec, scenario_model: str, devices: dict[str, Device],
                dataset: Optional[pd.DataFrame]) -> "BasePolicy":
    """Instantiate a policy from its scenario entry; unknown names list the known ones."""
    if spec.name not in _POLICIES:
        raise unknown_name("policy", spec.name, list(_POLICIES))
    return _POLICIES[spec.name].cls(spec, scenario_model, devices, dataset)


def make_route(decision: str, model: ModelProfile, split: str, encoding: str, mobile: Device, server: Device,
               prediction: Optional[str] = None) -> Route:
    """A route splitting `model` at `split`, sending the head's output in `encoding`."""
    sp = model.split_point(split)
    head = mobile.head_time(model, sp)
    tail = server.tail_time(model, sp)
    up_bytes = 0
    if tail is not None:
        table = model.input_bytes if sp.layer_index == 0 else sp.output_bytes
        if encoding not in table:
            raise EdgesimError(
                f"model '{model.model_id}' split point '{split}' has no encoding '{encoding}'; known: {', '.join(table)}"
            )
        up_bytes = int(table[encoding])
    return Route(decision, model.model_id, split, encoding, head, up_bytes, tail,
                 model.result_bytes if tail is not None else 0, prediction)


class BasePolicy:
    """Shared construction: the scenario's model and devices; one fixed route unless overridden."""

    name: ClassVar[str] = ""
    stateful: ClassVar[bool] = False

    def __init__(self, spec: PolicySpec, scenario_model: str, devices: dict[str, Device],
                 dataset: Optional[pd.DataFrame]) -> None:
        self.spec = spec
        self.model_id = spec.model or self.default_model(scenario_model)
        self.model = reference_model(devices, self.model_id)
        self.dataset = dataset

    def default_model(self, scenario_model: str) -> str:
        """The model this policy uses when the scenario entry names none."""
        return scenario_model

    def choose(self, frames: FrameInputs, routes: list[Route]) -> np.ndarray:
        """Route index per frame: the single route."""
        return np.zeros(frames.mobile_index.shape, dtype=np.int16)

    def choose_one(self, view: LoadView, routes: list[Route]) -> int:
        """Route for one frame at capture time (stateful policies only)."""
        return 0


@register("local", "run the whole model on the mobile device", "Org. MD, 002 section 4")
class LocalPolicy(BasePolicy):
    """Local processing: the head is the whole model, nothing is sent."""

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        return [make_route("local", self.model, "output", "float32", mobile, server)]


@register("offload", "send the input (raw, JPEG or tensor) and run the whole model on the server",
          "Org. ES, 002 section 4")
class OffloadPolicy(BasePolicy):
    """Full offloading: the head is empty and the input image crosses the link."""

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        enc = self.spec.encoding or self.spec.input_encoding
        return [make_route(f"offload/{enc}", self.model, "input", enc, mobile, server)]


@register("split", "run the head up to a named split point, send its output with an encoding",
          "split computing, 002 section 2 (tau_head + tau_data + tau_tail)")
class SplitPolicy(BasePolicy):
    """Straightforward splitting at a natural split point of the original model."""

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        if not self.spec.split_point:
            raise EdgesimError(f"policy '{self.spec.display}': 'split' needs 'split_point'")
        enc = self.spec.encoding or "float32"
        return [make_route(f"split@{self.spec.split_point}/{enc}", self.model, self.spec.split_point, enc, mobile, server)]


@register("mimic", "distilled head with an injected bottleneck on the mobile device, original tail on the server",
          "Mimic w/B, 002 section 3 (head network distillation, bottleneck injection)")
class MimicPolicy(BasePolicy):
    """The student head runs up to its bottleneck; the server runs the rest of the student and the original tail."""

    def default_model(self, scenario_model: str) -> str:
        return f"{scenario_model}-mimic"

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        split = self.spec.split_point or "bottleneck"
        enc = self.spec.encoding or "float32"
        return [make_route(f"mimic@{split}/{enc}", self.model, split, enc, mobile, server)]


@register("best-split", "per frame, the split point with the least predicted capture-to-output delay",
          "Neurosurgeon (Kang et al. 2017, ref. [10] of 002), with queue backlogs and a bandwidth estimate")
class BestSplitPolicy(BasePolicy):
    """Bandwidth-adaptive split: predict head + wait + transfer + tail for each candidate and take the least."""

    stateful = True

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        names = self.spec.candidates or [sp.name for sp in self.model.split_points]
        out = []
        for name in names:
            full_offload = self.model.split_point(name).layer_index == 0
            enc = self.spec.input_encoding if full_offload else (self.spec.encoding or "float32")
            out.append(make_route(f"best-split@{name}/{enc}", self.model, name, enc, mobile, server))
        return out

    def choose_one(self, view: LoadView, routes: list[Route]) -> int:
        best, best_s = 0, float("inf")
        for k, r in enumerate(routes):
            t = view.mobile_backlog_s + (r.head.expected_s if r.head else 0.0)
            if r.tail is not None:
                t += view.uplink_backlog_s + view.wire_bits(r.up_bytes) / view.bandwidth_bps
                t += view.propagation_s + view.server_backlog_s + r.tail.expected_s
                t += view.wire_bits(r.down_bytes) / view.downlink_bps + view.propagation_s
            if t < best_s:
                best, best_s = k, t
        return best


# ----------------------------------------------------------------------------- DMD (000): edge model, cloud model, deferral


class _DatasetPolicy(BasePolicy):
    """Policies that replay a per-sample trace of two real models (000 section 2): edge model, cloud model."""

    def __init__(self, spec: PolicySpec, scenario_model: str, devices: dict[str, Device],
                 dataset: Optional[pd.DataFrame]) -> None:
        self.spec = spec
        if dataset is None:
            raise EdgesimError(f"policy '{spec.display}' replays a dataset trace: set workload.dataset")
        for col in ("edge_pred", "cloud_pred"):
            if col not in dataset.columns:
                raise EdgesimError(f"policy '{spec.display}': workload.dataset has no column '{col}'")
        if not spec.edge_model or not spec.cloud_model:
            raise EdgesimError(f"policy '{spec.display}' needs 'edge_model' and 'cloud_model'")
        self.dataset = dataset
        self.edge = reference_model(devices, spec.edge_model)
        self.cloud = reference_model(devices, spec.cloud_model)
        self.model_id = spec.edge_model

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        edge = make_route("edge", self.edge, "output", "float32", mobile, server, prediction="edge_pred")
        if self.spec.switcher_s and edge.head is not None:  # the switcher runs after the small model (000 Fig. 1)
            if self.spec.name != "dmd-switcher":
                raise EdgesimError(f"policy '{self.spec.display}': switcher_s applies to dmd-switcher only")
            edge = Route(edge.decision, edge.model, edge.split_point, edge.encoding, edge.head.plus(self.spec.switcher_s),
                         edge.up_bytes, edge.tail, edge.down_bytes, edge.prediction)
        cloud = make_route("cloud", self.cloud, "input", self.spec.encoding or self.spec.input_encoding, mobile, server,
                           prediction="cloud_pred")
        both = Route("edge+cloud", self.cloud.model_id, "input", cloud.encoding, edge.head, cloud.up_bytes,
                     cloud.tail, cloud.down_bytes, "cloud_pred")
        return [edge, both, cloud]

    #: deferral method of edgesim.studies.dmd.deferral (000 A.4) this policy applies
    method: ClassVar[str] = ""

    def defer(self, frames: FrameInputs) -> np.ndarray:
        """True where the frame is deferred to the cloud model: the per-sample mask of 000 A.4, by sample."""

        method = self.method
        if method == "uncertainty" and self.spec.score:
            known = {"edge_max_prob": "uncertainty", "edge_margin": "margin", "edge_entropy": "entropy"}
            if self.spec.score not in known:
                raise EdgesimError(f"policy '{self.spec.display}': score '{self.spec.score}' unknown; known: {', '.join(known)}")
            method = known[self.spec.score]
        fraction, threshold = self.spec.offload_fraction, self.spec.threshold
        if method not in ("edge-only", "cloud-only") and fraction is None and threshold is None:
            raise EdgesimError(f"policy '{self.spec.display}' needs 'offload_fraction' or 'threshold'")
        if method in ("random", "oracle") and threshold is not None:
            raise EdgesimError(f"policy '{self.spec.display}': '{method}' takes offload_fraction, not threshold")
        per_sample = defer_mask(self.dataset, method, fraction, threshold, seed=frames.seed)
        return per_sample[frames.sample_index]

    def choose(self, frames: FrameInputs, routes: list[Route]) -> np.ndarray:
        """Route 1 (edge model, then the cloud model) where deferred, route 0 (edge model only) elsewhere."""
        return self.defer(frames).astype(np.int16)


@register("edge-only", "the small model on the mobile device for every frame", "Small model only, 000 Table 1")
class EdgeOnlyPolicy(_DatasetPolicy):
    method = "edge-only"


@register("cloud-only", "send every frame to the large model in the cloud", "Large model only, 000 Table 1")
class CloudOnlyPolicy(_DatasetPolicy):
    def choose(self, frames: FrameInputs, routes: list[Route]) -> np.ndarray:
        """Route 2: the input goes straight to the cloud model, nothing runs on the mobile device."""
        return np.full(frames.sample_index.shape, 2, dtype=np.int16)


@register("dmd-switcher", "defer where the switcher's agreement probability is lowest",
          "Dual-Model Distillation switcher, 000 section 2 and A.3-A.4")
class SwitcherPolicy(_DatasetPolicy):
    method = "switcher"


@register("uncertainty", "defer the frames the small model is least sure of (max probability, margin or entropy)",
          "uncertainty deferral, Narayan et al. 2022 (ref. [14] of 000)")
class UncertaintyPolicy(_DatasetPolicy):
    method = "uncertainty"


@register("random", "defer a random fraction of frames (seeded)", "random deferral baseline, 000 A.4")
class RandomPolicy(_DatasetPolicy):
    method = "random"


@register("oracle", "defer first where the small model is wrong and the large one right",
          "oracle deferral (upper bound), 000 A.4")
class OraclePolicy(_DatasetPolicy):
    method = "oracle"
