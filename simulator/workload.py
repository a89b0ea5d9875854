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
    cut into windows, and every policy sees the same captures and uniforms (common random numbers).
    """

    def __init__(self, seed: int, replication: int, n_mobiles: int) -> None:
        self.seed, self.replication = seed, replication
        self.capture = [self._rng(m, 0) for m in range(n_mobiles)]
        self.head = [self._rng(m, 1) for m in range(n_mobiles)]
        self.tail = [self._rng(m, 2) for m in range(n_mobiles)]
        self.delay = [self._rng(m, 4) for m in range(n_mobiles)]
        self.cloud = [self._rng(m, 5) for m in range(n_mobiles)]
        self._loss: dict[tuple[int, int], np.random.Generator] = {}
        self.last_capture_s = [0.0] * n_mobiles

    def _rng(self, m: int, kind: int, extra: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.replication, m, kind, extra])

    def loss(self, m: int, route: int) -> np.random.Generator:
        """The loss stream of mobile device m on route `route`."""
        if (m, route) not in self._loss:
            self._loss[(m, route)] = self._rng(m, 3, route)
        return self._loss[(m, route)]


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


def capture_window(scenario: Scenario, m: int, n_mobiles: int, seq: np.ndarray, streams: FrameStreams,
                   trace: Optional[np.ndarray]) -> np.ndarray:
    """Capture times of mobile device m's frames seq (consecutive): periodic (staggered), Poisson or traced."""
    w = scenario.workload
    if w.source == "periodic":
        return seq / w.frame_rate_fps + m / (w.frame_rate_fps * n_mobiles)
    if w.source == "poisson":
        times = streams.last_capture_s[m] + np.cumsum(streams.capture[m].exponential(1.0 / w.frame_rate_fps, seq.size))
        if times.size:
            streams.last_capture_s[m] = float(times[-1])
        return times
    period = (trace[-1] - trace[0]) + (float(np.median(np.diff(trace))) if trace.size > 1 else 1.0)
    return trace[seq % trace.size] + (seq // trace.size) * period
