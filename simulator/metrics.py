"""Per-frame records to per-policy summaries: delay percentiles, throughput, drops, energy, gains, accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Summary columns in order (issue 3 point 3); sweep columns and accuracy/f1 are added where they apply.
SUMMARY_COLUMNS = [
    "point", "policy", "mobile", "edge", "data_rate_mbps", "frames", "delay_mean_s", "delay_p50_s", "delay_p95_s",
    "delay_p99_s", "delay_mean_ci95_s", "throughput_fps", "deadline_miss_fraction", "drop_fraction",
    "energy_mobile_j_per_frame", "energy_mobile_compute_j_per_frame", "energy_mobile_radio_j_per_frame",
    "energy_mobile_total_j", "energy_server_j_per_frame", "bytes_per_frame", "offload_fraction",
    "head_s_mean", "transfer_s_mean", "tail_s_mean", "queue_s_mean", "gain_vs_local", "gain_vs_offload",
]


def _ci95(per_rep_means: np.ndarray) -> float:
    """Half-width of a 95% Student-t interval over replication means (NaN with one replication)."""
    k = per_rep_means.size
    if k < 2:
        return float("nan")
    from statistics import NormalDist

    # t quantile via a small table for common k, normal beyond (fine for >= 30 replications)
    t_table = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262,
               15: 2.145, 20: 2.093, 30: 2.045}
    t = t_table.get(k) or next((v for kk, v in sorted(t_table.items()) if kk >= k), NormalDist().inv_cdf(0.975))
    return float(t * per_rep_means.std(ddof=1) / np.sqrt(k))


def summarise(frames: pd.DataFrame, mobile_idle_w: dict[str, float], n_mobiles: int) -> dict:
    """Summary of one policy at one sweep point (all replications pooled)."""
    kept = frames[~frames["warmup"]] if "warmup" in frames else frames
    n = len(kept)
    done = kept[kept["status"] != "dropped"]
    delay = done["delay_s"].to_numpy(float)
    per_rep = done.groupby("replication")["delay_s"].mean().to_numpy(float) if len(done) else np.zeros(0)
    span = 0.0
    if len(done):
        spans = done.groupby("replication").apply(lambda d: d["done_s"].max() - d["capture_s"].min(), include_groups=False)
        span = float(spans.sum())
    dyn_compute = kept["energy_mobile_compute_j"].sum()
    dyn_radio = kept["energy_mobile_radio_j"].sum()
    busy = kept["head_s"].fillna(0).sum() + kept["transfer_s"].fillna(0).sum()
    idle_w = float(np.mean(list(mobile_idle_w.values()))) if mobile_idle_w else 0.0
    idle_time = max(span * n_mobiles - busy, 0.0)
    row = {
        "frames": n,
        "delay_mean_s": float(delay.mean()) if delay.size else float("nan"),
        "delay_p50_s": float(np.percentile(delay, 50)) if delay.size else float("nan"),
        "delay_p95_s": float(np.percentile(delay, 95)) if delay.size else float("nan"),
        "delay_p99_s": float(np.percentile(delay, 99)) if delay.size else float("nan"),
        "delay_mean_ci95_s": _ci95(per_rep),
        "throughput_fps": float(len(done) / span) if span > 0 else float("nan"),
        "deadline_miss_fraction": float((kept["status"] == "late").mean()) if n else float("nan"),
        "drop_fraction": float((kept["status"] == "dropped").mean()) if n else float("nan"),
        "energy_mobile_j_per_frame": float((dyn_compute + dyn_radio) / n) if n else float("nan"),
        "energy_mobile_compute_j_per_frame": float(dyn_compute / n) if n else float("nan"),
        "energy_mobile_radio_j_per_frame": float(dyn_radio / n) if n else float("nan"),
        "energy_mobile_total_j": float(dyn_compute + dyn_radio + idle_w * idle_time),
        "energy_server_j_per_frame": float(kept["energy_server_j"].sum() / n) if n else float("nan"),
        "bytes_per_frame": float(kept["bytes_up"].mean()) if n else float("nan"),
        "offload_fraction": float((kept["bytes_up"] > 0).mean()) if n else float("nan"),
        "head_s_mean": float(done["head_s"].mean()) if len(done) else float("nan"),
        "transfer_s_mean": float(done["transfer_s"].mean()) if len(done) else float("nan"),
        "tail_s_mean": float(done["tail_s"].mean()) if len(done) else float("nan"),
        "queue_s_mean": float((done["mobile_queue_s"] + done["uplink_queue_s"] + done["server_queue_s"]).mean())
        if len(done) else float("nan"),
    }
    if "label" in kept and kept["label"].notna().any() and len(done):
        from sklearn.metrics import f1_score

        lab = done["label"].to_numpy()
        pred = done["prediction"].to_numpy()
        row["accuracy"] = float((lab == pred).mean())
        average = "binary" if len(np.unique(np.concatenate([lab, pred]))) <= 2 else "macro"
        row["f1"] = float(f1_score(lab, pred, average=average, zero_division=0))
        row["f1_average"] = average
    return row


def add_gains(summary: pd.DataFrame, local_label: str | None, offload_label: str | None) -> pd.DataFrame:
    """Gains as in 002 section 4: T_baseline / T_policy at the same sweep point; above 1 the policy is faster."""
    out = summary.copy()
    for col, label in (("gain_vs_local", local_label), ("gain_vs_offload", offload_label)):
        if label is None:
            out[col] = np.nan
            continue
        base = out[out["policy"] == label].set_index("point")["delay_mean_s"]
        out[col] = out["point"].map(base) / out["delay_mean_s"]
    return out
