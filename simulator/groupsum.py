"""Compiled group sums for the summaries (metrics.group_sums_many on large windows): per integer code, the sum of
its values in the order they come, added as numpy's sum adds them (pairwise_sum in numpy's umath loops: one after the
other below 8 values, 8 running sums up to 128, halves beyond), so the result is bit for bit numpy's, and pandas'.
One counting-sort pass and one summing pass: linear in values plus codes, whatever the number of groups."""

from __future__ import annotations

import numpy as np
from numba import njit

BLOCK = 128  # numpy's PW_BLOCKSIZE


@njit(cache=True)
def _pairwise(a, lo, n):
    """numpy's pairwise_sum of a[lo:lo + n] (n >= 8)."""
    if n <= BLOCK:
        r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
        r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
        whole = n - n % 8
        i = 8
        while i < whole:
            r0 += a[lo + i]
            r1 += a[lo + i + 1]
            r2 += a[lo + i + 2]
            r3 += a[lo + i + 3]
            r4 += a[lo + i + 4]
            r5 += a[lo + i + 5]
            r6 += a[lo + i + 6]
            r7 += a[lo + i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += a[lo + i]
            i += 1
        return res
    half = n // 2
    half -= half % 8
    return _pairwise(a, lo, half) + _pairwise(a, lo + half, n - half)


@njit(cache=True)
def group_sums_rows(codes, rows, size):
    """Per code 0..size-1 and row of `rows` (columns x values), the sum of the row's values of that code in the
    order they come: one stable counting sort of the codes for every row, then numpy's summation of each group."""
    counts = np.zeros(size, np.int64)
    for c in codes:
        counts[c] += 1
    starts = np.empty(size + 1, np.int64)
    starts[0] = 0
    for g in range(size):
        starts[g + 1] = starts[g] + counts[g]
    fill = starts[:-1].copy()
    order = np.empty(codes.size, np.int64)
    for i in range(codes.size):
        c = codes[i]
        order[fill[c]] = i
        fill[c] += 1
    out = np.zeros((rows.shape[0], size))
    ordered = np.empty(codes.size)
    for k in range(rows.shape[0]):
        row = rows[k]
        for j in range(codes.size):
            ordered[j] = row[order[j]]
        for g in range(size):
            n = counts[g]
            lo = starts[g]
            if n < 8:
                s = 0.0
                for i in range(n):
                    s += ordered[lo + i]
                out[k, g] = s
            else:
                out[k, g] = 0.0 + _pairwise(ordered, lo, n)
    return out
