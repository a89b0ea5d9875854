"""The testbed's report: real against simulated delay per run (a figure), the summary table and the session."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from edgesim.report.html import PLOTLYJS_NAME, write_figures, write_plotlyjs
from profilers.io import atomic_write_text

SERIES = (("real", "real_s", "session-profile"), ("simulated: session profile", "simulated_s", "session-profile"),
          ("simulated: the run's compute times", "simulated_s", "run-compute"))


def delay_figure(table: pd.DataFrame):
    """Mean and p95 capture-to-output delay per run (policy, link rate): real and both predictions, side by side."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    d = table[(table["quantity"] == "delay_s") & (table["mobile"] == "all")]
    runs = d[["scenario", "data_rate_mbps", "policy"]].drop_duplicates()
    several = runs["scenario"].nunique() > 1
    labels = [f"{r.scenario + ': ' if several else ''}{r.policy} @ {r.data_rate_mbps:g} Mbit/s"
              for r in runs.itertuples()]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("mean delay (ms)", "p95 delay (ms)"))
    for row, stat in ((1, "mean"), (2, "p95")):
        s = d[d["statistic"] == stat]
        for k, (name, col, pred) in enumerate(SERIES):
            vals = [1e3 * float(s[(s["scenario"] == r.scenario) & (s["data_rate_mbps"] == r.data_rate_mbps)
                                  & (s["policy"] == r.policy) & (s["prediction"] == pred)][col].iloc[0])
                    for r in runs.itertuples()]
            fig.add_trace(go.Bar(x=labels, y=vals, name=name, legendgroup=name, showlegend=row == 1,
                                 marker_color=("#444444", "#1f77b4", "#ff7f0e")[k]), row=row, col=1)
    fig.update_layout(barmode="group", height=720, title="edgesim testbed: real run vs simulation, same capture times")
    return fig


def write_report(table: pd.DataFrame, summary: pd.DataFrame, context: dict, out: Path) -> Path:
    """sim_vs_real.html (and .png where the PNG export works) and report.html with the figure, table and session."""
    fig = delay_figure(table)
    write_figures({"sim_vs_real": fig}, out, png="auto")
    write_plotlyjs(out)
    esc = html.escape
    page = ["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'><title>edgesim testbed</title>",
            f"<script charset='utf-8' src='{PLOTLYJS_NAME}'></script></head><body>",
            "<h1>edgesim testbed: real run vs simulation</h1>",
            "<p>Real: measured on this machine (edgesim testbed). Simulated: edgesim with the same capture times, "
            "from the profile measured in the same session (what a user gets) and, as a diagnostic that isolates the "
            "link and queue model, from the run's own compute times. Relative error = simulated / real - 1.</p>",
            fig.to_html(full_html=False, include_plotlyjs=False, div_id="fig-sim_vs_real"),
            "<h2>Delay per run</h2>", summary.to_html(index=False, border=0, float_format=lambda v: f"{v:.3g}"),
            "<h2>Session</h2>", f"<pre>{esc(json.dumps(context, indent=1))}</pre>", "</body></html>"]
    return atomic_write_text(out / "report.html", "\n".join(page))
