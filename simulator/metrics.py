"""Per-frame records to per-policy summaries: delay percentiles, throughput, drops, energy, gains, accuracy."""

from __future__ import annotations

from dataclasses import dataclass
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
"""From this many values on, group_sums runs compiled: one pass whatever the number of groups (a city's (edge server,
camera) pairs are a million groups)."""


def _compiled(n_values: int, n_groups: int) -> bool:
    """Whether group sums take the compiled pass: from COMPILED_FROM values, at most twice as many groups (sparser:
    bincount's pass is cheaper)."""
    return n_values >= COMPILED_FROM and n_groups <= 2 * n_values


def group_sums(codes: np.ndarray, values: np.ndarray, size: int, order: Optional[np.ndarray] = None) -> np.ndarray:
    """Per code 0..size-1, the sum of its values in the order they come, equal bit for bit to numpy's (and pandas')
    sum of that group: bincount adds one after the other, which is numpy's sum below 8 values; groups of 8 or more
    are summed pairwise as numpy does. `order`: a stable sort of codes, when the caller has one. From COMPILED_FROM
    values on (and at most twice as many groups), one compiled pass does the same (groupsum.group_sums_rows; numba's import is paid back there)."""
    if _compiled(codes.size, size):
        return group_sums_many(codes, [values], size)[0]
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


def group_sums_many(codes: np.ndarray, columns: list[np.ndarray], size: int,
                    order: Optional[np.ndarray] = None) -> list[np.ndarray]:
    """group_sums of each column under the same codes (compiled: one sort of the codes for all the columns)."""
    if columns and _compiled(codes.size, size):
        from simulator.groupsum import group_sums_rows

        return list(group_sums_rows(codes.astype(np.int64, copy=False), np.stack(columns).astype(float, copy=False),
                                    size))
    return [group_sums(codes, v, size, order) for v in columns]


def _scoped_sums(columns: dict[str, np.ndarray], edge: Optional[np.ndarray], n_edges: int,
                 order: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
    """Sum of each column (name -> values) over every frame (scope 0) and per edge server (scopes 1..E)."""
    if edge is None:
        return {name: np.array([v.sum()]) for name, v in columns.items()}
    per = group_sums_many(edge, list(columns.values()), n_edges, order)
    return {name: np.concatenate(([v.sum()], sums)) for (name, v), sums in zip(columns.items(), per)}


def _edge_order(edge: Optional[np.ndarray], n_edges: int) -> Optional[np.ndarray]:
    """A stable sort of frames by edge server (a radix sort for up to 32,767 servers); None where nothing would read
    it (no edge servers, or group sums taking the compiled pass, which sorts on its own)."""
    if edge is None or _compiled(edge.size, n_edges):
        return None
    return np.argsort(edge.astype(np.int16) if n_edges < 2 ** 15 else edge, kind="stable")


def _scoped_count(mask: np.ndarray, edge: Optional[np.ndarray], n_edges: int) -> np.ndarray:
    """How many frames are in mask, over every frame (scope 0) and per edge server (scopes 1..E)."""
    total = np.array([float(np.count_nonzero(mask))])
    return total if edge is None else np.concatenate((total, np.bincount(edge[mask], minlength=n_edges)))


def _scoped_extreme(ufunc: np.ufunc, values: np.ndarray, edge: Optional[np.ndarray], n_edges: int,
                    fill: float) -> np.ndarray:
    """Minimum or maximum (ufunc) over every frame and per edge server; `fill` where a scope has no frame."""
    out = np.full(1 + n_edges, fill)
    if values.size:
        out[0] = ufunc.reduce(values)
        if edge is not None:
            ufunc.at(out[1:], edge, values)
    return out


def _scope_order(edge: np.ndarray, n_edges: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames in edge-server order (stable: each server's frames in the order they came) and each server's bounds."""
    order = _edge_order(edge, n_edges)
    return order, np.concatenate(([0], np.cumsum(np.bincount(edge, minlength=n_edges))))


def _zero_nan(values: np.ndarray) -> np.ndarray:
    """np.nan_to_num(values) (NaN as 0, infinities as the largest finite doubles) in three passes instead of six."""
    out = np.where(np.isnan(values), 0.0, values)
    return out if np.isfinite(out).all() else np.nan_to_num(out)


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
        self._by_edge: Optional[tuple[int, np.ndarray, np.ndarray]] = None  # delays sorted by edge server, bounds

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
        s["seen"] += _scoped_count(np.ones(keys.mobile.size, bool), edge_all, n_e)
        keep = ~np.asarray(frames["warmup"]) if "warmup" in frames else None
        keep = None if keep is None or keep.all() else keep
        status, mobile = keys.status, keys.mobile.astype(np.int64, copy=False)
        edge = edge_all
        if keep is not None:
            status, mobile = status[keep], mobile[keep]
            edge = edge_all[keep] if edge_all is not None else None
        done_mask = status != 2
        done_edge = edge[done_mask] if edge is not None else None
        kept_order, done_order = _edge_order(edge, n_e), _edge_order(done_edge, n_e)

        def col(name: str, where: Optional[np.ndarray] = None) -> np.ndarray:
            v = np.asarray(frames[name], dtype=float)
            v = v if keep is None else v[keep]
            return v if where is None else v[where]

        s["n"] += _scoped_count(np.ones(status.size, bool), edge, n_e)
        s["dropped"] += _scoped_count(~done_mask, edge, n_e)
        s["late"] += _scoped_count(status == 1, edge, n_e)
        bytes_up = col("bytes_up")
        s["offloaded"] += _scoped_count(bytes_up > 0, edge, n_e)
        head, transfer, tail = _zero_nan(col("head_s")), _zero_nan(col("transfer_s")), _zero_nan(col("tail_s"))
        tiered = "cloud_s" in frames
        kept_cols = {"compute": _zero_nan(col("energy_mobile_compute_j")),
                     "radio": _zero_nan(col("energy_mobile_radio_j")),
                     "server": _zero_nan(col("energy_server_j")), "bytes_up": bytes_up, "head": head,
                     "transfer": transfer}
        if tiered:
            kept_cols["energy_cloud_j"] = _zero_nan(col("energy_cloud_j"))
        kept = _scoped_sums(kept_cols, edge, n_e, kept_order)
        for name in ("compute", "radio", "server", "bytes_up"):
            s[name] += kept[name]
        s["busy"] += kept["head"] + kept["transfer"]
        queue = col("mobile_queue_s", done_mask) + col("uplink_queue_s", done_mask) + col("server_queue_s", done_mask)
        delay = col("delay_s", done_mask)
        done_cols = {"head": head[done_mask], "transfer": transfer[done_mask], "tail": tail[done_mask],
                     "queue": _zero_nan(queue), "delay": delay}
        if tiered:
            batch = col("batch_size", done_mask)
            done_cols.update({name: _zero_nan(col(name, done_mask)) for name in TIER_MEANS})
            done_cols["batch_size"] = np.where(batch > 0, batch, 0.0)
        done = _scoped_sums(done_cols, done_edge, n_e, done_order)
        for name in ("head", "transfer", "tail", "queue"):
            s[name] += done[name]
        self.delays.append(delay.copy())  # a copy: a view would keep the window alive
        if done_edge is not None:
            self.delay_edges.append(done_edge.astype(np.int16 if n_e < 2 ** 15 else np.int64))
        if "prediction" in frames:  # a missing prediction counts as wrong; scopes with none predicted are left out
            prediction = pd.array(frames["prediction"])
            prediction = prediction if keep is None else prediction[keep]
            any_pred = _scoped_count(~np.asarray(prediction.isna()), edge, n_e) > 0
            if any_pred.any():
                label = np.asarray(frames["label"])
                label = label if keep is None else label[keep]
                self.predicted.append((label[done_mask].copy(), prediction[done_mask].to_numpy(dtype=object, na_value=None),
                                       done_edge, any_pred))
        rep = self.reps.setdefault(keys.replication, _PerReplication(1 + self.n_edges))
        if done_mask.any():
            rows = slice(0, 1 + n_e)
            rep.delay_sum[rows] += done["delay"]
            rep.done[rows] += _scoped_count(np.ones(delay.size, bool), done_edge, n_e).astype(np.int64)
            rep.first_s[rows] = np.minimum(rep.first_s[rows],
                                           _scoped_extreme(np.minimum, col("capture_s", done_mask), done_edge, n_e, np.inf))
            rep.last_s[rows] = np.maximum(rep.last_s[rows],
                                          _scoped_extreme(np.maximum, col("done_s", done_mask), done_edge, n_e, -np.inf))
        self.load.add(keys.replication, mobile, edge, col("capture_s"), head, transfer, tail,
                      _zero_nan(col("wan_transfer_s")) if tiered else None,
                      _zero_nan(col("cloud_s")) / np.maximum(col("batch_size"), 1) if tiered else None)
        if tiered:
            t = self.tier_sums
            for name in TIER_MEANS:
                t[name] = t.get(name, 0.0) + done[name]
            t["energy_cloud_j"] = t.get("energy_cloud_j", 0.0) + kept["energy_cloud_j"]
            t["batch_size"] = t.get("batch_size", 0.0) + done["batch_size"]
            t["batched"] = t.get("batched", 0.0) + _scoped_count(batch > 0, done_edge, n_e)
            t["done"] = t.get("done", 0.0) + _scoped_count(np.ones(batch.size, bool), done_edge, n_e)

    def _delays(self, scope: int) -> np.ndarray:
        """Completed frames' delays, or (scope 1 + e) those at edge server e, in the order they came."""
        whole = np.concatenate(self.delays) if self.delays else np.zeros(0)
        if scope == 0:
            return whole
        if self._by_edge is None or self._by_edge[0] != len(self.delays):  # one stable sort serves every server
            edge = np.concatenate(self.delay_edges) if self.delay_edges else np.zeros(0, np.int16)
            order, bounds = _scope_order(edge, self.n_edges)
            self._by_edge = (len(self.delays), whole[order], bounds)
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


class OfferedLoad:
    """Offered load per station: arrival rate x mean service demand, per server (rho of a queue; stable below 1).

    Per mobile device m over each replication: lambda_m = n_m / T_m with T_m = (last - first capture) x n_m /
    (n_m - 1) (exactly 1/fps for periodic captures), and the demand is the head time of its frames; its uplink
    carries its transfers (all mobile devices' on a shared medium); the server pool carries every tail over c
    servers. A station with rho >= 1 has a queue that grows with the run length, so its delays mean nothing.
    Kept as arrays per replication: (scope, mobile device) for counts, capture spans and demands, and (edge server,
    mobile device) for the WAN and cloud demands.
    """

    def __init__(self, n_mobiles: int, n_edges: int = 0) -> None:
        self.n_mobiles, self.n_edges = n_mobiles, n_edges
        self.reps: dict[int, dict[str, np.ndarray]] = {}

    def add(self, rep: int, mobile: np.ndarray, edge: Optional[np.ndarray], capture_s: np.ndarray,
            head_s: np.ndarray, transfer_s: np.ndarray, tail_s: np.ndarray,
            wan_s: Optional[np.ndarray], cloud_busy_s: Optional[np.ndarray]) -> None:
        """Fold in a window of frames (dropped frames count as arrivals with the service they got; NaN as 0)."""
        m, n_e = self.n_mobiles, (self.n_edges if edge is not None else 0)
        shape = (1 + self.n_edges, m)
        a = self.reps.get(rep)
        if a is None:
            a = self.reps[rep] = {"count": np.zeros(shape), "first": np.full(shape, np.inf),
                                  "last": np.full(shape, -np.inf), "mobile": np.zeros(shape), "uplink": np.zeros(shape),
                                  "server": np.zeros(shape), "wan": np.zeros(shape), "cloud": np.zeros(shape),
                                  "seen": np.full(shape, np.inf), "windows": np.zeros(1)}
        kinds = [(kind, values) for kind, values in (("mobile", head_s), ("uplink", transfer_s), ("server", tail_s),
                                                      ("wan", wan_s), ("cloud", cloud_busy_s)) if values is not None]
        flat = {name: v.reshape(-1) for name, v in a.items() if name != "windows"}  # views of (1 + E, M)
        window = a["windows"][0]
        a["windows"] += 1
        # row 0: per mobile device over every frame; rows 1 + e: per (edge server, mobile device). Only the cells this
        # window's frames touch are updated (a city has a million (edge server, camera) cells, a window a few of them)
        cells = [(mobile, m, 0)] + ([(edge * m + mobile, n_e * m, m)] if edge is not None else [])
        for codes, size, offset in cells:
            count = np.bincount(codes, minlength=size)
            touched = np.flatnonzero(count)
            compact = np.zeros(size, np.int64)
            compact[touched] = np.arange(touched.size)
            cell = compact[codes]  # each frame's touched cell, 0..touched.size - 1
            at = offset + touched
            seen = flat["seen"][at]
            flat["seen"][at] = np.where(seen == np.inf, window, seen)
            flat["count"][at] += count[touched]
            first, last = np.full(touched.size, np.inf), np.full(touched.size, -np.inf)
            np.minimum.at(first, cell, capture_s)
            np.maximum.at(last, cell, capture_s)
            flat["first"][at] = np.minimum(flat["first"][at], first)
            flat["last"][at] = np.maximum(flat["last"][at], last)
            for (kind, _), per in zip(kinds, group_sums_many(cell, [values for _, values in kinds], touched.size)):
                flat[kind][at] += per

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

            def pooled(kind: str, e: int) -> float:  # the (edge server, mobile) demands sit in scope 1 + e
                return sum((a[kind][1 + e][keys] / span).tolist())

            server += [pooled("server", e) / c for e, c in edge_servers.items()]
            wan += [pooled("wan", e) for e in edge_servers]
            cloud.append(sum(pooled("cloud", e) for e in edge_servers) / cloud_servers if cloud_servers else nan)
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
        pooled = {kind: np.array([sum(v.tolist()) for v in values]) for kind, values in rho_of.items()}
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
