"""DMD replay in the simulator (000 Table 1, Figures 4 and 5): time and energy from profiles, decisions from the trace.

The two demo models are measured on this host (1 thread for the mobile device, 2 for the cloud by default;
catalog devices can be named instead and are derived from that measurement), and the simulator replays the test
split: every frame's decision and correctness come from the per-sample trace of the real models, its
time and energy from the profiles (energy: the power-model estimate unless a profile measured it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from profilers.errors import EdgesimError
from profilers.io import atomic_write_text

EDGE_ID, CLOUD_ID = "dmd-digits-edge", "dmd-digits-cloud"
#: the WAN between the mobile device and the cloud (stated assumption, not a measurement)
WAN = {"data_rate_mbps": 20.0, "propagation_delay_s": 0.02, "packet_payload_bytes": 1460, "packet_overhead_bytes": 40}


MEASURED = {"host-1thread": 1, "host-2threads": 2}
"""Device names that mean: this host, measured with that many threads (the default: no extrapolation)."""


def check_devices(*names: str) -> dict:
    """The catalog facts, after checking every replay device name (one line listing the known ones)."""
    from profilers.catalog import FACTS_PATH
    from profilers.derive import load_facts

    facts = load_facts(FACTS_PATH)
    for name in names:
        if name not in facts and name not in MEASURED:
            raise EdgesimError(f"unknown device '{name}' for the DMD replay; known: "
                               f"{', '.join(sorted(MEASURED) + sorted(facts))}")
    return facts


def profile_demo_models(out: Path, edge_ckpt: Path, cloud_ckpt: Path, n_classes: int, mobile: str = "host-1thread",
                        cloud: str = "host-2threads", repeats: int = 20) -> list[Path]:
    """Measure both trained models on this host; a catalog name is derived from that measurement instead.

    The roofline derivation has no per-layer overhead term, so for models this small (microseconds of
    arithmetic) derived devices understate latency; the measured host is the default for that reason.
    """
    from profilers.derive import derive_device
    from profilers.measure import MeasureOptions, assumed_host_power, host_hardware, host_provenance, measure_model
    from profilers.models import build
    from profilers.schema import DeviceProfile, save_profile

    facts = check_devices(mobile, cloud)
    hardware = host_hardware("cpu")
    hosts = {}
    for name, threads in MEASURED.items():
        models = {}
        for model_id, ckpt in ((EDGE_ID, edge_ckpt), (CLOUD_ID, cloud_ckpt)):
            model = build(model_id, checkpoint=str(ckpt), n_classes=n_classes)
            models[model_id] = measure_model(model, MeasureOptions(repeats=repeats, warmup=3, threads=threads))
        hosts[name] = DeviceProfile(name=name, kind="mobile" if threads == 1 else "edge", hardware=hardware,
                                    power=assumed_host_power(threads), provenance=host_provenance(threads, "cpu"),
                                    models=models)
    paths = []
    for name in dict.fromkeys((mobile, cloud)):
        prof = hosts[name] if name in hosts else derive_device(hosts["host-2threads"], name, facts[name],
                                                             from_profile="host-2threads.json (this run)")
        paths.append(save_profile(prof, out / "profiles" / f"{name}.json"))
    return paths


def switcher_latency_s(weights: Path, config: Path, repeats: int = 200) -> float:
    """Median time of one switcher forward pass on this host (1 thread, batch 1): its cost on the mobile device."""
    import time

    import torch

    from profilers.dmd.switcher import load_switcher

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


def replay_scenario(profiles: list[Path], trace_path: Path, n_test: int, mobile: str, cloud: str,
                    offload_fraction: float, fractions: Optional[list[float]] = None, switcher_s: float = 0.0):
    """The scenario that replays the test split: Table 1 policies at the chosen fraction, or a sweep over it."""
    from simulator.scenario import Scenario

    models = {"edge_model": EDGE_ID, "cloud_model": CLOUD_ID, "encoding": "float32"}  # the digits tensor
    if fractions is None:
        policies = [{"name": "edge-only", **models}, {"name": "cloud-only", **models},
                    {"name": "uncertainty", "offload_fraction": offload_fraction, **models},
                    {"name": "dmd-switcher", "offload_fraction": offload_fraction, "switcher_s": switcher_s, **models},
                    {"name": "random", "offload_fraction": offload_fraction, **models},
                    {"name": "oracle", "offload_fraction": offload_fraction, **models}]
        sweep = {}
    else:
        policies = [{"name": "dmd-switcher", "offload_fraction": fractions[0], "switcher_s": switcher_s, **models},
                    {"name": "uncertainty", "offload_fraction": fractions[0], **models}]
        sweep = {"cases": [{"policies.0.offload_fraction": f, "policies.1.offload_fraction": f} for f in fractions]}
    data = {
        "name": "dmd-replay",
        "model": EDGE_ID,
        "profiles": [str(p) for p in profiles],
        "mobiles": [{"device": mobile}],
        "edge": {"device": cloud},
        "link": WAN,
        "workload": {"source": "periodic", "frame_rate_fps": 1.0, "frames": n_test, "dataset": str(trace_path),
                     "dataset_split": "test", "service_time": "median"},
        "policies": policies,
        "sweep": sweep,
        "engine": "fast",
        "outputs": {"plots": False, "frames": False},
    }
    return Scenario.model_validate(data)


TABLE1_NAMES = {"edge-only": "Small model only", "cloud-only": "Large model only", "uncertainty": "Uncertainty-based",
                "dmd-switcher": "Ours (switcher)", "random": "Random deferral", "oracle": "Oracle deferral"}


def table1_with_cost(summary: pd.DataFrame, n_frames: int) -> pd.DataFrame:
    """000 Table 1 layout from the replay: F1 %, % to the large model, time (s) and energy (kJ) over the test split."""
    rows = []
    for _, r in summary.iterrows():
        energy_j = (r["energy_mobile_j_per_frame"] + r["energy_server_j_per_frame"]) * n_frames
        rows.append({
            "approach": TABLE1_NAMES.get(r["policy"], r["policy"]),
            "policy": r["policy"],
            "f1_pct": 100.0 * r["f1"],
            "accuracy_pct": 100.0 * r["accuracy"],
            "large_model_pct": 100.0 * r["offload_fraction"],
            "time_s": r["delay_mean_s"] * n_frames,
            "delay_mean_ms": 1e3 * r["delay_mean_s"],
            "energy_kj": energy_j / 1e3,
            "energy_mobile_mj_per_frame": 1e3 * r["energy_mobile_j_per_frame"],
            "energy_cloud_mj_per_frame": 1e3 * r["energy_server_j_per_frame"],
        })
    out = pd.DataFrame(rows)
    out.attrs["method"] = ("time = capture-to-output delay summed over the test frames (simulated, service times "
                           "from the profiles); energy = mobile (compute + radio) + cloud energy per frame x frames, "
                           "power-model estimates")
    return out


def replay(out: Path, trace_path: Path, edge_ckpt: Path, cloud_ckpt: Path, n_classes: int, offload_fraction: float,
           mobile: str = "host-1thread", cloud: str = "host-2threads", repeats: int = 20) -> pd.DataFrame:
    """Profile, replay at the chosen fraction (table1_replay.csv) and over fractions 0..1 (figures 4 and 5 of 000)."""
    from simulator.report import write_figures
    from simulator.runner import run

    trace = pd.read_parquet(trace_path, columns=["split"])
    n_test = int((trace["split"] == "test").sum())
    if n_test == 0:
        raise EdgesimError(f"{trace_path}: no test rows to replay")
    profiles = profile_demo_models(out, edge_ckpt, cloud_ckpt, n_classes, mobile, cloud, repeats)
    switcher_s = 0.0
    if (out / "switcher.safetensors").exists() and (out / "switcher.json").exists():
        switcher_s = switcher_latency_s(out / "switcher.safetensors", out / "switcher.json")
    _, summary = run(replay_scenario(profiles, trace_path, n_test, mobile, cloud, offload_fraction,
                                     switcher_s=switcher_s), jobs=1)
    table = table1_with_cost(summary, n_test)
    table["switcher_ms_per_frame"] = np.where(table["policy"] == "dmd-switcher", 1e3 * switcher_s, 0.0)
    table.attrs["method"] = table.attrs.get("method", "") + (
        f"; the switcher's own time on the mobile device, {1e3 * switcher_s:.3f} ms a frame (measured here, 1 thread),"
        " is added to every dmd-switcher frame")
    atomic_write_text(out / "table1_replay.csv", table.to_csv(index=False))
    fractions = [round(0.1 * k, 1) for k in range(11)]
    _, swept = run(replay_scenario(profiles, trace_path, n_test, mobile, cloud, offload_fraction, fractions,
                                   switcher_s=switcher_s), jobs=1)
    sweep = table1_with_cost(swept, n_test)
    sweep["deferred_fraction"] = swept["sweep.policies.0.offload_fraction"].to_numpy()
    atomic_write_text(out / "cost_vs_deferred.csv", sweep.to_csv(index=False))
    write_figures(cost_figures(sweep), out, "auto")
    return table


def cost_figures(sweep: pd.DataFrame) -> dict:
    """Figures 4 and 5 of 000: energy and runtime over the test split vs % sent to the large model."""
    import plotly.graph_objects as go

    figs = {}
    for name, col, title in (("energy_vs_deferred", "energy_kj", "Energy (kJ) vs % deferred to the large model (000 Fig. 4)"),
                             ("runtime_vs_deferred", "time_s", "Runtime (s) vs % deferred to the large model (000 Fig. 5)")):
        fig = go.Figure()
        for policy, g in sweep.groupby("policy", sort=False):
            fig.add_trace(go.Scatter(x=100 * g["deferred_fraction"], y=g[col], mode="lines+markers", name=policy))
        fig.update_layout(title=title, xaxis_title="% of test frames sent to the large model",
                          yaxis_title=col.replace("_", " "), template="plotly_white")
        figs[name] = fig
    return figs


def accuracy_matches_trace(table: pd.DataFrame, trace_path: Path) -> dict:
    """Edge-only and cloud-only accuracy of the replay vs the trace itself (a consistency check)."""
    df = pd.read_parquet(trace_path)
    test = df[df["split"] == "test"]
    return {
        "edge-only": (float(table.loc[table.policy == "edge-only", "accuracy_pct"].iloc[0]),
                      100.0 * float(np.mean(test["edge_pred"] == test["label"]))),
        "cloud-only": (float(table.loc[table.policy == "cloud-only", "accuracy_pct"].iloc[0]),
                       100.0 * float(np.mean(test["cloud_pred"] == test["label"]))),
    }
