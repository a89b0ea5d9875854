"""Where frames come from: the per-sample dataset trace, per-mobile random streams, and capture times."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from profilers.errors import EdgesimError, field_message
from simulator.csvtable import read_csv_table
from simulator.limits import MAX_TRACE_ROWS, check_trace_rows, check_trace_size
from simulator.scenario import Scenario

if TYPE_CHECKING:  # pandas and pyarrow where a dataset or a trace is read, not when a scenario is checked (validate)
    import pandas as pd


def load_dataset(path: Optional[str], split: Optional[str],
                 positive_label: Optional[int | str] = None) -> Optional[pd.DataFrame]:
    """Per-sample trace (Parquet or CSV) whose rows frames replay in order; one line on any problem (positive_label:
    the scenario's workload.positive_label, checked against the labels)."""
    if path is None:
        if positive_label is not None:
            raise EdgesimError(f"field 'workload.positive_label': {_cell(positive_label)} is set but there is no "
                               "workload.dataset: F1 is counted over a dataset trace's labels; remove it or give one")
        return None
    import pandas as pd
    import pyarrow.parquet as pq

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
    if positive_label is not None:
        check_positive_label(df, positive_label, p)
    return df


def check_positive_label(df: pd.DataFrame, positive: int | str, path: Path) -> None:
    """workload.positive_label is one of the dataset's labels, of the same kind (a class index or a class name):
    a value that never occurs would make every F1 0 without saying why."""
    import pandas as pd

    where = ("workload", "positive_label")
    if "label" not in df.columns:
        raise EdgesimError(field_message(str(path), where, f"{_cell(positive)} is set but the dataset trace has no "
                                                           "'label' column to count F1 over"))
    labels = pd.unique(df["label"])
    shown = ", ".join(_cell(v) for v in sorted(labels.tolist())[:10]) + (" ..." if labels.size > 10 else "")
    numeric = pd.api.types.is_numeric_dtype(df["label"])
    if isinstance(positive, str) == numeric:  # a name against indices, or an index against names
        given, have = ("a class name", "class indices") if numeric else ("a class index", "class names")
        hint = (f"; write it unquoted: positive_label: {positive}" if numeric and positive.strip() in
                {str(v) for v in labels.tolist()} else "")
        raise EdgesimError(field_message(str(path), where, f"{_cell(positive)} is {given} but the dataset's labels "
                                                           f"are {have} ({shown}){hint}"))
    if positive not in set(labels.tolist()):
        raise EdgesimError(field_message(str(path), where, f"{_cell(positive)} never occurs in the dataset's "
                                                           f"'label' column ({shown})"))


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
    import pandas as pd

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
    import pandas as pd

    w = scenario.workload
    if w.trace is not None:  # the one CSV reader of traces: FILE:LINE errors
        path, field = Path(w.trace), "workload.trace"
        try:
            values = read_csv_table(w.trace, ["capture_time_s"], "frame trace needs a capture_time_s column",
                                    "frame trace is empty (needs a header capture_time_s and rows)",
                                    "frame trace has no rows after the header", "frame trace").numbers("capture_time_s")
        except EdgesimError as exc:  # the reader says file and line; the field that named the file goes last
            raise EdgesimError(f"{exc} ({field})") from None
    else:
        path, field = Path(w.dataset), "workload.dataset"
        if "capture_time_s" not in dataset.columns:
            raise EdgesimError(f"{path}: workload.source 'trace' with a dataset needs a capture_time_s column in it "
                               f"({field})")
        values = dataset["capture_time_s"]
    return check_captures(np.asarray(pd.to_numeric(values, errors="coerce"), dtype=float), path, field)


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
    period = (trace[-1] - trace[0]) + float(np.median(np.diff(trace)))  # check_captures: two rows or more
    return np.tile(trace[seq % trace.size] + (seq // trace.size) * period, n_mobiles)
