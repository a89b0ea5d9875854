"""Figures from the summary and frame tables: pure functions returning plotly Figures (no file I/O).

Gains follow 002 section 4: gain = T_baseline / T_policy with T the mean capture-to-output delay at the
same sweep point, so a gain above 1 means the policy is faster than the baseline (002 Figure 3).
"""

from __future__ import annotations

import re
from typing import Iterable, Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from edgesim.report.framestats import GAIN_WINDOW_S, FrameStats
from edgesim.report.sweepfigs import (DASHES, case_label, field_axis, gain_replications, overall, panel_hline,
                                      paper_style, swept_columns, sweep_figures)
from profilers.schema import ModelProfile
from simulator.frames import DELAY_COMPONENTS, TIER_DELAY_COMPONENTS

COLORS = qualitative.Plotly + qualitative.D3 + qualitative.Dark24
TEMPLATE = "plotly_white"
RATE_TITLE = "uplink data rate (Mbit/s)"
#: Gain column -> (baseline policy name, words for titles), as in 002 section 4 (Org. MD and Org. ES).
GAINS = {
    "gain_vs_offload": ("offload", "full offloading (Org. ES)"),
    "gain_vs_local": ("local", "local processing (Org. MD)"),
}
#: Per-frame delay components in pipeline order, as the frame table names them (simulator.frames' registry)
COMPONENTS = DELAY_COMPONENTS
TIER_COMPONENTS = TIER_DELAY_COMPONENTS
#: Sweep columns already shown by the data_rate_mbps, mobile and edge columns.
_SHOWN_SWEEPS = re.compile(r"^sweep\.(link\.data_rate_mbps|edge\.device|mobiles\.\d+\.device)$")
_SHOWN_DEVICE = re.compile(r"^sweep\.(edge\.device|mobiles\.\d+\.device)$")


def _combo(mobile: object, edge: object) -> str:
    """A (mobile device, edge server) pair as 'mobile → edge'."""
    return f"{mobile} → {edge}"


def rate_label(rate: float, labels: Optional[dict[str, str]] = None) -> str:
    """A data rate as a short category label; where the rate is a trace, the trace's name and mean rate."""
    if np.isfinite(rate):
        return f"{rate:g} Mbit/s"
    return (labels or {}).get("trace", "trace")


def _extra_keys(summary: pd.DataFrame) -> list[str]:
    """Swept columns that vary independently of (policy, mobile, edge, data rate), so they must split series."""
    keys = []
    base = ["policy", "mobile", "edge", "data_rate_mbps"]
    for col in summary.columns:
        if not col.startswith("sweep.") or _SHOWN_SWEEPS.match(col) or summary[col].nunique(dropna=False) < 2:
            continue
        per_group = summary.astype({col: str}).groupby(base, dropna=False)[col].nunique()
        if (per_group > 1).any():
            keys.append(col)
    return keys


def _series_label(row: pd.Series, extras: list[str]) -> str:
    """The combination part of a trace name: 'mobile → edge', plus any independently swept field."""
    label = _combo(row["mobile"], row["edge"])
    if extras:
        label += " (" + ", ".join(case_label(row, [field_axis(c)]) for c in extras) + ")"
    return label


def _with_series(summary: pd.DataFrame) -> pd.DataFrame:
    """Summary rows with a 'series' column naming the (mobile, edge, extra sweeps) combination."""
    extras = _extra_keys(summary)
    out = summary.copy()
    out["series"] = [_series_label(r, extras) for _, r in out.iterrows()] if len(out) else []
    return out


def _style_maps(policies: list[str], series: list[str]) -> tuple[dict, dict]:
    """Colour and dash per (policy, series): colour by combination and dash by policy when there are several
    combinations, colour by policy otherwise."""
    if len(series) > 1:
        color = {(p, s): COLORS[j % len(COLORS)] for j, s in enumerate(series) for p in policies}
        dash = {(p, s): DASHES[i % len(DASHES)] for i, p in enumerate(policies) for s in series}
    else:
        color = {(p, s): COLORS[i % len(COLORS)] for i, p in enumerate(policies) for s in series}
        dash = {(p, s): "solid" for p in policies for s in series}
    return color, dash


def _finite_rates(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows whose data rate is a number (links given as traces have NaN), when the rate takes two values or more
    (else the figures against the swept fields show the sweep); no rows otherwise."""
    rate = pd.to_numeric(summary["data_rate_mbps"], errors="coerce")
    rows = summary[np.isfinite(rate.to_numpy(float))]
    return rows if rows["data_rate_mbps"].nunique() > 1 else rows.iloc[:0]


def _curve(g: pd.DataFrame, y: str) -> tuple[np.ndarray, np.ndarray]:
    """(data rate, y) sorted by rate, repeated rates averaged."""
    s = g.groupby("data_rate_mbps")[y].mean().sort_index()
    return s.index.to_numpy(float), s.to_numpy(float)


def _rate_axis(fig: go.Figure, rates: Iterable[float], log_x: bool = True) -> None:
    """Data-rate x axes: log scale, ticks at the swept rates when there are few of them."""
    ticks = sorted({float(r) for r in rates if np.isfinite(r)})
    kw = {"tickvals": ticks, "ticktext": [f"{r:g}" for r in ticks]} if 0 < len(ticks) <= 12 else {}
    fig.update_xaxes(type="log" if log_x else "linear", title_text=RATE_TITLE, **kw)


def baseline_policies(summary: pd.DataFrame, gain_col: str, baseline: Optional[str] = None) -> set[str]:
    """The baseline of a gain column: the named policy if present, else policies whose gain is identically 1."""
    name = baseline or GAINS[gain_col][0]
    if name in set(summary["policy"]):
        return {name}
    ones = summary.groupby("policy")[gain_col].apply(lambda g: bool(g.notna().all() and (g == 1.0).all()))
    return set(ones[ones].index)


def _gain_figure(summary: pd.DataFrame, gain_col: str, baseline: Optional[str]) -> Optional[go.Figure]:
    """Gain vs data rate for every non-baseline policy and combination (002 Fig. 3 style); None without data."""
    data = _finite_rates(summary)
    data = data[np.isfinite(pd.to_numeric(data[gain_col], errors="coerce").to_numpy(float))]
    base = baseline_policies(summary, gain_col, baseline)
    data = data[~data["policy"].isin(base)]
    if data.empty:
        return None
    data = _with_series(data)
    policies = list(dict.fromkeys(data["policy"]))
    series = list(dict.fromkeys(data["series"]))
    color, dash = _style_maps(policies, series)
    fig = go.Figure()
    for (policy, ser), g in data.groupby(["policy", "series"], sort=False):
        x, y = _curve(g, gain_col)
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers", name=f"{policy}: {ser}",
            line={"color": color[policy, ser], "dash": dash[policy, ser]},
            hovertemplate="%{x:g} Mbit/s<br>gain %{y:.3f}<extra>%{fullData.name}</extra>",
        ))
    base_name = " / ".join(sorted(base)) or GAINS[gain_col][0]
    fig.add_hline(y=1, line_dash="dash", line_color="grey", annotation_text="gain = 1",
                  annotation_position="bottom right")
    _rate_axis(fig, data["data_rate_mbps"])
    fig.update_yaxes(title_text=f"gain = T_{base_name} / T_policy")
    fig.update_layout(
        title=f"Gain w.r.t. {GAINS[gain_col][1]}: T_{base_name} / T_policy (> 1: the policy is faster; 002 Fig. 3)",
        template=TEMPLATE, height=max(520, 21 * len(fig.data) + 140), legend_title_text="policy: mobile → edge",
    )
    return fig


def fig3_figure(summary: pd.DataFrame, policy: str = "mimic", ref_edge: str = "laptop",
                ref_mobile: str = "rpi3b+") -> Optional[go.Figure]:
    """002 Figure 3: gain of `policy` w.r.t. offload and local, (a,b) per mobile with ref_edge, (c,d) per edge
    with ref_mobile; None when a panel would be empty."""
    data = _finite_rates(summary)
    data = data[data["policy"] == policy]
    if data.empty:
        return None
    data = _with_series(data)
    panels = [
        ("gain_vs_offload", data["edge"] == ref_edge, f"(a) Gain w.r.t. full offloading, {ref_edge} as ES"),
        ("gain_vs_local", data["edge"] == ref_edge, f"(b) Gain w.r.t. local processing, {ref_edge} as ES"),
        ("gain_vs_offload", data["mobile"] == ref_mobile, f"(c) Gain w.r.t. full offloading, {ref_mobile} as MD"),
        ("gain_vs_local", data["mobile"] == ref_mobile, f"(d) Gain w.r.t. local processing, {ref_mobile} as MD"),
    ]
    subsets = []
    for col, mask, _ in panels:
        sub = data[mask]
        sub = sub[np.isfinite(pd.to_numeric(sub[col], errors="coerce").to_numpy(float))]
        if sub.empty:
            return None
        subsets.append(sub)
    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for _, _, t in panels], horizontal_spacing=0.08,
                        vertical_spacing=0.14)
    series = list(dict.fromkeys(pd.concat(subsets)["series"]))
    color = {s: COLORS[j % len(COLORS)] for j, s in enumerate(series)}
    shown: set[str] = set()
    for k, ((col, _, _), sub) in enumerate(zip(panels, subsets)):
        row, c = divmod(k, 2)
        for ser, g in sub.groupby("series", sort=False):
            x, y = _curve(g, col)
            if {f"{col}_p5", f"{col}_p95"} <= set(g.columns):  # uncertainty: device, 5-95 % over replications
                _, lo = _curve(g, f"{col}_p5")
                _, hi = _curve(g, f"{col}_p95")
                fig.add_trace(go.Scatter(
                    x=np.concatenate([x, x[::-1]]), y=np.concatenate([hi, lo[::-1]]), fill="toself", mode="lines",
                    line={"width": 0}, fillcolor=color[ser], opacity=0.18, legendgroup=ser, showlegend=False,
                    hoverinfo="skip", name=f"{ser} 5-95 %"), row=row + 1, col=c + 1)
            fig.add_trace(go.Scatter(
                x=x, y=y, mode="lines+markers", name=ser, legendgroup=ser, showlegend=ser not in shown,
                line={"color": color[ser]},
                hovertemplate="%{x:g} Mbit/s<br>gain %{y:.3f}<extra>%{fullData.name}</extra>",
            ), row=row + 1, col=c + 1)
            shown.add(ser)
    panel_hline(fig, 1, "grey")
    _rate_axis(fig, data["data_rate_mbps"])
    fig.update_yaxes(title_text="gain")
    band = " (bands: 5-95 % over replications of derived devices' validated errors)" \
        if "gain_vs_local_p5" in data.columns else ""
    fig.update_layout(
        title=f"002 Figure 3 for '{policy}': gain = T_baseline / T_{policy} (> 1: {policy} is faster){band}",
        template=TEMPLATE, height=800, legend_title_text="mobile → edge",
    )
    return fig


def _first_crossing(rates: np.ndarray, gains: np.ndarray) -> str:
    """The data-rate interval where a gain curve first crosses 1 (between two swept rates), or 'never'."""
    side = np.sign(gains - 1.0)
    idx = np.flatnonzero(side[1:] * side[:-1] < 0)
    return f"{rates[idx[0]]:.3g}-{rates[idx[0] + 1]:.3g}" if idx.size else "never"


def crossovers(summary: pd.DataFrame) -> pd.DataFrame:
    """Where each policy's gain crosses 1 over the data rate: on the mean curve and on the 5 and 95 % bands
    (uncertainty: device), per mobile -> edge combination; empty without a data-rate sweep."""
    data = _finite_rates(summary)
    rows = []
    for (policy, mobile, edge), g in data.groupby(["policy", "mobile", "edge"], sort=False):
        if g["data_rate_mbps"].nunique() < 2:
            continue
        for col in GAINS:
            if col not in g or g[col].isna().all() or (g[col] == 1.0).all():
                continue
            x, y = _curve(g, col)
            row = {"policy": policy, "mobile": mobile, "edge": edge, "gain": col, "crosses 1 (mean)": _first_crossing(x, y)}
            if f"{col}_p5" in g:
                row["crosses 1 (5 % band)"] = _first_crossing(*_curve(g, f"{col}_p5"))
                row["crosses 1 (95 % band)"] = _first_crossing(*_curve(g, f"{col}_p95"))
            rows.append(row)
    return pd.DataFrame(rows)


def gain_figures(summary: pd.DataFrame, policy: str = "mimic", ref_edge: str = "laptop",
                 ref_mobile: str = "rpi3b+", baselines: Optional[dict[str, str]] = None) -> dict[str, go.Figure]:
    """Gain vs data rate w.r.t. offload and local (002 section 4), and 002 Figure 3 when the combinations exist."""
    baselines = baselines or {}
    out: dict[str, go.Figure] = {}
    for col in GAINS:
        if col in summary.columns:
            fig = _gain_figure(summary, col, baselines.get(col))
            if fig is not None:
                out[col] = fig
    if {"gain_vs_offload", "gain_vs_local"} <= set(summary.columns):
        fig = fig3_figure(summary, policy, ref_edge, ref_mobile)
        if fig is not None:
            out["fig3"] = fig
    return out


def _point_labels(summary: pd.DataFrame, labels: Optional[dict[str, str]] = None) -> pd.DataFrame:
    """One row per sweep point: data rate, combination (series), a short x label in words ('20 ms', or the trace's
    name where the rate is a trace) and the x axis's title."""
    summary = overall(summary)
    per_point = summary.drop_duplicates("point").set_index("point")
    per_point = per_point.assign(series=[_combo(m, e) for m, e in zip(per_point["mobile"], per_point["edge"])])
    order = {s: i for i, s in enumerate(dict.fromkeys(per_point["series"]))}
    per_point = per_point.assign(_order=per_point["series"].map(order))
    shown = [c for c in swept_columns(summary) if not _SHOWN_DEVICE.match(c)]
    axes = [field_axis(c) for c in shown]
    numeric = [a.column for a in axes if pd.to_numeric(per_point[a.column], errors="coerce").notna().all()]
    per_point = per_point.sort_values(["_order", *numeric, "data_rate_mbps"], na_position="last", kind="stable")
    if axes:
        text = per_point.apply(lambda r: ", ".join(a.value_text(r[a.column]) for a in axes), axis=1)
        title = ", ".join(a.title for a in axes)
    else:
        text = per_point["data_rate_mbps"].map(lambda r: rate_label(r, labels))
        title = RATE_TITLE if np.isfinite(per_point["data_rate_mbps"].to_numpy(float)).any() else "uplink"
    dup = text.groupby(per_point["series"]).transform(lambda s: s.duplicated(keep=False))
    per_point["x_label"] = text.where(~dup, text + " #" + per_point.index.to_series().astype(str))
    per_point["x_title"] = title
    return per_point[["data_rate_mbps", "series", "x_label", "x_title"]]


def delay_components_figure(summary: pd.DataFrame, stats: FrameStats, labels: Optional[dict[str, str]] = None) -> go.Figure:
    """Stacked mean delay components per sweep point (not-dropped frames; they sum to delay_mean_s), a column of
    subplots per policy and a row per mobile → edge combination; the x axis is the swept field in words."""
    components = TIER_COMPONENTS if "cloud_s" in stats.components.columns else COMPONENTS
    components = tuple((c, n) for c, n in components if c in stats.components.columns)
    points = _point_labels(summary, labels)
    means = stats.components.join(points, on="point")
    policies = list(dict.fromkeys(overall(summary)["policy"]))
    series = list(dict.fromkeys(points["series"]))
    rows, cols = len(series), len(policies)
    # policies head the columns; each row says its combination once, without what every row shares
    common = _combo(summary["mobile"].iloc[0], summary["edge"].iloc[0])
    short = {s: (s.removeprefix(common).strip(" ()") or s) if all(x.startswith(common) for x in series) else s
             for s in series}
    titles = [p if i == 0 else "" for i in range(rows) for p in policies]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, shared_yaxes=True,
                        horizontal_spacing=0.02 if cols > 4 else 0.04, vertical_spacing=min(0.12, 0.5 / max(rows, 1)))
    for i, ser in enumerate(series):
        order = points[points["series"] == ser]["x_label"].tolist()
        for j, pol in enumerate(policies):
            g = means[(means["series"] == ser) & (means["policy"] == pol)]
            for k, (col, name) in enumerate(components):
                fig.add_trace(go.Bar(
                    x=g["x_label"], y=g[col] * 1e3, name=name, legendgroup=name,
                    showlegend=i == 0 and j == 0, marker_color=COLORS[k],
                    hovertemplate="%{x}<br>" + name + " %{y:.3g} ms<extra></extra>",
                ), row=i + 1, col=j + 1)
            fig.update_xaxes(type="category", categoryorder="array", categoryarray=order, row=i + 1, col=j + 1)
    for i, ser in enumerate(series):
        fig.update_yaxes(title_text=f"{short[ser]}<br>mean delay (ms)" if rows > 1 else "mean delay (ms)",
                         title_font_size=11, row=i + 1, col=1)
    fig.update_xaxes(title_text=points["x_title"].iloc[0] if len(points) else "", title_font_size=11, row=rows,
                     col=(cols + 1) // 2)  # once, under the middle column: repeated titles run into each other
    fig.update_layout(barmode="stack", template=TEMPLATE, height=max(420, 330 * rows, 24 * len(components) + 140),
                      title="Mean capture-to-output delay by component (frames not dropped; warm-up excluded)"
                            + (f": {common}" if rows > 1 and common in series[0] else ""))
    return fig


def delay_over_time_figure(sample: pd.DataFrame, uplinks: dict[str, object], point: int = 0, stride: int = 1) -> go.Figure:
    """Each frame's capture-to-output delay over time per policy (a 1-in-`stride` sample of them), the uplink rate
    each mobile device saw beneath, and the time-averaged gain w.r.t. local processing (mean over GAIN_WINDOW_S
    windows of T_local / T_policy)."""
    data = sample  # warm-up frames are not in the sample
    data = data[(data["point"] == point) & (data["replication"] == data["replication"].min())]
    policies = list(dict.fromkeys(data["policy"]))
    every = "" if stride == 1 else f" (one frame in {stride})"
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.06,
                        subplot_titles=[f"capture-to-output delay of each frame{every}", "uplink data rate"])
    data = data.assign(window=np.floor(data["capture_s"] / GAIN_WINDOW_S))
    local = data[data["policy"] == "local"].groupby("window")["delay_s"].mean() if "local" in policies else None
    for k, pol in enumerate(policies):
        g = data[data["policy"] == pol]
        name = pol
        if local is not None and pol != "local":
            per = g.groupby("window")["delay_s"].mean()
            gain = (local.reindex(per.index) / per).mean()
            name = f"{pol} (time-averaged gain vs local {gain:.2f})"
        fig.add_trace(go.Scattergl(x=g["capture_s"], y=g["delay_s"] * 1e3, mode="markers", name=name,
                                   marker={"size": 4, "color": COLORS[k % len(COLORS)], "symbol": k % 20},
                                   hovertemplate="t %{x:.1f} s<br>%{y:.4g} ms<extra>" + pol + "</extra>"), row=1, col=1)
    end = float(data["capture_s"].max()) if len(data) else 1.0
    grid = np.linspace(0.0, end, 600)
    for j, (mobile, trace) in enumerate(uplinks.items()):
        rate = [trace.rate_bps_at(x) / 1e6 for x in grid]
        fig.add_trace(go.Scatter(x=grid, y=rate, mode="lines", line={"shape": "hv", "color": COLORS[(j + 5) % len(COLORS)]},
                                 name=f"uplink of {mobile}", legendgroup="rate"), row=2, col=1)
    fig.update_yaxes(title_text="delay (ms)", type="log", row=1, col=1)
    fig.update_yaxes(title_text="uplink data rate (Mbit/s)", row=2, col=1)
    fig.update_xaxes(title_text="capture time (s)", row=2, col=1)
    fig.update_layout(template=TEMPLATE, height=720, title=f"Delay over time on the traced link (sweep point {point}, "
                                                           "first replication)")
    return fig


def _pick_points(summary: Optional[pd.DataFrame], points: list, max_points: int) -> list:
    """All points if few, else per combination the middle point in sweep order (or points spread over it)."""
    if len(points) <= max_points:
        return points
    if summary is None:
        return [points[len(points) // 2]]
    per_point = _point_labels(summary[summary["point"].isin(points)])
    groups = list(per_point.groupby("series", sort=False))
    quota = max(1, max_points // len(groups))
    chosen = []
    for _, g in groups:  # the middle point, or points spread from the first to the last in sweep order
        at = [(len(g) - 1) // 2] if quota == 1 else np.unique(np.linspace(0, len(g) - 1, quota).round().astype(int))
        chosen += [g.index[i] for i in at]
    return chosen[:max_points]


def delay_cdf_figure(sample: pd.DataFrame, summary: Optional[pd.DataFrame] = None, max_points: int = 4,
                     max_samples: int = 400, stride: int = 1, labels: Optional[dict[str, str]] = None) -> go.Figure:
    """Empirical CDF of capture-to-output delay per policy, a subplot per sweep point (the middle point per
    combination when there are many); dropped frames count as never completing, so a curve tops out at 1 - drops.

    Readable where curves overlap: each policy has its own dash and marker, and a policy whose delays equal an
    earlier one's says so in its name instead of hiding under it; a log x axis when delays span 20x or more."""
    kept = sample  # warm-up frames are not in the sample
    points = _pick_points(summary, sorted(kept["point"].unique()), max_points)
    point_labels = _point_labels(summary, labels) if summary is not None else None
    titles = []
    for p in points:
        if point_labels is not None and p in point_labels.index:
            row = point_labels.loc[p]
            titles.append(f"{row['series']}, {row['x_label']}" if len(set(point_labels["series"])) > 1
                          else f"{row['x_title'].split(' (')[0]} {row['x_label']}")
        else:
            titles.append(f"sweep point {p}")
    cols = min(len(points), 2) or 1
    rows = -(-len(points) // cols) or 1
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, shared_yaxes=True, shared_xaxes="all")
    policies = list(dict.fromkeys(kept["policy"]))
    spread = []
    for k, p in enumerate(points):
        r, c = divmod(k, cols)
        at = kept[kept["point"] == p]
        seen: dict[bytes, str] = {}
        for i, pol in enumerate(policies):
            sub = at[at["policy"] == pol]
            delay = np.sort(sub["delay_s"].to_numpy(float))
            delay = delay[np.isfinite(delay)]
            if not len(sub) or not delay.size:
                continue
            key = delay.tobytes() + str(len(sub)).encode()
            same = seen.setdefault(key, pol)
            spread += [delay[0], delay[-1]]
            y = np.arange(1, delay.size + 1) / len(sub)
            if delay.size > max_samples:
                idx = np.unique(np.linspace(0, delay.size - 1, max_samples).round().astype(int))
                delay, y = delay[idx], y[idx]
            name = pol if same == pol else f"{pol} (same delays as {same})"
            fig.add_trace(go.Scatter(
                x=delay * 1e3, y=y, mode="lines+markers", line_shape="hv", name=name, legendgroup=pol,
                showlegend=k == 0, line={"color": COLORS[i % len(COLORS)], "dash": DASHES[i % len(DASHES)],
                                         "width": 3.5 if same == pol else 2},
                marker={"symbol": i % 20, "size": 6, "maxdisplayed": 12},
                hovertemplate="%{x:.3g} ms: %{y:.3f}<extra>" + name + "</extra>",
            ), row=r + 1, col=c + 1)
    positive = [v for v in spread if v > 0]
    log = bool(positive and max(positive) / min(positive) >= 20)
    fig.update_xaxes(title_text="capture-to-output delay (ms)", type="log" if log else "linear")
    fig.update_yaxes(title_text="fraction of frames", range=[0, 1.02], col=1)
    every = "" if stride == 1 else f"; a systematic sample of one frame in {stride}"
    fig.update_layout(title=f"Empirical CDF of capture-to-output delay (dropped frames never complete{every})",
                      template=TEMPLATE, height=max(420, 360 * rows))
    return fig


def layer_percentages(model: ModelProfile) -> pd.DataFrame:
    """Per split point: output size as % of the float32 input (raw and zlib) and cumulative FLOPs % (002 Fig. 1)."""
    input_bytes = model.input_numel * 4
    rows = []
    for sp in model.split_points:
        zlib = sp.output_bytes.get("zlib_float32")
        raw = sp.output_bytes.get("float32", sp.output_numel * 4)
        rows.append({
            "split_point": sp.name, "layer_index": sp.layer_index,
            "size_float32_percent": 100.0 * raw / input_bytes,
            "size_zlib_float32_percent": 100.0 * zlib / input_bytes if zlib is not None else float("nan"),
            "complexity_percent": 100.0 * sp.head_flops / model.total_flops if model.total_flops else float("nan"),
        })
    return pd.DataFrame(rows)


def layer_profile_figure(model: ModelProfile) -> go.Figure:
    """002 Figure 1: per split point, output data size as % of the input and cumulative complexity %."""
    t = layer_percentages(model)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    hover = "%{x} (layer %{text}): %{y:.3g}%<extra>%{fullData.name}</extra>"
    t = t.assign(layer=t["layer_index"].astype(str))
    fig.add_trace(go.Scatter(x=t["split_point"], y=t["size_float32_percent"], text=t["layer"],
                             mode="lines+markers", name="data size, float32 (%)", line={"color": COLORS[0]},
                             hovertemplate=hover), secondary_y=False)
    if t["size_zlib_float32_percent"].notna().any():
        fig.add_trace(go.Scatter(x=t["split_point"], y=t["size_zlib_float32_percent"], text=t["layer"],
                                 mode="lines+markers", name="data size, zlib float32 (%)", line={"color": COLORS[2]},
                                 hovertemplate=hover), secondary_y=False)
    fig.add_trace(go.Scatter(x=t["split_point"], y=t["complexity_percent"], text=t["layer"],
                             mode="lines+markers", name="cumulative complexity (% FLOPs)", line={"color": COLORS[1]},
                             hovertemplate=hover), secondary_y=True)
    fig.add_hline(y=100, line_dash="dot", line_color="grey", secondary_y=False)
    fig.update_xaxes(title_text="split point (layer name, in the model's order)", type="category",
                     categoryorder="array", categoryarray=list(t["split_point"]), tickangle=-45)
    fig.update_yaxes(title_text="output size / input size (%)", secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text="cumulative complexity (%)", secondary_y=True, range=[0, 105], showgrid=False,
                     tickmode="linear", tick0=0, dtick=20)
    fig.update_layout(title=f"{model.model_id}: data size and cumulative complexity per split point (002 Fig. 1)",
                      template=TEMPLATE, height=480)
    return fig


def _lines_by_policy(summary: pd.DataFrame, panels: list[tuple[str, str, float]], title: str,
                     log_x: bool = True, height: int = 460) -> go.Figure:
    """One subplot per (column, title, scale) vs data rate, a trace per (policy, combination) in every subplot."""
    data = _with_series(_finite_rates(summary))
    policies = list(dict.fromkeys(data["policy"]))
    series = list(dict.fromkeys(data["series"]))
    color, dash = _style_maps(policies, series)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for _, t, _ in panels], horizontal_spacing=0.07)
    for (policy, ser), g in data.groupby(["policy", "series"], sort=False):
        name = f"{policy}: {ser}" if len(series) > 1 else policy
        for k, (col, _, scale) in enumerate(panels):
            x, y = _curve(g, col)
            fig.add_trace(go.Scatter(
                x=x, y=y * scale, mode="lines+markers", name=name, legendgroup=name, showlegend=k == 0,
                line={"color": color[policy, ser], "dash": dash[policy, ser]},
            ), row=1, col=k + 1)
    _rate_axis(fig, data["data_rate_mbps"], log_x)
    fig.update_yaxes(rangemode="tozero")
    n_legend = len(policies) * len(series)
    fig.update_layout(title=title, template=TEMPLATE, height=max(height, 21 * n_legend + 140))
    return fig


def energy_figure(summary: pd.DataFrame) -> Optional[go.Figure]:
    """Mobile-device energy per frame vs data rate: total, compute (head) and radio (uplink + downlink)."""
    if _finite_rates(summary).empty:
        return None
    fig = _lines_by_policy(summary, [
        ("energy_mobile_j_per_frame", "total (compute + radio)", 1e3),
        ("energy_mobile_compute_j_per_frame", "compute (head)", 1e3),
        ("energy_mobile_radio_j_per_frame", "radio (uplink + downlink)", 1e3),
    ], "Mobile-device energy per frame (dynamic part, above idle)")
    fig.update_yaxes(title_text="energy per frame (mJ)", col=1)
    return fig


def throughput_drop_figure(summary: pd.DataFrame) -> Optional[go.Figure]:
    """Throughput, deadline misses and drops vs data rate; None when no frame was late or dropped."""
    cols = ["deadline_miss_fraction", "drop_fraction"]
    if _finite_rates(summary).empty or not (summary[cols].fillna(0).to_numpy(float) > 0).any():
        return None
    fig = _lines_by_policy(summary, [
        ("throughput_fps", "throughput (frames/s)", 1.0),
        ("deadline_miss_fraction", "late frames (%)", 100.0),
        ("drop_fraction", "dropped frames (%)", 100.0),
    ], "Throughput, deadline misses and drops")
    return fig


def accuracy_figure(summary: pd.DataFrame) -> Optional[go.Figure]:
    """F1 and accuracy vs offload fraction per policy (000 Figs. 2-3 layout); None without accuracy columns."""
    metrics = [c for c in ("f1", "accuracy") if c in summary.columns and summary[c].notna().any()]
    if not metrics:
        return None
    data = _with_series(summary)
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[m.upper() if m == "f1" else m for m in metrics])
    policies = list(dict.fromkeys(data["policy"]))
    for i, pol in enumerate(policies):
        g = data[data["policy"] == pol].sort_values("offload_fraction")
        text = [f"{s}, {rate_label(r)}" for s, r in zip(g["series"], g["data_rate_mbps"])]
        for k, m in enumerate(metrics):
            fig.add_trace(go.Scatter(
                x=100 * g["offload_fraction"], y=100 * g[m], text=text, mode="markers", name=pol, legendgroup=pol,
                showlegend=k == 0, marker={"color": COLORS[i % len(COLORS)], "size": 9},
                hovertemplate="%{text}<br>offloaded %{x:.1f}%: %{y:.2f}%<extra>" + pol + "</extra>",
            ), row=1, col=k + 1)
    fig.update_xaxes(title_text="frames offloaded (%)")
    fig.update_yaxes(title_text="%", col=1)
    fig.update_layout(title="Accuracy vs offload fraction per policy", template=TEMPLATE, height=460)
    return fig


def build_figures(summary: pd.DataFrame, stats: Optional[FrameStats] = None,
                  model_profiles: Iterable[ModelProfile] = (), policy: str = "mimic", ref_edge: str = "laptop",
                  ref_mobile: str = "rpi3b+", traced_uplinks: Optional[dict] = None,
                  labels: Optional[dict[str, str]] = None, paper: bool = False) -> dict[str, go.Figure]:
    """Every figure the data supports, by file-safe name; figures needing frames are skipped when stats is None.

    stats: what the figures need from the frames (framestats, read in bounded memory); traced_uplinks: each mobile
    device's uplink RateTrace when the link follows a trace; labels: text for values a figure would show blank
    (a trace's name and mean rate); paper: --style paper.
    """
    out: dict[str, go.Figure] = dict(gain_figures(summary, policy, ref_edge, ref_mobile))
    reps = None
    if stats is not None:
        delay = stats.replication_values("delay_mean_s")
        reps = {m: stats.replication_values(m) for m in ("delay_mean_s", "delay_p95_s", "energy_mobile_j_per_frame",
                                                         "accuracy")}
        reps["gain_vs_local"] = gain_replications(delay, "local")
        reps["gain_vs_offload"] = gain_replications(delay, "offload")
    out.update(sweep_figures(summary, reps, labels, paper))
    if stats is not None and len(stats.sample):
        out["delay_components"] = delay_components_figure(summary, stats, labels)
        out["delay_cdf"] = delay_cdf_figure(stats.sample, summary, stride=stats.stride, labels=labels)
        if traced_uplinks:
            out["delay_over_time"] = delay_over_time_figure(stats.sample, traced_uplinks, stride=stats.stride)
    for name, fn in (("energy", energy_figure), ("throughput_drops", throughput_drop_figure),
                     ("accuracy", accuracy_figure)):
        fig = fn(summary)
        if fig is not None:
            out[name] = fig
    for model in model_profiles:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.model_id)
        out[f"layers_{safe}"] = layer_profile_figure(model)
    if paper:
        out = {name: paper_style(fig) for name, fig in out.items()}
    return out
