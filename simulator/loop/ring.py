"""The compiled loop's frame slots: windows of frames loaded on demand and handed back in order (engine.FrameRing's
contract, with arrays)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from profilers.errors import EdgesimError
from simulator.engine import WindowDone, falls_behind
from simulator.loop.layout import NEXT_WINDOW
from simulator.loop.setup import delay_draws
from simulator.plan import FramePlan, Topology


MAX_ROWS_REORDERED = 2
"""Plans of at most this many demand rows lie in the ring in capture order (Ring)."""


class Ring:
    """The loop's frame slots: windows of frames, each in a place of `width` slots (slot = place x width + row).

    Window k is loaded into a free place once a mobile device's captures reach it, and handed back, in order, once
    all its frames have ended (engine.FrameRing's contract, with arrays). It starts with two places (the window
    running and the next) and grows to at most ring_windows (a system that falls further behind gets one clear
    error). Inside a place the frames lie in capture order (equal times in frame order: `in_capture_order`), so
    that the loop, which meets frames in about that order, reads its slots one after the other rather than a
    camera's frames in a row (plans of at most MAX_ROWS_REORDERED demand rows; others in frame order); a run of one
    window whose frames are in that order already is that window, slot = frame index, with the plan's own arrays.
    """

    def __init__(self, first: FramePlan, single: bool, ring_windows: int, n_rows: int, delay: bool) -> None:
        self.width, self.max_places = first.capture_s.size, 1 if single else ring_windows
        self.single, self.n_rows, self.delay = single, n_rows, delay
        self.routes, self.tiered = first.head_s.shape[0], first.cloud_s is not None
        self.rows = np.ascontiguousarray(first.row_of(np.arange(first.n_routes)), dtype=np.int64)  # route -> row
        f64 = (lambda a: np.ascontiguousarray(a, dtype=float))
        dummy = np.zeros((1, 1))
        self.places = 0
        # a plan of many demand rows (best-placement's routes) is not reordered: a gather of every row costs more
        # than the loop saves on the one row a frame reads (measured, 10,000 cameras x 60 frames: 5.37 us a frame
        # reordered against 3.65 us not, docs/round4/issue26a_s6.md)
        self.reorder = first.head_s.shape[0] <= MAX_ROWS_REORDERED
        self.own = single and (not self.reorder or in_capture_order(first.capture_s) is None)
        if self.own:  # the plan's own arrays (no copy)
            self.plan = (f64(first.head_s), f64(first.wire_bits), f64(first.tail_s), f64(first.down_s),
                         f64(first.wan_bits) if self.tiered else dummy, f64(first.cloud_s) if self.tiered else dummy,
                         f64(first.wan_down_s) if self.tiered else dummy)
            self.capture, self.mobile = f64(first.capture_s), np.ascontiguousarray(first.mobile, dtype=np.int64)
        else:
            self.plan = tuple(np.zeros((self.routes, 0)) if k < 4 or self.tiered else dummy for k in range(7))
            self.capture, self.mobile = np.zeros(0), np.zeros(0, np.int64)
        self.route, self.T = np.zeros(0, np.int64), np.zeros((0, n_rows))  # T: a frame's times side by side
        self.status, self.drop_stage = np.zeros(0, np.int8), np.zeros(0, np.int8)
        self.nxt, self.NXT, self.PRV = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        self.delay_values = np.zeros((2, 0) if delay else (2, 1))
        self.remaining = np.zeros(0, np.int64)
        self.free: list[int] = []
        self._grow(1 if single else 2)
        self.windows: dict[int, tuple[FramePlan, int, Optional[np.ndarray]]] = {}  # window -> (plan, place, order)
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

        def taller(a: np.ndarray, fill) -> np.ndarray:  # slots first
            out = np.full((cap,) + a.shape[1:], fill, dtype=a.dtype)
            out[:old] = a
            return out

        if not self.own:
            self.plan = tuple(wider(a, 0.0) if k < 4 or self.tiered else a for k, a in enumerate(self.plan))
            self.capture, self.mobile = wider(self.capture, 0.0), wider(self.mobile, 0)
        self.route, self.T = wider(self.route, 0), taller(self.T, np.nan)
        self.status, self.drop_stage = wider(self.status, 0), wider(self.drop_stage, 0)
        self.nxt, self.NXT, self.PRV = wider(self.nxt, -1), wider(self.NXT, -1), wider(self.PRV, -1)
        if self.delay:
            self.delay_values = wider(self.delay_values, 0.0)
        self.remaining = wider(self.remaining, 0)
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
        order = None if self.own or not self.reorder else in_capture_order(wp.capture_s)  # slot base + s: frame order[s]
        at = (lambda a: a) if order is None else (lambda a: a[..., order])
        slot = np.arange(base, base + n) if order is None else np.empty(n, np.int64)  # each frame's slot
        if order is not None:
            slot[order] = np.arange(base, base + n)
        if not self.own:
            parts = (wp.head_s, wp.wire_bits, wp.tail_s, wp.down_s) + (
                (wp.wan_bits, wp.cloud_s, wp.wan_down_s) if self.tiered else ())
            for dst, src in zip(self.plan, parts):
                dst[:, sl] = at(src)
            self.capture[sl], self.mobile[sl] = at(wp.capture_s), at(wp.mobile)
            self.T[sl] = np.nan
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
        self.windows[k], self.remaining[place] = (wp if self.single else wp.for_tables(), place, order), n
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
            wp, place, order = self.windows.pop(k)
            base = place * self.width
            n = wp.capture_s.size
            if order is None:
                idx = slice(base, base + n)
                take = (lambda a: a[idx]) if self.single else (lambda a: a[idx].copy())
            else:  # back in frame order
                idx = np.empty(n, np.int64)
                idx[order] = np.arange(base, base + n)
                take = (lambda a: a[idx])
            T = self.T[idx]  # a frame's times are one row: a view (or one gather of rows), each column copied once
            times = {name: T[:, row].copy() for row, name in enumerate(fields)}
            times["status"], times["drop_stage"] = take(self.status), take(self.drop_stage)
            times["route"] = self.route[idx].astype(np.int16)
            if self.delay:
                times["prop_up_s"], times["prop_down_s"] = (T[:, len(fields) + d].copy() for d in (0, 1))
            self.flushed = k + 1
            self.free.append(place)
            on_window(k, wp, times)


def in_capture_order(capture_s: np.ndarray) -> Optional[np.ndarray]:
    """The frames of a window by capture time, equal times in frame order (None: they are in that order already)."""
    if capture_s.size < 2 or bool(np.all(capture_s[1:] >= capture_s[:-1])):
        return None
    return np.argsort(capture_s, kind="stable")
