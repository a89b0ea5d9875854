"""The one reader of small CSV tables (link traces, imported network logs, capture-time traces): rows with the file
line they came from, so every problem is one `FILE:LINE: what` line; `#` comment and blank lines are skipped."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from profilers.errors import EdgesimError
from profilers.io import read_text
from simulator.limits import check_trace_rows, check_trace_size


def table_lines(path: Path, what: str = "trace") -> list[tuple[int, str]]:
    """(line number, stripped text) of every line that is neither blank nor a `#` comment; one line if unreadable."""
    check_trace_size(path)
    numbered = [(n, line.strip()) for n, line in enumerate(read_text(path, what).splitlines(), start=1)]
    kept = [(n, line) for n, line in numbered if line and not line.startswith("#")]
    check_trace_rows(path, len(kept) - 1, what)
    return kept


@dataclass(frozen=True)
class CsvTable:
    """A headed CSV: its fields, and each row as a dict with its file line."""

    path: Path
    header_line: int
    fields: list[str]
    linenos: list[int]
    rows: list[dict[str, str]]

    def numbers(self, column: str, what: str | None = None) -> np.ndarray:
        """A column as floats; `FILE:LINE: what must be a number` at the first cell that is not one."""
        out = np.empty(len(self.rows))
        for k, (n, row) in enumerate(zip(self.linenos, self.rows)):
            try:
                out[k] = float(row[column])
            except (TypeError, ValueError):
                raise EdgesimError(f"{self.path}:{n}: {what or column} must be a number, found "
                                   f"'{row[column]}'") from None
        return out


def read_csv_table(path: str | Path, required: list[str], missing: str, empty: str, no_rows: str,
                   what: str = "trace") -> CsvTable:
    """The rows of a headed CSV whose header holds `required`; one line at the first problem.

    missing: the message for absent columns ('{missing}' is replaced by their names; the fields found follow);
    empty: for a file with no header; no_rows: for a header without rows."""
    path = Path(path)
    lines = table_lines(path, what)
    if not lines:
        raise EdgesimError(f"{path}:1: {empty}")
    head_no, head = lines[0]
    try:
        fields = [f.strip() for f in next(csv.reader([head]))]
        absent = [c for c in required if c not in fields]
        if absent:
            raise EdgesimError(f"{path}:{head_no}: {missing.format(missing=', '.join(absent))} "
                               f"(found: {', '.join(fields) or 'none'})")
        rows, linenos = [], []
        for n, line in lines[1:]:
            cells = next(csv.reader([line]))
            if len(cells) != len(fields):
                raise EdgesimError(f"{path}:{n}: {len(cells)} fields where the header has {len(fields)}")
            rows.append(dict(zip(fields, cells)))
            linenos.append(n)
    except csv.Error as exc:
        raise EdgesimError(f"{path}: cannot read {what}: {exc}") from None
    if not rows:
        raise EdgesimError(f"{path}:{head_no}: {no_rows}")
    return CsvTable(path, head_no, fields, linenos, rows)
