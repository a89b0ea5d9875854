"""Compiled group-bys for the summaries (metrics._Scopes on large windows): per integer code, the sum of its values in
the order they come, added as numpy's sum adds them (pairwise_sum in numpy's umath loops: one after the other below 8
values, 8 running sums up to 128, halves beyond), so the result is bit for bit numpy's, and pandas'. Sums: each frame's
slot in that tree planned once a window (slot_plan), then one pass in frame order per column (slot_sums), no sort.
The offered load's cells: a stable counting sort into runs of one code (sorted_runs, pair_runs), folded run by run."""

from __future__ import annotations

import numpy as np

from simulator.jit import njit

BLOCK = 128  # numpy's PW_BLOCKSIZE
LARGEST = np.finfo(np.float64).max


@njit(cache=True)
def nan_to_num(v, nan):
    """np.nan_to_num(v, nan=nan) of one value: infinities as the largest finite doubles."""
    if v != v:
        return nan
    if v == np.inf:
        return LARGEST
    if v == -np.inf:
        return -LARGEST
    return v


@njit(cache=True)
def _value(a, i, zero_nan):
    """a[i], or with zero_nan as np.nan_to_num gives it (NaN as 0, infinities as the largest finite doubles)."""
    return nan_to_num(a[i], 0.0) if zero_nan else a[i]


@njit(cache=True)
def _block_sum(a, index, lo, n, zero_nan):
    """numpy's pairwise_sum of a[index[lo:lo + n]] for 8 <= n <= BLOCK: 8 running sums, then the rest in turn."""
    r0, r1 = _value(a, index[lo], zero_nan), _value(a, index[lo + 1], zero_nan)
    r2, r3 = _value(a, index[lo + 2], zero_nan), _value(a, index[lo + 3], zero_nan)
    r4, r5 = _value(a, index[lo + 4], zero_nan), _value(a, index[lo + 5], zero_nan)
    r6, r7 = _value(a, index[lo + 6], zero_nan), _value(a, index[lo + 7], zero_nan)
    whole = n - n % 8
    i = lo + 8
    while i < lo + whole:
        r0 += _value(a, index[i], zero_nan)
        r1 += _value(a, index[i + 1], zero_nan)
        r2 += _value(a, index[i + 2], zero_nan)
        r3 += _value(a, index[i + 3], zero_nan)
        r4 += _value(a, index[i + 4], zero_nan)
        r5 += _value(a, index[i + 5], zero_nan)
        r6 += _value(a, index[i + 6], zero_nan)
        r7 += _value(a, index[i + 7], zero_nan)
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < lo + n:
        res += _value(a, index[i], zero_nan)
        i += 1
    return res


@njit(cache=True)
def _pairwise(a, index, lo, n, zero_nan):
    """numpy's pairwise_sum of a[index[lo:lo + n]] (n >= 8): halves (the first a multiple of 8) down to BLOCK values,
    added in the order numpy's recursion adds them, by a walk with its own stacks: numba can crash loading a
    recursive function from its cache (numba issue #6061, open; a helper saw it with one of ours)."""
    if n <= BLOCK:
        return _block_sum(a, index, lo, n, zero_nan)
    # frames still to do: (lo, n, whether to add the last two sums); at most two per level of halving, < 64 levels
    los, ns, adds = np.empty(128, np.int64), np.empty(128, np.int64), np.empty(128, np.bool_)
    sums = np.empty(64, np.float64)
    los[0], ns[0], adds[0] = lo, n, False
    top, depth = 1, 0
    while top:
        top -= 1
        first, m = los[top], ns[top]
        if adds[top]:
            depth -= 1
            sums[depth - 1] = sums[depth - 1] + sums[depth]
        elif m <= BLOCK:
            sums[depth] = _block_sum(a, index, first, m, zero_nan)
            depth += 1
        else:
            half = m // 2
            half -= half % 8
            adds[top] = True  # this frame again, after both halves
            los[top + 1], ns[top + 1], adds[top + 1] = first + half, m - half, False
            los[top + 2], ns[top + 2], adds[top + 2] = first, half, False  # the first half on top: summed first
            top += 3
    return sums[0]


RADIX_BITS = 16  # codes beyond 2**16 are sorted in two counting passes of about sqrt(codes) buckets each (cache-sized)


@njit(cache=True)
def _counting_pass(items, keys, shift, buckets):
    """(items, keys) stably sorted by the digit (key >> shift) & (buckets - 1), read in order (no random reads)."""
    starts = np.zeros(buckets + 1, np.int64)
    mask = buckets - 1
    for k in keys:
        starts[((k >> shift) & mask) + 1] += 1
    for b in range(buckets):
        starts[b + 1] += starts[b]
    out_items, out_keys = np.empty_like(items), np.empty_like(keys)
    for j in range(items.size):
        d = (keys[j] >> shift) & mask
        out_items[starts[d]] = items[j]
        out_keys[starts[d]] = keys[j]
        starts[d] += 1
    return out_items, out_keys


@njit(cache=True)
def _bucket_pass(frames, codes, size, order):
    """The frames stably sorted by codes[frame] (0..size-1; one counting pass, the codes read through the frames, not
    carried along) into order, and each code's first place in it (starts[c]:starts[c + 1])."""
    starts = np.zeros(size + 1, np.int64)
    for j in range(frames.size):
        starts[codes[frames[j]] + 1] += 1
    for c in range(size):
        starts[c + 1] += starts[c]
    fill = starts[:-1].copy()
    for j in range(frames.size):
        f = frames[j]
        c = codes[f]
        order[fill[c]] = f
        fill[c] += 1
    return order, starts


@njit(cache=True)
def _bucket_runs(order, starts):
    """A counting pass's runs: the codes with frames, and where each one's frames start in the order."""
    n_runs = 0
    for c in range(starts.size - 1):
        if starts[c + 1] > starts[c]:
            n_runs += 1
    run_starts = np.empty(n_runs + 1, np.int64)
    run_codes = np.empty(n_runs, np.int64)
    r = 0
    for c in range(starts.size - 1):
        if starts[c + 1] > starts[c]:
            run_starts[r] = starts[c]
            run_codes[r] = c
            r += 1
    run_starts[n_runs] = order.size
    return order, run_starts, run_codes


@njit(cache=True)
def sorted_runs(codes, frames, size):
    """The frames stably sorted by code (0..size-1) and the runs of one code in that order: run r holds
    order[starts[r]:starts[r + 1]], all of code run_codes[r]. Without arrays of `size` beyond 2**16 codes (a radix sort
    in two passes there): a city's (edge server, camera) codes are 100 x 10,000 = a million; a 250,000-frame window
    touches ~233,000 of them (counted on city_scale.yaml)."""
    bits = 0
    while (size - 1) >> bits:
        bits += 1
    if bits <= RADIX_BITS:
        order, starts = _bucket_pass(frames, codes, size, np.empty_like(frames))
        return _bucket_runs(order, starts)
    keys = np.empty(frames.size, np.int64)
    for j in range(frames.size):
        keys[j] = codes[frames[j]]
    low = (bits + 1) // 2  # two passes of about sqrt(size) buckets
    order, keys = _counting_pass(frames, keys, 0, 1 << low)
    order, keys = _counting_pass(order, keys, low, 1 << (bits - low))
    return _key_runs(order, keys, np.empty(keys.size + 1, np.int64), np.empty(keys.size, np.int64))


@njit(cache=True)
def _key_runs(order, keys, starts, run_codes):
    """The runs of equal keys in sorted keys, into starts and run_codes (room for a run a key; views returned)."""
    n_runs = 0
    for j in range(keys.size):
        if j == 0 or keys[j] != keys[j - 1]:
            n_runs += 1
    starts, run_codes = starts[:n_runs + 1], run_codes[:n_runs]
    r = 0
    for j in range(keys.size):
        if j == 0 or keys[j] != keys[j - 1]:
            starts[r] = j
            run_codes[r] = keys[j]
            r += 1
    starts[n_runs] = keys.size
    return order, starts, run_codes


@njit(cache=True)
def pair_runs(minor, major, frames, n_minor, n_major, scratch):
    """sorted_runs of the frames by minor code (a camera), and by the pair code major x n_minor + minor (an (edge
    server, camera) cell) from that order: a stable pass by major code of the minor order is the pair's stable sort
    (least significant digit first), with arrays of n_minor and n_major, not of their product. The frame-long arrays
    are views of scratch (5 x frames + 1 int64 or more, kept by the caller: fresh ones a window cost page faults)."""
    n = frames.size
    by_minor, starts = _bucket_pass(frames, minor, n_minor, scratch[:n])
    by_pair, _ = _bucket_pass(by_minor, major, n_major, scratch[n:2 * n])
    keys = scratch[2 * n:3 * n]
    for j in range(n):
        f = by_pair[j]
        keys[j] = major[f] * n_minor + minor[f]
    by_cell = _key_runs(by_pair, keys, scratch[3 * n:4 * n + 1], scratch[4 * n + 1:5 * n + 1])
    return _bucket_runs(by_minor, starts), by_cell


@njit(cache=True)
def fold_runs(order, starts, run_codes, rows, zero_nan, window, state):
    """Per run (one code's frames, sorted_runs), into its row of state (count, earliest and latest capture, window
    first seen, then k demand sums), from each frame's row of `rows` (capture, then k demands: frame-major, one read
    a frame): one more frame each; the earliest and latest capture (NaN sticks, as np.minimum's); the window it was
    first seen in (seen still inf); and the sum of each demand over its frames as numpy sums them (with zero_nan[k], of
    np.nan_to_num's values). A cell's figures side by side, so a window touches each cell's memory once."""
    k_demands = rows.shape[1] - 1
    acc = np.empty(k_demands)
    for r in range(run_codes.size):
        c = run_codes[r]
        lo = starts[r]
        n = starts[r + 1] - lo
        if state[c, 3] == np.inf:
            state[c, 3] = window
        state[c, 0] += n
        first, last = state[c, 1], state[c, 2]
        acc[:] = 0.0
        for j in range(lo, lo + n):
            f = order[j]
            x = rows[f, 0]
            if x < first or x != x:
                first = x
            if x > last or x != x:
                last = x
            if n < 8:  # numpy's sum below 8 values: one after the other
                for k in range(k_demands):
                    acc[k] += _value(rows[f], k + 1, zero_nan[k])
        state[c, 1], state[c, 2] = first, last
        for k in range(k_demands):
            state[c, 4 + k] += acc[k] if n < 8 else 0.0 + _pairwise(rows[:, k + 1], order, lo, n, zero_nan[k])


LEAF_SLOTS = 16  # a leaf's 8 lanes and up to 7 values past them; a group of n >= 8 values has 16 * (n // 64 + 1) slots


@njit(cache=True)
def _group_slots(n):
    """Slots of a group of n values: one running sum below 8 values (numpy adds them one after the other), else 16 per
    64 values and one leaf more (a leaf of numpy's pairwise tree holds 64 values or more, 128 at most, and its slots
    start at 16 x (its first position // 64): no two leaves share them)."""
    return 1 if n < 8 else LEAF_SLOTS * (n // 64 + 1)


@njit(cache=True)
def _next_slot(g, counts, bases, pos, leaf):
    """The slot of group g's next value (slot_plan)."""
    p = pos[g]
    pos[g] = p + 1
    total = counts[g]
    if total < 8:
        return bases[g]
    if p == leaf[g, 1]:  # past the last leaf: the tree's next one, found from the root
        lo, length = 0, total
        while length > BLOCK:
            half = length // 2
            half -= half % 8
            if p - lo < half:
                length = half
            else:
                lo += half
                length -= half
        leaf[g, 0], leaf[g, 1], leaf[g, 2] = lo, lo + length, lo + length - length % 8
    base = bases[g] + (leaf[g, 0] // 64) * LEAF_SLOTS
    return base + ((p - leaf[g, 0]) % 8 if p < leaf[g, 2] else 8 + p - leaf[g, 2])


@njit(cache=True)
def slot_plan(codes, frames, size, by_code):
    """Each selected frame's slot in a scratch buffer of running sums (frame order, no sort): slots[j, 0] in the group
    of every frame, slots[j, 1] (by_code) in the group of its code; a value added to its slot lands where numpy's
    pairwise_sum would add it (a leaf's lane, position % 8, or a place of its own past the last multiple of 8).
    counts[0] = frames; counts[1 + c]: frames of code c; group g's slots are bases[g]:bases[g + 1]."""
    n = frames.size
    groups = 1 + size if by_code else 1
    counts = np.zeros(groups, np.int64)
    counts[0] = n
    if by_code:
        for j in range(n):
            counts[1 + codes[frames[j]]] += 1
    bases = np.zeros(groups + 1, np.int64)
    for g in range(groups):
        bases[g + 1] = bases[g] + _group_slots(counts[g])
    pos = np.zeros(groups, np.int64)
    leaf = np.zeros((groups, 3), np.int64)  # the current leaf of each group: first position, end, end of its lanes
    slots = np.empty((n, 2 if by_code else 1), np.int32)  # half the bytes of int64 to write and read 20 times
    if by_code:
        for j in range(n):
            slots[j, 0] = _next_slot(0, counts, bases, pos, leaf)
            slots[j, 1] = _next_slot(1 + codes[frames[j]], counts, bases, pos, leaf)
    else:
        for j in range(n):
            slots[j, 0] = _next_slot(0, counts, bases, pos, leaf)
    return slots, counts, bases


@njit(cache=True)
def _tree_sum(buf, base, n):
    """numpy's pairwise_sum of a group's n >= 8 values from their leaves' slots (slot_plan): lanes combined, the
    values past them added one after the other, halves added. Without recursion (numba's cached recursive functions
    crashed when loaded back): a stack of the halves still open, left to right."""
    los, lengths, stages = np.empty(64, np.int64), np.empty(64, np.int64), np.empty(64, np.int64)
    sums = np.empty(64)
    los[0], lengths[0], stages[0] = 0, n, 0
    top, done = 0, 0  # open halves; sums of finished ones waiting for their sibling
    while top >= 0:
        lo, length = los[top], lengths[top]
        if length <= BLOCK:
            b = base + (lo // 64) * LEAF_SLOTS
            res = ((buf[b] + buf[b + 1]) + (buf[b + 2] + buf[b + 3])) + \
                  ((buf[b + 4] + buf[b + 5]) + (buf[b + 6] + buf[b + 7]))
            for t in range(length % 8):
                res += buf[b + 8 + t]
            sums[done] = res
            done += 1
            top -= 1
            continue
        half = length // 2
        half -= half % 8
        if stages[top] == 0:  # the left half next
            stages[top] = 1
            los[top + 1], lengths[top + 1], stages[top + 1] = lo, half, 0
            top += 1
        elif stages[top] == 1:  # then the right half
            stages[top] = 2
            los[top + 1], lengths[top + 1], stages[top + 1] = lo + half, length - half, 0
            top += 1
        else:  # both done: left + right
            done -= 1
            sums[done - 1] = sums[done - 1] + sums[done]
            top -= 1
    return sums[0]


@njit(cache=True)
def slot_sums(values, zero_nan, frames, slots, counts, bases, buf, out):
    """out[g] += the sum of group g's values (values[frames], slot_plan's groups) as numpy sums them, in one pass in
    frame order (with zero_nan, of np.nan_to_num's values). A lane starts at 0.0, not at its first value: that changes
    only the sign of a zero sum, and every sum is added to 0.0. buf: scratch of bases[-1] slots or more (one for every
    column: a fresh one a column costs page faults)."""
    buf[:bases[-1]] = 0.0
    if slots.shape[1] == 1:  # one loop per case: a test or an inner loop in it costs three times the sums
        if zero_nan:
            for j in range(frames.size):
                buf[slots[j, 0]] += nan_to_num(values[frames[j]], 0.0)
        else:
            for j in range(frames.size):
                buf[slots[j, 0]] += values[frames[j]]
    elif zero_nan:
        for j in range(frames.size):
            x = nan_to_num(values[frames[j]], 0.0)
            buf[slots[j, 0]] += x
            buf[slots[j, 1]] += x
    else:
        for j in range(frames.size):
            x = values[frames[j]]
            buf[slots[j, 0]] += x
            buf[slots[j, 1]] += x
    for g in range(counts.size):
        n = counts[g]
        if n >= 8:
            out[g] += 0.0 + _tree_sum(buf, bases[g], n)
        elif n:
            out[g] += buf[bases[g]]
