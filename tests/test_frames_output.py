"""Frame tables straight to Arrow, per-point Parquet files joined without re-encoding, compiled group sums: each gives
the bytes (or bits) the slower way gave."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simulator import frames, metrics
from simulator.parquet_concat import concat_parquet, read_footer


def _table(rng, n: int, point: int) -> pa.Table:
    values = rng.random(n)
    values[rng.random(n) < 0.1] = np.nan
    df = pd.DataFrame({"point": np.full(n, point), "policy": pd.array(rng.choice(["local", "offload"], n), dtype="str"),
                       "delay_s": values, "warmup": rng.random(n) < 0.2})
    return pa.Table.from_pandas(df, preserve_index=False)


def _write(path, tables, parts: bool) -> None:
    with frames.FramesFile(path) as out:
        for t in tables:
            for lo in range(0, t.num_rows, 333):  # in uneven pieces, as windows arrive
                out.write(t.slice(lo, 333))
            if parts:
                out.end_part()


def test_joined_point_files_are_the_file_one_writer_makes(tmp_path, monkeypatch):
    """Each point's file written apart, then joined: byte for byte what one writer gives for the same row groups
    (each point's rows in row groups of their own), and the same rows back."""
    monkeypatch.setattr(frames, "ROW_GROUP_ROWS", 1000)
    rng = np.random.default_rng(5)
    tables = [_table(rng, n, k) for k, n in enumerate((2500, 10, 1000, 1999))]
    parts = [tmp_path / f"{k}.parquet" for k in range(len(tables))]
    for part, t in zip(parts, tables):
        _write(part, [t], parts=False)
    _write(tmp_path / "one.parquet", tables, parts=True)
    assert concat_parquet(parts, tmp_path / "joined.parquet")
    assert (tmp_path / "joined.parquet").read_bytes() == (tmp_path / "one.parquet").read_bytes()
    meta = pq.ParquetFile(tmp_path / "joined.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1000, 1000, 500, 10, 1000, 1000, 999]
    back = pq.read_table(tmp_path / "joined.parquet").to_pandas()
    pd.testing.assert_frame_equal(back, pa.concat_tables(tables).to_pandas())


def test_footer_decodes_and_encodes_to_the_same_bytes(tmp_path):
    from simulator.parquet_concat import _struct

    _write(tmp_path / "f.parquet", [_table(np.random.default_rng(1), 700, 0)], parts=False)
    raw = (tmp_path / "f.parquet").read_bytes()
    meta, start = read_footer(tmp_path / "f.parquet")
    assert _struct(meta) == raw[start:-8]


def test_files_of_different_schemas_are_not_joined_as_bytes(tmp_path):
    rng = np.random.default_rng(2)
    a, b = _table(rng, 50, 0), _table(rng, 50, 1).drop_columns(["warmup"])
    _write(tmp_path / "a.parquet", [a], parts=False)
    _write(tmp_path / "b.parquet", [b], parts=False)
    assert not concat_parquet([tmp_path / "a.parquet", tmp_path / "b.parquet"], tmp_path / "joined.parquet")
    assert not (tmp_path / "joined.parquet").exists()


def test_frame_columns_convert_as_pandas_would(tmp_path):
    """frame_arrow (columns straight to Arrow) equals pa.Table.from_pandas of the same table as a DataFrame: the
    schema with its pandas metadata, nulls where NaN, text as large_string."""
    rng = np.random.default_rng(3)
    n = 400
    cols = {"point": np.zeros(n, np.int64), "policy": pa.repeat(pa.scalar("offload", pa.large_string()), n),
            "mobile": frames.text_column(["cam0", "cam1"], rng.integers(0, 2, n)),
            "edge": frames.text_column(["e0", "e1"], rng.integers(0, 2, n), rng.random(n) < 0.3),
            "delay_s": np.where(rng.random(n) < 0.2, np.nan, rng.random(n)), "bytes_up": rng.integers(0, 9, n),
            "warmup": rng.random(n) < 0.1, "label": rng.integers(0, 3, n),
            "prediction": pd.array(np.where(rng.random(n) < 0.5, None, rng.integers(0, 3, n)), dtype="Int64"),
            "correct": pd.array(np.where(rng.random(n) < 0.5, None, rng.random(n) < 0.5), dtype="boolean")}
    expected = pa.Table.from_pandas(frames.frame_df(cols), preserve_index=False)
    got = frames.frame_arrow(cols, frames.frame_schema(cols))
    assert got.schema.equals(expected.schema, check_metadata=True)
    assert got.equals(expected)
    typed = {k: v for k, v in cols.items() if k not in ("label", "prediction", "correct")}
    assert frames.frame_schema(typed).equals(pa.Table.from_pandas(frames.frame_df(typed), preserve_index=False).schema,
                                             check_metadata=True)


@pytest.mark.parametrize("n,groups,presorted", [(20_000, 3, False), (50_000, 101, False), (30_000, 9_000, True),
                                                (25_000, 40_000, False), (60_000, 1, True)])
def test_compiled_group_sums_equal_numpys_sum_of_each_group(n, groups, presorted):
    rng = np.random.default_rng(n + groups)
    codes = rng.integers(0, groups, n)
    codes = np.sort(codes) if presorted else codes
    values = rng.random(n) * 10.0 ** rng.uniform(-6, 6, n)
    expected = np.array([values[codes == g].sum() for g in range(groups)]) + 0.0
    from simulator.groupsum import add_run_sums, sorted_runs

    out = np.zeros(groups)
    add_run_sums(values, *sorted_runs(codes, np.arange(n), groups), False, out)
    assert np.array_equal(out, expected)
    assert np.array_equal(metrics.group_sums(codes, values, groups), expected)  # whichever way it takes


def test_points_of_a_row_group_or_more_keep_their_own_row_groups_and_small_ones_are_pooled(tmp_path, monkeypatch):
    """A sweep whose points differ in size: a point with a row group's worth of frames or more is encoded where it
    runs, in row groups of its own; runs of smaller points share row groups (as one writer cuts their rows). Same
    bytes with --jobs 1 and 2, the same rows as the in-memory run."""
    from simulator import run
    from simulator.results import run_to_folder
    from simulator.scenario import Scenario
    from tests.sim_helpers import scenario_dict, write_toy_profiles

    monkeypatch.setattr(frames, "ROW_GROUP_ROWS", 500)  # 3 policies x frames rows per point
    profiles = write_toy_profiles(tmp_path)
    data = scenario_dict(profiles, sweep={"grid": {"workload.frames": [40, 30, 250, 60, 50, 200]}},
                         outputs={"plots": False})
    sc = Scenario.model_validate(data)
    for jobs in (1, 2):
        run_to_folder(sc, tmp_path / f"jobs{jobs}", jobs=jobs)
    assert (tmp_path / "jobs1" / "frames.parquet").read_bytes() == (tmp_path / "jobs2" / "frames.parquet").read_bytes()
    meta = pq.ParquetFile(tmp_path / "jobs1" / "frames.parquet").metadata
    # points 0-1 (210 rows) pooled; point 2 (750 rows) alone: 500 + 250; points 3-4 (330) pooled; point 5 (600) alone
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [210, 500, 250, 330, 500, 100]
    expected, _ = run(data)
    got = pq.read_table(tmp_path / "jobs1" / "frames.parquet").to_pandas()
    pd.testing.assert_frame_equal(got, expected)


def test_points_of_different_schemas_are_written_again_in_the_first_ones(tmp_path):
    """Where the points' files differ in schema (a column's type), their row groups cannot be copied as they are:
    frames.parquet then reads and writes them again in the first point's schema, each point's row groups its own."""
    from simulator.results import combine_frames

    points = tmp_path / "points"
    points.mkdir()
    rng = np.random.default_rng(4)
    first = _table(rng, 60, 0)
    second = first.slice(0, 40).set_column(2, "delay_s", pa.array(np.arange(40), pa.int64()))
    _write(points / "00000.frames.parquet", [first], parts=False)
    _write(points / "00001.frames.parquet", [second], parts=False)
    combine_frames(tmp_path, 2)
    meta = pq.ParquetFile(tmp_path / "frames.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [60, 40]
    back = pq.read_table(tmp_path / "frames.parquet")
    assert back.schema.equals(first.schema, check_metadata=True)
    assert back.column("delay_s").to_pylist()[60:] == [float(v) for v in range(40)]
    with pytest.raises(Exception, match="frames of sweep point 2 are missing"):
        combine_frames(tmp_path, 3)
