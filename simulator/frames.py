"""Per-frame records (each delay component, bytes, energy, decision) and where they go: summaries and Parquet.

Mobile energy per frame = head time x the route's power + radio energy from a linear Wi-Fi model (Huang et al.,
MobiSys 2012): tx_w x transfer time + tx_w_per_mbps x megabits sent, likewise for the downlink.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from profilers.io import atomic_target
from simulator.assemble import Point, Window
from simulator.devices import Device
from simulator.metrics import FrameKeys, SummaryAccumulator
from simulator.plan import STAGES, STATUS_NAMES, FramePlan, Tiers
from simulator.policies import Route


def text_column(names, codes: np.ndarray, missing: Optional[np.ndarray] = None) -> pa.DictionaryArray:
    """names[codes] as an Arrow dictionary column (int32 indices into the distinct names, null where `missing` is
    true): no string is copied per frame, and Parquet writes the indices as its dictionary encoding's without hashing
    a string. frames.parquet stores it as text (large_string, the type pandas' "str" columns take in Arrow:
    FramesFile), and frame_df as pandas' text column."""
    names = list(names)
    distinct = list(dict.fromkeys(names))
    if len(distinct) < len(names):  # a repeated name: one dictionary entry, else Parquet drops the dictionary
        at = {name: i for i, name in enumerate(distinct)}
        codes = np.array([at[name] for name in names], np.int32)[codes]
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(codes, np.int32), mask=missing),
                                          pa.array(distinct, pa.large_string()))


Column = Union[np.ndarray, pa.Array, pd.api.extensions.ExtensionArray]
FrameColumns = dict[str, Column]
"""One window's frame table as columns in table order: numbers and flags as numpy arrays, text as Arrow dictionary
arrays (text_column), label and prediction as pandas arrays; frame_df and frame_arrow make it pandas or Arrow."""


def frame_columns(pt: Point, w: Window, times: dict, policy: str, rep: int, point: int) -> FrameColumns:
    """The frame table of one window of one policy, keyed by sweep point and replication."""
    cols, tier_cols = frame_table(w.plan, times, w.routes_by_group, w.group, pt.devices, [n for n, _ in pt.groups],
                                  pt.instance_names, w.sample, pt.dataset, pt.scenario.link.propagation_delay_s,
                                  pt.downlink_bps, w.frame_id, pt.prediction_dtype, pt.topo.tiers,
                                  pt.cloud.active_w if pt.cloud is not None else 0.0)
    n = w.plan.capture_s.size
    labels = [p.display for p in pt.scenario.policies]  # one dictionary for every policy's frames
    out: FrameColumns = {"point": np.full(n, point, np.int64), "replication": np.full(n, rep, np.int64),
                         "policy": text_column(labels, np.full(n, labels.index(policy), np.int32))}
    out.update(cols)
    out["warmup"] = w.seq < pt.scenario.workload.warmup_frames
    out.update(tier_cols)
    return out


def frame_df(cols: FrameColumns) -> pd.DataFrame:
    """The frame table as pandas: text columns as pandas' "str" dtype, the rest as they are."""
    return pd.DataFrame({name: pd.array(_text(v), dtype="str") if isinstance(v, pa.Array) else v
                         for name, v in cols.items()})


def _text(v: pa.Array) -> pa.Array:
    """A text column as its strings (a dictionary array decoded)."""
    return v.dictionary_decode() if pa.types.is_dictionary(v.type) else v


def frame_keys(w: Window, times: dict, rep: int, pt: Point, bytes_up: np.ndarray) -> FrameKeys:
    """The summary's group-by keys of a window's frames: mobile device, status and (tiered) edge server as integers;
    a frame that never left the mobile device has no edge server (code n_edges, as its missing `edge` column)."""
    edge = None
    if pt.topo.tiers is not None:
        edge = times["route"].astype(np.int64) // (w.plan.routes_per_edge or 1)
        edge[~_sent(times, bytes_up)] = len(pt.topo.tiers.edges)
    return FrameKeys(rep, w.plan.mobile, times["status"], edge)


def _sent(times: dict, bytes_up: np.ndarray) -> np.ndarray:
    """Frames that reached an edge server: offloaded (an uplink transfer ended) or any bytes sent."""
    return ~np.isnan(times["up_end"]) | (bytes_up > 0)


DELAY_COMPONENTS = (
    ("mobile_queue_s", "mobile queue"), ("head_s", "head"), ("uplink_queue_s", "uplink queue"),
    ("transfer_s", "transfer"), ("propagation_s", "propagation"), ("server_queue_s", "server queue"),
    ("tail_s", "tail"), ("return_s", "return"),
)
"""The one registry of per-frame delay components (column, words), in pipeline order: they sum to delay_s; the
figures and the summary read their names from here."""
TIER_DELAY_COMPONENTS = (
    ("mobile_queue_s", "mobile queue"), ("head_s", "head"), ("uplink_queue_s", "uplink queue"),
    ("transfer_s", "transfer"), ("propagation_s", "propagation"), ("server_queue_s", "edge queue"),
    ("tail_s", "edge compute"), ("wan_queue_s", "WAN queue"), ("wan_transfer_s", "WAN transfer"),
    ("wan_propagation_s", "WAN propagation"), ("cloud_queue_s", "cloud queue"), ("batch_wait_s", "batching wait"),
    ("cloud_s", "cloud compute"), ("wan_return_s", "WAN return"), ("return_s", "return"),
)
"""Past the edge server (several edge servers or a cloud): the WAN, the cloud and batching, before the return."""
TIER_COLUMNS = tuple(c for c, _ in TIER_DELAY_COMPONENTS if c not in dict(DELAY_COMPONENTS))
"""Delay components past the edge server (0 for frames that stay at the edge); with the earlier ones they sum to
delay_s: mobile queue, head, uplink queue, transfer, propagation, edge queue, edge compute (tail_s), WAN queue and
transfer, WAN propagation both ways, cloud queue, batching wait, cloud compute, WAN return, return."""


def frame_table(plan: FramePlan, times: dict, routes_by_group: list[list[Route]], group: np.ndarray,
                devices: dict[str, Device], group_names: list[str], instance_names: list[str],
                sample: np.ndarray, dataset: Optional[pd.DataFrame], propagation_s: float,
                downlink_bps: float, frame_id: Optional[np.ndarray] = None,
                prediction_dtype: Optional[object] = None, tiers: Optional[Tiers] = None,
                cloud_w: float = 0.0) -> tuple[FrameColumns, FrameColumns]:
    """Per-frame records: each delay component, bytes, energy (compute and radio) and the decision; with
    `prediction_dtype` (some policy of the run predicts: Point.prediction_dtype) also label, prediction, correct; with
    `tiers` (a tiered run) each frame's edge server (after mobile) and, as a second table, the WAN, cloud and batching
    components and cloud energy (0 for frames that stay at the edge). The numbers come from one compiled pass
    (framecols.frame_numbers)."""
    from simulator.framecols import COUNTS, NUMBERS, TIERED_FROM, frame_numbers

    n = plan.capture_s.size
    r = times["route"]
    capture = plan.capture_s
    n_routes = len(routes_by_group[0])

    def per_route(value) -> np.ndarray:
        return np.array([[value(routes[k]) for k in range(n_routes)] for routes in routes_by_group])

    radios = [devices[nm].radio for nm in group_names]
    radio = np.array([[rd.tx_w, rd.tx_w_per_mbps, rd.rx_w, rd.rx_w_per_mbps] for rd in radios], dtype=float)
    stage = tuple(times[k] for k in ("head_start", "head_end", "up_start", "up_end", "down_start", "down_end",
                                     "tail_start", "tail_end", "done"))
    tiered = tiers is not None
    tier_stage = tuple(times[k] for k in ("edge_arrive", "cloud_start", "cloud_arrive", "cloud_end", "wan_start",
                                          "wan_end", "wan_down_end", "batch_wait", "batch_size")) if tiered else (capture,) * 9
    # the one-way delays each frame met: a varying delay's own, else the constant propagation both ways
    prop_up = np.atleast_1d(np.asarray(times.get("prop_up_s", propagation_s), dtype=float))
    prop_down = np.atleast_1d(np.asarray(times.get("prop_down_s", propagation_s), dtype=float))
    out = tuple(np.empty(n if tiered or k < TIERED_FROM else 0) for k in range(len(NUMBERS)))
    counts = tuple(np.empty(n if tiered or k < 2 else 0, np.int64) for k in range(len(COUNTS)))
    frame_numbers(capture, stage, tier_stage, times["status"], group, r, plan.row_of(np.arange(n_routes)),
                  plan.wire_bits, prop_up, prop_down, per_route(lambda rt: rt.head.power_w if rt.head else 0.0),
                  per_route(lambda rt: rt.tail.power_w if rt.tail else 0.0), per_route(lambda rt: rt.up_bytes),
                  per_route(lambda rt: rt.down_bytes), radio, float(downlink_bps), tiered, plan.routes_per_edge or 1,
                  np.array([e.wan_propagation_s for e in tiers.edges]) if tiered else np.zeros(1),
                  per_route(lambda rt: rt.wan_bytes), float(cloud_w), out, counts)
    num, cnt = dict(zip(NUMBERS, out)), dict(zip(COUNTS, counts))
    cols: FrameColumns = {"frame": np.arange(n) if frame_id is None else frame_id,
                          "mobile": text_column(instance_names, plan.mobile)}
    if tiered:  # a frame run on the mobile device alone has no edge server
        cols["edge"] = text_column([e.name for e in tiers.edges], cnt["edge"], ~_sent(times, cnt["bytes_up"]))
    cols.update({"capture_s": capture, "decision": text_column([rt.decision for rt in routes_by_group[0]], r),
                 "status": text_column(STATUS_NAMES, times["status"]),
                 "drop_stage": text_column(STAGES, times["drop_stage"])})
    for name in ("mobile_queue_s", "head_s", "uplink_queue_s", "transfer_s", "propagation_s", "propagation_up_s",
                 "server_queue_s", "tail_s", "return_s", "delay_s", "done_s", "bytes_up", "wire_bytes_up", "bytes_down",
                 "energy_mobile_compute_j", "energy_mobile_radio_j", "energy_server_j"):
        cols[name] = times["done"].copy() if name == "done_s" else cnt[name] if name in cnt else num[name]
    cols["sample"] = sample
    if prediction_dtype is not None:  # the point's policies predict: label, prediction (missing where a route has none) and correct
        route_col = np.array([rt.prediction or "" for rt in routes_by_group[0]], dtype=object)[r]
        prediction = np.full(n, None, dtype=object)
        for col in {rt.prediction for rt in routes_by_group[0] if rt.prediction}:
            m = route_col == col
            prediction[m] = dataset[col].to_numpy()[sample[m]]
        label = dataset["label"].to_numpy()[sample]
        cols["label"] = label
        cols["prediction"] = pd.array(prediction, dtype=prediction_dtype)
        cols["correct"] = pd.array(np.where(route_col != "", label == prediction, None), dtype="boolean")
    tier_cols: FrameColumns = {}
    if tiered:
        tier_cols = {name: num[name] for name in TIER_COLUMNS}
        tier_cols.update({"batch_size": cnt["batch_size"], "bytes_wan": cnt["bytes_wan"],
                          "energy_cloud_j": num["energy_cloud_j"]})
    return cols, tier_cols


STATISTICS = ("point", "replication", "policy", "frame", "mobile", "edge", "capture_s", "status")
"""Columns whose min/max frames.parquet keeps per row group (readers filter on them); the rest skip it (8 % of
the write)."""


ENCODINGS = {"capture_s": "BYTE_STREAM_SPLIT", "done_s": "BYTE_STREAM_SPLIT", "frame": "DELTA_BINARY_PACKED",
             "sample": "DELTA_BINARY_PACKED"}
"""frames.parquet's encodings other than PLAIN (and dictionaries for text): capture and done times (each frame's
own, rising) as split bytes, frame and sample numbers (rising runs) as deltas. With data page v2 written 65,536
values at a time, on a captured 10,000-camera city window (500,000 rows, 2 row groups, one core): 0.83 -> 0.58 us a
frame and 4.6 -> 2.6 MB; the shipped scenarios' files 3-42 % smaller. Split bytes lose on delay components, which
repeat a few profiled values that zstd finds as they are (hybrid_edge_cloud +30 % with every float split)."""


ROW_GROUP_ROWS = 262_144
"""Rows per row group of frames.parquet whatever tables the frames arrive in, so that its bytes depend on the
frames only (not on the executor, the job count or the window size)."""


def frame_schema(cols: FrameColumns) -> pa.Schema:
    """The Arrow schema, pandas metadata included, that pa.Table.from_pandas gives the frame table's DataFrame (so
    frames.parquet keeps its bytes): from its first row where every column's type follows from its dtype, else (label
    and prediction: pandas infers object columns' types from their values) from the whole table."""
    typed = all(isinstance(v, pa.Array) or (isinstance(v, np.ndarray) and v.dtype.kind in "biuf") for v in cols.values())
    head = {name: v[:1] for name, v in cols.items()} if typed else cols
    return pa.Schema.from_pandas(frame_df(head), preserve_index=False)


def frame_arrow(cols: FrameColumns, schema: pa.Schema) -> pa.Table:
    """The frame table as Arrow in `schema` (frame_schema's), converted column by column as pa.Table.from_pandas
    converts them (NaN as null) without building a DataFrame first; text columns that come as dictionary arrays stay
    so (of schema's text type: stored_schema gives `schema` back), for Parquet to write their indices."""
    arrays, fields = [], []
    for field in schema:
        v = cols[field.name]
        if isinstance(v, pa.Array) and pa.types.is_dictionary(v.type) and v.type.value_type == field.type:
            field = field.with_type(v.type)
        elif isinstance(v, pa.Array):
            v = _text(v)
            v = v if v.type == field.type else v.cast(field.type)
        elif isinstance(v, np.ndarray) and v.dtype == np.float64 and field.type == pa.float64():
            v = _float_arrow(v)
        else:
            v = pa.array(v, type=field.type, from_pandas=True)
        arrays.append(v)
        fields.append(field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=schema.metadata))


def stored_schema(schema: pa.Schema) -> pa.Schema:
    """The schema a table is stored in: dictionary columns as their values' type (frames.parquet's text columns as
    large_string, whatever frame_arrow gave them as)."""
    return pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema],
                     metadata=schema.metadata)


def _float_arrow(values: np.ndarray) -> pa.Array:
    """A float64 column as Arrow with NaN as null, its values not copied (pa.array(from_pandas=True) copies them:
    1.5 ms a 250,000-frame column, measured on this 2-core VM, some 30 columns a window): the frame table's own
    arrays, none of the engine's."""
    values = np.ascontiguousarray(values)
    nan = np.isnan(values)
    if not nan.any():
        return pa.array(values, type=pa.float64())
    valid = pa.py_buffer(np.packbits(~nan, bitorder="little"))
    return pa.Array.from_buffers(pa.float64(), values.size, [valid, pa.py_buffer(values)], null_count=int(nan.sum()))


def writer_options(schema: pa.Schema) -> dict:
    """frames.parquet's ParquetWriter options: zstd, data pages v2 filled 65,536 values at a time (with both, a
    captured city window's 500,000 rows took 0.61-0.68 us a frame to write against 0.82-0.83 with v1 pages and
    pyarrow's 1,024, medians of 5-7 interleaved repeats, measured: docs/round4/issue26e_s8.md), dictionaries for
    text, ENCODINGS where the column's type has them, statistics for STATISTICS."""
    text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
            or pa.types.is_dictionary(f.type)]
    fits = {"BYTE_STREAM_SPLIT": pa.types.is_floating, "DELTA_BINARY_PACKED": pa.types.is_integer}
    encodings = {f.name: ENCODINGS[f.name] for f in schema if f.name in ENCODINGS and fits[ENCODINGS[f.name]](f.type)}
    return dict(compression="zstd", use_dictionary=text, column_encoding=encodings or None, data_page_version="2.0",
                write_batch_size=65_536, write_statistics=[c for c in STATISTICS if c in schema.names])


class FramesFile:
    """Frame tables appended to one Parquet file, in the first table's schema, written under a temporary name and
    renamed into place when the `with` block ends without error (writer_options; ROW_GROUP_ROWS rows per row group).
    Dictionary columns are written as their indices and stored as their values' type (stored_schema: the Arrow
    schema in the footer says so), so the file reads back the same whichever way its text came."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stack = ExitStack()
        self._tmp: Optional[Path] = None
        self._writer = None
        self._schema: Optional[pa.Schema] = None
        self._pending: list[pa.Table] = []  # rows not yet in a row group

    def __enter__(self) -> "FramesFile":
        self._tmp = self._stack.enter_context(atomic_target(self.path))
        self._stack.callback(self._close)  # runs first: the file is complete before it is renamed
        return self

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._schema = table.schema
            self._writer = pq.ParquetWriter(self._tmp, table.schema, **writer_options(table.schema))
        table = table.cast(self._schema) if table.schema != self._schema else table
        self._pending.append(table)
        self._flush()

    def end_part(self) -> None:
        """The rows so far make their own row groups (a sweep point's frames never share one with the next's)."""
        if self._writer is not None:
            self._flush(everything=True)

    def _flush(self, everything: bool = False) -> None:
        """Write the pending rows as row groups of ROW_GROUP_ROWS (with everything, the rest too)."""
        rows = sum(t.num_rows for t in self._pending)
        if rows < ROW_GROUP_ROWS and not (everything and rows):
            return
        pending, start = pa.concat_tables(self._pending), 0
        while rows - start >= ROW_GROUP_ROWS or (everything and start < rows):
            self._writer.write_table(pending.slice(start, ROW_GROUP_ROWS))
            start += ROW_GROUP_ROWS
        self._pending = [pending.slice(start)] if start < rows else []

    def _close(self) -> None:
        if self._writer is not None:
            self._flush(everything=True)
            self._writer.close()
            if self._schema != stored_schema(self._schema):  # the Arrow schema readers get: text as text
                from simulator.parquet_concat import set_key_value

                set_key_value(self._tmp, ARROW_SCHEMA, arrow_schema_value(stored_schema(self._schema)))

    def __exit__(self, kind, exc, tb) -> None:
        self._stack.__exit__(kind, exc, tb)


ARROW_SCHEMA = b"ARROW:schema"
"""The key of a Parquet file's Arrow schema (pyarrow writes and reads it: the columns' Arrow types)."""


def arrow_schema_value(schema: pa.Schema) -> bytes:
    """The value pyarrow's Parquet writer gives ARROW_SCHEMA for `schema` (taken from an empty file it writes)."""
    import io

    buf = io.BytesIO()
    pq.ParquetWriter(buf, schema).close()
    return pq.ParquetFile(pa.BufferReader(buf.getvalue())).metadata.metadata[ARROW_SCHEMA]


class PointFrames:
    """A sweep point's frame tables, staged by the process that simulates it: as its own Parquet file (encoded there,
    in row groups of its own) once they fill a row group, else as an Arrow IPC file that the parent pools with the
    neighbouring small points' (so a small sweep's frames.parquet has the row groups one writer gives all its rows)."""

    def __init__(self, parquet: Path) -> None:
        self.parquet, self.arrow = Path(parquet), staged_arrow(parquet)
        self._file: Optional[FramesFile] = None
        self._pending: list[pa.Table] = []
        self._rows = 0

    def __enter__(self) -> "PointFrames":
        for stale in (self.parquet, self.arrow):  # what an earlier, interrupted run of this point left
            stale.unlink(missing_ok=True)
        return self

    def write(self, table: pa.Table) -> None:
        if self._file is not None:
            self._file.write(table)
            return
        self._pending.append(table)
        self._rows += table.num_rows
        if self._rows >= ROW_GROUP_ROWS:
            self._file = FramesFile(self.parquet).__enter__()
            for t in self._pending:
                self._file.write(t)
            self._pending = []

    def __exit__(self, kind, exc, tb) -> None:
        if self._file is not None:
            self._file.__exit__(kind, exc, tb)
        elif kind is None and self._pending:  # text as text (an IPC file keeps one dictionary a column)
            schema = stored_schema(self._pending[0].schema)
            with atomic_target(self.arrow) as tmp, pa.ipc.new_file(str(tmp), schema) as out:
                for t in self._pending:
                    out.write_table(t.cast(schema) if t.schema != schema else t)


def staged_arrow(parquet: Path) -> Path:
    """The Arrow IPC file a PointFrames stages beside its Parquet file (a point smaller than a row group)."""
    return Path(parquet).with_suffix(".arrow")


def staged_frames(path: Path) -> Iterator[pa.Table]:
    """The tables a PointFrames staged as Arrow IPC, one at a time (read, not memory-mapped: bounded memory)."""
    with pa.OSFile(str(path)) as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield pa.Table.from_batches([reader.get_batch(i)])


class FrameSink:
    """Where a sweep point's frame tables go: folded into per-policy summaries, and kept or written to Parquet.

    With a path (the point's Parquet file; its Arrow IPC file beside it, PointFrames), tables are staged there as they
    come, in the process that simulates the point; without one they are kept in memory (as pandas) when `keep`.
    """

    def __init__(self, labels: list[str], n_mobiles: int, n_edges: int = 0, path: Optional[Path] = None,
                 keep: bool = True) -> None:
        self.accumulators: dict[str, SummaryAccumulator] = {label: SummaryAccumulator(n_mobiles, n_edges)
                                                             for label in labels}
        self.keep = keep and path is None
        self.kept: list[pd.DataFrame] = []
        self._file = PointFrames(path) if path is not None else None
        self._schema: Optional[pa.Schema] = None

    def __enter__(self) -> "FrameSink":
        if self._file is not None:
            self._file.__enter__()
        return self

    def add(self, cols: FrameColumns, label: str, keys: FrameKeys) -> None:
        """Fold a frame table into its policy's summary (per edge server too, by keys.edge); keep or write it."""
        self.accumulators[label].add(cols, keys)
        if self._file is not None:
            if self._schema is None:
                self._schema = frame_schema(cols)
            self._file.write(frame_arrow(cols, self._schema))
        elif self.keep:
            self.kept.append(frame_df(cols))

    def frames(self) -> Optional[pd.DataFrame]:
        """The kept frame tables as one (None when written or not kept)."""
        return pd.concat(self.kept, ignore_index=True) if self.kept else None

    def __exit__(self, kind, exc, tb) -> None:
        if self._file is not None:
            self._file.__exit__(kind, exc, tb)
