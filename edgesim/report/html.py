"""Figure files (HTML, optional PNG through kaleido and the local Chromium) and the offline HTML report of a run.

Every file is written atomically (profilers.io); plotly.js is written once as plotly.min.js next to the HTML
files so the report and figures open offline without inlining 3.5 MB into each.
"""

from __future__ import annotations

import asyncio
import html
import json
import math
import os
import re
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, Mapping, Optional

import pandas as pd

from edgesim.report.framestats import GAIN_WINDOW_S
from edgesim.report.stability import unstable_warnings
from profilers.errors import EdgesimError
from profilers.io import atomic_write_bytes, atomic_write_text

PLOTLYJS_NAME = "plotly.min.js"
#: Where a system Chromium is looked for (BROWSER_PATH, if set, wins); nothing is ever downloaded.
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
PNG_TIMEOUT_S = 60.0
PNG_WIDTH_PX = 1100
PNG_HEIGHT_PX = 500
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
PngMode = Literal["auto", "yes", "no"]
#: what `--format` accepts: the HTML page and the images kaleido makes through Chromium
FORMATS = ("html", "png", "pdf", "svg")
NO_CHROMIUM = ("no Chromium found (PNG, PDF and SVG figures are drawn by a headless Chromium): on Debian or Ubuntu "
               "`apt-get install -y chromium`, or set BROWSER_PATH to a Chrome or Chromium binary")

GAIN_DEFINITION = (
    "Gains follow 002 section 4: gain = T_baseline / T_policy, where T is the mean capture-to-output delay of "
    "the frames that were not dropped, at the same sweep point. A gain above 1 means the policy is faster than "
    "the baseline; the baselines are local processing on the mobile device (Org. MD, policy 'local') and full "
    "offloading of the input to the edge server (Org. ES, policy 'offload')."
)
#: What each figure shows, by figure name (layers_<model> figures share one note).
FIGURE_NOTES = {
    "gain_vs_offload": "Gain w.r.t. full offloading, T_offload / T_policy, against the uplink data rate (log "
                       "axis), one line per policy and mobile → edge combination; the dashed line marks gain = 1.",
    "gain_vs_local": "Gain w.r.t. local processing, T_local / T_policy, against the uplink data rate (log axis); "
                     "below the dashed line local processing is faster.",
    "fig3": "Reproduction of 002 Figure 3: (a) and (b) gain w.r.t. full offloading and local processing for each "
            "mobile device with the reference edge server; (c) and (d) the same for the reference mobile device "
            "with each edge server.",
    "delay_components": "Mean capture-to-output delay split into its components (mobile queue, head, uplink "
                        "queue, transfer, propagation, server queue, tail, return) per data rate; the stacked "
                        "bars add up to the mean delay of the frames that were not dropped.",
    "delay_cdf": "Empirical CDF of the capture-to-output delay per policy; dropped frames never complete, so a "
                 "curve tops out at 1 minus the drop fraction.",
    "energy": "Dynamic energy of the mobile device per frame against the data rate: total, compute (head) and "
              "radio (uplink and downlink, power linear in throughput).",
    "throughput_drops": "Completed frames per second, late frames (deadline missed) and dropped frames against "
                        "the data rate.",
    "accuracy": "F1 and accuracy of each policy against the fraction of frames offloaded (000 Figures 2-3).",
    "delay_over_time": "Capture-to-output delay of every frame against its capture time (first replication of sweep "
                       "point 0, warm-up excluded; dropped frames have no delay), with the uplink rate each mobile "
                       "device saw beneath. The legend's time-averaged gain vs local is derived, not a 002 gain: "
                       f"capture time is cut into {GAIN_WINDOW_S:g} s windows, each window's gain is T_local / "
                       "T_policy with T the mean delay of that window's completed frames, and the legend gives the "
                       "unweighted mean of these ratios over the windows where both policies completed frames.",
    "layers": "002 Figure 1: output size at each split point as % of the float32 input (raw and zlib-compressed) "
              "and the cumulative share of the model's FLOPs executed on the mobile device up to that point.",
}


class WrittenFigures(dict):
    """Files written per figure name (dict[str, list[Path]]), with the warnings PNG export raised."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.warnings: list[str] = []
        self.png_seconds: float = 0.0


def file_stem(name: str) -> str:
    """A figure name made safe as a file name and HTML id (other characters become '_', no leading dot)."""
    return _UNSAFE.sub("_", name).lstrip(".") or "figure"


def write_plotlyjs(out_dir: str | Path) -> Path:
    """plotly.min.js (the version plotly.py bundles) in out_dir, written only if missing or different."""
    from plotly.offline import get_plotlyjs

    path = Path(out_dir) / PLOTLYJS_NAME
    text = get_plotlyjs()
    if path.is_file() and path.stat().st_size == len(text.encode("utf-8")):
        return path
    return atomic_write_text(path, text)


def browser_path() -> Optional[str]:
    """The Chromium kaleido should drive: BROWSER_PATH if set, else the first system Chromium found."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env
    return next((p for p in CHROMIUM_PATHS if Path(p).is_file()), None)


def _png_opts(fig, fmt: str = "png") -> dict:
    """Kaleido layout options: the image format, the figure's own size or a default page width."""
    return {"format": fmt, "width": fig.layout.width or PNG_WIDTH_PX, "height": fig.layout.height or PNG_HEIGHT_PX}


async def _render_all(figures: Mapping[str, object], path: Optional[str], timeout_s: float,
                      formats: tuple[str, ...] = ("png",)) -> dict[tuple[str, str], bytes]:
    """Image bytes of every figure in every format from one headless Chromium (one tab, figures queued through it)."""
    import kaleido

    kwargs = {"path": path} if path else {}
    # mathjax=False: no CDN fetch (the machine may be offline); headless and --no-sandbox are choreographer's defaults
    async with kaleido.Kaleido(n=1, timeout=timeout_s, mathjax=False, **kwargs) as k:
        jobs = [(n, f) for n in figures for f in formats]
        images = await asyncio.gather(*(k.calc_fig(figures[n], opts=_png_opts(figures[n], f)) for n, f in jobs))
    return dict(zip(jobs, images))


def render_images(figures: Mapping[str, object], formats: tuple[str, ...] = ("png",),
                  timeout_s: float = PNG_TIMEOUT_S) -> dict[tuple[str, str], bytes]:
    """Image bytes per (figure name, format), one browser for all; runs its own event loop in a thread (safe in
    notebooks)."""
    if not figures or not formats:
        return {}
    if browser_path() is None:
        raise EdgesimError(NO_CHROMIUM)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _render_all(figures, browser_path(), timeout_s, formats)).result()


def render_pngs(figures: Mapping[str, object], timeout_s: float = PNG_TIMEOUT_S) -> dict[str, bytes]:
    """PNG bytes per figure name (render_images in one format)."""
    return {name: data for (name, _), data in render_images(figures, ("png",), timeout_s).items()}


def _one_line(exc: BaseException) -> str:
    """An exception as 'Type: first line of its message'."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def parse_formats(text: str) -> tuple[str, ...]:
    """`--format html,png,pdf,svg` as a tuple in FORMATS order; one line naming an unknown format."""
    asked = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in asked if f not in FORMATS]
    if bad or not asked:
        raise EdgesimError(f"--format '{text}': unknown format '{bad[0] if bad else ''}'; known: {', '.join(FORMATS)} "
                           "(comma-separated)")
    return tuple(f for f in FORMATS if f in asked)


def write_figures(figures: Mapping[str, object], out_dir: str | Path, png: PngMode = "auto",
                  formats: Optional[tuple[str, ...]] = None) -> WrittenFigures:
    """Each figure as <name>.html (plotly.js from plotly.min.js alongside) and, per `png`, <name>.png; or, with
    `formats`, in each of them (html, png, pdf, svg; images are an error if they cannot be made).

    png "auto": PNG if kaleido and Chromium work, else one warning (also in the result's .warnings);
    "yes": EdgesimError (one line) if PNG fails; "no": HTML only.
    """
    if png not in ("auto", "yes", "no"):
        raise EdgesimError(f"png '{png}': expected one of auto, yes, no")
    if formats is None:
        formats = ("html",) if png == "no" else ("html", "png")
    else:
        png = "yes"  # formats asked for by name are made or refused, never skipped
    out_dir = Path(out_dir)
    stems = {name: file_stem(name) for name in figures}
    if len(set(stems.values())) != len(stems):
        raise EdgesimError(f"figure names {sorted(figures)} give clashing file names; rename one")
    written = WrittenFigures({name: [] for name in figures})
    if "html" in formats:
        write_plotlyjs(out_dir)
        for name, fig in figures.items():
            page = fig.to_html(include_plotlyjs="directory", full_html=True, div_id=f"fig-{stems[name]}")
            written[name].append(atomic_write_text(out_dir / f"{stems[name]}.html", page))
    images = tuple(f for f in formats if f != "html")
    if not images or not figures:
        return written
    start = time.perf_counter()
    try:
        rendered = render_images(figures, images)
    except Exception as exc:  # kaleido, choreographer and Chromium fail in many ways; PNG is optional in "auto"
        what = "/".join(f.upper() for f in images)
        cause = NO_CHROMIUM if browser_path() is None else f"{_one_line(exc)}; browser: {browser_path()}"
        msg = f"{what} export failed: {cause}" + ("; HTML figures were written" if "html" in formats else "")
        if png == "yes":
            raise EdgesimError(msg) from None
        written.warnings.append(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return written
    written.png_seconds = time.perf_counter() - start
    for (name, fmt), data in rendered.items():
        written[name].append(atomic_write_bytes(out_dir / f"{stems[name]}.{fmt}", data))
    return written


def _heading(name: str, fig) -> str:
    """A figure's section heading: a metric against a swept field by its title in words, others by name."""
    title = fig.layout.title.text if fig.layout.title and fig.layout.title.text else ""
    return re.sub(r"<[^>]+>", "", title.split("<br>")[0]) if "_vs_" in name and title else name


def _figure_note(name: str, fig) -> str:
    """The description shown above a figure in the report."""
    if name in FIGURE_NOTES:
        return FIGURE_NOTES[name]
    if name.startswith("layers_"):
        return FIGURE_NOTES["layers"]
    if "_vs_" in name:
        meta = fig.layout.meta or {}
        return ("A summary metric against a swept field, one line per policy and one panel per case (the other "
                "swept fields' values), panels on one y-range so they compare; "
                + (f"{meta['interval']} (simulated: each replication's own value from its frames, Student-t with "
                   "k-1 degrees of freedom)" if meta.get("interval") else "no interval")
                + ("; gains: the dashed line marks 1 and an x where a policy's gain crosses it (linear between the "
                   "two swept values around it)" if name.startswith("gain_") else "")
                + ("; offered load: at or above the red line a station's queue never settles"
                   if name.startswith("utilisation_") else "") + ".")
    title = fig.layout.title.text if fig.layout.title else None
    return title or ""


def fmt_sig(v: float, digits: int = 3) -> str:
    """A number with `digits` significant digits, no exponent for everyday magnitudes."""
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    if -4 <= mag < 6:
        return f"{v:.{max(digits - 1 - mag, 0)}f}"
    return f"{v:.{digits - 1}e}"


_TIME_COL = re.compile(r"_s(_|$)")
#: units of the other summary columns people read, by how the column name ends
_UNIT_SUFFIXES = (("_j_per_frame", "J/frame"), ("_j", "J"), ("_w", "W"), ("_fps", "frames/s"), ("_mbps", "Mbit/s"),
                  ("bytes_per_frame", "bytes/frame"), ("_bytes", "bytes"))


def column_unit(col: str) -> tuple[str, float]:
    """(unit, scale) a summary column is shown in: times in ms (x 1000), others as stored; '' when unitless."""
    if _TIME_COL.search(col):
        return "ms", 1e3
    return next((unit for suffix, unit in _UNIT_SUFFIXES if col.endswith(suffix)), ""), 1.0


def format_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Summary as strings for people: times in ms (3 significant digits, '_s' renamed '_ms'), gains and fractions
    with 3 decimals, energy with 3 significant digits, bytes as integers; NaN as '–'."""
    out = {}
    for col in summary.columns:
        s = summary[col]
        numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
        if not numeric:
            out[col] = s.map(lambda v: "–" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
            continue
        name, scale = col, 1.0
        if col.startswith("gain_") or col.endswith("_fraction") or col in ("accuracy", "f1"):
            fmt = lambda v: f"{v:.3f}"  # noqa: E731
        elif _TIME_COL.search(col):
            name, scale = _TIME_COL.sub(lambda m: "_ms" + m.group(1), col, count=1), 1e3
            fmt = fmt_sig
        elif col == "bytes_per_frame" or pd.api.types.is_integer_dtype(s):
            fmt = lambda v: f"{v:,.0f}"  # noqa: E731
        elif "_j" in col or col.endswith("_fps"):
            fmt = fmt_sig
        elif col.endswith("_mbps"):
            fmt = lambda v: f"{v:g}"  # noqa: E731
        else:
            fmt = lambda v: fmt_sig(v, 4)  # noqa: E731
        out[name] = [("–" if not math.isfinite(float(v)) else fmt(float(v) * scale)) for v in s]
    return pd.DataFrame(out, index=summary.index)


def _manifest_rows(manifest: Mapping) -> str:
    """The manifest as table rows; nested values as compact JSON."""
    rows = []
    for key, value in manifest.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(text))}</td></tr>")
    return "\n".join(rows)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1250px;margin:1em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
p.note{color:#444;max-width:75em} nav li{margin:.15em 0}
div.scroll{overflow-x:auto;max-width:100%}
table.t{border-collapse:collapse;font-size:.82em}
table.t td,table.t th{padding:2px 7px;border-bottom:1px solid #e4e4e4;text-align:right;white-space:nowrap}
table.t th{background:#f5f5f5;position:sticky;top:0} table.t tr:hover td{background:#fafafa}
table.m th{text-align:left} table.m td{text-align:left;white-space:normal;word-break:break-word}
div.warn{border:2px solid #c62828;background:#fdecea;padding:.4em 1em;margin:1em 0;max-width:75em}
div.warn li{margin:.2em 0}
"""


def _warning_box(summary: pd.DataFrame) -> list[str]:
    """A visible box listing the (point, policy) pairs whose queues never settle; nothing when all are stable."""
    lines = unstable_warnings(summary)
    if not lines:
        return []
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return [f"<div class='warn' role='alert'><strong>Overloaded stations ({len(lines)}):</strong> offered load "
            "(arrival rate x mean service demand, per server) at or above 1 means no steady state; lower the frame "
            "rate, add servers or shorten service times before reading delays or gains from these rows."
            f"<ul>{items}</ul></div>"]


def _fidelity_box(manifest: Mapping) -> list[str]:
    """Which devices are derived rather than measured, and how far their derivation was validated."""
    notes = list(manifest.get("device_fidelity", []) or [])
    if not notes:
        return []
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return ["<div class='note'><strong>Derived devices</strong> (docs/device_fidelity.md): their latencies come from "
            f"a calibrated method, not a measurement; results carry its error.<ul>{items}</ul></div>"]


def report_html(figures: Mapping[str, object], summary: pd.DataFrame, manifest: Mapping, title: str) -> str:
    """The report page: title, gain definition, each figure with a note, the summary table and the manifest."""
    from edgesim.report.plots import crossovers  # plotly: imported where a report is written, not to format numbers
    from edgesim.report.sweepfigs import crossing_table

    esc = html.escape
    parts = [
        "<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title>", f"<style>{_CSS}</style>",
        f"<script charset='utf-8' src='{PLOTLYJS_NAME}'></script>", "</head><body>",
        f"<h1>{esc(title)}</h1>", *_warning_box(summary), *_fidelity_box(manifest),
        f"<p class='note'>{esc(GAIN_DEFINITION)}</p>",
    ]
    if figures:
        parts.append("<nav><ul>" + "".join(f"<li><a href='#sec-{file_stem(n)}'>{esc(_heading(n, f))}</a></li>"
                                           for n, f in figures.items())
                     + "<li><a href='#sec-summary'>summary table</a></li><li><a href='#sec-manifest'>manifest</a>"
                       "</li></ul></nav>")
    for name, fig in figures.items():
        stem = file_stem(name)
        parts += [f"<h2 id='sec-{stem}'>{esc(_heading(name, fig))}</h2>",
                  f"<p class='note'>{esc(_figure_note(name, fig))}</p>",
                  fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{stem}")]
    along = crossing_table(summary)
    if len(along):
        parts += ["<h2 id='sec-crossings'>Where the gains cross 1 along each swept field</h2>",
                  "<p class='note'>Derived from the simulated gains: for each swept field, policy and case (the other "
                  "swept fields' values), the two swept values between which the gain first crosses 1, and the "
                  "crossing by linear interpolation between them (in the field's unit).</p>",
                  along.to_html(index=False, border=0, classes="t")]
    cross = crossovers(summary)
    if len(cross):
        parts += ["<h2 id='sec-crossovers'>Where the gains cross 1</h2>",
                  "<p class='note'>Derived from the simulated gains: the data-rate interval (Mbit/s, between two "
                  "swept rates) where each gain first crosses 1; "
                  "with uncertainty: device also on the 5 % and 95 % bands over replications, so the crossover lies "
                  "in the span they give.</p>", cross.to_html(index=False, border=0, classes="t")]
    table = format_summary(summary).to_html(index=False, border=0, classes="t summary", na_rep="–")
    parts += ["<h2 id='sec-summary'>Summary: one row per sweep point and policy</h2>",
              "<p class='note'>Simulated: every column is computed from the simulated frames, except accuracy and "
              "f1, which score the labels and predictions of the per-sample trace on the frames the simulated "
              "policy routed. Times in ms (3 significant digits; columns renamed from _s to _ms), gains and "
              "fractions with 3 decimals, energy in J.</p>", f"<div class='scroll'>{table}</div>",
              "<h2 id='sec-manifest'>Run manifest</h2>",
              f"<table class='t m manifest'>{_manifest_rows(manifest)}</table>", "</body></html>"]
    return "\n".join(parts)


def write_report(out_dir: str | Path, figures: Mapping[str, object], summary: pd.DataFrame, manifest: Mapping,
                 title: str) -> Path:
    """report.html in out_dir (offline: plotly.min.js from the same folder), written atomically."""
    out_dir = Path(out_dir)
    write_plotlyjs(out_dir)
    return atomic_write_text(out_dir / "report.html", report_html(figures, summary, manifest, title))
