"""`python -m profilers.bundle` (make profiles): measure this host, then derive every device in device_facts.json.

Writes profilers/data/devices/host-cpu.json (2 threads, measured), host-cpu-1thread.json (1 thread, measured,
used to validate the single-efficiency roofline that derives devices without a stack; devices with one carry the
per-operator fit's leave-one-out error instead) and one derived profile per device in profilers/data/device_facts.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Optional

from profilers.catalog import CATALOG_DIR, FACTS_PATH
from profilers.derive import derive_device, load_facts, validate_against_measurement
from profilers.errors import EdgesimError
from profilers.measure import MeasureOptions, host_busy
from profilers.models import build, entries
from profilers.profiling import measure_into
from profilers.schema import DeviceProfile, load_profile, save_profile

#: models the shipped scenarios need, with their input side (002 sections 2 and 4)
BUNDLE_MODELS = (
    ("densenet201", 224), ("densenet169", 224), ("resnet152", 224), ("inception_v3", 299),
    # Mimic w/B of the four models of 002 Table 3
    ("densenet201-mimic", 224), ("densenet169-mimic", 224), ("resnet152-mimic", 224), ("inception_v3-mimic", 299),
    ("mobilenet_v2", 224), ("resnet50", 224),
    ("resnet18", 224), ("vgg16", 224),  # calibration anchors of the derived devices (device_facts.json)
)
HOST_NAME = "host-cpu"
HOST_1T_NAME = "host-cpu-1thread"
#: what validate_against_measurement checks: derive_device's method for devices whose facts name no stack
LEGACY_METHOD = "single-efficiency roofline, used for devices without a stack"


def _warn(msg: str) -> None:
    print(f"bundle: warning: {msg}", file=sys.stderr)


def measure_host(name: str, kind: str, threads: int, repeats: int, warmup: int,
                 models=BUNDLE_MODELS, power=None) -> DeviceProfile:
    """Measure the listed models on this host (CPU) into one device profile (profilers.profiling.measure_into, codec
    costs left out as the catalog's derived devices cannot carry them); unregistered models are skipped."""
    registered = entries()
    for model_id, _ in models:
        if model_id not in registered:
            _warn(f"model {model_id} is not registered; skipped")
    built = (build(model_id, input_size=(side, side)) for model_id, side in models if model_id in registered)
    return measure_into(built, name, MeasureOptions(repeats=repeats, warmup=warmup, threads=threads), kind=kind,
                        power=power, codec_repeats=0, log=lambda line: print(f"  {line}", file=sys.stderr))


def latency_origin(dev: DeviceProfile) -> str:
    """How a profile's latencies were obtained, in a few words: measured (threads) or derived (method, LOO error)."""
    prov = dev.provenance
    if prov.kind == "measured":
        return f"measured, {prov.threads} thread(s)"
    if not prov.stack:
        return "derived: per-block roofline"
    if not prov.validated_errors:
        return "derived: per-operator fallback, not validated"
    mdae = 100 * statistics.median(abs(e) for e in prov.validated_errors)
    return f"derived: per-operator fit, LOO MdAE {mdae:.0f}%"


def summary_rows(devices: list[DeviceProfile]) -> list[dict]:
    """Per device and model: how its latencies were obtained, full local latency and the head latency at each
    split point."""
    rows = []
    for dev in devices:
        origin = latency_origin(dev)
        for mp in dev.models.values():
            last = mp.split_points[-1]
            rows.append({
                "device": dev.name, "kind": dev.kind, "provenance": origin, "model": mp.model_id,
                "full_ms": last.head_latency.median_s * 1e3 if last.head_latency else None,
                "heads_ms": ", ".join(f"{sp.name}={sp.head_latency.median_s * 1e3:.1f}" for sp in mp.split_points[1:-1]
                                      if sp.head_latency),
            })
    return rows


def print_summary(devices: list[DeviceProfile]) -> None:
    """summary_rows as a plain-text table on stdout (the bundle is a script; no console library needed)."""
    import pandas as pd

    table = pd.DataFrame(summary_rows(devices)).rename(columns={"full_ms": "full model ms", "heads_ms": "head ms at split points"})
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}", na_rep="-"))


def run(out_dir: Path = CATALOG_DIR, facts_path: Path = FACTS_PATH, repeats: int = 20, repeats_1t: int = 10,
        warmup: int = 2, measure: bool = True) -> list[DeviceProfile]:
    """Measure the host at 2 and 1 threads (or reuse the saved profiles), then derive every device in the facts."""

    out_dir = Path(out_dir)
    facts = load_facts(facts_path) if Path(facts_path).is_file() else {}
    if not facts:
        _warn(f"{facts_path} not found or empty; only the host is measured")
    host_power = facts[HOST_NAME].power if HOST_NAME in facts else None
    if measure:

        busy = host_busy()
        if busy:
            _warn(busy)
        host = measure_host(HOST_NAME, "edge", 2, repeats, warmup, power=host_power)
        save_profile(host, out_dir / f"{HOST_NAME}.json")
        host_1t = measure_host(HOST_1T_NAME, "mobile", 1, repeats_1t, warmup, power=host_power)
        save_profile(host_1t, out_dir / f"{HOST_1T_NAME}.json")
    else:
        host = load_profile(out_dir / f"{HOST_NAME}.json")
        host_1t = load_profile(out_dir / f"{HOST_1T_NAME}.json")
    mdape, n = validate_against_measurement(host, host_1t)
    key = f"host-1-thread ({LEGACY_METHOD})"
    validation = {
        key: (f"derived the 1-thread host from the 2-thread host (peak x 0.5, host efficiency) and "
              f"compared to a 1-thread measurement: median absolute percentage error of per-split-point "
              f"head latency {mdape:.1f}% over {n} split points of {len(host_1t.models)} models"),
    }
    print(f"validation of the {LEGACY_METHOD}: {validation[key]}", file=sys.stderr)
    devices = [host, host_1t]
    for name, f in facts.items():
        if name in (HOST_NAME, HOST_1T_NAME):
            continue
        derived = derive_device(host, name, f, from_profile=f"{HOST_NAME}.json ({host.provenance.host_fingerprint})",
                                validation=validation)
        save_profile(derived, out_dir / f"{name}.json")
        devices.append(derived)
    print_summary(devices)
    return devices


def main(argv: Optional[list[str]] = None) -> int:
    """Command line of the bundle; one-line errors, exit 2."""
    parser = argparse.ArgumentParser(prog="python -m profilers.bundle", description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=CATALOG_DIR)
    parser.add_argument("--facts", type=Path, default=FACTS_PATH)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--repeats-1thread", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--derive-only", action="store_true", help="reuse the saved host profiles")
    args = parser.parse_args(argv)
    try:
        run(args.out_dir, args.facts, args.repeats, args.repeats_1thread, args.warmup, measure=not args.derive_only)
    except EdgesimError as exc:
        print(f"bundle: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
