"""Per-frame records to per-policy summaries: delay percentiles, throughput, drops, energy, gains, accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping, Optional

import numpy as np
import pandas as pd

from simulator.scenario import Scenario

#: Summary columns in order; sweep columns and accuracy/f1 are added where they apply.
SUMMARY_COLUMNS = [
    "point", "policy", "mobile", "edge", "data_rate_mbps", "frames", "delay_mean_s", "delay_p50_s", "delay_p95_s",
    "delay_p99_s", "delay_mean_ci95_s", "throughput_fps", "deadline_miss_fraction", "drop_fraction",
    "energy_mobile_j_per_frame", "energy_mobile_compute_j_per_frame", "energy_mobile_radio_j_per_frame",
    "energy_mobile_total_j", "energy_server_j_per_frame", "bytes_per_frame", "offload_fraction",
    "head_s_mean", "transfer_s_mean", "tail_s_mean", "queue_s_mean", "gain_vs_local", "gain_vs_offload",
]


def positive_class(labels: np.ndarray, positive: Optional[object] = None) -> Optional[object]:
    """The class binary F1 is taken for: `positive` when given, else the larger of exactly two labels, else None.

    One rule for every F1 edgesim prints (the simulator's summary and the DMD tables): with two classes the
    positive one is the larger label (1 of {0, 1}, as 000's fall F1), so {1, 2} and {3, 7} need no special case;
    with more classes F1 is the macro average over the classes present (positive_class returns None).
    """
    if positive is not None:
        return positive
    classes = np.unique(np.asarray(labels))
    return getattr(classes[-1], "item", lambda: classes[-1])() if classes.size == 2 else None  # numpy or str


def f1_score(y_true: np.ndarray, y_pred: np.ndarray, positive: Optional[object] = None) -> float:
    """F1 of the positive class (binary), or the macro average over the classes in y_true and y_pred (None).

    Counts as scikit-learn does with zero_division=0: a class never predicted nor present scores 0.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = [positive] if positive is not None else np.union1d(np.unique(y_true), np.unique(y_pred)).tolist()
    scores = []
    for c in classes:
        tp = np.sum((y_pred == c) & (y_true == c))
        denom = np.sum(y_pred == c) + np.sum(y_true == c)
        scores.append(2.0 * tp / denom if denom else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def ci95_half_width(per_rep_means: np.ndarray) -> float:
    """Half-width of a 95% Student-t interval over replication means (NaN with fewer than two)."""
    k = per_rep_means.size
    if k < 2:
        return float("nan")
    from scipy.stats import t

    return float(t.ppf(0.975, k - 1) * per_rep_means.std(ddof=1) / np.sqrt(k))


@dataclass(frozen=True)
class FrameKeys:
    """Integer codes of one frame table's rows (one replication of one policy): the group-by keys of the summary."""

    replication: int
    mobile: np.ndarray  # mobile device instance per frame, 0..n_mobiles-1
    status: np.ndarray  # plan.STATUS_NAMES index per frame (2: dropped)
    edge: Optional[np.ndarray] = None  # edge server per frame, 0..n_edges-1 (several edge servers or a cloud)


def _scope_codes(codes: Optional[np.ndarray]) -> Optional[np.ndarray]:
    return None if codes is None else codes.astype(np.int64, copy=False)


PAIRWISE_BLOCK = 128
"""numpy sums blocks of up to this many values with 8 running sums, and splits longer runs in two (pairwise)."""


def _pairwise(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """numpy's pairwise sum (umath loops, pairwise_sum) of values[start:start + length] for every run at once."""
    out = np.full(starts.size, -0.0)
    big = lengths > PAIRWISE_BLOCK
    if big.any():  # both halves of every long run in one call: as many calls as halvings, not runs
        s, n = starts[big], lengths[big]
        half = n // 2 - (n // 2) % 8
        halves = _pairwise(values, np.concatenate((s, s + half)), np.concatenate((half, n - half)))
        out[big] = halves[:s.size] + halves[s.size:]
    short = ~big & (lengths < 8)
    for i in range(7):  # fewer than 8 values: one after the other
        m = short & (lengths > i)
        out[m] += values[starts[m] + i]
    block = ~big & (lengths >= 8)
    if block.any():
        s, n = starts[block], lengths[block]
        whole = n - n % 8
        lanes = values[s[:, None] + np.arange(8)]
        for k in range(1, PAIRWISE_BLOCK // 8):
            m = whole > 8 * k
            if not m.any():
                break
            lanes[m] += values[s[m][:, None] + 8 * k + np.arange(8)]
        acc = ((lanes[:, 0] + lanes[:, 1]) + (lanes[:, 2] + lanes[:, 3])) + \
              ((lanes[:, 4] + lanes[:, 5]) + (lanes[:, 6] + lanes[:, 7]))
        for i in range(7):  # the values past the last multiple of 8, one after the other
            m = n % 8 > i
            acc[m] += values[s[m] + whole[m] + i]
        out[block] = acc
    return out


LOOP_GROUPS = 1024
"""Up to this many groups of 8 or more values, group_sums sums each with numpy (about 1 us a call); more go through
_pairwise's vectorised passes (a fixed cost of some 700 numpy calls a window: 7 ms for 100 edge servers)."""


COMPILED_FROM = 20_000
"""From this many values on, a window's group-bys run compiled (groupsum): one counting sort, then one pass per column
whatever the number of groups (a city's (edge server, camera) pairs are a million groups)."""


def _compiled(n_values: int, n_groups: int) -> bool:
    """Whether a window's group-bys take the compiled passes: from COMPILED_FROM values or groups (numba's import is
    paid back there; numpy's passes cost as much per group as per value)."""
    return n_values >= COMPILED_FROM or n_groups >= COMPILED_FROM


def group_sums(codes: np.ndarray, values: np.ndarray, size: int, order: Optional[np.ndarray] = None) -> np.ndarray:
    """Per code 0..size-1, the sum of its values in the order they come, equal bit for bit to numpy's (and pandas')
    sum of that group: bincount adds one after the other, which is numpy's sum below 8 values; groups of 8 or more
    are summed pairwise as numpy does. `order`: a stable sort of codes, when the caller has one. From COMPILED_FROM
    values on, the compiled passes do the same (_Scopes)."""
    if _compiled(codes.size, size):
        return _Scopes(np.arange(codes.size), codes.astype(np.int64, copy=False), size).sums(values)[1:]
    out = np.bincount(codes, values, size)
    counts = np.bincount(codes, minlength=size)
    long = np.flatnonzero(counts >= 8)
    if long.size:
        if order is None and not bool(np.all(codes[1:] >= codes[:-1])):
            order = np.argsort(codes, kind="stable")
        ordered = values if order is None else values[order]
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        if long.size <= LOOP_GROUPS:  # few long groups (edge servers): numpy's own sum of each, a call per group
            out[long] = [0.0 + ordered[a:a + n].sum() for a, n in zip(starts[long].tolist(), counts[long].tolist())]
        else:
            out[long] = 0.0 + _pairwise(ordered, starts[long], counts[long])
    return out


class _Scopes:
    """Some frames of a window (indices into its columns) by scope: all of them (scope 0) and each code's (scope 1 +
    code: an edge server, or an (edge server, camera) cell): counts, sums and extremes as numpy's group-bys give them,
    computed by the compiled passes on large windows (groupsum: each frame's slot among its scopes' running sums, then
    one pass in frame order per column, no sort) and by numpy's on small ones (no numba import)."""

    def __init__(self, frames: np.ndarray, codes: Optional[np.ndarray], size: int) -> None:
        self.frames, self.size, self._codes_all = frames, size, codes
        self.compiled = _compiled(frames.size, 0 if codes is None else size)
        self._runs: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None
        self._plan: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None
        self._buf: Optional[np.ndarray] = None  # slot_sums' scratch, one for every column
        if codes is not None and not self.compiled:  # positions in self.frames by code (radix sort to 32,767 codes)
            self.order = np.argsort(self.codes.astype(np.int16) if size < 2 ** 15 else self.codes, kind="stable")

    @cached_property
    def codes(self) -> Optional[np.ndarray]:
        """Each frame's code, in frame order (None without codes): copied where a path reads it, not for sums."""
        return None if self._codes_all is None else self._codes_all[self.frames]

    def runs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The frames (window indices) stably sorted by code and its runs of one code: run r is order[starts[r]:
        starts[r + 1]], code run_codes[r] (compiled path; sorted once, where asked)."""
        if self._runs is None:
            from simulator.groupsum import sorted_runs

            self._runs = sorted_runs(self._codes_all, self.frames, self.size)
        return self._runs

    def plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each frame's slots among the running sums of its scopes, the frames per scope and the scopes' first slots
        (groupsum.slot_plan; compiled path, planned once, where asked)."""
        if self._plan is None:
            from simulator.groupsum import slot_plan

            codes = np.zeros(0, np.int64) if self._codes_all is None else self._codes_all
            self._plan = slot_plan(codes, self.frames, self.size, self._codes_all is not None)
        return self._plan

    def per_code(self) -> np.ndarray:
        """How many frames each code has."""
        if self.compiled and self._plan is not None:
            return self._plan[1][1:]
        return np.bincount(self.codes, minlength=self.size)

    def count(self, mask: Optional[np.ndarray] = None) -> np.ndarray:
        """How many of the frames are in mask (per frame of the window; None: all of them), per scope, as floats."""
        if mask is None:
            total = np.array([float(self.frames.size)])
            return total if self._codes_all is None else np.concatenate((total, self.per_code()))
        inside = mask[self.frames]
        total = np.array([float(np.count_nonzero(inside))])
        return total if self._codes_all is None else np.concatenate((total, np.bincount(self.codes[inside],
                                                                                   minlength=self.size)))

    def sums(self, values: np.ndarray, zero_nan: bool = False) -> np.ndarray:
        """Per scope, the sum of the frames' values (window-long) in frame order, as numpy sums each group (with
        zero_nan, of np.nan_to_num's values)."""
        values = np.asarray(values, dtype=float)
        if self.compiled:
            from simulator.groupsum import slot_sums

            slots, counts, bases = self.plan()
            self._buf = np.empty(bases[-1]) if self._buf is None else self._buf
            out = np.zeros(counts.size)
            slot_sums(values, zero_nan, self.frames, slots, counts, bases, self._buf, out)
            return out
        v = values[self.frames]
        v = np.nan_to_num(v) if zero_nan else v
        total = np.array([v.sum()])
        if self._codes_all is None:
            return total
        return np.concatenate((total, group_sums(self.codes, v, self.size, self.order)))

    def extreme(self, ufunc: np.ufunc, values: np.ndarray, fill: float) -> np.ndarray:
        """Minimum or maximum (ufunc) of the frames' values per scope; `fill` where a scope has no frame."""
        v = values[self.frames]
        out = np.full(1 + (self.size if self._codes_all is not None else 0), fill)
        if v.size:
            out[0] = ufunc.reduce(v)
            if self._codes_all is not None:
                ufunc.at(out[1:], self.codes, v)
        return out

    def ordered(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The frames' values by scope (each code's in frame order), and the bounds of code g's: [bounds[g]:bounds[g +
        1]]."""
        if self.compiled:  # the runs' starts are the bounds of the codes that have frames
            order, starts, run_codes = self.runs()
            counts = np.zeros(self.size, np.int64)
            counts[run_codes] = np.diff(starts)
            return values[order], np.concatenate(([0], np.cumsum(counts)))
        return values[self.frames][self.order], np.concatenate(([0], np.cumsum(self.per_code())))


class _PerReplication:
    """Sums, counts, first and last times of one replication, per scope (0: every frame; 1 + e: edge server e)."""

    def __init__(self, n_scopes: int) -> None:
        self.delay_sum = np.zeros(n_scopes)
        self.done = np.zeros(n_scopes, dtype=np.int64)
        self.first_s = np.full(n_scopes, np.inf)
        self.last_s = np.full(n_scopes, -np.inf)


class SummaryAccumulator:
    """Per-policy summary built window by window in one vectorised pass: every figure for every frame (scope 0)
    and, with several edge servers, for each server's frames (scope 1 + e), by integer-coded group-bys.

    The cost is linear in frames whatever the number of mobile devices and edge servers; memory is bounded by the
    completed delays (and labels) plus a few arrays per (edge server, mobile device).
    """

    SUMS = ("compute", "radio", "server", "bytes_up", "busy", "head", "transfer", "tail", "queue", "n", "dropped",
            "late", "offloaded", "seen")

    def __init__(self, n_mobiles: int, n_edges: int = 0) -> None:
        # with edge servers, one more code than servers: frames that never left the mobile device (FrameKeys.edge ==
        # n_edges) are summed in a scope of their own, which gets no per-edge row
        self.n_mobiles, self.n_servers = n_mobiles, n_edges
        self.n_edges = n_edges + 1 if n_edges else 0
        n_scopes = 1 + self.n_edges
        self.sums = {name: np.zeros(n_scopes) for name in self.SUMS}
        self.delays: list[np.ndarray] = []
        self.delay_edges: list[np.ndarray] = []
        self.predicted: list[tuple[np.ndarray, np.ndarray, Optional[np.ndarray], np.ndarray]] = []
        self.reps: dict[int, _PerReplication] = {}
        self.load = OfferedLoad(n_mobiles, self.n_edges)
        self.tier_sums: dict[str, np.ndarray] = {}
        self._by_edge: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None  # delays by edge server, bounds

    @property
    def scopes(self) -> list[int]:
        """The edge servers (scope numbers 1 + e) that received any frame, warm-up included."""
        return [1 + e for e in range(self.n_servers) if self.sums["seen"][1 + e] > 0]

    def add(self, frames: Mapping[str, Any], keys: FrameKeys) -> None:
        """Fold in a window of frame records of one replication (warm-up frames are left out): frames maps each
        frame-table column to its values (frames.frame_columns).

        Each sum is taken as the pandas group-by it replaces took it (numpy's pairwise sum per group: group_sums),
        so summary.csv keeps its bytes."""
        edge_all = _scope_codes(keys.edge)
        n_e = self.n_edges if edge_all is not None else 0
        s = self.sums
        seen = np.array([float(keys.mobile.size)])  # every frame of the window, warm-up included; per edge server
        s["seen"] += seen if edge_all is None else np.concatenate((seen, np.bincount(edge_all, minlength=n_e)))
        status = keys.status
        kept_mask = ~np.asarray(frames["warmup"]) if "warmup" in frames else np.ones(status.size, bool)
        kept = _Scopes(np.flatnonzero(kept_mask), edge_all, n_e)  # frames past warm-up
        done = _Scopes(np.flatnonzero(kept_mask & (status != 2)), edge_all, n_e)  # of those, the completed ones

        def col(name: str) -> np.ndarray:
            return np.asarray(frames[name], dtype=float)

        n_kept, n_done = kept.count(), done.count()
        s["n"] += n_kept
        s["dropped"] += n_kept - n_done
        s["late"] += kept.count(status == 1)
        bytes_up = col("bytes_up")
        s["offloaded"] += kept.count(bytes_up > 0)
        head, transfer, tail = col("head_s"), col("transfer_s"), col("tail_s")
        tiered = "cloud_s" in frames
        kept_sums = {"compute": kept.sums(col("energy_mobile_compute_j"), zero_nan=True),
                     "radio": kept.sums(col("energy_mobile_radio_j"), zero_nan=True),
                     "server": kept.sums(col("energy_server_j"), zero_nan=True), "bytes_up": kept.sums(bytes_up),
                     "head": kept.sums(head, zero_nan=True), "transfer": kept.sums(transfer, zero_nan=True)}
        if tiered:
            kept_sums["energy_cloud_j"] = kept.sums(col("energy_cloud_j"), zero_nan=True)
        for name in ("compute", "radio", "server", "bytes_up"):
            s[name] += kept_sums[name]
        s["busy"] += kept_sums["head"] + kept_sums["transfer"]
        queue = col("mobile_queue_s") + col("uplink_queue_s") + col("server_queue_s")
        delay_all = col("delay_s")
        done_sums = {"head": done.sums(head, zero_nan=True), "transfer": done.sums(transfer, zero_nan=True),
                     "tail": done.sums(tail, zero_nan=True), "queue": done.sums(queue, zero_nan=True),
                     "delay": done.sums(delay_all)}
        if tiered:
            batch = col("batch_size")
            done_sums.update({name: done_sums["tail"] if name == "tail_s" else done.sums(col(name), zero_nan=True)
                              for name in TIER_MEANS})
            done_sums["batch_size"] = done.sums(np.where(batch > 0, batch, 0.0))
        for name in ("head", "transfer", "tail", "queue"):
            s[name] += done_sums[name]
        self.delays.append(delay_all[done.frames])
        if edge_all is not None:
            self.delay_edges.append(done.codes.astype(np.int16 if n_e < 2 ** 15 else np.int64))
        if "prediction" in frames:  # a missing prediction counts as wrong; scopes with none predicted are left out
            prediction = pd.array(frames["prediction"])
            any_pred = kept.count(~np.asarray(prediction.isna())) > 0
            if any_pred.any():
                label = np.asarray(frames["label"])
                self.predicted.append((label[done.frames], prediction[done.frames].to_numpy(dtype=object, na_value=None),
                                       done.codes, any_pred))
        rep = self.reps.setdefault(keys.replication, _PerReplication(1 + self.n_edges))
        if done.frames.size:
            rows = slice(0, 1 + n_e)
            rep.delay_sum[rows] += done_sums["delay"]
            rep.done[rows] += n_done.astype(np.int64)
            rep.first_s[rows] = np.minimum(rep.first_s[rows], done.extreme(np.minimum, col("capture_s"), np.inf))
            rep.last_s[rows] = np.maximum(rep.last_s[rows], done.extreme(np.maximum, col("done_s"), -np.inf))
        demands = {"mobile": (head, True), "uplink": (transfer, True), "server": (tail, True)}
        if tiered:
            demands["wan"] = (col("wan_transfer_s"), True)
            demands["cloud"] = (np.nan_to_num(col("cloud_s")) / np.maximum(batch, 1), False)
        self.load.add(keys.replication, keys.mobile.astype(np.int64, copy=False), edge_all, kept.frames,
                      col("capture_s"), demands)
        if tiered:
            t = self.tier_sums
            for name in TIER_MEANS:
                t[name] = t.get(name, 0.0) + done_sums[name]
            t["energy_cloud_j"] = t.get("energy_cloud_j", 0.0) + kept_sums["energy_cloud_j"]
            t["batch_size"] = t.get("batch_size", 0.0) + done_sums["batch_size"]
            t["batched"] = t.get("batched", 0.0) + done.count(batch > 0)
            t["done"] = t.get("done", 0.0) + n_done

    def _delays(self, scope: int) -> np.ndarray:
        """Completed frames' delays, or (scope 1 + e) those at edge server e, in the order they came."""
        # the windows' delays joined once, and kept joined (city_scale.yaml: 6 M frames a policy)
        if len(self.delays) != 1:
            self.delays = [np.concatenate(self.delays) if self.delays else np.zeros(0)]
            self.delay_edges = [np.concatenate(self.delay_edges)] if self.delay_edges else []
        whole = self.delays[0]
        if scope == 0:
            return whole
        if self._by_edge is None or self._by_edge[0] is not whole:  # one stable sort serves every server
            edge = self.delay_edges[0] if self.delay_edges else np.zeros(0, np.int16)
            ordered, bounds = _Scopes(np.arange(edge.size), edge, self.n_edges).ordered(whole)
            self._by_edge = (whole, ordered, bounds)
        _, ordered, bounds = self._by_edge
        return ordered[bounds[scope - 1]:bounds[scope]]

    def rep_means(self, scope: int = 0) -> dict[int, float]:
        """Mean delay of each replication with completed frames (in this scope)."""
        return {r: float(v.delay_sum[scope] / v.done[scope]) for r, v in sorted(self.reps.items()) if v.done[scope]}

    def tier_means(self, scope: int = 0) -> dict:
        """Mean of each per-tier component (TIER_MEANS) over completed frames; cloud energy per frame; mean batch size."""
        nan = float("nan")
        t = {k: float(v[scope]) for k, v in self.tier_sums.items()}
        n, n_all = t.get("done", 0.0), float(self.sums["n"][scope])
        out = {f"{col}_mean": (t.get(col, 0.0) / n if n else nan) for col in TIER_MEANS}
        out["energy_cloud_j_per_frame"] = t.get("energy_cloud_j", 0.0) / n_all if n_all else nan
        out["batch_size_mean"] = t.get("batch_size", 0.0) / t["batched"] if t.get("batched") else nan
        return out

    def result(self, mobile_idle_w: dict[str, float], n_mobiles: int, positive: Optional[object] = None,
               scope: int = 0) -> dict:
        """The summary row (002 section 4 metrics; energy as in the README; F1 of `positive`, else macro)."""
        s = {k: float(v[scope]) for k, v in self.sums.items()}
        n = int(s["n"])
        delay = self._delays(scope)
        n_done = delay.size
        means = self.rep_means(scope)
        per_rep = np.array(list(means.values()))
        span = float(sum(v.last_s[scope] - v.first_s[scope] for _, v in sorted(self.reps.items()) if v.done[scope]))
        idle_w = float(np.mean(list(mobile_idle_w.values()))) if mobile_idle_w else 0.0
        idle_time = max(span * n_mobiles - s["busy"], 0.0)
        nan = float("nan")
        per = (lambda x: float(x / n)) if n else (lambda x: nan)
        per_done = (lambda x: float(x / n_done)) if n_done else (lambda x: nan)
        p50, p95, p99 = np.percentile(delay, [50, 95, 99]) if n_done else (nan, nan, nan)
        row = {
            "frames": n,
            "delay_mean_s": float(delay.mean()) if n_done else nan,
            "delay_p50_s": float(p50),
            "delay_p95_s": float(p95),
            "delay_p99_s": float(p99),
            "delay_mean_ci95_s": ci95_half_width(per_rep),
            "throughput_fps": float(n_done / span) if span > 0 else nan,
            "deadline_miss_fraction": per(s["late"]),
            "drop_fraction": per(s["dropped"]),
            "energy_mobile_j_per_frame": per(s["compute"] + s["radio"]),
            "energy_mobile_compute_j_per_frame": per(s["compute"]),
            "energy_mobile_radio_j_per_frame": per(s["radio"]),
            "energy_mobile_total_j": float(s["compute"] + s["radio"] + idle_w * idle_time),
            "energy_server_j_per_frame": per(s["server"]),
            "bytes_per_frame": per(s["bytes_up"]),
            "offload_fraction": per(s["offloaded"]),
            "head_s_mean": per_done(s["head"]),
            "transfer_s_mean": per_done(s["transfer"]),
            "tail_s_mean": per_done(s["tail"]),
            "queue_s_mean": per_done(s["queue"]),
        }
        parts = [(lab, pred) if scope == 0 else (lab[e == scope - 1], pred[e == scope - 1])
                 for lab, pred, e, any_pred in self.predicted if any_pred[scope]]
        if parts and n_done:
            lab, pred = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
            row["accuracy"] = float((lab == pred).mean())
            row["f1"] = f1_score(lab, pred, positive)
            row["f1_positive"] = "macro" if positive is None else str(positive)
        return row


TIER_MEANS = ("propagation_s", "server_queue_s", "tail_s", "wan_queue_s", "wan_transfer_s", "wan_propagation_s",
              "cloud_queue_s", "batch_wait_s", "cloud_s", "wan_return_s", "return_s")
"""Per-tier delay components whose means the summary reports with several edge servers or a cloud."""


def _first_or_max(values: np.ndarray) -> float:
    """max() as Python takes it over values in key order: NaN when the first value is NaN, else the largest number."""
    if values.size == 0 or np.isnan(values[0]):
        return float("nan")
    return float(np.nanmax(values))


def _sums_in_order(values: np.ndarray) -> np.ndarray:
    """Each row's sum one value after the other, as Python 3.11's sum adds a list of floats (cumsum adds in that
    order, not pairwise as numpy's sum); + 0.0 makes a sum of -0.0s 0.0, as Python's start 0 + x does."""
    if values.shape[1] == 0:
        return np.zeros(values.shape[0])
    return np.cumsum(values, axis=1)[:, -1] + 0.0


class OfferedLoad:
    """Offered load per station: arrival rate x mean service demand, per server (rho of a queue; stable below 1).

    Per mobile device m over each replication: lambda_m = n_m / T_m with T_m = (last - first capture) x n_m /
    (n_m - 1) (exactly 1/fps for periodic captures), and the demand is the head time of its frames; its uplink
    carries its transfers (all mobile devices' on a shared medium); the server pool carries every tail over c
    servers. A station with rho >= 1 has a queue that grows with the run length, so its delays mean nothing.
    Kept as arrays per replication: (scope, mobile device) for counts, capture spans and demands, and (edge server,
    mobile device) for the WAN and cloud demands.
    """

    FIELDS = ("count", "first", "last", "seen", "mobile", "uplink", "server", "wan", "cloud")
    """A cell's figures side by side (a row of 9 x 8 = 72 bytes: a window touches each cell's memory once): frames,
    earliest and latest capture, the window it was first seen in, then the demands on each station."""

    def __init__(self, n_mobiles: int, n_edges: int = 0) -> None:
        self.n_mobiles, self.n_edges = n_mobiles, n_edges
        self.reps: dict[int, dict[str, np.ndarray]] = {}
        self._buffer: Optional[np.ndarray] = None  # _rows'
        self._scratch: Optional[np.ndarray] = None  # pair_runs' sorts, kept from window to window

    def _rows(self, capture_s: np.ndarray, demands: dict[str, tuple[np.ndarray, bool]]) -> np.ndarray:
        """Each frame's capture and demands side by side (frame-major, one read a frame for the compiled passes), in
        a buffer kept from window to window (a fresh one, 12 MB for a city window: 250,000 frames x 6 x 8 B, costs its
        page faults again)."""
        shape = (capture_s.size, 1 + len(demands))
        if self._buffer is None or self._buffer.shape[0] < shape[0] or self._buffer.shape[1] != shape[1]:
            self._buffer = np.empty(shape)
        rows = self._buffer[:shape[0]]
        rows[:, 0] = capture_s
        for k, (values, _) in enumerate(demands.values()):
            rows[:, 1 + k] = values
        return rows

    def _cells(self, rep: int) -> dict[str, np.ndarray]:
        """Replication rep's cells: "state" ((1 + E) x M rows of FIELDS) and a (1 + E, M) view of each field."""
        a = self.reps.get(rep)
        if a is None:
            state = np.zeros(((1 + self.n_edges) * self.n_mobiles, len(self.FIELDS)))
            state[:, 1:4] = (np.inf, -np.inf, np.inf)
            grid = state.reshape(1 + self.n_edges, self.n_mobiles, len(self.FIELDS))
            a = self.reps[rep] = {"state": state, "windows": np.zeros(1),
                                  **{name: grid[:, :, k] for k, name in enumerate(self.FIELDS)}}
        return a

    def add(self, rep: int, mobile: np.ndarray, edge: Optional[np.ndarray], frames: np.ndarray, capture_s: np.ndarray,
            demands: dict[str, tuple[np.ndarray, bool]]) -> None:
        """Fold in a window's frames (indices into its columns; dropped frames count as arrivals with the service they
        got): demands maps mobile, uplink, server (and wan, cloud), in FIELDS' order, to each frame's service and
        whether NaN counts as 0."""
        m, n_e = self.n_mobiles, (self.n_edges if edge is not None else 0)
        a = self._cells(rep)
        window = a["windows"][0]
        a["windows"] += 1
        # row 0: per mobile device over every frame; rows 1 + e: per (edge server, mobile device). Only the cells this
        # window's frames touch are updated (a city has a million (edge server, camera) cells, a window a few of them)
        groups = [(m, 0)] + ([(n_e * m, m)] if edge is not None else [])
        compiled = [_compiled(frames.size, size) for size, _ in groups]
        runs: list = [None] * len(groups)
        if edge is not None and all(compiled):
            from simulator.groupsum import pair_runs

            if self._scratch is None or self._scratch.size < 5 * frames.size + 1:
                self._scratch = np.empty(5 * frames.size + 1, np.int64)
            runs = list(pair_runs(mobile, edge, frames, m, n_e, self._scratch))  # by camera, then by cell
        rows = None
        for (size, offset), fast, sorted_by in zip(groups, compiled, runs):
            state = a["state"][offset:offset + size]
            codes = None if sorted_by is not None else mobile if offset == 0 else edge * m + mobile
            if fast:
                from simulator.groupsum import fold_runs, sorted_runs

                rows = self._rows(capture_s, demands) if rows is None else rows
                fold_runs(*(sorted_runs(codes, frames, size) if sorted_by is None else sorted_by), rows,
                          np.array([zero_nan for _, zero_nan in demands.values()]), window, state)
                continue
            scopes = _Scopes(frames, codes, size)
            counts = scopes.per_code()
            touched = np.flatnonzero(counts)
            cell = state[touched]
            cell[:, 3] = np.where(cell[:, 3] == np.inf, window, cell[:, 3])
            cell[:, 0] += counts[touched]
            cell[:, 1] = np.minimum(cell[:, 1], scopes.extreme(np.minimum, capture_s, np.inf)[1:][touched])
            cell[:, 2] = np.maximum(cell[:, 2], scopes.extreme(np.maximum, capture_s, -np.inf)[1:][touched])
            for k, (values, zero_nan) in enumerate(demands.values()):
                cell[:, 4 + k] += scopes.sums(values, zero_nan)[1:][touched]
            state[touched] = cell

    def _spans(self, a: dict, scope: int) -> tuple[np.ndarray, np.ndarray]:
        """The mobile devices that sent frames in this scope, in the order they first did (window by window, then by
        index), and their spans T_m (NaN with fewer than two frames)."""
        seen = a["seen"][scope]
        keys = np.lexsort((np.arange(seen.size), seen))[: int(np.count_nonzero(seen < np.inf))]
        n = a["count"][scope][keys]
        with np.errstate(invalid="ignore", divide="ignore"):
            span = np.where(n > 1, (a["last"][scope][keys] - a["first"][scope][keys]) * n / (n - 1), np.nan)
        return keys, span

    def tier_utilisation(self, edge_servers: dict[int, int], cloud_servers: int, scope: int = 0) -> dict:
        """rho of the busiest edge server pool, of the busiest WAN link and of the cloud pool (per server).

        edge_servers: edge server index -> its servers, for the servers this scope covers. Sums run one after the
        other over the mobile devices in the order they came (the summaries' bytes depend on it)."""
        nan = float("nan")
        server, wan, cloud = [], [], []
        for _, a in sorted(self.reps.items()):
            keys, span = self._spans(a, scope)
            ok = span > 0
            keys, span = keys[ok], span[ok]

            cells = np.ix_([1 + e for e in edge_servers], keys)  # each edge server's (edge server, mobile) cells

            def pooled(kind: str) -> np.ndarray:  # per edge server; its (edge server, mobile) demands: scope 1 + e
                return _sums_in_order(a[kind][cells] / span)

            server += (pooled("server") / np.array(list(edge_servers.values()), dtype=float)).tolist()
            wan += pooled("wan").tolist()
            cloud.append(sum(pooled("cloud").tolist()) / cloud_servers if cloud_servers else nan)
        rho = {"utilisation_server": max(server, default=nan)}
        if cloud_servers:
            rho["utilisation_wan"] = max(wan, default=nan)
            rho["utilisation_cloud"] = max(cloud, default=nan)
        return rho

    def utilisation(self, servers: int, shared_medium: bool, scope: int = 0) -> dict:
        """rho of the busiest mobile device, of the busiest uplink (or the shared medium) and of the server pool.

        As Python's max and sum over the mobile devices in the order they came: a first undefined rho (a device
        with one frame) makes the maximum undefined, and any undefined one the pooled sum."""
        rho_of: dict[str, list[np.ndarray]] = {"mobile": [], "uplink": [], "server": []}
        for _, a in sorted(self.reps.items()):
            keys, span = self._spans(a, scope)
            with np.errstate(invalid="ignore", divide="ignore"):
                for kind, values in rho_of.items():
                    values.append(np.where(span > 0, a[kind][scope][keys] / span, np.nan))
        pooled = {kind: np.array([_sums_in_order(v[None, :])[0] for v in values]) for kind, values in rho_of.items()}
        flat = {kind: np.concatenate(values) if values else np.zeros(0) for kind, values in rho_of.items()}
        return {"utilisation_mobile": _first_or_max(flat["mobile"]),
                "utilisation_uplink": _first_or_max(pooled["uplink"] if shared_medium else flat["uplink"]),
                "utilisation_server": _first_or_max(pooled["server"] / servers)}


def summary_rows(sc: Scenario, point: int, overrides: dict, accumulators: dict[str, "SummaryAccumulator"],
                 groups: list[tuple[str, int]], mobile_idle_w: dict[str, float], engine: dict[str, str],
                 labels: Optional[np.ndarray] = None) -> pd.DataFrame:
    """One summary row per policy at a sweep point: what was simulated where, then the accumulated metrics."""
    n_mobiles = sum(count for _, count in groups)
    own_links = any(g.link for g in sc.mobiles) or any(e.link for e in sc.edges)  # uplinks not at link's rate
    rate = float("nan") if sc.link.trace or own_links else sc.link.data_rate_mbps
    mobile_label = "+".join(f"{name}x{count}" if count > 1 else name for name, count in groups)
    positive = positive_class(labels, sc.workload.positive_label) if labels is not None else None
    edges = sc.edge_servers()
    servers = {e.name: e.servers for e in edges}
    per_edge = sc.tiered and len(edges) > 1
    rows = []
    for spec in sc.policies:
        acc = accumulators.get(spec.display)
        if acc is None:
            continue
        for scope in [0] + (acc.scopes if per_edge else []):  # 0: every frame; 1 + e: edge server e's frames
            name = None if scope == 0 else edges[scope - 1].name
            row = {"point": point, "policy": spec.display, "mobile": mobile_label,
                   "edge": "+".join(servers) if name is None else name, "data_rate_mbps": rate}
            if per_edge:
                row["scope"] = "all" if name is None else "edge"
            row.update(acc.result(mobile_idle_w, n_mobiles, positive, scope))
            row.update(acc.load.utilisation(edges[0].servers, sc.link.shared_medium, scope))
            if sc.tiered:
                covered = dict(enumerate(servers.values())) if name is None else {scope - 1: servers[name]}
                row.update(acc.load.tier_utilisation(covered, sc.cloud.servers if sc.cloud else 0, scope))
                row.update(acc.tier_means(scope))
            row["stable"] = bool(all(not (v >= 1.0) for k, v in row.items() if k.startswith("utilisation_")))
            for path, value in overrides.items():
                row[f"sweep.{path}"] = value
            row["engine"] = engine.get(spec.display, "")
            rows.append(row)
    return pd.DataFrame(rows)


def summary_csv(df: pd.DataFrame) -> bytes:
    """CSV with a fixed float format, so the same numbers always give the same bytes."""
    import io

    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.12g", lineterminator="\n")
    return buf.getvalue().encode()


def order_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Summary columns in the documented order, extra ones (sweep.*, accuracy, f1, engine) after."""
    first = [c for c in SUMMARY_COLUMNS if c in summary.columns]
    rest = [c for c in summary.columns if c not in first]
    return summary[first + rest].reset_index(drop=True)


def add_gains(summary: pd.DataFrame, local_label: str | None, offload_label: str | None) -> pd.DataFrame:
    """Gains as in 002 section 4: T_baseline / T_policy at the same sweep point; above 1 the policy is faster."""
    out = summary.copy()
    keys = ["point", "edge"] if "scope" in out else ["point"]
    for col, label in (("gain_vs_local", local_label), ("gain_vs_offload", offload_label)):
        if label is None:
            out[col] = np.nan
            continue
        base = out[out["policy"] == label].set_index(keys)["delay_mean_s"]
        idx = pd.MultiIndex.from_frame(out[keys]) if len(keys) > 1 else out["point"]
        out[col] = base.reindex(idx).to_numpy() / out["delay_mean_s"].to_numpy()
    return out


def add_gain_bands(summary: pd.DataFrame, accumulators: dict, local_label: str | None,
                   offload_label: str | None) -> pd.DataFrame:
    """5th and 95th percentiles over replications of each gain (002 section 4), replication by replication.

    Within a replication every policy sees the same frames and, with uncertainty: device, the same drawn device
    speeds, so the per-replication ratio T_baseline / T_policy is the gain under one plausible set of devices.
    """
    out = summary.copy()
    for col, label in (("gain_vs_local", local_label), ("gain_vs_offload", offload_label)):
        lo, hi = [], []
        for _, row in out.iterrows():
            acc, base = accumulators.get(row["policy"]), accumulators.get(label) if label else None
            if acc is None or base is None or "scope" in out and row.get("scope") == "edge":
                lo.append(np.nan)
                hi.append(np.nan)
                continue
            mine, theirs = acc.rep_means(), base.rep_means()
            gains = np.array([theirs[r] / mine[r] for r in sorted(set(mine) & set(theirs))])
            lo.append(float(np.percentile(gains, 5)) if gains.size else np.nan)
            hi.append(float(np.percentile(gains, 95)) if gains.size else np.nan)
        out[f"{col}_p5"], out[f"{col}_p95"] = lo, hi
    return out
