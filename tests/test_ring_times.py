"""The compiled loop's ring hands a window's times back in frame order and leaves the rows it read NaN, as the next
window loaded into that place needs them."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.loop.ring import times_by_frame


@pytest.mark.parametrize("frames,width,first,count",
                         [(1, 9, 3, 6), (7, 26, 7, 19), (500, 12, 2, 10), (3000, 33, 0, 33)])
def test_times_by_frame_reads_rows_in_frame_order_and_leaves_them_nan(frames, width, first, count):
    rng = np.random.default_rng(frames)
    T = rng.random((2 * frames + 5, width))
    T[rng.random(T.shape) < 0.1] = np.nan
    slot = rng.permutation(2 * frames + 5)[:frames]  # frames' rows anywhere in the ring, in any order
    before = T.copy()
    out = np.empty((count, frames))
    times_by_frame(T, slot, first, out)
    np.testing.assert_array_equal(out, before[slot, first:first + count].T)  # NaN where NaN, bit for bit
    assert np.isnan(T[slot]).all()
    others = np.setdiff1d(np.arange(T.shape[0]), slot)
    np.testing.assert_array_equal(T[others], before[others])
