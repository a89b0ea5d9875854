"""frames.parquet joined while a sweep runs (results.FramesJoin): points join in point order as they finish, in any
order of finishing, with the bytes one writer gives; an interrupt leaves no partial file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from profilers.errors import EdgesimError
from simulator import frames
from simulator.results import FramesJoin
from simulator.sweep import frames_part

SIZES = (2500, 10, 300, 1000, 40, 1999, 5)  # frames per point: with 1,000-row groups, points 1-2 and 4 are pooled


def _table(rng, n: int, point: int) -> pa.Table:
    values = rng.random(n)
    values[rng.random(n) < 0.1] = np.nan
    return pa.table({"point": np.full(n, point), "policy": rng.choice(["local", "offload"], n),
                     "delay_s": values})


def _stage(tmp_path, rng) -> list[pa.Table]:
    """Each point staged as a sweep worker stages it (PointFrames: its own Parquet file, or Arrow IPC if small)."""
    tables = [_table(rng, n, k) for k, n in enumerate(SIZES)]
    for k, t in enumerate(tables):
        with frames.PointFrames(frames_part(tmp_path / "points", k)) as staged:
            for lo in range(0, t.num_rows, 333):  # in uneven pieces, as windows arrive
                staged.write(t.slice(lo, 333))
    return tables


def _one_writer(path, tables) -> bytes:
    """What a single writer gives: a point of a row group or more in row groups of its own, runs of smaller points
    pooled."""
    with frames.FramesFile(path) as out:
        for t in tables:
            if t.num_rows >= frames.ROW_GROUP_ROWS:
                out.end_part()
            out.write(t)
            if t.num_rows >= frames.ROW_GROUP_ROWS:
                out.end_part()
    return path.read_bytes()


@pytest.mark.parametrize("order", [(0, 1, 2, 3, 4, 5, 6), (6, 3, 5, 0, 2, 1, 4), (1, 0, 4, 2, 6, 5, 3)])
def test_points_join_in_point_order_whatever_order_they_finish_in(tmp_path, monkeypatch, order):
    """Fed the points as they finish, in any order: a point joins once every earlier one has, the joined part is on
    disk before the last point ends, and frames.parquet is byte for byte the single writer's file."""
    monkeypatch.setattr(frames, "ROW_GROUP_ROWS", 1000)
    tables = _stage(tmp_path, np.random.default_rng(7))
    staged: set[int] = set()
    with FramesJoin(tmp_path, len(SIZES)) as join:
        for k in order:
            staged.add(k)
            join.staged(staged)
            expect_next = next(j for j in range(len(SIZES) + 1) if j not in staged)
            assert join.next == expect_next
            if k != order[-1] and join.next > 3:  # points 0 and 3 are files of their own: two pieces, joining
                partial = list(tmp_path.glob(".frames.parquet.*.tmp"))
                assert len(partial) == 1 and partial[0].stat().st_size > 0
        join.finish()
    assert not list(tmp_path.glob(".frames.parquet.*.tmp"))
    assert (tmp_path / "frames.parquet").read_bytes() == _one_writer(tmp_path / "expected.parquet", tables)
    pd.testing.assert_frame_equal(pq.read_table(tmp_path / "frames.parquet").to_pandas(),
                                  pa.concat_tables(tables).to_pandas())


def test_an_interrupted_join_leaves_no_partial_file_and_keeps_the_staged_points(tmp_path, monkeypatch):
    monkeypatch.setattr(frames, "ROW_GROUP_ROWS", 1000)
    _stage(tmp_path, np.random.default_rng(8))
    before = sorted(p.name for p in (tmp_path / "points").iterdir())
    with pytest.raises(KeyboardInterrupt):
        with FramesJoin(tmp_path, len(SIZES)) as join:
            join.staged({0, 1, 2, 3, 4})
            assert list(tmp_path.glob(".frames.parquet.*.tmp"))
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points"]
    assert sorted(p.name for p in (tmp_path / "points").iterdir() if not p.name.startswith("pool.")) == before


def test_a_point_never_staged_is_named_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(frames, "ROW_GROUP_ROWS", 1000)
    _stage(tmp_path, np.random.default_rng(9))
    with pytest.raises(EdgesimError, match="frames of sweep point 2 are missing"):
        with FramesJoin(tmp_path, len(SIZES)) as join:
            join.staged({0, 1, 3, 4, 5, 6})
            join.finish()
    assert not (tmp_path / "frames.parquet").exists() and not list(tmp_path.glob(".frames.parquet.*"))
