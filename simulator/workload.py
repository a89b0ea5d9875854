"""Where frames come from: the per-sample dataset trace, per-mobile random streams, and capture times."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from profilers.errors import EdgesimError
from simulator.csvtable import read_csv_table
from simulator.scenario import Scenario


def load_dataset(path: Optional[str], split: Optional[str]) -> Optional[pd.DataFrame]:
    """Per-sample trace (Parquet or CSV) whose rows frames replay in order; one line on any problem."""
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        raise EdgesimError(f"{p}: dataset trace not found (workload.dataset)")
    try:
        df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    except Exception as exc:  # pyarrow and pandas raise many types for corrupt files
        raise EdgesimError(f"{p}: cannot read dataset trace: {str(exc).splitlines()[0]}") from None
    if split is not None:
        if "split" not in df.columns:
            raise EdgesimError(f"{p}: workload.dataset_split is set but the trace has no 'split' column")
        df = df[df["split"] == split].reset_index(drop=True)
    if df.empty:
        raise EdgesimError(f"{p}: dataset trace has no rows" + (f" with split '{split}'" if split else ""))
    return df


class FrameStreams:
    """Per-mobile-device random streams (captures, head and tail uniforms, per-route packet losses, link delays).

    Each stream belongs to one mobile device, so the numbers a frame gets do not depend on how the run is
    cut into windows, and every policy sees the same captures and uniforms (common random numbers). A stream is
    made when first drawn from, so a run pays only for the streams it uses (a city of cameras with median service
    times and no losses makes none but the captures' of a Poisson source).
    """

    KINDS = {"capture": 0, "head": 1, "tail": 2, "delay": 4, "cloud": 5}
    """Stream number of each kind (3: per-route packet losses, see loss)."""

    def __init__(self, seed: int, replication: int, n_mobiles: int) -> None:
        self.seed, self.replication, self.n_mobiles = seed, replication, n_mobiles
        self._made: dict[tuple[int, int, int], np.random.Generator] = {}
        self.last_capture_s = np.zeros(n_mobiles)

    def stream(self, m: int, kind: int, extra: int = 0) -> np.random.Generator:
        """Mobile device m's stream of this kind (made on first use, then continued)."""
        key = (m, kind, extra)
        rng = self._made.get(key)
        if rng is None:
            rng = self._made[key] = np.random.default_rng([self.seed, self.replication, m, kind, extra])
        return rng

    def uniforms(self, kind: str, per: int, shape: tuple[int, ...] = ()) -> np.ndarray:
        """The next `per` draws (each of `shape`) of every mobile device's stream of this kind, device after device."""
        k = self.KINDS[kind]
        draws = [self.stream(m, k).random((*shape, per)) for m in range(self.n_mobiles)]
        return np.concatenate(draws, axis=-1) if draws else np.zeros((*shape, 0))

    def loss(self, m: int, route: int) -> np.random.Generator:
        """The loss stream of mobile device m on route `route`."""
        return self.stream(m, 3, route)


def trace_captures(scenario: Scenario, dataset: Optional[pd.DataFrame]) -> np.ndarray:
    """Capture times of a trace source: a CSV column or the dataset's capture_time_s (repeated past its end)."""
    w = scenario.workload
    if w.trace is not None:  # the one CSV reader of traces: FILE:LINE errors
        col = read_csv_table(w.trace, ["capture_time_s"], "frame trace needs a capture_time_s column",
                             "frame trace is empty (needs a header capture_time_s and rows)",
                             "frame trace has no rows after the header", "frame trace").numbers("capture_time_s")
    else:
        if "capture_time_s" not in dataset.columns:
            raise EdgesimError("workload.source 'trace' with a dataset needs a capture_time_s column in it")
        col = dataset["capture_time_s"].to_numpy(float)
    if col.size == 0 or not np.all(np.isfinite(col)) or np.any(np.diff(col) < 0) or col[0] < 0:
        raise EdgesimError("frame trace: capture_time_s must be finite, >= 0 and non-decreasing")
    return col


def capture_windows(scenario: Scenario, n_mobiles: int, seq: np.ndarray, streams: FrameStreams,
                    trace: Optional[np.ndarray]) -> np.ndarray:
    """Capture times of frames seq (consecutive) of every mobile device, device after device: periodic (staggered),
    Poisson (each device's own stream) or traced; one array operation except for Poisson draws."""
    w = scenario.workload
    if w.source == "periodic":
        m = np.arange(n_mobiles)[:, None]
        return (seq[None, :] / w.frame_rate_fps + m / (w.frame_rate_fps * n_mobiles)).ravel()
    if w.source == "poisson":
        gaps = [streams.stream(m, FrameStreams.KINDS["capture"]).exponential(1.0 / w.frame_rate_fps, seq.size)
                for m in range(n_mobiles)]
        times = streams.last_capture_s[:, None] + np.cumsum(np.reshape(gaps, (n_mobiles, seq.size)), axis=1)
        if seq.size:
            streams.last_capture_s = times[:, -1].copy()
        return times.ravel()
    period = (trace[-1] - trace[0]) + (float(np.median(np.diff(trace))) if trace.size > 1 else 1.0)
    return np.tile(trace[seq % trace.size] + (seq // trace.size) * period, n_mobiles)
