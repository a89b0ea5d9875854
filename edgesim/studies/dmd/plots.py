"""Figures and the HTML report of the DMD demo (000 Figures 2-3: combined F1 vs % of data deferred).

The figure files and plotly.min.js are written by edgesim.report.html (write_figures, write_plotlyjs); this module
builds the figures and the report page, which loads plotly.min.js from its own folder.
"""

from __future__ import annotations

import html
import math
from typing import Optional

import pandas as pd

from edgesim.report.html import PLOTLYJS_NAME, fmt_sig

LABELS = {
    "switcher": "Ours (switcher)", "uncertainty": "Uncertainty: max prob [14]", "margin": "Uncertainty: margin [14]",
    "entropy": "Uncertainty: entropy [14]", "random": "Random (seed)", "random-mean": "Random (mean over seeds)",
    "random-expected": "Random (expected, linear)", "oracle": "Oracle",
}


def curves_figure(curves: pd.DataFrame, title: str, chosen_fraction: Optional[float] = None):
    """Two panels: combined F1 and accuracy against % of data deferred to the large model, one line per method."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    avg = curves.attrs.get("f1_average", "")
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"Combined F1 ({avg})", "Combined accuracy"))
    for method, g in curves.groupby("method", sort=False):
        dash = "dot" if method.startswith("random") else ("dash" if method == "oracle" else "solid")
        for col, metric in ((1, "f1"), (2, "accuracy")):
            fig.add_trace(go.Scatter(x=100 * g["offload_fraction"], y=100 * g[metric], mode="lines", name=LABELS.get(method, method),
                                     legendgroup=method, showlegend=col == 1, line={"dash": dash}), row=1, col=col)
    if chosen_fraction is not None:
        for col in (1, 2):
            fig.add_vline(x=100 * chosen_fraction, line_dash="dash", line_color="grey", row=1, col=col)
    fig.update_xaxes(title_text="% of data deferred to the large model")
    fig.update_yaxes(title_text="%")
    fig.update_layout(title=title, width=1100, height=450, template="plotly_white")
    return fig


def mean_curves_figure(mean: pd.DataFrame, title: str, metric: str = "f1"):
    """Mean deferral curve per method over seeds with its 95% t-interval as a band (a summarise() table of curves)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (method, g) in enumerate(mean.groupby("method", sort=False)):
        g = g.sort_values("offload_fraction")
        x, y, half = 100 * g["offload_fraction"], 100 * g[metric], 100 * g[f"{metric}_ci"].fillna(0.0)
        colour = f"hsl({(i * 57) % 360},65%,45%)"
        fig.add_trace(go.Scatter(x=list(x) + list(x[::-1]), y=list(y + half) + list((y - half)[::-1]), fill="toself",
                                 fillcolor=colour.replace("hsl", "hsla").replace("%)", "%,0.15)"), line={"width": 0},
                                 legendgroup=method, showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=LABELS.get(method, method), legendgroup=method,
                                 line={"color": colour, "dash": "dash" if method == "oracle" else "solid"}))
    fig.update_xaxes(title_text="% of data deferred to the large model")
    fig.update_yaxes(title_text=f"combined {metric} (%), mean and 95% t-interval over seeds")
    fig.update_layout(title=title, width=900, height=500, template="plotly_white")
    return fig


def reliability_figure(bins: pd.DataFrame, title: str):
    """Reliability diagram of the switcher's agreement probability: observed agreement rate per probability bin."""
    import plotly.graph_objects as go

    used = bins[bins["count"] > 0]
    fig = go.Figure([go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="calibrated", line={"dash": "dot", "color": "grey"}),
                     go.Scatter(x=used["mean_prob"], y=used["frequency"], mode="lines+markers", name="switcher",
                                text=[f"{c} samples" for c in used["count"]])])
    fig.update_xaxes(title_text="switcher's agreement probability (bin mean)", range=[0, 1])
    fig.update_yaxes(title_text="observed agreement rate", range=[0, 1])
    fig.update_layout(title=title, width=600, height=500, template="plotly_white")
    return fig


def risk_coverage_figure(rc: pd.DataFrame, title: str):
    """Risk-coverage curves: the small model's error rate on the share of samples each method keeps."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for method, g in rc.groupby("method", sort=False):
        fig.add_trace(go.Scatter(x=100 * g["coverage"], y=100 * g["risk"], mode="lines", name=LABELS.get(method, method)))
    fig.update_xaxes(title_text="coverage: % of samples kept on the small model")
    fig.update_yaxes(title_text="risk: small model's error on them (%)")
    fig.update_layout(title=title, width=700, height=450, template="plotly_white")
    return fig


TABLE_DIGITS = 4  # significant figures: a tiny model's energy (kJ) must not print as 0.00


def table_number(v: float) -> str:
    """A table cell of the DMD report and console: TABLE_DIGITS significant figures, NaN as '–'."""
    return fmt_sig(v, TABLE_DIGITS) if math.isfinite(v) else "–"


def _table_html(df: pd.DataFrame) -> str:
    """A DataFrame as a plain HTML table with table_number cells."""
    return df.to_html(index=False, float_format=table_number, na_rep="–", border=0, classes="t")


def _table1_heading(table1: pd.DataFrame) -> str:
    """Table 1's heading, saying where its columns come from (the sim_* columns exist only after a replay)."""
    simulated = any(c.startswith("sim_") for c in table1.columns)
    cost = ("time and energy (sim_* columns) simulated by replaying the test split in the simulator" if simulated
            else "no time or energy: no simulator replay for this table")
    return f"Table 1 layout (test split; F1, accuracy and % large measured on the trace; {cost})"


def report_html(table1: pd.DataFrame, areas: pd.DataFrame, info: dict, figures: list, provenance: dict,
                routing: Optional[pd.DataFrame] = None, diagnostics: Optional[dict] = None) -> str:
    """The report page (plotly.min.js beside it): provenance, Table 1 layout, curve areas, threshold and figures."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>edgesim DMD report</title>",
        "<style>body{font-family:sans-serif;max-width:1150px;margin:auto}table.t{border-collapse:collapse}"
        "table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}</style>",
        f"<script charset='utf-8' src='{PLOTLYJS_NAME}'></script></head><body>",
        "<h1>Dual-Model Distillation (seed paper 000): switcher vs baselines</h1>",
        "<h2>Where the numbers come from</h2><ul>",
    ]
    parts += [f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in provenance.items()]
    parts += [f"</ul><h2>{html.escape(_table1_heading(table1))}</h2>", _table_html(table1)]
    parts += ["<h2>Area under the deferral curves (trapezoid over fraction deferred 0..1)</h2>", _table_html(areas)]
    if routing is not None and not routing.empty:
        parts += ["<h2>RouteLLM metrics on the deferral curves (APGR, CPT(50%), CPT(80%))</h2>", _table_html(routing)]
    if diagnostics:
        parts += ["<h2>Predicting agreement on test: AUROC (switcher vs small-model confidence), calibration, "
                  "switcher - uncertainty F1 (paired bootstrap)</h2><pre>", html.escape(str(diagnostics)), "</pre>"]
    parts += ["<h2>Operating point chosen on train (000 A.4)</h2><pre>", html.escape(str(info)), "</pre>"]
    parts += [fig.to_html(include_plotlyjs=False, full_html=False) for fig in figures]
    parts.append("</body></html>")
    return "\n".join(parts)
