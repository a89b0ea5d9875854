"""Per-frame records to per-policy summaries: delay percentiles, throughput, drops, energy, gains, accuracy."""

from __future__ import annotations

from typing import Optional

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


class SummaryAccumulator:
    """Per-policy summary built window by window (bounded memory: sums, counts and the completed delays)."""

    def __init__(self) -> None:
        self.n = self.dropped = self.late = self.offloaded = 0
        self.sums = dict.fromkeys(("compute", "radio", "server", "bytes_up", "busy", "head", "transfer", "tail", "queue"), 0.0)
        self.delays: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.preds: list[np.ndarray] = []
        self.rep_sum: dict[int, float] = {}
        self.rep_count: dict[int, int] = {}
        self.rep_first: dict[int, float] = {}
        self.rep_last: dict[int, float] = {}
        self.load = OfferedLoad()
        self.tier_sums: dict[str, float] = {}
        self.tier_done = 0

    def add(self, frames: pd.DataFrame) -> None:
        """Fold in a window of frame records (warm-up frames are left out)."""
        kept = frames[~frames["warmup"]] if "warmup" in frames else frames
        status = kept["status"].to_numpy()
        done = kept[status != "dropped"]
        self.n += len(kept)
        self.dropped += int((status == "dropped").sum())
        self.late += int((status == "late").sum())
        self.offloaded += int((kept["bytes_up"] > 0).sum())
        s = self.sums
        s["compute"] += float(kept["energy_mobile_compute_j"].sum())
        s["radio"] += float(kept["energy_mobile_radio_j"].sum())
        s["server"] += float(kept["energy_server_j"].sum())
        s["bytes_up"] += float(kept["bytes_up"].sum())
        s["busy"] += float(kept["head_s"].fillna(0).sum() + kept["transfer_s"].fillna(0).sum())
        s["head"] += float(done["head_s"].sum())
        s["transfer"] += float(done["transfer_s"].sum())
        s["tail"] += float(done["tail_s"].sum())
        s["queue"] += float((done["mobile_queue_s"] + done["uplink_queue_s"] + done["server_queue_s"]).sum())
        self.delays.append(done["delay_s"].to_numpy(float, copy=True))  # a copy: a view would keep the window alive
        if "prediction" in kept and kept["prediction"].notna().any():  # a missing prediction counts as wrong
            self.labels.append(done["label"].to_numpy(copy=True))
            self.preds.append(done["prediction"].to_numpy(dtype=object, na_value=None))
        for rep, grp in done.groupby("replication"):
            rep = int(rep)
            self.rep_sum[rep] = self.rep_sum.get(rep, 0.0) + float(grp["delay_s"].sum())
            self.rep_count[rep] = self.rep_count.get(rep, 0) + len(grp)
            self.rep_first[rep] = min(self.rep_first.get(rep, np.inf), float(grp["capture_s"].min()))
            self.rep_last[rep] = max(self.rep_last.get(rep, -np.inf), float(grp["done_s"].max()))
        self.load.add(kept)
        if "cloud_s" in done:
            for col in TIER_MEANS:
                self.tier_sums[col] = self.tier_sums.get(col, 0.0) + float(done[col].sum())
            self.tier_sums["energy_cloud_j"] = self.tier_sums.get("energy_cloud_j", 0.0) + float(kept["energy_cloud_j"].sum())
            self.tier_sums["batch_size"] = self.tier_sums.get("batch_size", 0.0) + float(done["batch_size"][done["batch_size"] > 0].sum())
            self.tier_sums["batched"] = self.tier_sums.get("batched", 0.0) + float((done["batch_size"] > 0).sum())
            self.tier_done += len(done)

    def tier_means(self) -> dict:
        """Mean of each per-tier component (TIER_MEANS) over completed frames; cloud energy per frame; mean batch size."""
        nan = float("nan")
        n, s = self.tier_done, self.tier_sums
        out = {f"{col}_mean": (s.get(col, 0.0) / n if n else nan) for col in TIER_MEANS}
        out["energy_cloud_j_per_frame"] = s.get("energy_cloud_j", 0.0) / self.n if self.n else nan
        out["batch_size_mean"] = s.get("batch_size", 0.0) / s["batched"] if s.get("batched") else nan
        return out

    def result(self, mobile_idle_w: dict[str, float], n_mobiles: int, positive: Optional[object] = None) -> dict:
        """The summary row (002 section 4 metrics; energy as in the README; F1 of `positive`, else macro)."""
        n, s = self.n, self.sums
        delay = np.concatenate(self.delays) if self.delays else np.zeros(0)
        n_done = delay.size
        per_rep = np.array([self.rep_sum[r] / self.rep_count[r] for r in sorted(self.rep_sum)])
        span = float(sum(self.rep_last[r] - self.rep_first[r] for r in self.rep_first))
        idle_w = float(np.mean(list(mobile_idle_w.values()))) if mobile_idle_w else 0.0
        idle_time = max(span * n_mobiles - s["busy"], 0.0)
        nan = float("nan")
        per = (lambda x: float(x / n)) if n else (lambda x: nan)
        per_done = (lambda x: float(x / n_done)) if n_done else (lambda x: nan)
        row = {
            "frames": n,
            "delay_mean_s": float(delay.mean()) if n_done else nan,
            "delay_p50_s": float(np.percentile(delay, 50)) if n_done else nan,
            "delay_p95_s": float(np.percentile(delay, 95)) if n_done else nan,
            "delay_p99_s": float(np.percentile(delay, 99)) if n_done else nan,
            "delay_mean_ci95_s": ci95_half_width(per_rep),
            "throughput_fps": float(n_done / span) if span > 0 else nan,
            "deadline_miss_fraction": per(self.late),
            "drop_fraction": per(self.dropped),
            "energy_mobile_j_per_frame": per(s["compute"] + s["radio"]),
            "energy_mobile_compute_j_per_frame": per(s["compute"]),
            "energy_mobile_radio_j_per_frame": per(s["radio"]),
            "energy_mobile_total_j": float(s["compute"] + s["radio"] + idle_w * idle_time),
            "energy_server_j_per_frame": per(s["server"]),
            "bytes_per_frame": per(s["bytes_up"]),
            "offload_fraction": per(self.offloaded),
            "head_s_mean": per_done(s["head"]),
            "transfer_s_mean": per_done(s["transfer"]),
            "tail_s_mean": per_done(s["tail"]),
            "queue_s_mean": per_done(s["queue"]),
        }
        if self.labels and n_done:
            lab, pred = np.concatenate(self.labels), np.concatenate(self.preds)
            row["accuracy"] = float((lab == pred).mean())
            row["f1"] = f1_score(lab, pred, positive)
            row["f1_positive"] = "macro" if positive is None else str(positive)
        return row


TIER_MEANS = ("propagation_s", "server_queue_s", "tail_s", "wan_queue_s", "wan_transfer_s", "wan_propagation_s",
              "cloud_queue_s", "batch_wait_s", "cloud_s", "wan_return_s", "return_s")
"""Per-tier delay components whose means the summary reports with several edge servers or a cloud."""


class OfferedLoad:
    """Offered load per station: arrival rate x mean service demand, per server (rho of a queue; stable below 1).

    Per mobile device m over each replication: lambda_m = n_m / T_m with T_m = (last - first capture) x n_m /
    (n_m - 1) (exactly 1/fps for periodic captures), and the demand is the head time of its frames; its uplink
    carries its transfers (all mobile devices' on a shared medium); the server pool carries every tail over c
    servers. A station with rho >= 1 has a queue that grows with the run length, so its delays mean nothing.
    """

    def __init__(self) -> None:
        self.busy: dict[tuple[int, str, str], float] = {}  # (replication, station kind, mobile) -> service demand
        self.first: dict[tuple[int, str], float] = {}
        self.last: dict[tuple[int, str], float] = {}
        self.count: dict[tuple[int, str], int] = {}

    def add(self, frames: pd.DataFrame) -> None:
        """Fold in a window of frame records (dropped frames count as arrivals with the service they got)."""
        for (rep, mobile), grp in frames.groupby(["replication", "mobile"], sort=False):
            key = (int(rep), str(mobile))
            self.first[key] = min(self.first.get(key, np.inf), float(grp["capture_s"].min()))
            self.last[key] = max(self.last.get(key, -np.inf), float(grp["capture_s"].max()))
            self.count[key] = self.count.get(key, 0) + len(grp)
            for kind, col in (("mobile", "head_s"), ("uplink", "transfer_s"), ("server", "tail_s")):
                k3 = (key[0], kind, key[1])
                self.busy[k3] = self.busy.get(k3, 0.0) + float(grp[col].fillna(0).sum())
            if "edge" in grp:  # several edge servers or a cloud: each edge pool and WAN, and the cloud pool
                occupancy = grp["cloud_s"].fillna(0) / grp["batch_size"].clip(lower=1)  # a batch's time, shared
                for edge, by_edge in grp.assign(cloud_busy=occupancy).groupby("edge", sort=False):
                    for kind, col in (("server", "tail_s"), ("wan", "wan_transfer_s"), ("cloud", "cloud_busy")):
                        k3 = (key[0], f"{kind}@{edge}", key[1])
                        self.busy[k3] = self.busy.get(k3, 0.0) + float(by_edge[col].fillna(0).sum())

    def _span(self, key: tuple[int, str]) -> float:
        n = self.count[key]
        return (self.last[key] - self.first[key]) * n / (n - 1) if n > 1 else float("nan")

    def tier_utilisation(self, edge_servers: dict[str, int], cloud_servers: int) -> dict:
        """rho of the busiest edge server pool, of the busiest WAN link and of the cloud pool (per server)."""
        nan = float("nan")
        spans = {key: self._span(key) for key in self.count}
        reps = sorted({rep for rep, _ in self.count})

        def pooled(kind: str, edge: str) -> list[float]:
            return [sum(self.busy.get((rep, f"{kind}@{edge}", mob), 0.0) / spans[(rep, mob)]
                        for (r, mob) in self.count if r == rep and spans[(rep, mob)] > 0) for rep in reps]

        rho = {"utilisation_server": max((v / c for e, c in edge_servers.items() for v in pooled("server", e)),
                                         default=nan)}
        if cloud_servers:
            rho["utilisation_wan"] = max((v for e in edge_servers for v in pooled("wan", e)), default=nan)
            per_rep = [sum(vals) / cloud_servers for vals in zip(*(pooled("cloud", e) for e in edge_servers))]
            rho["utilisation_cloud"] = max(per_rep, default=nan)
        return rho

    def utilisation(self, servers: int, shared_medium: bool) -> dict:
        """rho of the busiest mobile device, of the busiest uplink (or the shared medium) and of the server pool."""
        nan = float("nan")
        rho_of: dict[str, dict[tuple[int, str], float]] = {"mobile": {}, "uplink": {}, "server": {}}
        for key in self.count:
            span = self._span(key)
            for kind in rho_of:
                rho_of[kind][key] = self.busy[(key[0], kind, key[1])] / span if span > 0 else nan
        reps = sorted({rep for rep, _ in self.count})

        def pooled(kind: str, over: int) -> list[float]:  # lambda_total x E[S] = sum over mobiles of lambda_m x E[S_m]
            return [sum(v for (r, _), v in rho_of[kind].items() if r == rep) / over for rep in reps]

        uplink = pooled("uplink", 1) if shared_medium else list(rho_of["uplink"].values())
        rho = {"utilisation_mobile": max(rho_of["mobile"].values(), default=nan),
               "utilisation_uplink": max(uplink, default=nan),
               "utilisation_server": max(pooled("server", servers), default=nan)}
        return rho


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
    scopes = [None] + ([e.name for e in edges] if sc.tiered and len(edges) > 1 else [])
    rows = []
    for spec in sc.policies:
        for scope in scopes:
            acc = accumulators.get(spec.display if scope is None else (spec.display, scope))
            if acc is None:
                continue
            row = {"point": point, "policy": spec.display, "mobile": mobile_label,
                   "edge": "+".join(servers) if scope is None else scope, "data_rate_mbps": rate}
            if len(scopes) > 1:
                row["scope"] = "all" if scope is None else "edge"
            row.update(acc.result(mobile_idle_w, n_mobiles, positive))
            row.update(acc.load.utilisation(edges[0].servers, sc.link.shared_medium))
            if sc.tiered:
                row.update(acc.load.tier_utilisation(servers if scope is None else {scope: servers[scope]},
                                                     sc.cloud.servers if sc.cloud else 0))
                row.update(acc.tier_means())
            row["stable"] = bool(all(not (v >= 1.0) for k, v in row.items() if k.startswith("utilisation_")))
            for path, value in overrides.items():
                row[f"sweep.{path}"] = value
            row["engine"] = engine.get(spec.display, "")
            rows.append(row)
    return pd.DataFrame(rows)


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
            reps = sorted(set(acc.rep_sum) & set(base.rep_sum))
            gains = np.array([(base.rep_sum[r] / base.rep_count[r]) / (acc.rep_sum[r] / acc.rep_count[r]) for r in reps])
            lo.append(float(np.percentile(gains, 5)) if gains.size else np.nan)
            hi.append(float(np.percentile(gains, 95)) if gains.size else np.nan)
        out[f"{col}_p5"], out[f"{col}_p95"] = lo, hi
    return out
