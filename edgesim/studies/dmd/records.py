"""DMD files: the paper's JSON (000 A.2: image_path, last_hidden_layer, label = agreement) and a Parquet trace.

Writers are atomic; readers validate and name the file and record index of the first bad record.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from edgesim.studies.dmd import TRACE_COLUMNS
from edgesim.studies.dmd.generate import hidden_matrix
from profilers.errors import EdgesimError
from profilers.io import atomic_target, atomic_write_text, read_json

JSON_FIELDS = ("image_path", "last_hidden_layer", "label")  # 000 A.2


def write_dmd_json(trace: pd.DataFrame, path: str | Path) -> Path:
    """The paper's JSON list: {"image_path", "last_hidden_layer": [floats], "label": 1 if the models agree else 0}."""
    hidden = hidden_matrix(trace)
    parts = []
    for sid, vec, agree in zip(trace["sample_id"], hidden, trace["agree"]):
        rec = {"image_path": str(sid), "last_hidden_layer": [float(v) for v in vec], "label": int(bool(agree))}
        parts.append(json.dumps(rec))
    return atomic_write_text(path, "[\n" + ",\n".join(parts) + "\n]\n")


def read_dmd_json(path: str | Path) -> pd.DataFrame:
    """Read the paper's JSON into columns sample_id, hidden, agree; one-line error naming file and record index."""
    data = read_json(path, "DMD JSON")
    if not isinstance(data, list):
        raise EdgesimError(f"DMD JSON {path}: expected a list of records, got {type(data).__name__}")
    ids, vecs, labels = [], [], []
    width: Optional[int] = None
    for i, rec in enumerate(data):
        where = f"DMD JSON {path}: record {i}"
        if not isinstance(rec, dict):
            raise EdgesimError(f"{where}: expected an object with fields {list(JSON_FIELDS)}")
        missing = [f for f in JSON_FIELDS if f not in rec]
        if missing:
            raise EdgesimError(f"{where}: missing field(s) {missing}; expected {list(JSON_FIELDS)}")
        vec = rec["last_hidden_layer"]
        if not isinstance(vec, list) or not vec or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in vec):
            raise EdgesimError(f"{where}: 'last_hidden_layer' must be a non-empty list of finite numbers")
        if width is None:
            width = len(vec)
        elif len(vec) != width:
            raise EdgesimError(f"{where}: 'last_hidden_layer' has {len(vec)} values, record 0 has {width} (ragged hidden vectors)")
        if rec["label"] not in (0, 1) or isinstance(rec["label"], float):
            raise EdgesimError(f"{where}: 'label' must be 0 or 1 (agreement), got {rec['label']!r}")
        if not isinstance(rec["image_path"], str):
            raise EdgesimError(f"{where}: 'image_path' must be a string")
        ids.append(rec["image_path"])
        vecs.append(np.asarray(vec, dtype=np.float32))
        labels.append(bool(rec["label"]))
    return pd.DataFrame({"sample_id": ids, "hidden": vecs, "agree": labels})


def _arrow_table(trace: pd.DataFrame, start: int, stop: int, width: int, hidden: np.ndarray):
    """Rows [start, stop) as an Arrow table with hidden as fixed_size_list<float32>[width]."""
    import pyarrow as pa

    part = trace.iloc[start:stop]
    cols = {c: pa.array(part[c].to_numpy()) for c in part.columns if c != "hidden"}
    flat = pa.array(hidden[start:stop].reshape(-1), type=pa.float32())
    cols["hidden"] = pa.FixedSizeListArray.from_arrays(flat, width)
    return pa.table(cols)


def write_trace_parquet(trace: pd.DataFrame, path: str | Path, row_group_rows: int = 4096) -> Path:
    """Parquet trace written in row groups (scales to large datasets), atomically (temp file, fsync, rename)."""
    import pyarrow.parquet as pq

    path = Path(path)
    hidden = hidden_matrix(trace) if "hidden" in trace.columns else None
    width = int(hidden.shape[1]) if hidden is not None and hidden.size else 0
    with atomic_target(path) as tmp:
        plain = trace.drop(columns=["hidden"]) if hidden is None and "hidden" in trace.columns else trace
        first = _arrow_table(plain, 0, min(len(plain), row_group_rows), width, hidden) if hidden is not None else None
        if first is None:
            import pyarrow as pa

            first = pa.Table.from_pandas(plain.iloc[:row_group_rows], preserve_index=False)
        meta = dict(first.schema.metadata or {})
        meta[b"edgesim.dmd.hidden_layer"] = str(trace.attrs.get("hidden_layer", "")).encode()
        schema = first.schema.with_metadata(meta)
        with pq.ParquetWriter(tmp, schema) as writer:
            for start in range(0, max(len(plain), 1), row_group_rows):
                stop = min(len(plain), start + row_group_rows)
                if hidden is not None:
                    tbl = _arrow_table(plain, start, stop, width, hidden)
                else:
                    import pyarrow as pa

                    tbl = pa.Table.from_pandas(plain.iloc[start:stop], preserve_index=False)
                writer.write_table(tbl.cast(schema))
    return path


def read_trace_parquet(path: str | Path, required: tuple[str, ...] = TRACE_COLUMNS) -> pd.DataFrame:
    """Read a Parquet DMD trace; hidden becomes a column of float32 arrays; one-line error for missing columns."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise EdgesimError(f"DMD trace {path}: file not found")
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise EdgesimError(f"DMD trace {path}: not a readable Parquet file ({type(exc).__name__})") from None
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise EdgesimError(f"DMD trace {path}: missing column(s) {missing}")
    df = table.drop([c for c in ("hidden",) if c in table.column_names]).to_pandas()
    if "hidden" in table.column_names:
        col = table.column("hidden").combine_chunks()
        width = col.type.list_size if hasattr(col.type, "list_size") else None
        flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        if width is None or len(flat) != width * len(df):
            raise EdgesimError(f"DMD trace {path}: 'hidden' must be a fixed-size list column")
        mat = flat.reshape(len(df), width)
        df["hidden"] = list(mat)
    meta = table.schema.metadata or {}
    df.attrs["hidden_layer"] = meta.get(b"edgesim.dmd.hidden_layer", b"").decode()
    return df
