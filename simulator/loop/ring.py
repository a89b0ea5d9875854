"""The compiled loop's frame slots: windows of frames loaded on demand and handed back in order (engine.FrameRing's
contract, with arrays)."""

from __future__ import annotations

from typing import Optional

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from profilers.errors import EdgesimError
from simulator.engine import WindowDone, falls_behind
from simulator.jit import njit
from simulator.loop.layout import N_KINDS, NEXT_WINDOW, T_TIMES, Demands
from simulator.loop.setup import delay_draws
from simulator.plan import FramePlan, Topology


class Ring:
    """The loop's frame slots: windows of frames, each in a place of `width` slots (slot = place x width + row).

    Window k is loaded into a free place once a mobile device's captures reach it, and handed back, in order, once
    all its frames have ended (engine.FrameRing's contract, with arrays). It starts with two places (the window
    running and the next) and grows to at most ring_windows (a system that falls further behind gets one clear
    error). Inside a place the frames lie in capture order (equal times in frame order: `in_capture_order`), so
    that the loop, which meets frames in about that order, reads its slots one after the other rather than a
    camera's frames in a row. A window's demands on every route stay in its plan's own arrays, in frame order,
    until it is handed back: the loop reads them by address (demand_at), a frame's on its route once, at its
    capture (queues.take_demands). A run of one window whose frames are in capture order already is that window,
    slot = frame index.
    """

    def __init__(self, first: FramePlan, single: bool, ring_windows: int, n_rows: int, delay: bool) -> None:
        self.width, self.max_places = first.capture_s.size, 1 if single else ring_windows
        self.single, self.n_rows, self.delay = single, n_rows, delay
        self.tiered = first.cloud_s is not None
        self.rows = np.ascontiguousarray(first.row_of(np.arange(first.n_routes)), dtype=np.int64)  # route -> row
        self.places = 0
        self.order = in_capture_order(first.capture_s)  # the last window's (the next is likely in the same order)
        self.own = single and self.order is None
        if self.own:  # the plan's own arrays (no copy)
            self.capture = np.ascontiguousarray(first.capture_s, dtype=float)
            self.mobile = np.ascontiguousarray(first.mobile, dtype=np.int64)
            self.column = np.arange(self.width, dtype=np.int64)
        else:
            self.capture, self.mobile, self.column = np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
        # T: a frame's demands on its route (layout.T_TIMES columns), then its times, side by side
        self.route, self.T = np.zeros(0, np.int64), np.zeros((0, T_TIMES + n_rows))
        self.status, self.drop_stage = np.zeros(0, np.int8), np.zeros(0, np.int8)
        self.nxt, self.NXT, self.PRV = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        self.delay_values = np.zeros((2, 0) if delay else (2, 1))
        self.remaining = np.zeros(0, np.int64)
        # per place: its window's demand arrays (kept alive while the loop reads them by address), their addresses
        # per kind (K_*; 0: none) and its frames
        self.demands: list[Optional[Demands]] = []
        self.demand_at, self.demand_frames = np.zeros((0, N_KINDS), np.int64), np.zeros(0, np.int64)
        self.free: list[int] = []
        self._grow(1 if single else 2)
        # window -> (plan, place, each frame's slot; None: frame f in slot place x width + f)
        self.windows: dict[int, tuple[FramePlan, int, np.ndarray]] = {}
        self.lasts: dict[int, np.ndarray] = {}  # per window: the slot of each mobile device's last frame (-1: none)
        self.loaded = self.flushed = 0
        self.more = not single

    def _grow(self, places: int) -> None:
        """Room for `places` windows; the slots in use keep their numbers."""
        old, cap = self.places * self.width, places * self.width

        def wider(a: np.ndarray, fill) -> np.ndarray:  # zeros: pages the system hands out as they are first written
            shape = a.shape[:-1] + (cap,)
            out = np.zeros(shape, dtype=a.dtype) if fill == 0 else np.full(shape, fill, dtype=a.dtype)
            out[..., :old] = a
            return out

        def taller(a: np.ndarray, fill, rows: int = cap) -> np.ndarray:  # slots (or places) first
            out = np.full((rows,) + a.shape[1:], fill, dtype=a.dtype)
            out[:a.shape[0]] = a
            return out

        if not self.own:
            self.capture, self.mobile = wider(self.capture, 0.0), wider(self.mobile, 0)
            self.column = wider(self.column, 0)
        self.route, self.T = wider(self.route, 0), taller(self.T, np.nan)
        self.status, self.drop_stage = wider(self.status, 0), wider(self.drop_stage, 0)
        self.nxt, self.NXT, self.PRV = wider(self.nxt, -1), wider(self.NXT, -1), wider(self.PRV, -1)
        if self.delay:
            self.delay_values = wider(self.delay_values, 0.0)
        self.remaining = wider(self.remaining, 0)
        self.demand_at, self.demand_frames = taller(self.demand_at, 0, places), taller(self.demand_frames, 0, places)
        self.demands += [None] * (places - self.places)
        self.free += list(range(self.places, places))
        self.places = places

    def load(self, k: int, wp: FramePlan, topo: Topology, now: float) -> np.ndarray:
        """Put window k into a free place; link each mobile device's last frame of window k-1 to its first here.
        Returns the window's first frame of each mobile device (slots, -1: none)."""
        if not self.free:
            if self.places >= self.max_places:
                raise falls_behind(self.max_places, now)
            self._grow(min(2 * self.places, self.max_places))
        n, place = wp.capture_s.size, self.free.pop(0)
        if n > self.width:
            raise EdgesimError(f"window {k} has {n} frames, more than the first window's {self.width}")
        if wp.n_routes != self.rows.size or not np.array_equal(wp.row_of(np.arange(self.rows.size)), self.rows):
            raise EdgesimError(f"window {k} shares the demand rows of its routes differently from the first window")
        base = place * self.width
        sl = slice(base, base + n)
        order = None if self.own else in_capture_order(wp.capture_s, self.order)  # slot base + s: frame order[s]
        self.order = order
        at = (lambda a: a) if order is None else (lambda a: a[..., order])
        slot = np.arange(base, base + n) if order is None else np.empty(n, np.int64)  # each frame's slot
        if order is not None:
            slot[order] = np.arange(base, base + n)
        tiers = (wp.wan_bits, wp.cloud_s, wp.wan_down_s) if self.tiered else (None,) * 3
        self.demands[place] = Demands(*(np.zeros((0, 0)) if a is None else np.ascontiguousarray(a, dtype=float)
                                        for a in (wp.head_s, wp.wire_bits, wp.tail_s, wp.down_s) + tiers))  # no copy
        self.demand_at[place] = [a.ctypes.data if a.size else 0 for a in self.demands[place]]
        self.demand_frames[place] = n
        if not self.own:  # the place's rows of T are NaN: new (_grow), or cleared as flush read them
            self.column[sl] = np.arange(n) if order is None else order
            self.capture[sl], self.mobile[sl] = at(wp.capture_s), at(wp.mobile)
            self.status[sl] = self.drop_stage[sl] = 0
        self.route[sl] = at(wp.route)
        if topo.delay is not None:
            self.delay_values[:, sl] = at(delay_draws(wp, topo))
        first_of, last_of, nxt = wp.capture_chain()
        self.nxt[sl] = at(np.where(nxt >= 0, slot[nxt], -1))
        firsts = np.where(first_of >= 0, slot[first_of], -1)
        lasts = np.where(last_of >= 0, slot[last_of], -1)
        if self.more:
            self.nxt[lasts[lasts >= 0]] = NEXT_WINDOW
        prev = self.lasts.pop(k - 1, None)
        if prev is not None:
            self.nxt[prev[prev >= 0]] = firsts[prev >= 0]
        self.lasts[k] = lasts
        self.windows[k], self.remaining[place] = (wp if self.single else wp.for_tables(), place, slot), n
        self.loaded = k + 1
        return firsts

    def last_window(self) -> None:
        """No window follows the loaded ones: the last frames have no next capture."""
        self.more = False
        for lasts in self.lasts.values():
            self.nxt[lasts[lasts >= 0]] = -1

    def flush(self, on_window: WindowDone, fields: tuple, everything: bool = False) -> None:
        """Hand back every leading window whose frames have all ended (every loaded one when `everything`)."""
        while self.flushed < self.loaded and (everything or self.remaining[self.windows[self.flushed][1]] == 0):
            k = self.flushed
            wp, place, slot = self.windows.pop(k)
            # numpy's block (huge pages where the system has them: numba's would fault per 4 KB)
            T = np.empty((self.n_rows, slot.size))
            times_by_frame(self.T, slot, T_TIMES, T)  # one pass over the window's rows of T, left NaN
            times = {name: T[row] for row, name in enumerate(fields)}
            times["status"], times["drop_stage"] = self.status[slot], self.drop_stage[slot]
            times["route"] = self.route[slot].astype(np.int16)
            if self.delay:
                times["prop_up_s"], times["prop_down_s"] = T[len(fields)], T[len(fields) + 1]
            self.demands[place], self.demand_at[place] = None, 0  # its frames are captured: the demands go
            self.flushed = k + 1
            self.free.append(place)
            on_window(k, wp, times)


def in_capture_order(capture_s: np.ndarray, likely: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """The frames of a window by capture time, equal times in frame order (None: they are in that order already):
    `likely` where it is that order (checked: a periodic workload's windows share it), else a stable sort."""
    if capture_s.size < 2 or bool(np.all(capture_s[1:] >= capture_s[:-1])):
        return None
    if likely is not None and likely.size == capture_s.size:
        gap = np.diff(capture_s[likely])
        if bool(np.all(gap >= 0)) and bool(np.all(np.diff(likely)[gap == 0] > 0)):  # sorted, ties in frame order
            return likely
    return np.argsort(capture_s, kind="stable")


@intrinsic
def prefetch(typingctx, arr, row, col):
    """A hint to bring the cache line of arr[row, col] (a 2-D array) in (llvm.prefetch: read, all cache levels): no
    effect on any value, only on when the memory is read."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        at = cgutils.get_item_pointer(context, builder, sig.args[0], ary, [args[1], args[2]], wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(at, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.void(arr, row, col), codegen


PREFETCH_FRAMES = 8
"""How many frames ahead times_by_frame asks for a row of T: a window's frames in frame order lie far apart in
capture order (a city's: 10,000 slots, 2 MB), so each row read waits on memory; with the rows asked for 8 frames
ahead (4 to 32 alike) a 250,000-frame city window took 79 instead of 138 ns a frame (median of 7, one core)."""


@njit(cache=True)
def times_by_frame(T: np.ndarray, slot: np.ndarray, first: int, out: np.ndarray) -> None:
    """Columns first, first + 1, ... of T's rows slot[0], slot[1], ... into out (columns x frames): a window's
    times in frame order, a row per field, in one pass that reads each frame's row of T once (not a gather of
    every row, then a strided copy per column), asking for rows PREFETCH_FRAMES frames ahead. Each row is left NaN
    (every column), as Ring.load needs its place: cleared while in cache, not by a second pass over the place."""
    count, width, n = out.shape[0], T.shape[1], slot.size
    nan = np.nan
    for f in range(n):
        if f + PREFETCH_FRAMES < n:
            ahead = slot[f + PREFETCH_FRAMES]
            for c in range(0, width, 8):  # a line holds 8 floats: one ask per line the row spans
                prefetch(T, ahead, c)
            prefetch(T, ahead, width - 1)
        row = T[slot[f]]
        for c in range(count):
            out[c, f] = row[first + c]
        for c in range(width):
            row[c] = nan
