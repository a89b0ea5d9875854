"""`edgesim trace ...`: import measured network traces into the edgesim link-trace CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from profilers.errors import EdgesimError
from simulator.trace_import import DEFAULT_BIN_MS, IMPORTERS, import_trace, write_trace

CSV_DEFAULTS = {"time_column": "time_s", "rate_column": "data_rate_mbps", "rate_unit": "Mbit/s", "time_unit": "s",
                "rtt_column": None}
"""The csv-only options' defaults: any other value given with another FORMAT is a mistake."""

trace_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Link traces: import mahimahi, Norway HSDPA / Ghent 4G, Lumos5G or CSV logs.")


@trace_app.callback()
def _group() -> None:
    """Link traces: import measured network logs (a group even with one command, so `trace import` reads the same
    whether this app is run alone or mounted under `edgesim`)."""


@trace_app.command("import")
def import_(
    fmt: str = typer.Argument(..., metavar="FORMAT", help=f"one of: {', '.join(IMPORTERS)}"),
    src: Path = typer.Argument(..., metavar="IN", help="the source trace file"),
    out: Path = typer.Option(..., "--out", help="the edgesim trace CSV to write (time_s,data_rate_mbps[,rtt_ms])"),
    time_column: str = typer.Option(CSV_DEFAULTS["time_column"], help="csv: name of the time column"),
    rate_column: str = typer.Option(CSV_DEFAULTS["rate_column"], help="csv: name of the rate column"),
    rate_unit: str = typer.Option(CSV_DEFAULTS["rate_unit"], help="csv: bit/s, kbit/s, Mbit/s, or bytes (per interval)"),
    time_unit: str = typer.Option(CSV_DEFAULTS["time_unit"], help="csv: s or ms"),
    rtt_column: Optional[str] = typer.Option(None, help="csv: name of a round-trip-time column in ms"),
    bin_ms: int = typer.Option(DEFAULT_BIN_MS, help="mahimahi: bin width in ms"),
    run: Optional[int] = typer.Option(None, help="lumos5g: run_num to import (default: the first)"),
    source: Optional[str] = typer.Option(None, help="text for the '# source:' header line"),
    licence: Optional[str] = typer.Option(None, help="text for the '# licence:' header line"),
) -> None:
    """Convert IN (FORMAT) into an edgesim link trace at --out, with source, conversion and licence in its header."""
    from simulator.link import load_rate_trace
    from simulator.sense import duration_words, mbps_text, trace_slips

    csv_options = {"time_column": time_column, "rate_column": rate_column, "rate_unit": rate_unit,
                   "time_unit": time_unit, "rtt_column": rtt_column}
    changed = [k for k, v in csv_options.items() if v != CSV_DEFAULTS[k]]
    if fmt != "csv" and fmt in IMPORTERS and changed:
        raise EdgesimError(f"--{changed[0].replace('_', '-')} applies to FORMAT csv only, not {fmt}")
    options = {"csv": csv_options, "mahimahi": {"bin_ms": bin_ms}, "lumos5g": {"run": run}}.get(fmt, {})
    trace = import_trace(fmt, src, **options)
    written = write_trace(trace, out, source, licence)
    link = load_rate_trace(written)  # the simulator must read what was written
    low, high = trace.rate_range_mbps
    typer.echo(f"wrote {written}: {len(link.times_s)} rows over {trace.end_s:g} s ({duration_words(trace.end_s)}), "
               f"rates {mbps_text(low)} to {mbps_text(high)} Mbit/s, mean {mbps_text(trace.mean_rate_mbps)} Mbit/s")
    for slip in trace_slips(trace.mean_rate_mbps, trace.end_s, high):
        typer.echo(f"edgesim: warning: {written}: {slip}; check --rate-unit and --time-unit", err=True)
