"""A figure for every sweep: each summary metric against each swept field, a panel per case (the other swept
fields), a line per policy, with 95 % Student-t intervals over replications and, for gains, where each crosses 1.

Axis titles say the field in words with its unit ("WAN one-way delay (ms)"); panels that compare share a y-range.
Pure functions of tables: summary.csv and, for the intervals, the per-replication values of framestats.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from simulator.metrics import ci95_half_width

#: summary metric -> (words for titles, unit, scale from the stored unit); gains get a line at 1 and crossings
METRICS = {
    "delay_mean_s": ("mean capture-to-output delay", "ms", 1e3),
    "delay_p95_s": ("95th-percentile capture-to-output delay", "ms", 1e3),
    "gain_vs_local": ("gain w.r.t. local processing, T_local / T_policy", "", 1.0),
    "gain_vs_offload": ("gain w.r.t. full offloading, T_offload / T_policy", "", 1.0),
    "energy_mobile_j_per_frame": ("mobile-device energy per frame", "mJ", 1e3),
    "accuracy": ("accuracy", "%", 100.0),
}
GAIN_METRICS = ("gain_vs_local", "gain_vs_offload")
#: the last part of a field path -> (words, unit, scale); the parts before it name whose field it is
FIELD_WORDS = {
    "data_rate_mbps": ("data rate", "Mbit/s", 1.0),
    "downlink_data_rate_mbps": ("downlink data rate", "Mbit/s", 1.0),
    "propagation_delay_s": ("one-way delay", "ms", 1e3),
    "mean_s": ("mean one-way delay", "ms", 1e3),
    "std_s": ("one-way delay jitter", "ms", 1e3),
    "loss_probability": ("packet loss probability", "", 1.0),
    "frame_rate_fps": ("frame rate", "frames/s", 1.0),
    "frames": ("frames per mobile device", "", 1.0),
    "count": ("cameras", "", 1.0),
    "servers": ("servers", "", 1.0),
    "max_batch_size": ("largest batch", "frames", 1.0),
    "max_queue_delay_s": ("batching queue delay", "ms", 1e3),
    "deadline_s": ("deadline", "ms", 1e3),
    "threshold": ("switcher threshold", "", 1.0),
    "offload_fraction": ("offload fraction", "", 1.0),
    "trace_scale": ("trace scale", "x", 1.0),
    "seed": ("seed", "", 1.0),
    "device": ("device", "", 1.0),
}
#: where a field lives -> whose it is, in words
OWNERS = (
    (re.compile(r"^cloud\.wan\."), "WAN "), (re.compile(r"^cloud\.batching\."), "cloud "),
    (re.compile(r"^cloud\."), "cloud "), (re.compile(r"^link\."), "uplink "), (re.compile(r"^workload\."), ""),
    (re.compile(r"^queue\."), ""), (re.compile(r"^edge\."), "edge server "),
    (re.compile(r"^edges\.(\d+)\.link\."), r"uplink to edge server \1: "), (re.compile(r"^edges\.(\d+)\."), r"edge server \1 "),
    (re.compile(r"^mobiles\.(\d+)\.link\."), r"uplink of mobile group \1: "), (re.compile(r"^mobiles\.(\d+)\."), r"mobile group \1 "),
    (re.compile(r"^policies\.(\d+)\."), r"policy \1 "),
)
#: a palette that survives greyscale (Okabe & Ito 2008, ordered by lightness contrast) for --style paper
PAPER_COLORS = ("#000000", "#E69F00", "#0072B2", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442")
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross", "triangle-down", "star")
TEMPLATE = "plotly_white"


@dataclass(frozen=True)
class FieldAxis:
    """A swept field as an axis: its summary column, its title in words with unit, and the scale to that unit."""

    column: str
    title: str
    unit: str
    scale: float

    def value_text(self, value) -> str:
        """A value of the field as people read it: '20 ms', 'rpi4b'."""
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and np.isfinite(value):
            return f"{float(value) * self.scale:g}" + (f" {self.unit}" if self.unit else "")
        return str(value)


def field_axis(column: str) -> FieldAxis:
    """The words and unit of a summary column sweep.<path> (or a plain field path)."""
    path = column.removeprefix("sweep.")
    last = path.split(".")[-1]
    words, unit, scale = FIELD_WORDS.get(last, (last.replace("_", " "), "", 1.0))
    if last not in FIELD_WORDS:  # units from the name's suffix (STYLE.md rule 4)
        for suffix, (u, s) in (("_s", ("ms", 1e3)), ("_mbps", ("Mbit/s", 1.0)), ("_fps", ("frames/s", 1.0)),
                               ("_bytes", ("bytes", 1.0)), ("_j", ("J", 1.0)), ("_w", ("W", 1.0))):
            if last.endswith(suffix):
                words, unit, scale = last[: -len(suffix)].replace("_", " "), u, s
                break
    owner = ""
    for pattern, who in OWNERS:
        m = pattern.match(path)
        if m:
            owner = m.expand(who)
            break
    title = (owner + words).strip()
    if path == "link.data_rate_mbps":
        title = "uplink data rate"
    return FieldAxis(column, title + (f" ({unit})" if unit else ""), unit, scale)


def swept_columns(summary: pd.DataFrame) -> list[str]:
    """The sweep.* columns whose value changes over the sweep, in their order."""
    return [c for c in summary.columns if c.startswith("sweep.") and summary[c].astype(str).nunique() > 1]


def _numeric(series: pd.Series) -> bool:
    return pd.to_numeric(series, errors="coerce").notna().all()


def overall(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows of every edge server together (scope 'all'), the ones a figure compares."""
    return summary[summary["scope"].astype(str) != "edge"] if "scope" in summary.columns else summary


def replication_intervals(summary: pd.DataFrame, per_rep: Optional[pd.DataFrame], metric: str) -> pd.Series:
    """95 % Student-t half-width over replications per summary row (NaN with fewer than two replications).

    delay_mean_s falls back on the summary's own delay_mean_ci95_s; gains are the per-replication ratios
    T_baseline / T_policy (each replication's policies see the same frames: common random numbers)."""
    nan = pd.Series(np.nan, index=summary.index)
    if per_rep is None or per_rep.empty:
        if metric == "delay_mean_s" and "delay_mean_ci95_s" in summary:
            return summary["delay_mean_ci95_s"].astype(float)
        return nan
    half = per_rep.groupby(["point", "policy"], sort=False)["value"].apply(
        lambda v: ci95_half_width(v.dropna().to_numpy(float)))
    idx = pd.MultiIndex.from_frame(summary[["point", "policy"]].astype({"policy": str}))
    return pd.Series(half.reindex(idx).to_numpy(float), index=summary.index)


def gain_replications(delay_reps: pd.DataFrame, baseline: str) -> Optional[pd.DataFrame]:
    """Per (point, policy, replication): T_baseline / T_policy from the replication's own mean delays."""
    if delay_reps is None or baseline not in set(delay_reps["policy"]):
        return None
    base = delay_reps[delay_reps["policy"] == baseline].set_index(["point", "replication"])["value"]
    idx = pd.MultiIndex.from_frame(delay_reps[["point", "replication"]])
    return delay_reps.assign(value=base.reindex(idx).to_numpy() / delay_reps["value"].to_numpy())


def crossing(x: np.ndarray, y: np.ndarray, log: bool = False) -> Optional[tuple[float, float, float]]:
    """Where y first crosses 1 between two points of x: (x before, x after, interpolated linearly in x, or in
    log x on a log axis); None if never."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    side = np.sign(y - 1.0)
    idx = np.flatnonzero(side[1:] * side[:-1] < 0)
    if not idx.size:
        return None
    i = int(idx[0])
    u = np.log10(x[i:i + 2]) if log else x[i:i + 2]
    at = u[0] + (1.0 - y[i]) * (u[1] - u[0]) / (y[i + 1] - y[i])
    return float(x[i]), float(x[i + 1]), float(10 ** at if log else at)


def case_label(row: pd.Series, axes: list[FieldAxis]) -> str:
    """A case (the other swept fields' values) in words: 'WAN one-way delay = 20 ms'."""
    return ", ".join(f"{a.title.split(' (')[0]} = {a.value_text(row[a.column])}" for a in axes) or "all"


def _style(k: int, paper: bool) -> dict:
    colors = PAPER_COLORS if paper else COLORS
    return {"color": colors[k % len(colors)], "dash": DASHES[k % len(DASHES)] if paper else "solid",
            "symbol": SYMBOLS[k % len(SYMBOLS)]}


def log_axis(values: np.ndarray) -> bool:
    """A log axis for positive values spanning 20x or more (rates from 1 to 100 Mbit/s, delays from 5 to 100 ms)."""
    values = values[np.isfinite(values)]
    return bool(values.size and (values > 0).all() and values.max() / values.min() >= 20)


def same_as(data: pd.DataFrame, metric: str, policies: list[str]) -> dict[str, str]:
    """Legend names: a policy whose values equal an earlier policy's at every point says so ('best-placement (same
    as offload)') instead of hiding under its line."""
    values = {p: tuple(np.round(pd.to_numeric(data.loc[data["policy"].astype(str) == p, metric],
                                              errors="coerce").to_numpy(float), 12)) for p in policies}
    names, first = {}, {}
    for p in policies:
        same = first.setdefault(values[p], p)
        names[p] = p if same == p else f"{p} (same as {same})"
    return names


def _axis_number(ref: str) -> int:
    return int(ref[1:] or 1)


def panel_hline(fig: go.Figure, y: float, color: str, dash: str = "dash") -> None:
    """A horizontal line at y across every panel that holds a trace, as add_hline(row="all", col="all") draws it,
    set in one layout update (add_hline re-validates the whole layout once per panel: 44 % of a sweep's figures)."""
    axes = sorted({(t.xaxis or "x", t.yaxis or "y") for t in fig.data}, key=lambda a: _axis_number(a[0]))
    fig.update_layout(shapes=list(fig.layout.shapes) + [
        {"type": "line", "xref": f"{x} domain", "x0": 0, "x1": 1, "yref": yax, "y0": y, "y1": y,
         "line": {"color": color, "dash": dash}} for x, yax in axes])


def metric_figure(summary: pd.DataFrame, metric: str, x_col: str, per_rep: Optional[pd.DataFrame] = None,
                  labels: Optional[dict[str, str]] = None, paper: bool = False) -> Optional[go.Figure]:
    """One metric against one swept field: a panel per case, a line per policy, 95 % intervals over replications.

    labels: text to show instead of a swept value (a trace's name and mean rate where data_rate_mbps is blank).
    None when the metric has no finite value."""
    words, unit, scale = METRICS[metric]
    data = overall(summary)
    if metric not in data or not np.isfinite(pd.to_numeric(data[metric], errors="coerce")).any():
        return None
    data = data.assign(_half=replication_intervals(data, per_rep, metric))
    x_axis = field_axis(x_col)
    others = [field_axis(c) for c in swept_columns(data) if c != x_col]
    numeric_x = _numeric(data[x_col])
    if others:
        data = data.assign(_case=[case_label(r, others) for _, r in data.iterrows()])
    else:
        data = data.assign(_case="all")
    cases = list(dict.fromkeys(data["_case"]))
    cols = min(len(cases), 3)
    rows = math.ceil(len(cases) / cols)
    fig = make_subplots(rows=rows, cols=cols, shared_yaxes="all", shared_xaxes="all",
                        subplot_titles=cases if len(cases) > 1 else None,
                        horizontal_spacing=0.04 if cols > 1 else 0.1, vertical_spacing=min(0.12, 0.6 / rows))
    policies = list(dict.fromkeys(data["policy"].astype(str)))
    gain = metric in GAIN_METRICS
    baseline = "local" if metric == "gain_vs_local" else "offload"
    names = same_as(data, metric, policies)
    log = numeric_x and log_axis(pd.to_numeric(data[x_col]).to_numpy(float))
    notes = []
    traces, at_rows, at_cols = [], [], []  # added at once: add_trace re-validates the layout on every call
    for c, case in enumerate(cases):
        r, col = divmod(c, cols)
        sub = data[data["_case"] == case]
        for k, pol in enumerate(policies):
            if gain and pol == baseline:
                continue
            g = sub[sub["policy"].astype(str) == pol]
            if numeric_x:
                g = g.assign(_x=pd.to_numeric(g[x_col]) * x_axis.scale).sort_values("_x")
            else:
                g = g.assign(_x=g[x_col].astype(str).map(lambda v: (labels or {}).get(v, v)))
            y = pd.to_numeric(g[metric], errors="coerce").to_numpy(float) * scale
            half = g["_half"].to_numpy(float) * scale
            style = _style(k, paper)
            has_ci = np.isfinite(half).any()
            traces.append(go.Scatter(
                x=g["_x"], y=y, mode="lines+markers", name=names[pol], legendgroup=pol, showlegend=c == 0,
                line={"color": style["color"], "dash": style["dash"] if names[pol] == pol else "dot",
                      "width": 2 if names[pol] == pol else 3},
                marker={"symbol": style["symbol"], "size": 7, "color": style["color"]},
                error_y={"type": "data", "array": np.nan_to_num(half), "visible": bool(has_ci), "thickness": 1.2,
                         "width": 4, "color": style["color"]},
                hovertemplate=f"{x_axis.title}: %{{x}}<br>{words}: %{{y:.4g}} {unit}"
                              + (" ± %{error_y.array:.2g}" if has_ci else "") + f"<extra>{pol}</extra>",
            ))
            at_rows.append(r + 1)
            at_cols.append(col + 1)
            if gain and numeric_x:
                cross = crossing(g["_x"].to_numpy(float), y, log)
                if cross is not None:
                    lo, hi, at = cross
                    traces.append(go.Scatter(
                        x=[at], y=[1.0], mode="markers", showlegend=False, legendgroup=pol, hoverinfo="text",
                        hovertext=f"{pol} crosses 1 between {lo:g} and {hi:g} {x_axis.unit}",
                        marker={"symbol": "x-thin", "size": 12, "line": {"width": 2, "color": style["color"]}}))
                    at_rows.append(r + 1)
                    at_cols.append(col + 1)
                    notes.append(f"{pol}{'' if case == 'all' else f' ({case})'}: {lo:g}-{hi:g}")
    fig.add_traces(traces, rows=at_rows, cols=at_cols)
    if gain:
        panel_hline(fig, 1, "grey")
    if numeric_x:
        xs = pd.to_numeric(data[x_col]).to_numpy(float) * x_axis.scale
        ticks = sorted(set(xs))
        fig.update_xaxes(type="log" if log else "linear",
                         **({"tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]} if len(ticks) <= 10 else {}))
    else:
        fig.update_xaxes(type="category")
    fig.update_xaxes(title_text=x_axis.title, row=rows)
    fig.update_yaxes(title_text=f"{words} ({unit})" if unit else words, col=1)
    if not gain:
        fig.update_yaxes(rangemode="tozero")
    reps = int(per_rep["replication"].nunique()) if per_rep is not None and len(per_rep) else None
    band = (f"error bars: 95 % Student-t interval over {reps} replications" if reps and reps > 1
            else "one replication: no interval" if reps == 1 else
            "error bars: 95 % interval over replications (delay_mean_ci95_s)" if metric == "delay_mean_s" else "")
    cross_text = f"; crosses 1 at {x_axis.title}: " + "; ".join(notes) if notes else ""
    fig.update_layout(title={"text": f"{words[0].upper() + words[1:]} vs {x_axis.title}<br><sup>{band}{cross_text}</sup>",
                             "font": {"size": 15}},
                      template=TEMPLATE, height=max(420, 300 * rows + 120), legend_title_text="policy")
    fig.layout.meta = {"crossings": notes, "interval": band}
    return fig


def utilisation_figure(summary: pd.DataFrame, x_col: str, paper: bool = False) -> Optional[go.Figure]:
    """Offered load of every station against a swept field: a panel per station, shared y, the line at 1."""
    data = overall(summary)
    stations = [c for c in data.columns if c.startswith("utilisation_")
                and (pd.to_numeric(data[c], errors="coerce").fillna(0) > 0).any()]
    if not stations or not _numeric(data[x_col]):
        return None
    x_axis = field_axis(x_col)
    others = [field_axis(c) for c in swept_columns(data) if c != x_col]
    data = data.assign(_x=pd.to_numeric(data[x_col]) * x_axis.scale)
    fig = make_subplots(rows=1, cols=len(stations), shared_yaxes="all",
                        subplot_titles=[c.removeprefix("utilisation_") for c in stations], horizontal_spacing=0.03)
    policies = list(dict.fromkeys(data["policy"].astype(str)))
    for j, col in enumerate(stations):
        for k, pol in enumerate(policies):
            g = data[data["policy"].astype(str) == pol]
            # the busiest case at each x: overload anywhere shows
            g = g.groupby("_x")[col].max().sort_index()
            style = _style(k, paper)
            fig.add_trace(go.Scatter(x=g.index, y=g.to_numpy(float), mode="lines+markers", name=pol, legendgroup=pol,
                                     showlegend=j == 0, line={"color": style["color"], "dash": style["dash"]},
                                     marker={"symbol": style["symbol"], "color": style["color"]}), row=1, col=j + 1)
    panel_hline(fig, 1, "#c62828")
    fig.update_xaxes(title_text=x_axis.title)
    fig.update_yaxes(title_text="offered load (per server)", rangemode="tozero", col=1)
    over = f" (the busiest of {', '.join(a.title.split(' (')[0] for a in others)})" if others else ""
    fig.update_layout(title=f"Offered load per station vs {x_axis.title}{over}; at or above 1 a queue never settles",
                      template=TEMPLATE, height=420)
    return fig


def sweep_figures(summary: pd.DataFrame, reps: Optional[dict[str, pd.DataFrame]] = None,
                  labels: Optional[dict[str, str]] = None, paper: bool = False) -> dict[str, go.Figure]:
    """Every metric against every swept field ('<metric>_vs_<field>'), and the offered load per station.

    reps: per-replication values by metric (framestats); a sweep of nothing plots each metric by policy alone."""
    reps = reps or {}
    fields = swept_columns(overall(summary))
    out: dict[str, go.Figure] = {}
    if not fields:  # one point: each metric per policy, on a category axis
        summary = summary.assign(**{"sweep.policy": summary["policy"]})
        fields = []
    for x_col in fields:
        short = x_col.removeprefix("sweep.")
        for metric in METRICS:
            fig = metric_figure(summary, metric, x_col, reps.get(metric), labels, paper)
            if fig is not None:
                out[f"{metric}_vs_{short}"] = fig
        fig = utilisation_figure(summary, x_col, paper)
        if fig is not None:
            out[f"utilisation_vs_{short}"] = fig
    return out


def crossing_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Where each gain crosses 1 along each swept numeric field, per policy and case: the interval between the two
    swept values around it (derived by linear interpolation between them); empty without a crossing."""
    data = overall(summary)
    rows = []
    for x_col in swept_columns(data):
        if not _numeric(data[x_col]):
            continue
        axis = field_axis(x_col)
        others = [field_axis(c) for c in swept_columns(data) if c != x_col]
        cases = data.assign(_case=[case_label(r, others) for _, r in data.iterrows()]) if others else data.assign(
            _case="all")
        for (case, policy), g in cases.groupby(["_case", "policy"], sort=False):
            for metric in GAIN_METRICS:
                if metric not in g or g[metric].isna().all() or (g[metric] == 1.0).all():
                    continue
                g2 = g.assign(_x=pd.to_numeric(g[x_col]) * axis.scale).sort_values("_x")
                x = g2["_x"].to_numpy(float)
                cross = crossing(x, pd.to_numeric(g2[metric]).to_numpy(float), log_axis(x))
                if cross is not None:
                    rows.append({"gain": metric, "policy": policy, "along": axis.title, "case": case,
                                 "crosses 1 between": f"{cross[0]:g} and {cross[1]:g}",
                                 "interpolated": f"{cross[2]:.3g}"})
    return pd.DataFrame(rows)


def paper_style(fig: go.Figure, width_px: int = 504) -> go.Figure:
    """--style paper: a single column (3.5 in at 144 px/in), serif fonts PDF export embeds, greyscale-safe lines."""
    title = (fig.layout.title.text or "").split("<br>")[0]  # the caption says the rest
    n_legend = len({tr.legendgroup or tr.name for tr in fig.data if tr.showlegend is not False})
    fig.update_layout(template="simple_white", width=width_px,
                      height=max(320, int((fig.layout.height or 420) * 0.7)) + 18 * ((n_legend + 1) // 2),
                      font={"family": "Times New Roman, Liberation Serif, serif", "size": 11},
                      title={"text": title, "font": {"size": 12}, "x": 0.02},
                      legend={"font": {"size": 10}, "orientation": "h", "yanchor": "top", "y": -0.25, "x": 0},
                      margin={"l": 60, "r": 20, "t": 50, "b": 60})
    groups = list(dict.fromkeys(tr.legendgroup or tr.name for tr in fig.data))
    for tr in fig.data:
        k = groups.index(tr.legendgroup or tr.name)
        if isinstance(tr, go.Bar):
            n = len(PAPER_COLORS)  # colour and hatching together tell up to 64 bars apart
            tr.marker.color = PAPER_COLORS[k % n]
            tr.marker.pattern.shape = ("", "/", ".", "x", "\\", "+", "-", "|")[(k // n) % 8]
            continue
        if not isinstance(tr, (go.Scatter, go.Scattergl)):
            continue
        if tr.mode and "lines" in tr.mode:
            tr.line.color = PAPER_COLORS[k % len(PAPER_COLORS)]
            tr.line.dash = DASHES[k % len(DASHES)]
        if tr.marker is not None:
            tr.marker.color = PAPER_COLORS[k % len(PAPER_COLORS)]
            if tr.marker.line is not None and tr.marker.line.color is not None:
                tr.marker.line.color = PAPER_COLORS[k % len(PAPER_COLORS)]
        if tr.error_y is not None and tr.error_y.color is not None:
            tr.error_y.color = PAPER_COLORS[k % len(PAPER_COLORS)]
    fig.update_xaxes(showgrid=True, gridcolor="#dddddd")
    fig.update_yaxes(showgrid=True, gridcolor="#dddddd")
    return fig
