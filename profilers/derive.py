"""Derive a device profile from a measured host profile, calibrated on published latencies of the device.

Devices whose facts name a `stack` use the per-operator model of profilers.calibrate: each block's
time on the target is the sum over its operators (profilers.opcount, conv-bn-activation fused) of
max(F_o / (eta_type P'), B_o / (eta_mem BW')) + tau, plus a per-inference c0 paid by each part (head, tail), with the
parameters fitted to every published latency of that stack (profilers/data/calibration.csv) and the
leave-one-out errors carried in the provenance. Devices without a `stack` keep the earlier method: per block b,
t'_b = max(F_b / (eta_c * P'), B_b / (eta_m * BW')) with B_b = 4 * params + input + output bytes and eta_c
fitted so that the derived full-model latency of named models equals their published latency.
"""

from __future__ import annotations

import math
import statistics
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from profilers.calibrate import DeviceCalibration, Roofline, calibrate_stack, dense_fallback_loo, op_times_s
from profilers.calibration_data import PublishedLatency, stack_key
from profilers.errors import EdgesimError, ProfileError
from profilers.io import read_json
from profilers.models.sources import ModelRequest, build_model
from profilers.opcount import KNOWN_ARCHS, Op, block_ops
from profilers.schema import (
    BlockRecord,
    DerivedProvenance,
    DeviceKind,
    DeviceProfile,
    HardwareFacts,
    LatencyStats,
    ModelProfile,
    PowerModel,
    format_validation_error,
)

ETA_BOUNDS = (1e-6, 10.0)


class Calibration(BaseModel):
    """A published full-model latency of a named model on the device (batch 1)."""

    model_config = ConfigDict(extra="forbid")
    model_id: str
    input_size: int = 224
    latency_s: float = Field(gt=0)
    source: str


class StackSpec(BaseModel):
    """The device and software stack a derived device models: rows of calibration.csv with these fields."""

    model_config = ConfigDict(extra="forbid")
    board: str = Field(description="board name as the source writes it")
    framework: str
    precision: str
    threads: int = 0
    compute: str = "cpu"
    batch: int = 1
    note: str = Field(default="", description="why this stack stands for the device (a proxy is said so here)")
    thread_speedup: float = Field(default=1.0, gt=0, description=(
        "the device runs more threads than the stack was published with: derived times are divided by this "
        "speed-up (the fit's roofline is the stack's threads' share of the device's peak)"))
    thread_speedup_source: str = ""

    @property
    def key(self) -> str:
        return stack_key(self.board, self.framework, self.precision, self.threads, self.compute, self.batch)


class DeviceFacts(BaseModel):
    """One device of device_facts.json: hardware, roofline figures, power, and a calibration latency."""

    model_config = ConfigDict(extra="forbid")
    kind: DeviceKind
    cpu_model: str
    cores: int = Field(ge=1)
    memory_gb: float = Field(gt=0)
    accelerator: Optional[str] = None
    compute: str = "cpu"
    peak_gflops: float = Field(gt=0)
    memory_bandwidth_gbs: Optional[float] = Field(default=None, gt=0)
    power: PowerModel
    sources: dict[str, str] = Field(default_factory=dict)
    calibration: Optional[Union[Calibration, list[Calibration]]] = Field(
        default=None, description="one published latency, or several: eta_c is then their geometric mean")
    eta_m: Optional[float] = Field(default=None, gt=0, description="memory efficiency; eta_c when absent")
    stack: Optional[StackSpec] = Field(default=None, description="calibrate with profilers.calibrate on this stack")
    latency_sigma: Optional[float] = Field(default=None, ge=0, le=2, description=(
        "log-normal sigma of one part's latency on the device (the dispersion model of derived samples); the "
        "host part's robust spread, capped, when absent"))
    description: str = ""

    @property
    def anchors(self) -> list[Calibration]:
        """The calibration entries as a list (none, one or several)."""
        cal = self.calibration
        return cal if isinstance(cal, list) else ([cal] if cal else [])


class FactsFile(BaseModel):
    """device_facts.json: devices by name."""

    model_config = ConfigDict(extra="forbid")
    devices: dict[str, DeviceFacts]
    notes: str = ""


def load_facts(path: str | Path) -> dict[str, DeviceFacts]:
    """Read and validate a facts file; one line with the file and field on any problem."""
    data = read_json(path, "device facts", ProfileError)
    try:
        return FactsFile.model_validate(data).devices
    except ValidationError as exc:
        raise ProfileError(format_validation_error(exc, str(path))) from None


# ------------------------------------------------------------------------------------------------- roofline


def block_bytes(block: BlockRecord) -> int:
    """Bytes a block moves: float32 weights plus its input and output activations."""
    return 4 * block.params + block.input_bytes + block.output_bytes


def roofline_times(blocks: list[BlockRecord], peak_gflops: float, bandwidth_gbs: Optional[float],
                   eta_c: float, eta_m: float) -> list[float]:
    """Per-block time max(F / (eta_c P), B / (eta_m BW)); compute only when BW is unknown."""
    times = []
    for b in blocks:
        t = b.flops / (eta_c * peak_gflops * 1e9)
        if bandwidth_gbs:
            t = max(t, block_bytes(b) / (eta_m * bandwidth_gbs * 1e9))
        times.append(t)
    return times


def calibrate_eta(blocks: list[BlockRecord], peak_gflops: float, bandwidth_gbs: Optional[float],
                  latency_s: float, eta_m: Optional[float] = None) -> float:
    """eta_c such that the summed roofline time equals latency_s (bisection on log eta; the sum falls with eta)."""
    def total(eta: float) -> float:
        return sum(roofline_times(blocks, peak_gflops, bandwidth_gbs, eta, eta_m or eta))

    lo, hi = ETA_BOUNDS
    if total(hi) > latency_s or total(lo) < latency_s:
        raise EdgesimError(
            f"cannot calibrate: published latency {latency_s:.4g} s is outside the roofline range "
            f"[{total(hi):.4g}, {total(lo):.4g}] s for efficiencies {lo}..{hi}")
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if total(mid) > latency_s:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def host_efficiency(host: DeviceProfile) -> float:
    """The host's own efficiency: eta with the host's roofline summed over its measured blocks equal to their
    measured time (= sum F / (P_host * sum t) when the host's bandwidth is unknown)."""
    hw = host.hardware
    if not hw.peak_gflops:
        raise EdgesimError(f"host profile '{host.name}' has no peak_gflops; cannot fit its efficiency")
    blocks = [b for mp in host.models.values() for b in mp.blocks if b.latency is not None]
    seconds = sum(b.latency.median_s for b in blocks)
    if seconds <= 0 or sum(b.flops for b in blocks) <= 0:
        raise EdgesimError(f"host profile '{host.name}' has no measured blocks to fit an efficiency from")
    return calibrate_eta(blocks, hw.peak_gflops, hw.memory_bandwidth_gbs, seconds)


# -------------------------------------------------------------------------------------------------- derive


#: derived latency samples: this many quantiles of the dispersion model (odd, so the middle one is the median)
DERIVED_QUANTILES = 21
#: the log-normal sigma a derived device's latency is given at most: a host spread above it is contention on the
#: host (see the profile's measurement_check), not a property of the device
SIGMA_CAP = 0.10
DISPERSION_MODEL = (f"derived samples: {DERIVED_QUANTILES} quantiles ((i + 0.5) / {DERIVED_QUANTILES}) of a "
                    "log-normal around the derived median, sigma = the device's stated latency_sigma, else the host "
                    "part's robust log spread (1.4826 x MAD of log samples) capped at "
                    f"{SIGMA_CAP:g}; no host sample is copied, so no host outlier becomes a derived sample")


def robust_log_sigma(stats: Optional[LatencyStats]) -> float:
    """1.4826 x the median absolute deviation of the log samples: a spread no single outlier moves."""
    if stats is None:
        return 0.0
    logs = [math.log(x) for x in stats.samples_s if x > 0]
    if len(logs) < 2:
        return 0.0
    centre = statistics.median(logs)
    return 1.4826 * statistics.median(abs(v - centre) for v in logs)


def dispersed(target_s: float, sigma: float) -> LatencyStats:
    """The dispersion model's samples: log-normal quantiles around target_s (a constant when sigma or target is 0)."""
    from scipy.stats import norm

    if target_s <= 0 or sigma <= 0:
        return LatencyStats.constant(max(target_s, 0.0))
    qs = [(i + 0.5) / DERIVED_QUANTILES for i in range(DERIVED_QUANTILES)]
    samples = [target_s * math.exp(sigma * float(norm.ppf(q))) for q in qs]
    samples[DERIVED_QUANTILES // 2] = target_s  # exactly the median (ppf(0.5) is 0 up to rounding)
    return LatencyStats.from_samples(samples)


def _scaled(stats: Optional[LatencyStats], target_s: float, sigma: Optional[float] = None) -> LatencyStats:
    """Derived latency of a part: median target_s, spread by the dispersion model (DISPERSION_MODEL)."""
    spread = sigma if sigma is not None else min(robust_log_sigma(stats), SIGMA_CAP)
    return dispersed(target_s, spread)


def derive_model(mp: ModelProfile, facts: DeviceFacts, eta_c: float, eta_m: float) -> ModelProfile:
    """One model on the target: roofline block times, split-point medians, dispersion model, energy."""
    if not mp.blocks:
        raise ProfileError(f"model '{mp.model_id}' has no per-block records; re-measure it with this version")
    times = roofline_times(mp.blocks, facts.peak_gflops, facts.memory_bandwidth_gbs, eta_c, eta_m)
    return _derived_model(mp, facts, times, "derived by per-block roofline")


def _derived_model(mp: ModelProfile, facts: DeviceFacts, times: list[float], how: str, per_process_s: float = 0.0,
                   errors: Sequence[float] = ()) -> ModelProfile:
    """The host model with the target's block times: split-point medians (a non-empty head and a non-empty tail
    each pay the per-inference constant per_process_s once), the dispersion model's samples, energy."""
    cum = [0.0]
    for t in times:
        cum.append(cum[-1] + t)
    n = len(times)
    points = []
    for sp in mp.split_points:
        head_s = cum[sp.layer_index] + (per_process_s if sp.layer_index > 0 else 0.0)
        tail_s = cum[-1] - cum[sp.layer_index] + (per_process_s if sp.layer_index < n else 0.0)
        points.append(sp.model_copy(update={
            "head_latency": _scaled(sp.head_latency, head_s, facts.latency_sigma),
            "tail_latency": _scaled(sp.tail_latency, tail_s, facts.latency_sigma),
            "head_energy_j": facts.power.active_w * head_s,
            "tail_energy_j": facts.power.active_w * tail_s,
            "encode_s": {}, "decode_s": {},  # the host's codec times are not the target's: not measured there
        }))
    blocks = [b.model_copy(update={"latency": LatencyStats.constant(t), "operators": None})
              for b, t in zip(mp.blocks, times)]
    return mp.model_copy(update={
        "split_points": points,
        "blocks": blocks,
        "measurement": "derived",
        "torch_device": facts.compute,
        "threads": None,
        "peak_memory_bytes": None,
        "memory_method": "",
        "cpu_utilisation_percent": None,
        "energy_method": "power-model-estimate",
        "measurement_check": None,
        "per_process_overhead_s": per_process_s,
        "derivation_errors": [float(e) for e in errors],
        "derivation_method": how,
        "description": (mp.description.split("; energy:")[0] + f"; {how}; {DISPERSION_MODEL}"
                        + (f"; per-inference constant {per_process_s * 1e3:.3g} ms paid by each process that runs a "
                           "part (head and tail each)" if per_process_s else "")
                        + "; energy = power.active_w x latency"),
    })


def model_ops(mp: ModelProfile) -> Optional[list[Op]]:
    """Operators of a host model tagged with the measured block index: those recorded while it was measured
    (profilers.opcount.OperatorStream: any model that runs, a --model-file or hf: model included), else the model
    rebuilt by name and traced by torch.fx (profiles measured before operators were recorded); None when neither."""
    recorded = recorded_ops(mp)
    return recorded if recorded is not None else _registry_ops(mp)


def recorded_ops(mp: ModelProfile) -> Optional[list[Op]]:
    """The operators a measured profile recorded per block; None when any block has none recorded."""
    if not mp.blocks or any(b.operators is None for b in mp.blocks):
        return None
    return [Op(o.name, o.kind, o.flops, o.in_bytes, o.out_bytes, o.weight_bytes, i)
            for i, b in enumerate(mp.blocks) for o in b.operators]


def _registry_ops(mp: ModelProfile) -> Optional[list[Op]]:
    """Operators of a host model, rebuilt (registry, torchvision, timm) at its split points and tagged with the
    measured block index; None when it cannot be rebuilt into the same blocks (a --model-file or hf: model)."""
    cuts = tuple(sp.name for sp in mp.split_points if sp.name not in ("input", "output"))
    return _rebuilt_ops(mp.model_id, tuple(mp.input_shape), cuts, len(mp.blocks))


@lru_cache(maxsize=None)
def _rebuilt_ops(model_id: str, input_shape: tuple[int, ...], cuts: tuple[str, ...], n_blocks: int
                 ) -> Optional[list[Op]]:
    """_registry_ops once per model and shape: every derived device reuses the same operators."""
    request = ModelRequest(spec=model_id, input_size=input_shape if len(input_shape) == 3 else None,
                           split_points=list(cuts))
    try:
        model = build_model(request)
    except EdgesimError:
        return None
    if len(model.blocks) != n_blocks:
        return None
    return block_ops(model.blocks, [1, *input_shape])


def operator_block_times(mp: ModelProfile, cal: DeviceCalibration, roof: Roofline,
                         ops: Optional[list[Op]]) -> tuple[list[float], str]:
    """Per measured block: the sum of its operators' times (the per-inference c0 apart: each process running a part
    pays it); without operators (the model cannot be rebuilt or traced) each block is one dense-convolution
    operator with its recorded FLOPs and bytes."""
    times = [0.0] * len(mp.blocks)
    if ops is not None and all(0 <= o.block < len(times) for o in ops):
        for o, t in zip(ops, op_times_s(cal.params, ops, roof)):
            times[o.block] += t
        how = "per operator"
    else:
        pseudo = [Op(b.name, "conv_dense", b.flops, b.input_bytes, b.output_bytes, 4 * b.params, i)
                  for i, b in enumerate(mp.blocks)]
        times = list(op_times_s(cal.params, pseudo, roof))
        how = "per block as one dense operator (its operators could not be recorded nor rebuilt)"
    return times, how


def derive_device_calibrated(host: DeviceProfile, name: str, facts: DeviceFacts, from_profile: str = "",
                             ops_for=model_ops) -> DeviceProfile:
    """A device profile for `name` by the per-operator model fitted on the published latencies of facts.stack;
    its validation is this method's own leave-one-out error over those latencies."""
    if not facts.memory_bandwidth_gbs:
        raise EdgesimError(f"device '{name}': the per-operator model needs memory_bandwidth_gbs in its facts")
    stack = facts.stack
    peak = facts.peak_gflops
    if facts.compute == "cpu" and 0 < stack.threads < facts.cores:  # the stack's threads, as the fit's roofline
        peak *= stack.threads / facts.cores
    roof = Roofline(peak * 1e9, facts.memory_bandwidth_gbs * 1e9)
    anchors = [PublishedLatency(facts.stack.board, facts.stack.framework, facts.stack.precision, facts.stack.threads,
                                facts.stack.compute, facts.stack.batch, a.model_id, a.model_id, a.input_size,
                                a.latency_s * 1e3, "calibration anchor of device_facts.json", a.source, "")
               for a in facts.anchors if a.model_id in KNOWN_ARCHS]
    cal = calibrate_stack(facts.stack.key, roof, compute_class="gpu" if facts.compute == "cuda" else "cpu",
                          anchors=anchors)
    models, notes = {}, {}
    for mid, mp in host.models.items():
        if not mp.blocks:
            continue
        times, how = operator_block_times(mp, cal, roof, ops_for(mp))
        times = [t / stack.thread_speedup for t in times]
        errors = cal.loo_errors if how == "per operator" else dense_fallback_loo(
            facts.stack.key, roof, "gpu" if facts.compute == "cuda" else "cpu")
        models[mid] = _derived_model(mp, facts, times, f"derived {how} (profilers.calibrate)",
                                     cal.params.c0_s / stack.thread_speedup, errors)
        notes[f"model {mid}"] = f"block times {how}" + (
            "" if how == "per operator" else (f"; leave-one-out error of that fallback: median "
                                              f"{100 * statistics.median(abs(e) for e in errors):.0f}% over "
                                              f"{len(errors)} published points" if errors else
                                              "; the fallback could not be validated on this stack"))
    sources = dict(facts.sources)
    sources["stack"] = facts.stack.key + (f" ({facts.stack.note})" if facts.stack.note else "")
    if stack.thread_speedup != 1.0:
        sources["thread_speedup"] = (f"times divided by {stack.thread_speedup:g}, the device's speed-up over the "
                                     f"stack's {stack.threads} thread(s) (not validated by the leave-one-out): "
                                     f"{stack.thread_speedup_source}")
    sources["calibration"] = cal.method + "; published points: profilers/data/calibration.csv rows of this stack"
    mdae = cal.median_abs_error
    fit_notes = {"leave-one-out": (f"median absolute error {100 * mdae:.1f}% over {cal.n_points} published points "
                                   "of this stack, each predicted by a fit without it" if mdae is not None else
                                   "not validated: " + cal.method)}
    method = ("per-operator roofline t_o = max(F_o/(eta_type*P'), B_o/(eta_mem*BW')) + tau, plus c0 per inference; "
              "types dense conv, 1x1 conv/linear, depthwise/grouped conv, memory-bound; conv-bn-activation fused; "
              "fitted by least squares on log latency to the stack's published latencies (profilers.calibrate); "
              "head/tail medians are sums of block times; host samples rescaled to those medians")
    provenance = DerivedProvenance(
        from_profile=from_profile or f"{host.name} ({host.provenance.kind})", method=method,
        date=datetime.now(timezone.utc), sources=sources,
        calibration={**cal.params.as_dict(), "published_points": float(cal.n_points)},
        validation={**fit_notes, **notes}, stack=facts.stack.key,
        validated_errors=list(cal.loo_errors))
    return DeviceProfile(name=name, kind=facts.kind, hardware=_hardware(facts), power=facts.power,
                         provenance=provenance, models=models)


def _hardware(facts: DeviceFacts) -> HardwareFacts:
    hw_sources = {k: v for k, v in facts.sources.items()
                  if k in {"cpu_model", "cores", "memory_gb", "accelerator", "compute", "peak_gflops",
                           "memory_bandwidth_gbs"}}
    return HardwareFacts(cpu_model=facts.cpu_model, cores=facts.cores, memory_gb=facts.memory_gb,
                         accelerator=facts.accelerator, compute="cuda" if facts.compute == "cuda" else "cpu",
                         peak_gflops=facts.peak_gflops, memory_bandwidth_gbs=facts.memory_bandwidth_gbs,
                         sources=hw_sources)


def derive_device(host: DeviceProfile, name: str, facts: DeviceFacts, from_profile: str = "",
                  validation: Optional[dict[str, str]] = None) -> DeviceProfile:
    """A device profile for `name` derived from a measured host profile and the device's facts: the per-operator
    model when the facts name a stack, else the single-efficiency roofline on the calibration anchors.

    validation describes checks of the single-efficiency roofline (bundle.run's 1-thread host check) and joins only
    the profiles that method derives; the per-operator model carries its own leave-one-out error."""
    if facts.stack is not None:
        return derive_device_calibrated(host, name, facts, from_profile)
    anchors = facts.anchors
    usable = [cal for cal in anchors if cal.model_id in host.models]
    sources = dict(facts.sources)
    calibration: dict[str, float] = {}
    fit_notes: dict[str, str] = {}
    if usable:
        etas = []
        for cal in usable:
            ref = host.models[cal.model_id]
            eta = calibrate_eta(ref.blocks, facts.peak_gflops, facts.memory_bandwidth_gbs, cal.latency_s, facts.eta_m)
            etas.append(eta)
            calibration[f"eta_c[{cal.model_id}]"] = eta
            calibration[f"published_latency_s[{cal.model_id}]"] = cal.latency_s
        eta_c = math.exp(sum(math.log(e) for e in etas) / len(etas))
        listed = "; ".join(f"{cal.model_id} ({cal.input_size}x{cal.input_size}) {cal.latency_s} s published in: {cal.source}"
                           for cal in usable)
        sources["eta_c"] = (("bisection so that the derived latency equals " if len(usable) == 1 else
                             f"geometric mean of {len(usable)} efficiencies, each by bisection so that the derived "
                             "latency equals ") + listed)
        if len(usable) > 1:  # how far each anchor ends up from its published latency with the shared eta
            for cal in usable:
                t = sum(roofline_times(host.models[cal.model_id].blocks, facts.peak_gflops,
                                       facts.memory_bandwidth_gbs, eta_c, facts.eta_m or eta_c))
                fit_notes[f"anchor {cal.model_id}"] = (f"derived {t * 1e3:.1f} ms vs published {cal.latency_s * 1e3:.1f} ms "
                                                       f"({100 * (t - cal.latency_s) / cal.latency_s:+.0f}%)")
    else:
        eta_c = host_efficiency(host)
        why = "no calibration entry" if not anchors else f"calibration model(s) {', '.join(c.model_id for c in anchors)} not profiled on the host"
        sources["eta_c"] = (f"fallback ({why}): the host's own efficiency, eta with the host roofline "
                            "(P_host, BW_host) summed over its measured blocks equal to their measured time")
    eta_m = facts.eta_m or eta_c
    sources["eta_m"] = "given in device_facts.json" if facts.eta_m else "assumed equal to eta_c"
    calibration.update({"eta_c": eta_c, "eta_m": eta_m})
    models = {mid: derive_model(mp, facts, eta_c, eta_m) for mid, mp in host.models.items() if mp.blocks}
    hardware = _hardware(facts)
    method = ("per-block roofline t' = max(F/(eta_c*P'), B/(eta_m*BW')) with B = 4*params + input + output "
              "float32 bytes, F from torch.utils.flop_counter on the host; eta_c calibrated on a published "
              "latency; head/tail medians are sums of block times; host samples rescaled to those medians")
    provenance = DerivedProvenance(from_profile=from_profile or f"{host.name} ({host.provenance.kind})",
                                   method=method, date=datetime.now(timezone.utc), sources=sources,
                                   calibration=calibration, validation={**(validation or {}), **fit_notes})
    return DeviceProfile(name=name, kind=facts.kind, hardware=hardware, power=facts.power,
                         provenance=provenance, models=models)


def validate_against_measurement(measured_2t: DeviceProfile, measured_1t: DeviceProfile,
                                 peak_scale: float = 0.5) -> tuple[float, int]:
    """Derive the 1-thread host from the 2-thread one (peak x peak_scale, host efficiency) and compare to a
    1-thread measurement: median absolute percentage error of per-split-point head latency, and the count."""
    if not measured_2t.hardware.peak_gflops:
        raise EdgesimError("validation needs the host's peak_gflops")
    eta = host_efficiency(measured_2t)
    facts = DeviceFacts(kind=measured_2t.kind, cpu_model=measured_2t.hardware.cpu_model, cores=1,
                        memory_gb=measured_2t.hardware.memory_gb,
                        peak_gflops=measured_2t.hardware.peak_gflops * peak_scale,
                        memory_bandwidth_gbs=measured_2t.hardware.memory_bandwidth_gbs, power=measured_2t.power)
    errors = []
    for mid, mp in measured_2t.models.items():
        if mid not in measured_1t.models or not mp.blocks:
            continue
        derived = derive_model(mp, facts, eta, eta)
        truth = {sp.name: sp for sp in measured_1t.models[mid].split_points}
        for sp in derived.split_points:
            ref = truth.get(sp.name)
            if ref is None or ref.head_latency is None or ref.head_latency.median_s <= 0:
                continue
            errors.append(abs(sp.head_latency.median_s - ref.head_latency.median_s) / ref.head_latency.median_s)
    if not errors:
        raise EdgesimError("validation: no split points with measured head latency in both profiles")
    return 100.0 * statistics.median(errors), len(errors)
