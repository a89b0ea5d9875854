"""The limits edgesim holds inputs to (README "Limits"): the largest values, sweeps and traces a run takes.

Light on purpose (no numpy, no engine): the command line reads them for its help text before it imports anything."""

from __future__ import annotations

from pathlib import Path

from profilers.errors import EdgesimError

#: the largest data rate a scenario takes (1 Pbit/s: far above any link; theory checks use it as a link taking no time)
MAX_RATE_MBPS = 1e9
#: the longest time a scenario takes (delays, deadlines, trace offsets: about 11.6 days)
MAX_TIME_S = 1e6
#: the highest frame rate a scenario takes
MAX_FRAME_RATE_FPS = 1e6
#: the largest factor a trace is scaled by
MAX_TRACE_SCALE = 1e6
#: the most sweep points (grid x cases) a scenario may expand to
MAX_SWEEP_POINTS = 100_000
#: above this many runs (sweep points x policies x replications) `edgesim run` and `validate` ask for --yes
CONFIRM_RUNS = 10_000
#: the most rows a trace (link, capture or dataset) may hold: 11.6 days of a 1 s trace
MAX_TRACE_ROWS = 1_000_000
#: the largest trace file read, in bytes (checked before reading)
MAX_TRACE_BYTES = 100_000_000


def check_trace_size(path: Path) -> None:
    """A trace file over MAX_TRACE_BYTES is refused before it is read (a missing one is the reader's to report)."""
    try:
        size = Path(path).stat().st_size
    except OSError:
        return
    if size > MAX_TRACE_BYTES:
        raise EdgesimError(f"{path}: {size:,} bytes; a trace is at most {MAX_TRACE_BYTES:,} bytes and "
                           f"{MAX_TRACE_ROWS:,} rows")


def check_trace_rows(path: Path, rows: int, what: str = "trace") -> None:
    """One line when a trace holds more than MAX_TRACE_ROWS rows."""
    if rows > MAX_TRACE_ROWS:
        raise EdgesimError(f"{path}: more than {MAX_TRACE_ROWS:,} rows; a {what} holds at most {MAX_TRACE_ROWS:,} "
                           "(resample it, e.g. to 1 s steps)")
