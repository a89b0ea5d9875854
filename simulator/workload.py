"""Where frames come from: the per-sample dataset trace, per-mobile random streams, and capture times."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

import pyarrow.parquet as pq

from profilers.errors import EdgesimError
from simulator.link import MAX_TRACE_ROWS, check_trace_rows, check_trace_size
from simulator.scenario import Scenario


def load_dataset(path: Optional[str], split: Optional[str]) -> Optional[pd.DataFrame]:
    """Per-sample trace (Parquet or CSV) whose rows frames replay in order; one line on any problem."""
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        raise EdgesimError(f"{p}: dataset trace not found (workload.dataset)")
    check_trace_size(p)
    try:
        rows = pq.ParquetFile(p).metadata.num_rows if p.suffix == ".parquet" else None
        check_trace_rows(p, rows or 0, "dataset trace")
        df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p, nrows=MAX_TRACE_ROWS + 1)
    except EdgesimError:
        raise
    except Exception as exc:  # pyarrow and pandas raise many types for corrupt files
        raise EdgesimError(f"{p}: cannot read dataset trace: {str(exc).splitlines()[0]}") from None
    if split is not None:
        if "split" not in df.columns:
            raise EdgesimError(f"{p}: workload.dataset_split is set but the trace has no 'split' column")
        df = df[df["split"] == split].reset_index(drop=True)
    if df.empty:
        raise EdgesimError(f"{p}: dataset trace has no rows" + (f" with split '{split}'" if split else ""))
    check_trace_rows(p, len(df), "dataset trace")
    check_dataset(df, p)
    return df


#: score columns of a dataset trace by their name's ending: probabilities lie in [0, 1], entropies are >= 0
PROBABILITY_ENDINGS = ("_prob", "_score", "_margin", "_confidence")
ENTROPY_ENDINGS = ("_entropy",)


def _where(path: Path, row: int) -> str:
    """A trace row as its file line (CSV: a header line first) or its row number (Parquet)."""
    return f"{path}:{row + 2}" if path.suffix != ".parquet" else f"{path}: row {row}"


def _cell(value: object) -> str:
    """A trace value as the file shows it: names quoted, numbers plain (not numpy's reprs)."""
    return repr(value) if isinstance(value, str) else str(getattr(value, "item", lambda: value)())


def _first_bad(mask: np.ndarray) -> Optional[int]:
    bad = np.flatnonzero(mask)
    return int(bad[0]) if bad.size else None


def check_dataset(df: pd.DataFrame, path: Path) -> None:
    """A dataset trace's contents: labels and predictions are class indices (whole numbers >= 0) or class names, the
    same kind in every column, none missing; probabilities and scores finite in [0, 1]; entropies finite >= 0."""
    classes = [c for c in df.columns if c == "label" or str(c).endswith("_pred")]
    kinds = {}
    for col in classes:
        values = df[col]
        row = _first_bad(values.isna().to_numpy())
        if row is not None:
            raise EdgesimError(f"{_where(path, row)}: column '{col}': missing class (workload.dataset)")
        if pd.api.types.is_bool_dtype(values) or not (pd.api.types.is_numeric_dtype(values)
                                                      or pd.api.types.is_string_dtype(values)):
            raise EdgesimError(f"{path}: column '{col}': classes are whole numbers >= 0 or names, not "
                               f"{values.dtype} (workload.dataset)")
        if pd.api.types.is_numeric_dtype(values):
            num = values.to_numpy(dtype=float)
            row = _first_bad((num < 0) | (num != np.round(num)) | ~np.isfinite(num))
            if row is not None:
                raise EdgesimError(f"{_where(path, row)}: column '{col}': {_cell(values.iloc[row])} is not a class index "
                                   "(a whole number >= 0) (workload.dataset)")
            kinds[col] = "class indices"
        else:
            kinds[col] = "class names"
    if len(set(kinds.values())) > 1:
        raise EdgesimError(f"{path}: columns {', '.join(f'{c!r} ({k})' for c, k in kinds.items())} mix class indices "
                           "and class names: a prediction could never equal its label (workload.dataset)")
    for col in df.columns:
        name = str(col)
        low, high = (0.0, 1.0) if name.endswith(PROBABILITY_ENDINGS) else (0.0, np.inf) if name.endswith(
            ENTROPY_ENDINGS) else (None, None)
        if low is None:
            continue
        num = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        row = _first_bad(~np.isfinite(num) | (num < low) | (num > high))
        if row is not None:
            what = "a probability in [0, 1]" if high == 1.0 else "a finite entropy >= 0"
            raise EdgesimError(f"{_where(path, row)}: column '{col}': {_cell(df[col].iloc[row])} is not {what} "
                               "(workload.dataset)")


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
    if w.trace is not None:
        path, field = Path(w.trace), "workload.trace"
        check_trace_size(path)
        try:
            values = pd.read_csv(path, nrows=MAX_TRACE_ROWS + 1)["capture_time_s"]
        except FileNotFoundError:
            raise EdgesimError(f"{path}: frame trace not found ({field})") from None
        except KeyError:
            raise EdgesimError(f"{path}:1: frame trace needs a capture_time_s column ({field})") from None
        except Exception as exc:
            raise EdgesimError(f"{path}: cannot read frame trace: {str(exc).splitlines()[0]} ({field})") from None
        check_trace_rows(path, len(values), "frame trace")
    else:
        path, field = Path(w.dataset), "workload.dataset"
        if "capture_time_s" not in dataset.columns:
            raise EdgesimError(f"{path}: workload.source 'trace' with a dataset needs a capture_time_s column in it "
                               f"({field})")
        values = dataset["capture_time_s"]
    return check_captures(pd.to_numeric(values, errors="coerce").to_numpy(float), path, field)


def check_captures(col: np.ndarray, path: Path, field: str) -> np.ndarray:
    """Capture times of one camera: at least two (the period of the replay is their span), finite, >= 0 and
    strictly increasing (a camera captures one frame at a time); one line naming the row if not."""
    if col.size < 2:
        raise EdgesimError(f"{path}: column 'capture_time_s': {col.size} row(s); a frame trace needs at least two "
                           f"(its span is the period it repeats with) ({field})")
    row = _first_bad(~np.isfinite(col) | (col < 0))
    if row is not None:
        raise EdgesimError(f"{_where(path, row)}: column 'capture_time_s': {_cell(col[row])} is not a finite time "
                           f">= 0 ({field})")
    row = _first_bad(np.diff(col) <= 0)
    if row is not None:
        raise EdgesimError(f"{_where(path, row + 1)}: column 'capture_time_s': {_cell(col[row + 1])} s does not come "
                           f"after the row before ({_cell(col[row])} s); capture times increase strictly ({field})")
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
    period = (trace[-1] - trace[0]) + float(np.median(np.diff(trace)))  # check_captures: two rows or more
    return trace[seq % trace.size] + (seq // trace.size) * period
