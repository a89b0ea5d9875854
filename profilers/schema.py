"""The device-profile format: pydantic models, JSON on disk, a JSON Schema for editors.

A device profile is what the profilers measure (or derive) and what the simulator replays:
per model and per split point, head and tail latency, transferred bytes per encoding,
cumulative FLOPs and parameters of the head, and energy where it was measured.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from profilers.errors import ProfileError, field_message
from profilers.io import atomic_write_text, read_json

SCHEMA_VERSION = 1

DeviceKind = Literal["mobile", "edge", "cloud"]
#: How a tensor crossing a split point can be sent (002 section 2 compares raw and zip-compressed sizes).
TensorEncoding = Literal["float32", "float16", "int8", "zlib_float32", "zlib_int8"]
#: How the input image can be sent when the whole model runs on the server (Org. ES of 002).
InputEncoding = Literal["raw_uint8", "float32", "jpeg", "png"]
EnergyMethod = Literal["nvml-total-energy", "rapl-powercap", "power-model-estimate"]
#: Operator types of the per-operator derivation (profilers.opcount, profilers.calibrate): dense convolution,
#: dense 3x3 stride-1 convolution, 1x1 convolution or matrix product, depthwise/grouped convolution, memory-bound.
OperatorKind = Literal["conv_dense", "conv_3x3s1", "conv_1x1", "conv_dw", "memory"]
OPERATOR_KINDS: tuple[OperatorKind, ...] = ("conv_dense", "conv_3x3s1", "conv_1x1", "conv_dw", "memory")


#: the longest latency a profile may hold, in seconds (one inference in an hour: beyond any device measured)
MAX_LATENCY_S = 3600.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)  # every number finite


def _sorted_percentiles(ordered: list[float], percents: tuple[float, ...]) -> list[float]:
    """numpy's default (linear-interpolation) percentiles of already sorted values, in plain Python: a profile holds
    about a thousand sample lists, all checked when it is read, and np.percentile costs 0.1-0.5 ms a call."""
    last = len(ordered) - 1
    out = []
    for percent in percents:
        pos = percent / 100.0 * last
        lower = int(pos)
        upper = min(lower + 1, last)
        out.append(ordered[lower] + (ordered[upper] - ordered[lower]) * (pos - lower))
    return out


class LatencyStats(_Strict):
    """Latency samples in seconds with their median and 5th/95th percentiles."""

    samples_s: list[Annotated[float, Field(ge=0, le=MAX_LATENCY_S)]] = Field(min_length=1, description="every kept sample, seconds")
    median_s: float = Field(ge=0)
    p5_s: float = Field(ge=0)
    p95_s: float = Field(ge=0)

    @model_validator(mode="after")
    def _agrees_with_samples(self) -> "LatencyStats":
        """The statistics are those of the samples (a hand-edited profile cannot contradict itself)."""
        wants = _sorted_percentiles(sorted(self.samples_s), (50.0, 5.0, 95.0))
        for name, value, want in zip(("median_s", "p5_s", "p95_s"), (self.median_s, self.p5_s, self.p95_s), wants):
            if abs(value - want) > 1e-9 + 1e-6 * abs(want):
                raise ValueError(f"{name} = {value:g} s contradicts samples_s (whose {name[:-2]} is {want:g} s); "
                                 "statistics are derived from the samples: fix one or the other")
        return self

    @classmethod
    def from_samples(cls, samples_s: list[float]) -> "LatencyStats":
        """Summarise samples with numpy's linear-interpolation percentiles."""
        import numpy as np

        arr = np.asarray(samples_s, dtype=float)
        if arr.size == 0:
            raise ValueError("no latency samples to summarise")
        return cls(
            samples_s=[float(x) for x in arr],
            median_s=float(np.median(arr)),
            p5_s=float(np.percentile(arr, 5)),
            p95_s=float(np.percentile(arr, 95)),
        )

    @classmethod
    def constant(cls, value_s: float) -> "LatencyStats":
        """A single-valued latency (derived profiles, zero-length heads)."""
        return cls(samples_s=[value_s], median_s=value_s, p5_s=value_s, p95_s=value_s)

    def scaled(self, factor: float) -> "LatencyStats":
        """Every sample multiplied by factor (a device slower or faster by that ratio)."""
        return LatencyStats.from_samples([s * factor for s in self.samples_s])


class HostState(_Strict):
    """What else the host was doing over a window: load, other processes' CPU, steal, frequency scaling, pinning."""

    window_s: float = Field(ge=0, description="length of the observation window, seconds")
    logical_cpus: int = Field(ge=1)
    affinity: list[int] = Field(default_factory=list, description="CPUs this process was allowed to run on")
    load_avg_1min: Optional[float] = Field(default=None, ge=0)
    other_cpu_cores: Optional[float] = Field(default=None, ge=0, description=(
        "CPU-seconds per second used by other processes (system busy time minus this process's, psutil)"))
    steal_percent: Optional[float] = Field(default=None, ge=0, description="steal time share of all CPU time "
                                           "(virtual machines; None where the kernel does not report it)")
    governor: Optional[str] = Field(default=None, description="cpufreq scaling governor of the first pinned CPU")
    freq_mhz: Optional[float] = Field(default=None, ge=0)
    freq_max_mhz: Optional[float] = Field(default=None, ge=0)


class PartDispersion(_Strict):
    """How tightly one timed part (whole model, a head, a tail) was measured."""

    n: int = Field(ge=1)
    median_s: float = Field(ge=0)
    ci95_half_pct: Optional[float] = Field(default=None, ge=0, description=(
        "half-width of the distribution-free 95 % interval of the median (order statistics), % of the median"))
    mad_pct: float = Field(ge=0, description="median absolute deviation, % of the median")
    drift_pct: Optional[float] = Field(default=None, description=(
        "median of the second half of the rounds over the first half's, minus 1, %"))
    per_reference: Optional[float] = Field(default=None, ge=0, description=(
        "median over the rounds of this part's time over the host reference's time in the same round: the part with "
        "the host's speed taken out, comparable between profiles of one host taken at different times"))
    per_reference_ci95_half_pct: Optional[float] = Field(default=None, ge=0, description=(
        "half-width of per_reference's distribution-free 95 % interval, % of it"))


def timed_part(kind: str, split_point: str, layer_index: int, n_blocks: int) -> Optional[str]:
    """The key under which a split point's head or tail is timed (MeasurementCheck.parts): None for an empty part
    (a head of no block, a tail of none), 'whole' for a head or tail of every block, else 'head@NAME' / 'tail@NAME'."""
    empty, every = (0, n_blocks) if kind == "head" else (n_blocks, 0)
    if layer_index == empty:
        return None
    return "whole" if layer_index == every else f"{kind}@{split_point}"


class MeasurementCheck(_Strict):
    """How a measured model was timed and how far to trust it: rounds, precision reached, host state, checks."""

    method: str
    rounds: int = Field(ge=0)
    wall_s: float = Field(ge=0)
    target_ci95_pct: Optional[float] = Field(default=None, gt=0)
    time_budget_s: Optional[float] = Field(default=None, gt=0)
    converged: bool = Field(description="every part's 95 % interval within the target (always true without one)")
    parts: dict[str, PartDispersion] = Field(default_factory=dict)
    head_plus_tail_over_whole: dict[str, float] = Field(default_factory=dict, description=(
        "per split point: (head median + tail median) / whole-model median, each timed on its own"))
    host_reference: Optional[PartDispersion] = Field(default=None, description=(
        "a fixed workload (3x3 convolution, 64 channels, 56 x 56) timed in the same rounds: the host's own speed; "
        "its drift, or its median against another profile's, shows a host that moved"))
    host_reference_samples_s: list[Annotated[float, Field(ge=0)]] = Field(default_factory=list, description=(
        "the host reference's time in every round, in round order (the parts' samples_s are in the same order)"))
    host_before: Optional[HostState] = None
    host_during: Optional[HostState] = None
    busy: bool = False
    warnings: list[str] = Field(default_factory=list)


class SplitPoint(_Strict):
    """One place the model can be cut: the head runs on the mobile device, the tail on the server."""

    name: str
    layer_index: int = Field(ge=0, description="number of top-level blocks in the head (0 = full offload)")
    output_shape: list[int]
    output_numel: int = Field(ge=0)
    output_bytes: dict[TensorEncoding, int] = Field(
        description="bytes of the head's output per encoding; zlib sizes measured on real activations"
    )
    head_flops: int = Field(ge=0, description="cumulative FLOPs of the head (torch.utils.flop_counter)")
    head_params: int = Field(ge=0, description="cumulative parameters of the head")
    head_latency: Optional[LatencyStats] = None
    tail_latency: Optional[LatencyStats] = None
    head_energy_j: Optional[float] = Field(default=None, ge=0)
    tail_energy_j: Optional[float] = Field(default=None, ge=0)
    encode_s: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict, description=(
        "median seconds to encode this point's tensor (the input image at 'input') per encoding on this device "
        "(profilers/codec.py); empty: not measured"))
    decode_s: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict, description=(
        "median seconds to decode it back into the tensor the tail takes, per encoding on this device"))

    @model_validator(mode="after")
    def _numel_matches_shape(self) -> "SplitPoint":
        if math.prod(self.output_shape) != self.output_numel:
            raise ValueError(f"output_numel {self.output_numel} != product of output_shape {self.output_shape}")
        return self


class OperatorRecord(_Strict):
    """One operator of a block as a deployed framework runs it (profilers.opcount, conv-bn-activation fused)."""

    name: str = Field(description="the aten operator (and the module) it was recorded as")
    kind: OperatorKind
    flops: int = Field(ge=0, description="2 x multiply-accumulates (torch.utils.flop_counter); 0 when memory-bound")
    in_bytes: int = Field(ge=0, description="float32 bytes of the activations it reads")
    out_bytes: int = Field(ge=0, description="float32 bytes it writes")
    weight_bytes: int = Field(ge=0, description="float32 bytes of the weights and constants it reads")


class BlockRecord(_Strict):
    """One top-level block as measured: FLOPs, parameters, float32 activation bytes and latency (for derivation)."""

    name: str
    flops: int = Field(ge=0)
    params: int = Field(ge=0)
    input_bytes: int = Field(ge=0, description="float32 bytes of the block's input activation")
    output_bytes: int = Field(ge=0, description="float32 bytes of the block's output activation")
    latency: Optional[LatencyStats] = None
    operators: Optional[list[OperatorRecord]] = Field(default=None, description=(
        "measured profiles: the block's operators as recorded while it ran (profilers.opcount.OperatorStream), for "
        "the per-operator derivation of models that cannot be rebuilt by name; null: not recorded"))


class ModelProfile(_Strict):
    """A model measured on one device: its input, its ordered split points and how it was measured."""

    model_id: str
    description: str = ""
    checkpoint: str = Field(default="random-init", description="local path or hub id of the weights, or random-init")
    input_shape: list[int] = Field(description="C, H, W of one input (batch 1)")
    input_numel: int = Field(ge=1)
    input_bytes: dict[InputEncoding, int]
    jpeg_quality: int = Field(default=90, ge=1, le=100)
    jpeg_source: str = Field(default="", description="the real image the JPEG size was measured on")
    result_bytes: int = Field(default=4000, ge=0, description="bytes of the result returned on the downlink")
    total_flops: int = Field(ge=0)
    total_params: int = Field(ge=0)
    measurement: Literal["measured", "shapes-only", "derived"] = Field(
        default="measured", description="shapes-only: too large for this machine, profiled on meta tensors"
    )
    torch_device: str = "cpu"
    threads: Optional[int] = None
    repeats: int = 0
    warmup: int = 0
    peak_memory_bytes: Optional[int] = None
    memory_method: str = ""
    cpu_utilisation_percent: Optional[float] = None
    energy_method: Optional[EnergyMethod] = None
    accuracy: Optional[float] = Field(default=None, ge=0, le=1)
    accuracy_source: str = ""
    split_points: list[SplitPoint]
    batch_latency_s: dict[int, Annotated[float, Field(ge=0, le=MAX_LATENCY_S)]] = Field(default_factory=dict, description=(
        "median latency of the whole model per batch size (edgesim profile --batch-sizes), measured like the rest"))
    blocks: list[BlockRecord] = Field(
        default_factory=list, description="per-block records in order; used by the roofline derivation (derive.py)"
    )
    measurement_check: Optional[MeasurementCheck] = Field(default=None, description=(
        "how the latencies were measured and how far to trust them (edgesim profile)"))
    per_process_overhead_s: Optional[float] = Field(default=None, ge=0, description=(
        "derived profiles: the per-inference constant c0 the method adds to every part a process runs (a "
        "non-empty head and a non-empty tail each pay it once)"))
    derivation_errors: list[float] = Field(default_factory=list, description=(
        "derived profiles: leave-one-out relative errors of the method this model's block times were derived "
        "with (the per-operator fit, or the dense-operator fallback when the model could not be traced)"))
    derivation_method: str = Field(default="", description="derived profiles: per operator, or the fallback")

    @model_validator(mode="after")
    def _consistent(self) -> "ModelProfile":
        if math.prod(self.input_shape) != self.input_numel:
            raise ValueError(f"input_numel {self.input_numel} != product of input_shape {self.input_shape}")
        names = [sp.name for sp in self.split_points]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate split point names in {names}")
        indices = [sp.layer_index for sp in self.split_points]
        if indices != sorted(indices):
            raise ValueError("split points must be ordered by layer_index")
        return self

    def split_point(self, name: str) -> SplitPoint:
        """The split point called name; ProfileError listing the known ones otherwise."""
        for sp in self.split_points:
            if sp.name == name:
                return sp
        known = ", ".join(sp.name for sp in self.split_points)
        raise ProfileError(f"model '{self.model_id}' has no split point '{name}'; known: {known}")


class RadioPower(_Strict):
    """Wireless interface power, linear in throughput as in Huang et al. (MobiSys 2012): P = base + slope * rate."""

    tx_w: float = Field(ge=0, description="base power while sending")
    tx_w_per_mbps: float = Field(default=0.0, ge=0, description="added power per Mbit/s of uplink throughput")
    rx_w: float = Field(ge=0, description="base power while receiving")
    rx_w_per_mbps: float = Field(default=0.0, ge=0, description="added power per Mbit/s of downlink throughput")
    idle_w: float = Field(ge=0)
    source: str


class PowerModel(_Strict):
    """Linear power model, LEAF-style: P = idle + (active - idle) * utilisation."""

    idle_w: float = Field(ge=0)
    active_w: float = Field(ge=0)
    source: str
    radio: Optional[RadioPower] = None

    @model_validator(mode="after")
    def _active_above_idle(self) -> "PowerModel":
        if self.active_w < self.idle_w:
            raise ValueError(f"active_w {self.active_w} is below idle_w {self.idle_w}")
        return self


class HardwareFacts(_Strict):
    """What the device is: processor, cores, memory, accelerator and its roofline figures."""

    cpu_model: str
    cores: int = Field(ge=1)
    memory_gb: float = Field(gt=0)
    accelerator: Optional[str] = None
    compute: Literal["cpu", "cuda"] = "cpu"
    peak_gflops: Optional[float] = Field(default=None, gt=0, description="peak FP32 GFLOP/s of the compute used")
    memory_bandwidth_gbs: Optional[float] = Field(default=None, gt=0)
    sources: dict[str, str] = Field(default_factory=dict, description="source of each number above")


class MeasuredProvenance(_Strict):
    """A profile measured on a real host."""

    kind: Literal["measured"] = "measured"
    host_fingerprint: str
    date: datetime
    torch_version: str
    python_version: str
    platform: str
    threads: int
    driver_version: Optional[str] = None
    cuda_version: Optional[str] = None


class DerivedProvenance(_Strict):
    """A profile derived from a measured one by a stated method, every number with its source."""

    kind: Literal["derived"] = "derived"
    from_profile: str
    method: str
    date: datetime
    sources: dict[str, str]
    calibration: dict[str, float] = Field(default_factory=dict)
    validation: dict[str, str] = Field(default_factory=dict, description="checks of the method against measurements")
    stack: str = Field(default="", description="the device and software stack the derivation models (board | "
                       "framework precision compute threads batch), as in profilers/data/calibration.csv")
    validated_errors: list[float] = Field(
        default_factory=list, description="leave-one-out relative errors (predicted / published - 1) of the method "
        "on this stack's published latencies (profilers.calibrate); empty when too few points to validate")


Provenance = Annotated[Union[MeasuredProvenance, DerivedProvenance], Field(discriminator="kind")]


class DeviceProfile(_Strict):
    """A device (mobile device, edge server or cloud) with its hardware, power model and model profiles."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    kind: DeviceKind
    hardware: HardwareFacts
    power: PowerModel
    provenance: Provenance
    models: dict[str, ModelProfile] = Field(default_factory=dict)

    def model(self, model_id: str) -> ModelProfile:
        """The profile of model_id on this device; ProfileError listing the profiled models otherwise."""
        try:
            return self.models[model_id]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            raise ProfileError(
                f"device '{self.name}' has no profile for model '{model_id}'; profiled: {known}"
            ) from None


def format_validation_error(exc: ValidationError, where: str) -> str:
    """First pydantic error as one line: where, field path, message."""
    err = exc.errors()[0]
    return field_message(where, tuple(err.get("loc", ())), err.get("msg", "invalid"), exc.error_count() - 1)


def load_profile(path: str | Path) -> DeviceProfile:
    """Read and validate a device profile; ProfileError with the file and field on any problem."""
    data = read_json(path, "profile", ProfileError)
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(format_validation_error(exc, str(path))) from None


def dump_profile(profile: DeviceProfile) -> str:
    """Canonical JSON text of a profile (stable key order for diffs)."""
    return json.dumps(profile.model_dump(mode="json"), indent=1, sort_keys=False) + "\n"


def save_profile(profile: DeviceProfile, path: str | Path) -> Path:
    """Write a profile atomically (temporary file, then rename)."""
    return atomic_write_text(path, dump_profile(profile))


def merge_model(path: str | Path, device: DeviceProfile, model: ModelProfile) -> DeviceProfile:
    """Add or replace one model in the profile at path, keeping its other models; write atomically."""
    return merge_models(path, device.model_copy(update={"models": {model.model_id: model}}))


def merge_models(path: str | Path, device: DeviceProfile) -> DeviceProfile:
    """Add or replace device's models in the profile at path, keeping its other models; write atomically."""
    path = Path(path)
    if path.exists():
        existing = load_profile(path)
        device = device.model_copy(update={"models": {**existing.models, **device.models}})
    save_profile(device, path)
    return device


def profile_json_schema() -> dict:
    """JSON Schema of the device-profile format, for editors."""
    return DeviceProfile.model_json_schema()
