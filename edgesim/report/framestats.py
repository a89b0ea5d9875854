"""What the figures need from frames.parquet, read row group by row group in bounded memory: per-replication sums
(for 95 % intervals over replications), mean delay components, and a systematic sample of frames (for CDFs, the
delay over time and per-replication percentiles).

A 10-million-frame run is never held whole: each row group (262,144 rows) is reduced to group sums and to every
k-th row, k chosen from the file's row count so that at most SAMPLE_ROWS rows are kept (k = 1, every frame, for
runs up to that size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

SAMPLE_ROWS = 400_000
"""At most this many frames are kept for CDFs and time series (about 20 MB); above it a systematic 1-in-k sample."""
KEYS = ["point", "policy", "replication"]
#: per-frame columns summed per (point, policy, replication), where the file has them
SUMMED = ("delay_s", "energy_mobile_compute_j", "energy_mobile_radio_j")
#: columns the sample keeps
SAMPLED = ("point", "policy", "replication", "capture_s", "delay_s", "status", "mobile")
#: Capture-time windows the delay-over-time figure averages gains over (ours: long enough to hold a few frames).
GAIN_WINDOW_S = 10.0


@dataclass
class FrameStats:
    """Per-replication sums, mean delay components of completed frames, and a sample of the kept frames."""

    per_rep: pd.DataFrame
    """(point, policy, replication) -> frames, completed, delay_s (sum over completed), energy sums, correct."""
    components: pd.DataFrame
    """(point, policy) -> mean of each delay component over completed frames (warm-up excluded)."""
    sample: pd.DataFrame
    """Every `stride`-th kept frame: point, policy, replication, capture_s, delay_s, status."""
    stride: int
    """1: the sample is every frame; k: one frame in k."""

    def replication_values(self, metric: str) -> Optional[pd.DataFrame]:
        """One value of a summary metric per (point, policy, replication), where the frames give it; None otherwise.

        delay_mean_s and energy from the sums (exact); delay_p95_s from the sample (exact when stride is 1);
        accuracy from the `correct` counts; gains are ratios of these (see replication_gains)."""
        r = self.per_rep
        done = r["completed"].where(r["completed"] > 0)
        if metric == "delay_mean_s":
            values = r["delay_s"] / done
        elif metric == "energy_mobile_j_per_frame" and "energy_mobile_compute_j" in r:
            values = (r["energy_mobile_compute_j"] + r["energy_mobile_radio_j"]) / r["frames"]
        elif metric == "accuracy" and "correct" in r:
            values = r["correct"] / done
        elif metric == "delay_p95_s":
            s = self.sample.dropna(subset=["delay_s"])
            if s.empty:
                return None
            return s.groupby(KEYS, sort=False)["delay_s"].quantile(0.95).rename("value").reset_index()
        else:
            return None
        return r[KEYS].assign(value=values.to_numpy())


def _numeric_keys(table: pd.DataFrame) -> pd.DataFrame:
    """policy as plain text (dictionary or Arrow strings come back from Parquet in several types)."""
    return table.assign(policy=table["policy"].astype(str))


def read_frame_stats(path: str | Path, components: tuple[str, ...], sample_rows: int = SAMPLE_ROWS) -> FrameStats:
    """FrameStats of a frames.parquet, one row group at a time (peak memory: one row group plus the results)."""
    pf = pq.ParquetFile(path)
    names = set(pf.schema_arrow.names)
    comps = [c for c in components if c in names]
    wanted = set(KEYS) | {"status", "warmup", "capture_s", "mobile", "correct", *SUMMED, *comps}
    columns = [c for c in pf.schema_arrow.names if c in wanted]
    stride = max(1, math.ceil(pf.metadata.num_rows / sample_rows))
    sums, comp_sums, samples, offset = [], [], [], 0
    for k in range(pf.num_row_groups):
        t = _numeric_keys(pf.read_row_group(k, columns=columns).to_pandas())
        rows = np.arange(offset, offset + len(t))
        offset += len(t)
        if "warmup" in t:
            keep = ~t["warmup"].astype(bool).to_numpy()
            t, rows = t[keep], rows[keep]
        done = (t["status"].astype(str) != "dropped").to_numpy()
        t = t.assign(frames=1, completed=done.astype(np.int64), delay_s=t["delay_s"].where(done, 0.0))
        if "correct" in t:
            t["correct"] = t["correct"].fillna(False).astype(bool).astype(np.int64)
        summed = ["frames", "completed", *[c for c in (*SUMMED, "correct") if c in t]]
        sums.append(t.groupby(KEYS, sort=False)[summed].sum())
        if comps:
            by = t[done].groupby(["point", "policy"], sort=False)
            comp_sums.append(by[comps].sum().assign(n=by.size()))
        picked = t[rows % stride == 0]
        samples.append(picked[[c for c in SAMPLED if c in picked]].assign(
            delay_s=picked["delay_s"].where(picked["completed"] > 0)))
    per_rep = pd.concat(sums).groupby(level=KEYS, sort=False).sum().reset_index() if sums else pd.DataFrame()
    if comp_sums:
        total = pd.concat(comp_sums).groupby(level=["point", "policy"], sort=False).sum()
        comp_means = total[comps].div(total["n"], axis=0).reset_index()
    else:
        comp_means = pd.DataFrame(columns=["point", "policy", *comps])
    sample = pd.concat(samples, ignore_index=True) if samples else pd.DataFrame(columns=list(SAMPLED))
    return FrameStats(per_rep, comp_means, sample, stride)


def frame_stats_of(frames: pd.DataFrame, components: tuple[str, ...]) -> FrameStats:
    """FrameStats of a frame table in memory (the Python API's), through the same reduction as the file's."""
    import io

    import pyarrow as pa

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frames, preserve_index=False), buf, row_group_size=262_144)
    buf.seek(0)
    return read_frame_stats(buf, components)
