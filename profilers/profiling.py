"""Build, measure and merge a model into a device profile; derive a measured profile onto catalog devices.

The core of `edgesim profile`, `edgesim derive` and `edgesim profile show`: the command line only parses
options and prints what these functions return.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from profilers.catalog import CATALOG_DIR, FACTS_PATH, list_devices, load_device
from profilers.derive import DeviceFacts, derive_device, load_facts
from profilers.energy import check_energy_choice, pick_energy_meter
from profilers.errors import EdgesimError, unknown_name
from profilers.hostcheck import pinned
from profilers.measure import (
    MeasureOptions,
    assumed_host_power,
    check_torch_device,
    host_hardware,
    host_provenance,
    measure_batch_latency,
    measure_model,
    resolve_split_points,
)
from profilers.models import SplittableModel, entries
from profilers.models.graph import candidate_rows
from profilers.models.sources import ModelRequest, build_model
from profilers.progress import Progress
from profilers.schema import (
    DeviceProfile,
    HardwareFacts,
    ModelProfile,
    PowerModel,
    load_profile,
    merge_models,
    save_profile,
)

KINDS = ("mobile", "edge", "cloud")
Warn = Callable[[str], None]
#: the catalog's measured host, whose calibration models anchor the derivation of a device without a stack when
#: the user's profile lacks them
CATALOG_HOST = "host-cpu"


def parse_input_size(text: Optional[str]) -> Optional[tuple[int, ...]]:
    """'H,W', 'S' or 'C,H,W' -> a tuple of positive ints; one line on anything else."""
    if text is None:
        return None
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes *= 2
    if len(sizes) not in (2, 3) or min(sizes) < 1:
        raise EdgesimError(f"--input-size '{text}': expected H,W or C,H,W with positive integers (e.g. 224,224)")
    return tuple(sizes)


def check_writable(path: Path) -> None:
    """One line if path cannot be written (its nearest existing folder is not writable or it is a folder)."""
    if path.is_dir():
        raise EdgesimError(f"cannot write {path}: it is a folder")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise EdgesimError(f"cannot write {path}: folder {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise EdgesimError(f"cannot write {path}: file is not writable")


def check_same_device(path: Path, device_name: str) -> None:
    """An existing profile keeps its device name: one line instead of silently renaming it."""
    if path.exists():
        existing = load_profile(path)  # a corrupt profile fails here, before anything is measured
        if existing.name != device_name:
            raise EdgesimError(f"{path} is the profile of device '{existing.name}', not '{device_name}'; use "
                               f"--device-name {existing.name} to add to it, or another --out")


def split_rows(mp: ModelProfile) -> list[dict]:
    """Per split point: the columns of 002 Table 2 / Fig. 1 (size % of the float32 input, cumulative FLOPs %)."""
    in_bytes = mp.input_bytes.get("float32") or 4 * mp.input_numel
    rows = []
    for sp in mp.split_points:
        row = {
            "split_point": sp.name,
            "layer_index": sp.layer_index,
            "output_shape": "x".join(str(s) for s in sp.output_shape),
            "size_pct": 100.0 * sp.output_bytes["float32"] / in_bytes,
            "zlib_pct": (100.0 * sp.output_bytes["zlib_float32"] / in_bytes) if "zlib_float32" in sp.output_bytes else None,
            "head_gflops": sp.head_flops / 1e9,
            "head_flops_pct": 100.0 * sp.head_flops / mp.total_flops if mp.total_flops else 0.0,
        }
        for part, stats in (("head", sp.head_latency), ("tail", sp.tail_latency)):
            row[f"{part}_median_ms"] = stats.median_s * 1e3 if stats else None
            row[f"{part}_p5_ms"] = stats.p5_s * 1e3 if stats else None
            row[f"{part}_p95_ms"] = stats.p95_s * 1e3 if stats else None
        rows.append(row)
    return rows


def codec_rows(mp: ModelProfile) -> list[dict]:
    """Per split point with measured codec costs: median encode and decode milliseconds per encoding (profilers.codec,
    measured on the profile's host); empty when none were measured."""
    return [{"split_point": sp.name, **{e: (1e3 * sp.encode_s[e], 1e3 * sp.decode_s.get(e, float("nan")))
                                        for e in sp.encode_s}}
            for sp in mp.split_points if sp.encode_s]


def device_rows(catalog_dir: Optional[Path] = None) -> list[dict]:
    """One row per catalog device: name, kind, processor, provenance and the models profiled."""
    folder = catalog_dir or CATALOG_DIR
    return [device_row(load_device(Path(folder) / f"{name}.json")) for name in list_devices(folder)]


def device_row(dev: DeviceProfile) -> dict:
    """What a device profile is: name, kind, processor, cores, memory, provenance and its models."""
    hw = dev.hardware
    return {
        "name": dev.name,
        "kind": dev.kind,
        "processor": hw.cpu_model + (f" + {hw.accelerator}" if hw.accelerator else ""),
        "cores": hw.cores,
        "memory_gb": hw.memory_gb,
        "provenance": dev.provenance.kind,
        "models": ", ".join(sorted(dev.models)),
    }


def model_rows() -> list[dict]:
    """One row per registered model: id, family, description."""
    return [{"model_id": e.model_id, "family": e.family, "description": e.description}
            for e in sorted(entries().values(), key=lambda e: e.model_id)]


def profile_model_rows(dev: DeviceProfile) -> list[dict]:
    """One row per model of a profile: how it was measured, weights, energy method, split points, full latency."""
    rows = []
    for mp in dev.models.values():
        last = mp.split_points[-1]
        rows.append({
            "model_id": mp.model_id,
            "measurement": mp.measurement,
            "input": "x".join(map(str, mp.input_shape)),
            "weights": mp.checkpoint,
            "gflops": mp.total_flops / 1e9,
            "split_points": len(mp.split_points),
            "full_ms": last.head_latency.median_s * 1e3 if last.head_latency else None,
            "energy_method": mp.energy_method or "-",
        })
    return rows


def power_and_kind(device_name: str, kind: Optional[str], cores: int):
    """Power model and kind from device_facts.json when it names this device, else a stated assumption."""
    if FACTS_PATH.is_file():
        facts = load_facts(FACTS_PATH)
        if device_name in facts:
            return facts[device_name].power, kind or facts[device_name].kind
    return assumed_host_power(cores), kind or "edge"


def list_split_points(request: ModelRequest, warn: Optional[Warn] = None) -> list[dict]:
    """Every split point candidate of a model with its output shape and size, without timing anything."""
    return candidate_rows(build_model(request, warn))


def parse_batch_sizes(text: str) -> list[int]:
    """'1,2,4,8' -> [1, 2, 4, 8]; one line on anything else (sizes must include 1, the reference)."""
    try:
        sizes = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        sizes = []
    if not sizes or sizes[0] < 1 or 1 not in sizes:
        raise EdgesimError(f"--batch-sizes '{text}': expected positive integers including 1, e.g. 1,2,4,8,16")
    return sizes


#: repeats of each encoding's encode and decode per split point (profilers.codec.measure_codec_costs)
CODEC_REPEATS = 5


def measure_into(models: Iterable[SplittableModel], device_name: str, options: MeasureOptions = MeasureOptions(), *,
                 out: Optional[Path] = None, kind: str = "edge", power: Optional[PowerModel] = None,
                 hardware: Optional[HardwareFacts] = None, codec_repeats: int = CODEC_REPEATS,
                 batch_sizes: Sequence[int] = (), finish: Optional[Callable[[ModelProfile], ModelProfile]] = None, progress: Optional[Progress] = None,
                 warn: Optional[Warn] = None, log: Optional[Warn] = None) -> DeviceProfile:
    """Measure models on this host into one device profile: the one way every command and study does it.

    Each model (built lazily when `models` is a generator) is measured by profilers.measure.measure_model, its
    split points' encode and decode costs by profilers.codec (codec_repeats 0: not measured), and its whole-model
    latency per batch size when asked; `finish` makes a last edit (an accuracy, say). With `out`, the models are
    merged into that file atomically (its other models kept; a profile of another device is refused before
    anything is measured); the profile returned holds the models measured here."""
    from profilers.codec import measure_codec_costs

    if kind not in KINDS:
        raise EdgesimError(f"unknown device kind '{kind}'; known: {', '.join(KINDS)}")
    if out is not None:
        check_writable(Path(out))
        check_same_device(Path(out), device_name)
    hardware = hardware or host_hardware(options.torch_device)
    power = power or assumed_host_power(hardware.cores)
    measured: dict[str, ModelProfile] = {}
    threads = None
    for model in models:
        t0 = time.perf_counter()
        meter = None if model.shapes_only else pick_energy_meter(options.torch_device, power, options.energy)
        mp = measure_model(model, options, power, progress=progress, meter=meter)  # the meter fails before measuring
        if mp.measurement_check is not None and warn:
            for line in mp.measurement_check.warnings:
                warn(line)
        if not model.shapes_only and (codec_repeats > 0 or batch_sizes):
            with pinned(options.cores):
                if codec_repeats > 0:
                    costs = measure_codec_costs(model, [(sp.name, sp.layer_index) for sp in mp.split_points],
                                                codec_repeats)
                    mp = mp.model_copy(update={"split_points": [
                        sp.model_copy(update=dict(zip(("encode_s", "decode_s"), costs[sp.name])))
                        if sp.name in costs else sp for sp in mp.split_points]})
                if batch_sizes:
                    mp = mp.model_copy(update={"batch_latency_s": measure_batch_latency(
                        model, batch_sizes, options.repeats, options.warmup, options.torch_device, mp.threads)})
        measured[mp.model_id] = finish(mp) if finish is not None else mp
        threads = threads or mp.threads
        if log:
            log(f"{device_name}: {mp.model_id} measured in {time.perf_counter() - t0:.1f} s")
    device = DeviceProfile(name=device_name, kind=kind, hardware=hardware, power=power,
                           provenance=host_provenance(threads or options.threads or 1, options.torch_device),
                           models=measured)
    if out is not None:
        merge_models(Path(out), device)
    return device


def run_profile(request: ModelRequest, device_name: str, repeats: int = 10, warmup: int = 2,
                threads: Optional[int] = None, torch_device: str = "cpu", out: Optional[Path] = None,
                energy: str = "auto", kind: Optional[str] = None, progress: Optional[Progress] = None,
                warn: Optional[Warn] = None, batch_sizes: Sequence[int] = (), target_ci: Optional[float] = None,
                time_budget_s: Optional[float] = None, cores: Optional[Sequence[int]] = None,
                strict: bool = False, host_window_s: float = 1.0, clock: str = "wall",
                idle_gap_s: float = 0.0, codec_repeats: int = CODEC_REPEATS) -> tuple[ModelProfile, Path]:
    """Build, measure and merge one model into a device profile; returns (ModelProfile, path).

    Every check that can fail runs before measuring, and the profile is written atomically at the end:
    an error leaves no half-written profile. The host is observed for host_window_s first; its state, the
    precision reached and the checks go into the profile, and every doubt is a warning (an error with strict)."""
    if kind is not None and kind not in KINDS:
        raise EdgesimError(f"unknown device kind '{kind}'; known: {', '.join(KINDS)}")
    batch_sizes = parse_batch_sizes(batch_sizes) if isinstance(batch_sizes, str) else list(batch_sizes)
    check_energy_choice(energy)
    out = Path(out) if out else Path("profiles") / f"{device_name}.json"
    check_writable(out)
    check_same_device(out, device_name)
    check_torch_device(torch_device)
    model = build_model(request, warn)
    resolve_split_points(model, request.split_points)
    hardware = host_hardware(torch_device)
    power, kind = power_and_kind(device_name, kind, hardware.cores)
    options = MeasureOptions(split_points=request.split_points, repeats=repeats, warmup=warmup, threads=threads,
                             torch_device=torch_device, energy=energy, target_ci=target_ci,
                             time_budget_s=time_budget_s, cores=tuple(cores) if cores else None,
                             host_window_s=host_window_s, strict=strict, clock=clock,
                             idle_gap_s=idle_gap_s)
    device = measure_into([model], device_name, options, out=out, kind=kind, power=power, hardware=hardware,
                          codec_repeats=codec_repeats, batch_sizes=batch_sizes, progress=progress, warn=warn)
    return device.models[model.model_id], out


def derive_profiles(profile_path: Path, devices: list[str], out: Optional[Path] = None,
                    facts_path: Path = FACTS_PATH, catalog_dir: Path = CATALOG_DIR
                    ) -> list[tuple[Path, DeviceProfile]]:
    """Derive the models of a measured profile onto catalog devices with profilers.derive (the catalog's method);
    returns (path written, profile written) per device.

    Devices with a `stack` take their calibration anchors from the facts (published latencies). For a device
    without one, the single-efficiency roofline calibrates on host measurements of its anchor models: when the
    profile lacks them, the catalog host's measurements join the derivation (their blocks' FLOPs and bytes do not
    depend on the host) and are left out of the result. One device writes `out` (default profiles/<device>.json);
    several write out/<device>.json."""
    measured = load_profile(profile_path)
    if measured.provenance.kind != "measured":
        raise EdgesimError(f"{profile_path}: derive needs a measured profile, this one is {measured.provenance.kind}")
    if not devices:
        raise EdgesimError("give at least one --device (a device of the catalog's device_facts.json)")
    facts = load_facts(facts_path)
    for name in devices:
        if name not in facts:
            raise unknown_name("catalog device", name, list(facts))
    missing = [mid for mid, mp in measured.models.items() if not mp.blocks or mp.measurement != "measured"]
    if missing:
        raise EdgesimError(f"{profile_path}: model(s) {', '.join(missing)} have no measured per-block records; "
                           "re-profile them with edgesim profile")
    targets = _derive_targets(devices, out)
    spare = _catalog_anchor_models(measured, [facts[name] for name in devices], catalog_dir)
    written = []
    for name, target in zip(devices, targets):
        check_writable(target)
        borrowed = {a.model_id: spare[a.model_id] for a in facts[name].anchors
                    if facts[name].stack is None and a.model_id in spare}
        host = measured.model_copy(update={"models": {**borrowed, **measured.models}}) if borrowed else measured
        derived = derive_device(host, name, facts[name], from_profile=f"{profile_path} "
                                f"({measured.provenance.host_fingerprint})"
                                + (f"; calibration models {', '.join(borrowed)} from the catalog's {CATALOG_HOST}"
                                   if borrowed else ""))
        derived = derived.model_copy(update={"models": {k: v for k, v in derived.models.items()
                                                        if k in measured.models}})
        if target.exists():
            existing = load_profile(target)
            if existing.name != name:
                raise EdgesimError(f"{target} is the profile of device '{existing.name}', not '{name}'; "
                                   "choose another --out")
            derived = derived.model_copy(update={"models": {**existing.models, **derived.models}})
        save_profile(derived, target)
        written.append((target, derived))
    return written


def _catalog_anchor_models(measured: DeviceProfile, facts: list[DeviceFacts], catalog_dir: Path
                           ) -> dict[str, ModelProfile]:
    """The catalog host's models for anchors of stack-less devices that the measured profile lacks; the catalog
    host is read only when some are needed."""
    wanted = {a.model_id for f in facts if f.stack is None for a in f.anchors} - set(measured.models)
    host = _catalog_host(catalog_dir) if wanted else None
    return {mid: host.models[mid] for mid in sorted(wanted) if mid in host.models} if host else {}


def _derive_targets(devices: list[str], out: Optional[Path]) -> list[Path]:
    if out is None:
        return [Path("profiles") / f"{name}.json" for name in devices]
    out = Path(out)
    if len(devices) == 1 and out.suffix == ".json":
        return [out]
    if out.suffix == ".json":
        raise EdgesimError(f"--out {out}: several --device values need a folder (one <device>.json each)")
    return [out / f"{name}.json" for name in devices]


def _catalog_host(catalog_dir: Path) -> Optional[DeviceProfile]:
    path = Path(catalog_dir) / f"{CATALOG_HOST}.json"
    return load_profile(path) if path.is_file() else None
