"""Frame tables straight to Arrow, per-point Parquet files joined without re-encoding, compiled group sums: each gives
the bytes (or bits) the slower way gave."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simulator import frames, metrics
from simulator.parquet_concat import ParquetJoin, read_footer
from simulator.results import FramesJoin


def concat_parquet(paths, out) -> bool:
    """The files' row groups joined into `out` by ParquetJoin; False, and no file, where one cannot join."""
    with open(out, "wb") as dst:
        join = ParquetJoin(dst)
        joined = all(join.add(p) for p in paths)
        if joined:
            join.close()
    if not joined:
        out.unlink()
    return joined


def combine_frames(stage, n_points: int) -> None:
    """frames.parquet from every staged point at once (as a run whose points had all finished)."""
    with FramesJoin(stage, n_points) as join:
        join.staged(set(range(n_points)))
        join.finish()


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


def test_frames_file_writes_v2_pages_in_its_encodings_and_reads_back_equal(tmp_path):
    """frames.parquet's data pages are v2, capture and done times split by bytes, frame and sample numbers as deltas,
    text as dictionaries; pyarrow and pandas read back the table written."""
    from simulator.parquet_concat import _Reader

    rng = np.random.default_rng(6)
    t = _table(rng, 3000, 0)
    n = t.num_rows
    t = t.append_column("frame", pa.array(np.arange(n))).append_column("sample", pa.array(rng.integers(0, 9, n)))
    t = t.append_column("capture_s", pa.array(np.sort(rng.random(n)))).append_column("done_s", pa.array(rng.random(n)))
    _write(tmp_path / "f.parquet", [t], parts=False)
    pf = pq.ParquetFile(tmp_path / "f.parquet")
    assert pf.read().equals(t) and pf.read().schema.equals(t.schema, check_metadata=True)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "f.parquet"), t.to_pandas())
    raw = (tmp_path / "f.parquet").read_bytes()
    encodings = {"frame": "DELTA_BINARY_PACKED", "sample": "DELTA_BINARY_PACKED", "capture_s": "BYTE_STREAM_SPLIT",
                 "done_s": "BYTE_STREAM_SPLIT", "policy": "RLE_DICTIONARY", "delay_s": "PLAIN"}
    for g in range(pf.metadata.num_row_groups):
        for c in range(pf.metadata.num_columns):
            chunk = pf.metadata.row_group(g).column(c)
            header = _Reader(raw[chunk.data_page_offset:chunk.data_page_offset + 256]).struct()
            assert header[0][:2] == [1, 5] and header[0][2] == 3  # PageHeader.type: DATA_PAGE_V2
            if chunk.path_in_schema in encodings:
                assert encodings[chunk.path_in_schema] in chunk.encodings


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
    schema with its pandas metadata, nulls where NaN, text as large_string (text_column's dictionaries as their
    strings once stored). FramesFile writes their indices, and the file reads back that same table, in its schema."""
    rng = np.random.default_rng(3)
    n = 400
    cols = {"point": np.zeros(n, np.int64), "policy": pa.repeat(pa.scalar("offload", pa.large_string()), n),
            "mobile": frames.text_column(["cam0", "cam1"], rng.integers(0, 2, n)),
            "edge": frames.text_column(["e0", "e1"], rng.integers(0, 2, n), rng.random(n) < 0.3),
            "decision": frames.text_column(["local", "split", "local"], rng.integers(0, 3, n)),
            "delay_s": np.where(rng.random(n) < 0.2, np.nan, rng.random(n)), "bytes_up": rng.integers(0, 9, n),
            "capture_s": rng.random(n), "tail_s": np.where(rng.random((3, n)) < 0.1, np.inf, 1.0)[1],
            "warmup": rng.random(n) < 0.1, "label": rng.integers(0, 3, n),
            "prediction": pd.array(np.where(rng.random(n) < 0.5, None, rng.integers(0, 3, n)), dtype="Int64"),
            "correct": pd.array(np.where(rng.random(n) < 0.5, None, rng.random(n) < 0.5), dtype="boolean")}
    assert cols["decision"].dictionary.to_pylist() == ["local", "split"]  # a repeated name: one dictionary entry
    expected = pa.Table.from_pandas(frames.frame_df(cols), preserve_index=False)
    got = frames.frame_arrow(cols, frames.frame_schema(cols))
    assert [got.schema.field(c).type == pa.dictionary(pa.int32(), pa.large_string()) for c in ("mobile", "edge")] \
        == [True, True]
    stored = frames.stored_schema(got.schema)
    assert stored.equals(expected.schema, check_metadata=True)
    assert got.cast(stored).equals(expected)
    pq.write_table(got.cast(stored), tmp_path / "got.parquet")
    pq.write_table(expected, tmp_path / "expected.parquet")
    assert (tmp_path / "got.parquet").read_bytes() == (tmp_path / "expected.parquet").read_bytes()
    with frames.FramesFile(tmp_path / "frames.parquet") as out:
        out.write(got)
    back = pq.read_table(tmp_path / "frames.parquet")
    assert back.schema.equals(expected.schema, check_metadata=True) and back.equals(expected)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "frames.parquet"), frames.frame_df(cols))
    typed = {k: v for k, v in cols.items() if k not in ("label", "prediction", "correct")}
    assert frames.frame_schema(typed).equals(pa.Table.from_pandas(frames.frame_df(typed), preserve_index=False).schema,
                                             check_metadata=True)


def test_dictionary_and_text_files_join_as_bytes(tmp_path):
    """A point's file written from dictionary columns (its footer's Arrow schema set to text) and a pool's written
    from text join byte for byte, and read back as the text tables."""
    rng = np.random.default_rng(7)
    t = _table(rng, 700, 0)
    codes = (np.array(t.column("policy").to_pylist()) == "offload").astype(np.int8)
    d = t.set_column(1, pa.field("policy", pa.dictionary(pa.int32(), pa.large_string())),
                     frames.text_column(["local", "offload"], codes))
    _write(tmp_path / "a.parquet", [d], parts=False)
    _write(tmp_path / "b.parquet", [t], parts=False)
    a, b = (read_footer(tmp_path / f"{k}.parquet")[0] for k in "ab")
    assert [f for f in a if f[0] != 4] == [f for f in b if f[0] != 4]  # all but the row groups: schema, key-values
    assert concat_parquet([tmp_path / "a.parquet", tmp_path / "b.parquet"], tmp_path / "j.parquet")
    back = pq.read_table(tmp_path / "j.parquet")
    assert back.schema.equals(t.schema, check_metadata=True) and back.equals(pa.concat_tables([t, t]))


@pytest.mark.parametrize("n,groups,presorted", [(20_000, 3, False), (50_000, 101, False), (30_000, 9_000, True),
                                                (25_000, 40_000, False), (60_000, 1, True)])
def test_compiled_group_sums_equal_numpys_sum_of_each_group(n, groups, presorted):
    rng = np.random.default_rng(n + groups)
    codes = rng.integers(0, groups, n)
    codes = np.sort(codes) if presorted else codes
    values = rng.random(n) * 10.0 ** rng.uniform(-6, 6, n)
    expected = np.array([values[codes == g].sum() for g in range(groups)]) + 0.0
    from simulator.groupsum import sorted_runs
    from tests.sim_helpers import run_sums

    out = np.zeros(groups)
    run_sums(values, *sorted_runs(codes, np.arange(n), groups), False, out)
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


def _numpy_frame_numbers(t: dict, tiered: bool, g, r, wire, pu, pd, head_power, tail_power, radio, downlink_bps,
                         routes_per_edge, wan_prop_of_edge, cloud_w) -> dict:
    """The frame table's numbers as whole-window numpy formulas (the form frame_numbers replaced): the reference."""
    off = ~np.isnan(t["up_end"])
    transfer = np.where(off, t["up_end"] - t["up_start"], 0.0)
    down_dur = np.where(off, t["down_end"] - t["down_start"], 0.0)
    tx, tx_slope, rx, rx_slope = (radio[:, k][g] for k in range(4))
    out = {"radio": np.where(off, tx * transfer + tx_slope * wire / 1e6 + rx * down_dur
                             + rx_slope * (down_dur * downlink_bps) / 1e6, 0.0)}
    propagation, propagation_up = np.where(off, pu + pd, 0.0), np.where(off, pu, 0.0)
    if not tiered:
        queue = np.where(off, t["tail_start"] - t["up_end"] - pu, 0.0)
        tail = np.where(off, t["tail_end"] - t["tail_start"], 0.0)
        ret = np.where(off, t["done"] - t["tail_end"] - pd, 0.0)
        out["server"] = np.nan_to_num(tail) * tail_power[g, r]
    else:
        edge = r // routes_per_edge
        computed, cloud = ~np.isnan(t["tail_start"]), ~np.isnan(t["cloud_start"])
        after_edge = np.where(computed, t["tail_end"], t["edge_arrive"])
        wan_prop = wan_prop_of_edge[edge]
        back = np.where(cloud, t["wan_down_end"] + wan_prop, after_edge)
        queue = np.where(computed, t["tail_start"] - t["edge_arrive"], 0.0)
        tail = np.where(computed, t["tail_end"] - t["tail_start"], 0.0)
        ret = np.where(off, t["done"] - back - (propagation - propagation_up), 0.0)
        out["server"] = tail * tail_power[g, r]
        wait = np.nan_to_num(t["batch_wait"])
        cloud_s = np.where(cloud, t["cloud_end"] - t["cloud_start"], 0.0)
        size = np.where(cloud, np.nan_to_num(t["batch_size"], nan=1.0), 0).astype(np.int64)
        out.update(wan_queue_s=np.where(cloud, t["wan_start"] - after_edge, 0.0),
                   wan_transfer_s=np.where(cloud, t["wan_end"] - t["wan_start"], 0.0),
                   wan_propagation_s=np.where(cloud, 2 * wan_prop, 0.0),
                   cloud_queue_s=np.where(cloud, t["cloud_start"] - t["cloud_arrive"] - wait, 0.0),
                   batch_wait_s=np.where(cloud, wait, 0.0), cloud_s=cloud_s,
                   wan_return_s=np.where(cloud, t["wan_down_end"] - t["cloud_end"], 0.0), batch_size=size,
                   energy_cloud_j=cloud_s * cloud_w / np.maximum(size, 1), edge=edge)
    out.update(mobile_queue_s=t["head_start"] - t["capture"], head_s=t["head_end"] - t["head_start"],
               uplink_queue_s=np.where(off, t["up_start"] - t["head_end"], 0.0), transfer_s=transfer,
               propagation_s=propagation, propagation_up_s=propagation_up, server_queue_s=queue, tail_s=tail,
               return_s=ret, delay_s=t["done"] - t["capture"], wire_bytes_up=np.where(off, wire / 8.0, 0.0),
               compute=np.nan_to_num(t["head_end"] - t["head_start"]) * head_power[g, r], offloaded=off)
    return out


@pytest.mark.parametrize("tiered,per_frame_propagation", [(False, False), (False, True), (True, False), (True, True)])
def test_compiled_frame_numbers_equal_numpys_formulas_bit_for_bit(tiered, per_frame_propagation):
    """frame_numbers (one compiled pass) against the numpy formulas it replaced, on random times with NaNs (frames
    not offloaded, not computed at the edge, not at the cloud), infinities and dropped frames."""
    from simulator.framecols import COUNTS, NUMBERS, TIERED_FROM, frame_numbers

    rng = np.random.default_rng(26 + tiered + 2 * per_frame_propagation)
    n, groups, routes = 5_000, 3, 4
    names = ("head_start", "head_end", "up_start", "up_end", "down_start", "down_end", "tail_start", "tail_end", "done",
             "edge_arrive", "cloud_start", "cloud_arrive", "cloud_end", "wan_start", "wan_end", "wan_down_end",
             "batch_wait", "batch_size")
    t = {k: rng.random(n) * 10.0 ** rng.uniform(-3, 2, n) for k in names + ("capture",)}
    for k in names:
        t[k][rng.random(n) < 0.2] = np.nan
    t["head_end"][rng.random(n) < 0.01] = np.inf
    t["batch_size"] = np.where(rng.random(n) < 0.2, np.nan, rng.integers(1, 9, n).astype(float))
    status = rng.integers(0, 3, n).astype(np.int8)
    g, r = rng.integers(0, groups, n), rng.integers(0, routes, n).astype(np.int16)
    wire_bits, wire_row = rng.random((2, n)) * 1e6, np.array([0, 1, 1, 0])
    pu = rng.random(n) * 1e-2 if per_frame_propagation else np.array([0.002])
    pd = rng.random(n) * 1e-2 if per_frame_propagation else np.array([0.003])
    head_power, tail_power = rng.random((groups, routes)) * 5, rng.random((groups, routes)) * 50
    up_bytes, down_bytes, wan_bytes = (rng.integers(0, 10 ** 6, (groups, routes)) for _ in range(3))
    radio, wan_prop_of_edge = rng.random((groups, 4)), rng.random(2) * 0.05
    out = tuple(np.empty(n if tiered or k < TIERED_FROM else 0) for k in range(len(NUMBERS)))
    counts = tuple(np.empty(n if tiered or k < 2 else 0, np.int64) for k in range(len(COUNTS)))
    frame_numbers(t["capture"], tuple(t[k] for k in names[:9]), tuple(t[k] for k in names[9:]), status, g, r, wire_row,
                  wire_bits, pu, pd, head_power, tail_power, up_bytes, down_bytes, radio, 8e6, tiered, 2,
                  wan_prop_of_edge, wan_bytes, 300.0, out, counts)
    with np.errstate(over="ignore"):  # the infinite head times' energy
        ref = _numpy_frame_numbers(t, tiered, g, r.astype(np.int64), wire_bits[wire_row[r], np.arange(n)],
                                   pu if pu.size > 1 else pu[0], pd if pd.size > 1 else pd[0], head_power, tail_power,
                                   radio, 8e6, 2, wan_prop_of_edge, 300.0)
    dropped = status == 2
    masked = ["mobile_queue_s", "head_s", "uplink_queue_s", "transfer_s", "server_queue_s", "tail_s", "return_s",
              "delay_s"] + (["wan_queue_s", "wan_transfer_s", "wan_propagation_s", "cloud_queue_s", "batch_wait_s",
                             "cloud_s", "wan_return_s"] if tiered else [])
    ref.update({k: np.where(dropped, np.nan, ref[k]) for k in masked})
    ref.update(energy_mobile_compute_j=ref.pop("compute"), energy_mobile_radio_j=ref.pop("radio"),
               energy_server_j=ref.pop("server"))
    for k, name in enumerate(NUMBERS[:len(NUMBERS) if tiered else TIERED_FROM]):
        assert out[k].tobytes() == ref[name].tobytes(), name
    off = ref["offloaded"]
    assert np.array_equal(counts[0], np.where(off, up_bytes[g, r], 0))
    assert np.array_equal(counts[1], np.where(off, down_bytes[g, r], 0))
    if tiered:
        cloud = ~np.isnan(t["cloud_start"])
        assert np.array_equal(counts[2], ref["batch_size"]) and np.array_equal(counts[4], ref["edge"])
        assert np.array_equal(counts[3], np.where(cloud, wan_bytes[g, r], 0))
