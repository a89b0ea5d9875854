"""DMD replay in the simulator (000 Table 1, Figures 4 and 5): time and energy from profiles, decisions from the trace.

`replay_profiles` is generic: any edge and cloud model in any device profiles (measured by `edgesim profile`, or
derived from the catalog), e.g. ViLT on a Jetson and LLaVA-NeXT-Video on a cloud GPU (`edgesim dmd replay`).
`replay` is the demo's: its two models are measured on this host (1 thread for the mobile device, 2 for the
cloud by default; any device of profilers/data/device_facts.json can be named instead and is derived from that
measurement). The simulator replays the test split: every frame's deferral and correctness come from the per-sample
trace of the real models, its time and energy from the profiles (energy: the power-model estimate unless a
profile measured it). Table 1's F1/accuracy columns stay those of the trace; the simulator's own accuracy is
kept beside them (sim_*) and equals them because both apply the same deferral masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from edgesim.report.html import write_figures
from edgesim.studies.dmd import deferral
from edgesim.studies.dmd.costaware import cost_aware_rows
from edgesim.studies.dmd.switcher import load_switcher
from profilers.catalog import FACTS_PATH
from profilers.derive import derive_device, load_facts
from profilers.errors import EdgesimError
from profilers.io import atomic_write_text
from profilers.measure import (
    MeasureOptions,
    assumed_host_power,
    host_hardware,
    host_provenance,
)
from profilers.models import build
from profilers.schema import DeviceProfile, load_profile, save_profile
from simulator.policies import ENTRIES
from simulator.scenario import Scenario
from simulator.sweep import run

EDGE_ID, CLOUD_ID = "dmd-digits-edge", "dmd-digits-cloud"

WAN = {"data_rate_mbps": 20.0, "propagation_delay_s": 0.02, "packet_payload_bytes": 1460, "packet_overhead_bytes": 40}
"""The link from the mobile device to the cloud: a stated WAN assumption (20 Mbit/s, 20 ms one way, TCP/IP
headers of 40 bytes per 1460-byte packet), not a measurement."""

MEASURED = {"host-1thread": 1, "host-2threads": 2}
"""Device names that mean: this host, measured with that many torch threads (the default: no extrapolation)."""

DERIVE_FROM = "host-2threads"
"""Catalog devices are derived from the 2-thread host measurement, as the catalog's bundle does."""


def policy_method(policy: str) -> str:
    """The deferral method of a simulator policy (the method column of table1.csv), from the policy's own spec."""
    return ENTRIES[policy].spec.deferral_method


SWEEP_FRACTIONS = tuple(round(0.1 * k, 1) for k in range(11))
"""Offload fractions of the Figures 4/5 sweep (000 A.5: cost against % deferred to the large model)."""


@dataclass
class DemoProfiles:
    """The profile files the replay loads and the numbers needed to scale host timings to the mobile device."""

    paths: list[Path]
    mobile: DeviceProfile
    cloud: DeviceProfile
    host_edge_1thread_s: float  # measured median of the whole edge model on this host, 1 thread

    def mobile_edge_s(self) -> float:
        """Median of the whole edge model on the mobile device (measured or derived)."""
        return _whole_model_s(self.mobile, EDGE_ID)


def _whole_model_s(profile: DeviceProfile, model_id: str) -> float:
    """Median latency of the whole model (head up to 'output') in a profile."""
    return float(profile.models[model_id].split_point("output").head_latency.median_s)


def check_devices(*names: str) -> dict:
    """The catalog facts, after checking every replay device name (one line listing the known ones)."""

    facts = load_facts(FACTS_PATH)
    for name in names:
        if name not in facts and name not in MEASURED:
            raise EdgesimError(f"unknown device '{name}' for the DMD replay; known: "
                               f"{', '.join(sorted(MEASURED) + sorted(facts))}")
    return facts


def profile_demo_models(out: Path, edge_ckpt: Optional[Path], cloud_ckpt: Optional[Path], repeats: int = 20,
                        n_classes: int = 2, mobile: str = "host-1thread", cloud: str = "host-2threads",
                        side_px: int = 8) -> DemoProfiles:
    """Measure both models on this host (profilers.measure), derive catalog devices from that, write out/profiles/.

    A checkpoint of None measures randomly initialised weights (latency does not depend on the weights). The
    roofline derivation has no per-layer overhead term, so for models this small (microseconds of arithmetic)
    derived devices understate latency; the measured host is the default for that reason.
    """

    from profilers.profiling import measure_into

    facts = check_devices(mobile, cloud)
    wifi = next((f.power.radio for f in facts.values() if f.power.radio is not None), None)
    threads_needed = {1} | {MEASURED.get(name, MEASURED[DERIVE_FROM]) for name in (mobile, cloud)}
    hardware = host_hardware("cpu")
    hosts = {}
    for name, threads in MEASURED.items():
        if threads not in threads_needed:
            continue
        power = assumed_host_power(threads)  # the energy estimate of each model uses the profile's own power model
        models = measure_into((build(model_id, checkpoint=str(ckpt) if ckpt else None, n_classes=n_classes, input_size=side_px)
                               for model_id, ckpt in ((EDGE_ID, edge_ckpt), (CLOUD_ID, cloud_ckpt))), name,
                              MeasureOptions(repeats=repeats, warmup=3, threads=threads), power=power, codec_repeats=0).models
        if name == mobile and wifi is not None:  # the host as a mobile device sends over Wi-Fi: a stated radio model
            power = power.model_copy(update={"radio": wifi.model_copy(update={
                "source": f"assumed for this host as the mobile device: {wifi.source}"})})
        hosts[name] = DeviceProfile(name=name, kind="mobile" if name == mobile else "cloud", hardware=hardware,
                                    power=power, provenance=host_provenance(threads, "cpu"), models=models)
    profiles = {}
    for name in dict.fromkeys((mobile, cloud)):
        profiles[name] = hosts[name] if name in hosts else derive_device(
            hosts[DERIVE_FROM], name, facts[name], from_profile=f"{DERIVE_FROM}.json (measured in this run)")
    paths = [save_profile(p, Path(out) / "profiles" / f"{name}.json") for name, p in profiles.items()]
    return DemoProfiles(paths, profiles[mobile], profiles[cloud], _whole_model_s(hosts["host-1thread"], EDGE_ID))


def _where(profile: DeviceProfile, repeats: int) -> str:
    """Where a replay device's numbers come from, in a few words."""
    if profile.provenance.kind == "measured":
        return f"{profile.name}: measured on this host ({profile.provenance.threads} thread(s), {repeats} repeats)"
    return f"{profile.name}: derived from {profile.provenance.from_profile} with device_facts.json (roofline)"


def switcher_latency_s(weights: Path, config: Path, repeats: int = 200) -> float:
    """Median time of one switcher forward pass on this host (1 thread, batch 1): its cost on the mobile device."""
    import time

    import torch


    model, cfg = load_switcher(weights, config)
    model.eval()
    x = torch.zeros(1, cfg.input_size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = []
        with torch.inference_mode():
            for k in range(repeats + 10):
                t0 = time.perf_counter()
                model(x)
                if k >= 10:
                    times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return float(np.median(times))


@dataclass(frozen=True)
class CascadeModels:
    """The two models the replay runs, as named in the profiles, and how the input reaches the large one."""

    edge_model: str = EDGE_ID
    cloud_model: str = CLOUD_ID
    encoding: str = "float32"  # the demo's digits tensor; a camera image: raw_uint8 or jpeg

    def spec(self) -> dict:
        """The cascade policies' model fields."""
        return {"edge_model": self.edge_model, "cloud_model": self.cloud_model, "encoding": self.encoding}


def _policies(info: deferral.ThresholdInfo, switcher_s: float, sweep: bool,
              cascade: CascadeModels = CascadeModels()) -> list[dict]:
    """Table 1 policies at the operating point chosen on train, or the switcher/uncertainty pair for the sweep."""
    models = cascade.spec()
    if sweep:
        return [{"name": "dmd-switcher", "offload_fraction": 0.0, "switcher_s": switcher_s, **models},
                {"name": "uncertainty", "offload_fraction": 0.0, **models}]

    def at_threshold(method: str) -> dict:
        """Same deferral set as table1_rows: the train threshold of this score, else the train fraction."""
        thr = info.method_thresholds.get(method, info.threshold if method == info.method else None)
        return {"threshold": float(thr)} if thr is not None else {"offload_fraction": info.offload_fraction}

    return [{"name": "edge-only", **models}, {"name": "cloud-only", **models},
            {"name": "uncertainty", **at_threshold("uncertainty"), **models},
            {"name": "dmd-switcher", **at_threshold("switcher"), "switcher_s": switcher_s, **models},
            {"name": "random", "offload_fraction": info.offload_fraction, **models},
            {"name": "oracle", "offload_fraction": info.offload_fraction, **models}]


def replay_scenario(profiles: list[Path], trace_path: Path, n_test: int, mobile: str, cloud: str,
                    info: deferral.ThresholdInfo, switcher_s: float = 0.0, seed: int = 0, sweep: bool = False,
                    cascade: CascadeModels = CascadeModels()):
    """The scenario replaying the test split, one periodic frame per test sample (Table 1, or the 0..1 sweep)."""

    data = {
        "name": "dmd-replay-sweep" if sweep else "dmd-replay",
        "description": "000 Table 1 / Figures 4-5: the DMD test split replayed, decisions from the trace",
        "model": cascade.edge_model,
        "profiles": [str(p) for p in profiles],
        "mobiles": [{"device": mobile}],
        "edge": {"device": cloud},
        "link": WAN,
        # 1 frame/s: frames never queue, so each frame's delay is its own capture-to-output time
        "workload": {"source": "periodic", "frame_rate_fps": 1.0, "frames": n_test, "dataset": str(trace_path),
                     "dataset_split": "test", "service_time": "median"},
        "policies": _policies(info, switcher_s, sweep, cascade),
        "sweep": {"cases": [{"policies.0.offload_fraction": f, "policies.1.offload_fraction": f}
                            for f in SWEEP_FRACTIONS]} if sweep else {},
        "seed": seed,  # the random policy's permutation: the seed table1_rows uses
        "engine": "compiled",
        "outputs": {"plots": False, "frames": False},
    }
    return Scenario.model_validate(data)


def cost_columns(summary: pd.DataFrame, n_frames: int) -> pd.DataFrame:
    """Per policy: the simulator's accuracy/F1/% large and time (s), energy (kJ) over the n_frames test frames."""
    out = pd.DataFrame({
        "policy": summary["policy"].to_numpy(),
        "method": summary["policy"].map(policy_method).to_numpy(),
        "sim_f1_pct": 100.0 * summary["f1"].to_numpy(float),
        "sim_accuracy_pct": 100.0 * summary["accuracy"].to_numpy(float),
        "sim_large_model_pct": 100.0 * summary["offload_fraction"].to_numpy(float),
        "sim_time_s": summary["delay_mean_s"].to_numpy(float) * n_frames,
        "sim_delay_mean_ms": 1e3 * summary["delay_mean_s"].to_numpy(float),
        "sim_energy_kj": (summary["energy_mobile_j_per_frame"].to_numpy(float)
                          + summary["energy_server_j_per_frame"].to_numpy(float)) * n_frames / 1e3,
        "sim_energy_mobile_mj_per_frame": 1e3 * summary["energy_mobile_j_per_frame"].to_numpy(float),
        "sim_energy_cloud_mj_per_frame": 1e3 * summary["energy_server_j_per_frame"].to_numpy(float),
    })
    return out


def table1_with_cost(table1: pd.DataFrame, summary: pd.DataFrame, n_frames: int, energy_method: str) -> pd.DataFrame:
    """000 Table 1: the trace's F1 / accuracy / % large per approach, plus simulated time (s) and energy (kJ)."""
    cost = cost_columns(summary, n_frames).drop(columns="policy")
    out = table1.merge(cost, on="method", how="left", validate="one_to_one")
    out["energy_method"] = energy_method
    return out


@dataclass
class Replay:
    """What the replay produced: Table 1 with cost columns, the 0..1 sweep, its figures, and where numbers come from."""

    table1: pd.DataFrame
    sweep: pd.DataFrame
    figures: dict
    provenance: dict = field(default_factory=dict)


def _test_rows(trace_path: Path) -> tuple[pd.DataFrame, int]:
    """The trace and its number of test rows; one line when there are none."""
    trace = pd.read_parquet(trace_path)
    n_test = int((trace["split"] == "test").sum()) if "split" in trace.columns else 0
    if n_test == 0:
        raise EdgesimError(f"{trace_path}: no rows with split 'test' to replay")
    return trace, n_test


def replay_profiles(out: Path, trace_path: Path, info: deferral.ThresholdInfo | dict, profiles: list[Path],
                    mobile: str, cloud: str, cascade: CascadeModels = CascadeModels(), switcher_s: float = 0.0,
                    seed: int = 0, png: str = "auto", notes: Optional[dict] = None,
                    f1_floor_pct: Optional[float] = None) -> Replay:
    """Replay the trace's test split on any two models in any profiles (000 Table 1 and Figures 4-5).

    profiles: device profile files holding cascade.edge_model on `mobile` and cascade.cloud_model on `cloud`
    (measured or derived). switcher_s: the switcher's time per frame on the mobile device, added to every
    dmd-switcher frame. Writes table1.csv (trace F1/accuracy + sim_* time and energy), cost_vs_deferred.csv
    and the energy_vs_deferred / runtime_vs_deferred figures; with a switcher score and a train split also
    cost_aware.csv (costaware.py: cheapest fraction reaching the train F1 floor f1_floor_pct).
    """
    out = Path(out)
    info = info if isinstance(info, deferral.ThresholdInfo) else deferral.ThresholdInfo.from_dict(info)
    trace, n_test = _test_rows(trace_path)
    loaded = {}
    for path in profiles:
        prof = load_profile(path)
        loaded[prof.name] = prof
    for device, model in ((mobile, cascade.edge_model), (cloud, cascade.cloud_model)):
        if device not in loaded:
            raise EdgesimError(f"device '{device}' is in none of the profiles {[str(p) for p in profiles]}; "
                               f"devices there: {', '.join(sorted(loaded))}")
        if model not in loaded[device].models:
            raise EdgesimError(f"model '{model}' is not in the profile of '{device}'; models there: "
                               f"{', '.join(sorted(loaded[device].models))} (profile it with `edgesim profile`)")
    scenario = replay_scenario(profiles, trace_path, n_test, mobile, cloud, info, switcher_s, seed, cascade=cascade)
    _, summary = run(scenario, jobs=1)
    methods = {m.energy_method or "power-model-estimate"
               for m in (loaded[mobile].models[cascade.edge_model], loaded[cloud].models[cascade.cloud_model])}
    table = table1_with_cost(deferral.table1_rows(trace, info, split="test", seed=seed), summary, n_test,
                             "+".join(sorted(methods)))
    table["switcher_ms_per_frame"] = np.where(table["method"] == "switcher", 1e3 * switcher_s, 0.0)
    _, swept = run(replay_scenario(profiles, trace_path, n_test, mobile, cloud, info, switcher_s, seed, sweep=True,
                                   cascade=cascade), jobs=1)
    sweep = cost_columns(swept, n_test)
    sweep.insert(1, "offload_fraction", swept["sweep.policies.0.offload_fraction"].to_numpy(float))
    provenance = {
        "time and energy": (
            f"simulated (edgesim compiled engine) from the profiles {', '.join(str(p) for p in profiles)}: mobile device "
            f"'{mobile}' runs {cascade.edge_model} (+ the switcher for dmd-switcher), deferred frames cross a WAN "
            f"({WAN['data_rate_mbps']:g} Mbit/s, {1e3 * WAN['propagation_delay_s']:g} ms one way, assumed) as "
            f"{cascade.encoding} to '{cloud}' running {cascade.cloud_model}; {n_test} test frames at 1 frame/s, median "
            f"service times; Time (s) = capture-to-output delay summed over the frames, Energy (kJ) = (mobile compute "
            f"+ radio + cloud) energy; energy method: {'+'.join(sorted(methods))} (power models as stated in each profile)"),
        "devices": "; ".join(f"{name}: {loaded[name].provenance.kind}" for name in dict.fromkeys((mobile, cloud))),
        **(notes or {}),
    }
    atomic_write_text(out / "table1.csv", table.to_csv(index=False))
    atomic_write_text(out / "cost_vs_deferred.csv", sweep.to_csv(index=False))
    if "switcher_score" in trace.columns and (trace["split"] == "train").any():
        switcher_row = table[table["method"] == "switcher"]
        aware = cost_aware_rows(trace, sweep, n_test, float(switcher_row["large_model_pct"].iloc[0]) / 100, f1_floor_pct)
        atomic_write_text(out / "cost_aware.csv", aware.to_csv(index=False))
    figures = cost_figures(sweep, table)
    write_figures(figures, out, png)
    return Replay(table, sweep, figures, provenance)


def replay(out: Path, trace_path: Path, info: deferral.ThresholdInfo | dict, edge_ckpt: Optional[Path] = None,
           cloud_ckpt: Optional[Path] = None, n_classes: int = 2, mobile: str = "host-1thread",
           cloud: str = "host-2threads", repeats: int = 20, switcher_host_s: Optional[float] = None, seed: int = 0,
           png: str = "auto", side_px: int = 8) -> Replay:
    """The demo's replay: profile its two models on this host (and derive catalog devices), then replay_profiles.

    Writes out/profiles/*.json besides replay_profiles' files. switcher_host_s: the switcher's time on this host
    (1 thread); None measures out/switcher.safetensors when it exists, else 0. It is scaled to the mobile device
    by the edge model's time ratio (1 on host-1thread) and added to every dmd-switcher frame.
    """
    out = Path(out)
    _test_rows(trace_path)  # before profiling
    profs = profile_demo_models(out, edge_ckpt, cloud_ckpt, repeats, n_classes, mobile, cloud, side_px)
    scale = profs.mobile_edge_s() / profs.host_edge_1thread_s if profs.host_edge_1thread_s > 0 else 1.0
    if switcher_host_s is None:
        weights, config = out / "switcher.safetensors", out / "switcher.json"
        switcher_host_s = switcher_latency_s(weights, config) if weights.is_file() and config.is_file() else 0.0
    switcher_s = float(switcher_host_s) * scale
    notes = {
        "devices": "; ".join(_where(p, repeats) for p in ([profs.mobile] if profs.mobile is profs.cloud
                                                            else [profs.mobile, profs.cloud])),
        "switcher time": (f"{1e6 * switcher_s:.1f} us per frame on the mobile device: measured "
                          f"{1e6 * switcher_host_s:.1f} us on this host (1 thread, median)"
                          + (f" x {scale:.3g} (edge model time, mobile / host)" if abs(scale - 1.0) > 1e-12 else "")),
    }
    return replay_profiles(out, trace_path, info, profs.paths, mobile, cloud, CascadeModels(), switcher_s, seed, png,
                           notes)


def cost_figures(sweep: pd.DataFrame, table1: Optional[pd.DataFrame] = None) -> dict:
    """000 Figures 4 and 5: energy and runtime over the test split vs % of frames sent to the large model.

    Energy is drawn in J (the demo's tiny models spend well under a kJ); Table 1's rows are marked on the lines."""
    import plotly.graph_objects as go

    symbols = ["circle-open", "square-open", "diamond-open", "x", "triangle-up-open", "star-open"]
    figs = {}
    for name, col, scale, label, title in (
            ("energy_vs_deferred", "sim_energy_kj", 1e3, "energy over the test split (J, simulated)",
             "Total energy vs % deferred to the large model (000 Figure 4)"),
            ("runtime_vs_deferred", "sim_time_s", 1.0, "runtime over the test split (s, simulated)",
             "Runtime vs % deferred to the large model (000 Figure 5)")):
        fig = go.Figure()
        for policy, g in sweep.groupby("policy", sort=False):
            fig.add_trace(go.Scatter(x=g["sim_large_model_pct"], y=scale * g[col], mode="lines+markers",
                                     name=f"{policy} (sweep)"))
        if table1 is not None and col in table1.columns:
            for i, row in enumerate(table1.itertuples(index=False)):
                fig.add_trace(go.Scatter(x=[row.large_model_pct], y=[scale * getattr(row, col)], mode="markers",
                                         name=f"Table 1: {row.approach}",
                                         marker={"symbol": symbols[i % len(symbols)], "size": 12, "line": {"width": 2}}))
        fig.update_layout(title=title, xaxis_title="% of test frames deferred to the large model",
                          yaxis_title=label, template="plotly_white")
        figs[name] = fig
    return figs
