"""Link-trace importers: measured network logs -> the edgesim trace CSV `time_s,data_rate_mbps[,rtt_ms]`.

Every importer is parse (file -> arrays, one-line `FILE:LINE: what` errors) then convert (arrays -> an
`ImportedTrace`, a piecewise-constant rate). Conventions, stated in each output's `# conversion:` line:
- time starts at 0 at the first interval of the source; rates_mbps[k] holds from times_s[k] to times_s[k+1];
- a final row at end_s repeats the last rate, which `load_rate_trace` holds after the end (trace_end: hold) or
  reads as the end of the period (trace_end: wrap);
- bytes are conserved: the integral of the rate over any whole interval (mahimahi: any whole bin) equals the
  bytes the source counts in it, to float rounding of the written rates (10 significant digits).
Formats (REFERENCES.md section 4):
- mahimahi: one line per 1500-byte delivery opportunity, integer ms since start; binned at bin_ms (100 ms by
  default): rate of bin k = 1500 B x 8 x opportunities in [k bin_ms, (k+1) bin_ms) / bin_ms;
- hsdpa: Norway HSDPA (Riiser et al., MMSys 2013: unix s, monotonic ms, lat, lon, bytes, ms since last) and
  Ghent 4G/LTE (van der Hooft et al.: epoch ms, ms since start, lat, lon, bytes, ms since last); whitespace-
  separated; interval k ends at column 2 and starts at the previous row's column 2 (the first row's start is
  column 2 minus column 6); rate = bytes x 8 / interval;
- lumos5g: Lumos5G 1.0 CSV (run_num, seq_num per-second index, Throughput in Mbit/s from iPerf per-second reports);
  one run; each 1 s sample holds until the next;
- csv: named time column (s or ms), rate column in bit/s, kbit/s, Mbit/s, or bytes per interval (the interval
  ends at the row and starts at the previous row), and an optional rtt column in ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from profilers.errors import EdgesimError, unknown_name
from profilers.io import atomic_write_text
from simulator.csvtable import read_csv_table, table_lines

MAHIMAHI_PACKET_BYTES = 1500
DEFAULT_BIN_MS = 100
RATE_UNITS_MBPS = {"bit/s": 1e-6, "kbit/s": 1e-3, "Mbit/s": 1.0}  # and "bytes": bytes per interval
TIME_UNITS_S = {"s": 1.0, "ms": 1e-3}
DEFAULT_LICENCE = "not stated by the importer: check the source's licence before redistributing"


@dataclass(frozen=True)
class ImportedTrace:
    """A piecewise-constant rate: rates_mbps[k] holds from times_s[k] to times_s[k+1] (end_s for the last)."""

    times_s: np.ndarray
    rates_mbps: np.ndarray
    end_s: float
    source: str
    conversion: str
    rtt_ms: np.ndarray | None = None

    @property
    def mean_rate_mbps(self) -> float:
        """Time-averaged rate over [0, end_s]."""
        widths = np.diff(np.append(self.times_s, self.end_s))
        return float(np.sum(widths * self.rates_mbps) / self.end_s)

    @property
    def end_rate_mbps(self) -> float:
        """The rate the end row holds after the trace: the last one, or the last non-zero one (a link never stalls
        for ever)."""
        positive = self.rates_mbps[self.rates_mbps > 0]
        return float(self.rates_mbps[-1] if self.rates_mbps[-1] > 0 else positive[-1])

    @property
    def rate_range_mbps(self) -> tuple[float, float]:
        """(lowest, highest) converted rate."""
        return float(self.rates_mbps.min()), float(self.rates_mbps.max())


# ---------------------------------------------------------------- reading


def _lines(path: Path, empty: str) -> list[tuple[int, str]]:
    """(line number, text) of every non-blank, non-`#` line; one line if unreadable or empty."""
    lines = table_lines(path)
    if not lines:
        raise EdgesimError(f"{path}:1: empty trace ({empty})")
    return lines


def _number(path: Path, lineno: int, text: str, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise EdgesimError(f"{path}:{lineno}: {what} must be a number, found '{text}'") from None
    if not np.isfinite(value):
        raise EdgesimError(f"{path}:{lineno}: {what} must be finite, found '{text}'")
    if value < 0:
        raise EdgesimError(f"{path}:{lineno}: {what} must be >= 0, found '{text}'")
    return value


def _check_increasing(path: Path, linenos: list[int], t: np.ndarray, what: str, strict: bool = True) -> None:
    bad = np.flatnonzero(np.diff(t) <= 0 if strict else np.diff(t) < 0)
    if bad.size:
        k = int(bad[0]) + 1
        order = "increase strictly" if strict else "not decrease"
        raise EdgesimError(f"{path}:{linenos[k]}: {what} must {order} ({t[k]:g} after {t[k - 1]:g})")


def _csv_table(path: Path, required: list[str], fmt: str) -> tuple[list[int], list[dict[str, str]]]:
    """Rows of a headed CSV as dicts, with their file line numbers; the header must hold `required`."""
    table = read_csv_table(path, required, f"not a {fmt} trace: missing column(s) {{missing}}",
                           "empty trace (no header, no rows)", "empty trace (a header and no rows)")
    return table.linenos, table.rows


# ---------------------------------------------------------------- parse


def parse_mahimahi(path: str | Path) -> np.ndarray:
    """Delivery-opportunity timestamps (ms, non-decreasing integers) of a mahimahi trace."""
    path = Path(path)
    lines = _lines(path, "no delivery opportunities")
    stamps, linenos = [], []
    for n, line in lines:
        if not line.isdigit():
            raise EdgesimError(f"{path}:{n}: not a mahimahi trace: expected one integer millisecond timestamp "
                               f"per line, found '{line[:40]}'")
        stamps.append(int(line))
        linenos.append(n)
    t = np.asarray(stamps, dtype=np.int64)
    _check_increasing(path, linenos, t, "mahimahi timestamps", strict=False)
    return t


def parse_hsdpa(path: str | Path) -> tuple[np.ndarray, np.ndarray, float, str]:
    """(end of each interval in ms since start, bytes in it, first interval's ms, dataset) of a Norway/Ghent log."""
    path = Path(path)
    lines = _lines(path, "no rows")
    cols, linenos = [], []
    for n, line in lines:
        fields = line.split()
        if len(fields) != 6:
            raise EdgesimError(f"{path}:{n}: not an HSDPA/Ghent log: expected 6 whitespace-separated columns "
                               f"(time, ms, lat, lon, bytes, ms since last), found {len(fields)}")
        names = ("timestamp", "ms since start", "latitude", "longitude", "bytes", "ms since last")
        try:
            row = [float(f) for f in fields]
        except ValueError:
            bad = next(i for i, f in enumerate(fields) if not _is_float(f))
            raise EdgesimError(f"{path}:{n}: column {bad + 1} ({names[bad]}) must be a number, "
                               f"found '{fields[bad]}'") from None
        for i in (0, 1, 4, 5):
            _number(path, n, fields[i], names[i])
        cols.append(row)
        linenos.append(n)
    a = np.asarray(cols)
    _check_increasing(path, linenos, a[:, 1], "column 2 (ms since start)")
    dataset = "Ghent 4G/LTE log (epoch ms)" if a[0, 0] > 1e11 else "Norway HSDPA log (unix s)"
    if a[0, 5] == 0 and a[0, 4] > 0:
        raise EdgesimError(f"{path}:{linenos[0]}: {a[0, 4]:g} bytes in a 0 ms interval")
    return a[:, 1], a[:, 4], float(a[0, 5]), dataset


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_lumos5g(path: str | Path, run: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(seq_num s, Throughput Mbit/s, run) of one run of a Lumos5G 1.0 CSV: the first contiguous block of `run`."""
    path = Path(path)
    linenos, rows = _csv_table(path, ["run_num", "seq_num", "Throughput"], "Lumos5G")
    runs = [r["run_num"] for r in rows]
    want = str(run) if run is not None else runs[0]
    if want not in runs:
        raise EdgesimError(f"{path}: no rows with run_num {want} (runs: {', '.join(dict.fromkeys(runs))})")
    first = runs.index(want)
    last = first
    while last + 1 < len(rows) and runs[last + 1] == want:
        last += 1
    sel = range(first, last + 1)
    seq = np.array([_number(path, linenos[i], rows[i]["seq_num"], "seq_num") for i in sel])
    rate = np.array([_number(path, linenos[i], rows[i]["Throughput"], "Throughput") for i in sel])
    _check_increasing(path, [linenos[i] for i in sel], seq, "seq_num")
    return seq, rate, int(float(want))


def parse_csv(path: str | Path, time_column: str, rate_column: str, time_unit: str = "s",
              rtt_column: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(time s, rate in the file's unit, rtt ms or None) from named columns of a headed CSV."""
    path = Path(path)
    if time_unit not in TIME_UNITS_S:
        raise unknown_name("time unit", time_unit, list(TIME_UNITS_S))
    needed = [time_column, rate_column] + ([rtt_column] if rtt_column else [])
    linenos, rows = _csv_table(path, needed, "generic CSV")
    t = np.array([_number(path, n, r[time_column], time_column) for n, r in zip(linenos, rows)])
    t = t * TIME_UNITS_S[time_unit]
    rate = np.array([_number(path, n, r[rate_column], rate_column) for n, r in zip(linenos, rows)])
    rtt = (np.array([_number(path, n, r[rtt_column], rtt_column) for n, r in zip(linenos, rows)])
           if rtt_column else None)
    _check_increasing(path, linenos, t, time_column)
    return t, rate, rtt


# ---------------------------------------------------------------- convert


def opportunities_to_rate(stamps_ms: np.ndarray, bin_ms: int = DEFAULT_BIN_MS) -> tuple[np.ndarray, np.ndarray]:
    """Bin delivery opportunities: (bin start s, rate Mbit/s) with 1500 B x 8 x count / bin_ms per bin."""
    if bin_ms <= 0:
        raise EdgesimError(f"bin width must be > 0 ms, got {bin_ms}")
    counts = np.bincount(np.asarray(stamps_ms) // bin_ms)
    rates_mbps = counts * MAHIMAHI_PACKET_BYTES * 8 / (bin_ms * 1e-3) / 1e6
    return np.arange(counts.size) * bin_ms * 1e-3, rates_mbps


def intervals_to_rate(end_ms: np.ndarray, size_bytes: np.ndarray,
                      first_ms: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Bytes per interval -> (interval start s from 0, rate Mbit/s, end s); interval k ends at end_ms[k]."""
    starts_ms = np.concatenate(([end_ms[0] - first_ms], end_ms[:-1]))
    keep = end_ms > starts_ms  # a 0 ms first interval (0 bytes) only marks the start
    starts_ms, ends, size = starts_ms[keep], end_ms[keep], size_bytes[keep]
    rates_mbps = size * 8 / ((ends - starts_ms) * 1e-3) / 1e6
    return (starts_ms - starts_ms[0]) * 1e-3, rates_mbps, float(ends[-1] - starts_ms[0]) * 1e-3


def _trace(path: Path, times_s: np.ndarray, rates_mbps: np.ndarray, end_s: float, source: str, conversion: str,
           rtt_ms: np.ndarray | None = None) -> ImportedTrace:
    if times_s.size == 0 or end_s <= times_s[-1]:
        raise EdgesimError(f"{path}: trace has no interval of positive length")
    trace = ImportedTrace(times_s - times_s[0], rates_mbps, end_s - times_s[0], source, conversion, rtt_ms)
    if trace.mean_rate_mbps <= 0:
        raise EdgesimError(f"{path}: trace carries no data (every rate is 0)")
    return trace


def import_mahimahi(path: str | Path, bin_ms: int = DEFAULT_BIN_MS) -> ImportedTrace:
    """A mahimahi trace binned at bin_ms (module docstring)."""
    path = Path(path)
    stamps = parse_mahimahi(path)
    times, rates = opportunities_to_rate(stamps, bin_ms)
    conv = (f"mahimahi: {stamps.size} delivery opportunities x {MAHIMAHI_PACKET_BYTES} B binned at {bin_ms} ms "
            f"(rate = count x {MAHIMAHI_PACKET_BYTES * 8} bit / {bin_ms} ms)")
    return _trace(path, times, rates, times[-1] + bin_ms * 1e-3, f"mahimahi trace {path.name}", conv)


def import_hsdpa(path: str | Path) -> ImportedTrace:
    """A Norway HSDPA or Ghent 4G/LTE bytes-per-interval log (module docstring)."""
    path = Path(path)
    end_ms, size, first_ms, dataset = parse_hsdpa(path)
    times, rates, end_s = intervals_to_rate(end_ms, size, first_ms)
    conv = (f"{dataset}: {size.size} intervals, rate = column 5 bytes x 8 / interval, interval from the previous "
            f"row's column 2 (ms since start) to this row's; {size.sum():.0f} bytes in {end_s:g} s")
    return _trace(path, times, rates, end_s, f"{dataset} {path.name}", conv)


def import_lumos5g(path: str | Path, run: int | None = None) -> ImportedTrace:
    """One run of a Lumos5G 1.0 CSV (module docstring)."""
    path = Path(path)
    seq, rate, run_num = parse_lumos5g(path, run)
    conv = (f"Lumos5G 1.0 run_num {run_num}: {seq.size} per-second Throughput samples (Mbit/s, iPerf TCP "
            f"downlink), time = seq_num - {seq[0]:g}, each sample holds until the next, the last for 1 s")
    return _trace(path, seq, rate, seq[-1] + 1.0, f"Lumos5G 1.0 {path.name}", conv)


def import_csv(path: str | Path, time_column: str = "time_s", rate_column: str = "data_rate_mbps",
               rate_unit: str = "Mbit/s", time_unit: str = "s", rtt_column: str | None = None) -> ImportedTrace:
    """A headed CSV with named time, rate and optional rtt columns (module docstring)."""
    path = Path(path)
    if rate_unit not in RATE_UNITS_MBPS and rate_unit != "bytes":
        raise unknown_name("rate unit", rate_unit, [*RATE_UNITS_MBPS, "bytes"])
    t, rate, rtt = parse_csv(path, time_column, rate_column, time_unit, rtt_column)
    cols = f"columns {time_column} ({time_unit}), {rate_column} ({rate_unit})" + (
        f", {rtt_column} (ms)" if rtt_column else "")
    if rate_unit == "bytes":
        if t.size < 2:
            raise EdgesimError(f"{path}: bytes per interval need at least 2 rows")
        times, rates, end_s = intervals_to_rate(t[1:] * 1e3, rate[1:], (t[1] - t[0]) * 1e3)
        conv = (f"generic CSV {cols}: rate = bytes x 8 / (time since the previous row); the first row only marks "
                f"time 0 (its {rate[0]:g} bytes, counted before the trace starts, are dropped)")
        return _trace(path, times, rates, end_s, f"CSV {path.name}", conv, None if rtt is None else rtt[1:])
    end_s = t[-1] + (t[-1] - t[-2] if t.size > 1 else 1.0)
    conv = (f"generic CSV {cols}: each sample holds until the next, the last for as long as the one before it; "
            f"time - {t[0]:g} s")
    return _trace(path, t, rate * RATE_UNITS_MBPS[rate_unit], end_s, f"CSV {path.name}", conv, rtt)


IMPORTERS: dict[str, Callable[..., ImportedTrace]] = {
    "mahimahi": import_mahimahi,
    "hsdpa": import_hsdpa,
    "lumos5g": import_lumos5g,
    "csv": import_csv,
}


# ---------------------------------------------------------------- write


def trace_csv_text(trace: ImportedTrace, source: str | None = None, licence: str | None = None) -> str:
    """The edgesim trace CSV: `#` header (source, conversion, licence), rows, and the end row repeating the last
    rate (what `trace_end: hold` holds after the trace), with a final newline."""
    head = [f"# source: {' '.join((source or trace.source).split())}",
            f"# conversion: {' '.join(trace.conversion.split())}; "
            f"end row at {trace.end_s:g} s repeats the last {'' if trace.rates_mbps[-1] > 0 else 'non-zero '}rate "
            f"({trace.end_rate_mbps:.6g} Mbit/s; mean {trace.mean_rate_mbps:.6g} Mbit/s)",
            f"# licence: {' '.join((licence or DEFAULT_LICENCE).split())}"]
    times = np.append(trace.times_s, trace.end_s)
    rates = np.append(trace.rates_mbps, trace.end_rate_mbps)
    if trace.rtt_ms is None:
        body = ["time_s,data_rate_mbps"] + [f"{t:.10g},{r:.10g}" for t, r in zip(times, rates)]
    else:
        rtt = np.append(trace.rtt_ms, trace.rtt_ms[-1])
        body = ["time_s,data_rate_mbps,rtt_ms"] + [f"{t:.10g},{r:.10g},{d:.10g}" for t, r, d in zip(times, rates, rtt)]
    return "\n".join(head + body) + "\n"


def write_trace(trace: ImportedTrace, out: str | Path, source: str | None = None,
                licence: str | None = None) -> Path:
    """Write the edgesim trace CSV atomically."""
    return atomic_write_text(out, trace_csv_text(trace, source, licence))


def import_trace(fmt: str, path: str | Path, **options) -> ImportedTrace:
    """Run the importer registered as fmt; unknown formats give one line listing the known ones."""
    if fmt not in IMPORTERS:
        raise unknown_name("trace format", fmt, list(IMPORTERS))
    return IMPORTERS[fmt](path, **options)
