"""Small profiles and scenarios the simulator tests build themselves (no torch, no catalog)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

from profilers.schema import (DeviceProfile, HardwareFacts, LatencyStats, MeasuredProvenance, ModelProfile,
                              PowerModel, RadioPower, SplitPoint, save_profile)


def toy_model(head_mid_s: float = 0.02, total_s: float = 0.05) -> ModelProfile:
    """A 2-block model: input (full offload), mid (half the FLOPs, 100 bytes float32) and output (local)."""
    def sp(name, idx, numel, flops, head_s, tail_s):
        return SplitPoint(name=name, layer_index=idx, output_shape=[numel], output_numel=numel,
                          output_bytes={"float32": 4 * numel, "float16": 2 * numel, "int8": numel + 8,
                                        "zlib_float32": 3 * numel, "zlib_int8": numel},
                          head_flops=flops, head_params=flops // 10,
                          head_latency=LatencyStats.from_samples([head_s * f for f in (0.9, 1.0, 1.1)]),
                          tail_latency=LatencyStats.from_samples([tail_s * f for f in (0.9, 1.0, 1.1)]))
    return ModelProfile(
        model_id="toy", input_shape=[3, 8, 8], input_numel=192,
        input_bytes={"raw_uint8": 192, "float32": 768, "jpeg": 120}, result_bytes=40,
        total_flops=1000, total_params=100,
        split_points=[sp("input", 0, 192, 0, 0.0, total_s), sp("mid", 1, 25, 500, head_mid_s, total_s - head_mid_s),
                      sp("output", 2, 10, 1000, total_s, 0.0)],
    )


def toy_device(name: str, kind: str = "mobile", scale: float = 1.0, idle_w: float = 1.0, active_w: float = 4.0) -> DeviceProfile:
    """A measured-looking device whose toy model takes `scale` times the base latencies."""
    model = toy_model(0.02 * scale, 0.05 * scale)
    return DeviceProfile(
        name=name, kind=kind,
        hardware=HardwareFacts(cpu_model="toy cpu", cores=1, memory_gb=1.0),
        power=PowerModel(idle_w=idle_w, active_w=active_w, source="test",
                         radio=RadioPower(tx_w=0.5, tx_w_per_mbps=0.01, rx_w=0.3, rx_w_per_mbps=0.005, idle_w=0.0, source="test")),
        provenance=MeasuredProvenance(host_fingerprint="test", date=datetime(2026, 1, 1, tzinfo=timezone.utc),
                                      torch_version="none", python_version="3", platform="test", threads=1),
        models={"toy": model},
    )


def write_toy_profiles(folder: Path) -> list[str]:
    """Profiles of a slow mobile device and a fast edge server; returns their paths."""
    paths = []
    for dev in (toy_device("toy-mobile", "mobile", 4.0), toy_device("toy-edge", "edge", 0.5, idle_w=10, active_w=50)):
        path = folder / f"{dev.name}.json"
        save_profile(dev, path)
        paths.append(str(path))
    return paths


def scenario_dict(profiles: list[str], **over) -> dict:
    """A small valid scenario over the toy profiles; keyword arguments replace top-level sections."""
    data = {
        "name": "toy",
        "model": "toy",
        "profiles": profiles,
        "mobiles": [{"device": "toy-mobile"}],
        "edge": {"device": "toy-edge"},
        "link": {"data_rate_mbps": 1.0, "propagation_delay_s": 0.001, "packet_overhead_bytes": 40},
        "workload": {"source": "poisson", "frame_rate_fps": 2.0, "frames": 200, "service_time": "sampled"},
        "policies": [{"name": "local"}, {"name": "offload"}, {"name": "split", "split_point": "mid"}],
        "seed": 5,
    }
    data.update(over)
    return data


def write_scenario(folder: Path, data: dict, name: str = "scenario.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_sums(values, order, starts, run_codes, zero_nan, out):
    """The oracle of the compiled summaries: out[run_codes[r]] += numpy's own sum of run r's values
    (values[order[starts[r]:starts[r + 1]]], groupsum.sorted_runs), with zero_nan of np.nan_to_num's values."""
    with np.errstate(invalid="ignore", over="ignore"):  # infinities of both signs: NaN, as the compiled sums give
        for r in range(run_codes.size):
            picked = values[order[starts[r]:starts[r + 1]]]
            out[run_codes[r]] += (np.nan_to_num(picked) if zero_nan else picked).sum()


def pairwise_sum(values, order, lo, n, zero_nan):
    """groupsum's compiled pairwise walk over values[order[lo:lo + n]] (n >= 8; numpy's order of additions)."""
    from simulator.groupsum import _pairwise

    return 0.0 + _pairwise(values, order, lo, n, zero_nan)

