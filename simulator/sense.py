"""Sense checks: values that are legal but implausible (most likely a unit slip) and stations that never settle,
as warnings that name the likely slip; never errors, since a what-if study may mean them.

The bounds are stated, not measured: rates above 100 Gbit/s (beyond any single radio or WAN link a camera
reaches today) or below 1 kbit/s, one-way delays above 1 s (a geostationary hop is about 0.27 s), more than 1e9
frames in one run, a link trace whose mean rate is above 10 Gbit/s or that lasts more than a day.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from profilers.errors import EdgesimWarning, field_message
from simulator.link import load_rate_trace

if TYPE_CHECKING:  # pandas where a summary is read, not when a scenario is checked (validate)
    import pandas as pd

RATE_MAX_MBPS = 1e5
"""100 Gbit/s: above it a data rate is most likely in bit/s or kbit/s written as Mbit/s."""
RATE_MIN_MBPS = 1e-3
"""1 kbit/s: below it a data rate is most likely in Gbit/s, or a slip of the decimal point."""
DELAY_MAX_S = 1.0
"""One-way delay above 1 s: most likely milliseconds written as seconds."""
FRAMES_MAX = 1e9
"""Frames in one run (per mobile x mobiles x sweep points x policies x replications) above which it runs for hours."""
TRACE_MEAN_MAX_MBPS = 1e4
"""10 Gbit/s: a trace whose mean rate is above it most likely has kbit/s or bit/s read as Mbit/s."""
TRACE_DURATION_MAX_S = 86_400.0
"""A day: a trace longer than it most likely has milliseconds read as seconds."""
#: the one-way delays a scenario names, by field name
DELAY_FIELDS = ("propagation_delay_s", "mean_s")


class ImplausibleValue(EdgesimWarning):
    """A legal value outside the plausible range (a likely unit slip); the command line prints it as a warning."""


class RunWarning(EdgesimWarning):
    """What the command line prints as `edgesim: warning:` or `note:` about a run, raised as such by the Python API."""


def _mbps_words(mbps: float) -> str:
    """A rate in the largest unit that keeps it at or above 1 (kbit/s, Mbit/s, Gbit/s, Tbit/s, Pbit/s)."""
    for unit, scale in (("Pbit/s", 1e9), ("Tbit/s", 1e6), ("Gbit/s", 1e3), ("Mbit/s", 1.0), ("kbit/s", 1e-3)):
        if abs(mbps) >= scale:
            return f"{mbps / scale:.4g} {unit}"
    return f"{mbps * 1e6:.4g} bit/s"


def rate_slip(value_mbps: float) -> Optional[str]:
    """Why a rate in Mbit/s looks wrong and what it would be in the units it was probably written in; None if fine."""
    if not math.isfinite(value_mbps) or value_mbps <= 0:
        return None
    if value_mbps > RATE_MAX_MBPS:
        meant = "; ".join(f"if it is in {unit}, write {value_mbps * scale:.10g}" for unit, scale in
                          (("kbit/s", 1e-3), ("bit/s", 1e-6)) if RATE_MIN_MBPS <= value_mbps * scale <= RATE_MAX_MBPS)
        return (f"{value_mbps:.10g} Mbit/s ({_mbps_words(value_mbps)}) is above 100 Gbit/s"
                + (f"; {meant}" if meant else ""))
    if value_mbps < RATE_MIN_MBPS:
        return (f"{value_mbps:g} Mbit/s ({_mbps_words(value_mbps)}) is below 1 kbit/s; the field is in Mbit/s "
                f"(1 kbit/s is 0.001)")
    return None


def delay_slip(value_s: float) -> Optional[str]:
    """Why a one-way delay in seconds looks wrong and what it would be in ms (or us); None if fine."""
    if not math.isfinite(value_s) or value_s <= DELAY_MAX_S:
        return None
    unit, scale = ("ms", 1e-3) if value_s * 1e-3 <= DELAY_MAX_S else ("us", 1e-6)
    return f"{value_s:.10g} s one way is above 1 s; {value_s:.10g} {unit} is {value_s * scale:.10g}"


def field_slip(field: str, value: Any) -> Optional[str]:
    """The sense check of one scenario field by its name (rates in Mbit/s, one-way delays in s); None if fine."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if field.endswith("data_rate_mbps"):
        return rate_slip(float(value))
    if field in DELAY_FIELDS:
        return delay_slip(float(value))
    return None


def mbps_text(mbps: float) -> str:
    """A rate in Mbit/s as people read it: whole numbers from 1,000 up (11,958), else 4 significant digits."""
    return f"{mbps:,.0f}" if abs(mbps) >= 1000 else f"{mbps:.4g}"


def duration_words(seconds: float) -> str:
    """A duration in s, min, h or days, whichever reads best."""
    for unit, scale in (("days", 86_400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= 2 * scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.4g} s"


def trace_slips(mean_mbps: float, duration_s: float, peak_mbps: float = 0.0) -> list[str]:
    """Why a link trace's converted rates or times look wrong: its mean (or its highest rate) above 10 Gbit/s, or
    longer than a day."""
    out = []
    top = mean_mbps if mean_mbps > TRACE_MEAN_MAX_MBPS else peak_mbps
    if top > TRACE_MEAN_MAX_MBPS:
        what = "mean rate" if mean_mbps > TRACE_MEAN_MAX_MBPS else "highest rate"
        out.append(f"{what} {mbps_text(top)} Mbit/s ({_mbps_words(top)}) is above 10 Gbit/s: kbit/s read as Mbit/s? (in "
                   f"kbit/s the mean is {mbps_text(mean_mbps * 1e-3)} Mbit/s)")
    if duration_s > TRACE_DURATION_MAX_S:
        out.append(f"it lasts {duration_s:.6g} s ({duration_words(duration_s)}), more than a day: milliseconds read "
                   f"as seconds? (in ms it lasts {duration_words(duration_s * 1e-3)})")
    return out


def _leaves(data: Any, loc: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every (location, scalar) of plain data (dicts and lists), depth first."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaves(value, (*loc, key))
    elif isinstance(data, list):
        for k, value in enumerate(data):
            yield from _leaves(value, (*loc, k))
    else:
        yield loc, data


def _sweep_values(sweep: dict, points: list[dict[str, Any]]) -> Iterator[tuple[tuple, str, Any]]:
    """(YAML location, dotted field, value) of every distinct value the sweep's points give a field."""
    seen = set()
    for point in points:
        for path, value in point.items():
            if (path, repr(value)) in seen:
                continue
            seen.add((path, repr(value)))
            loc = ("sweep", "grid", path) if path in (sweep.get("grid") or {}) else ("sweep", "cases")
            yield loc, path, value


def _trace_fields(data: dict) -> Iterator[tuple[tuple, dict]]:
    """(location, link) of every link that may follow a rate trace."""
    yield ("link",), data["link"]
    for k, g in enumerate(data["mobiles"]):
        if g.get("link"):
            yield ("mobiles", k, "link"), g["link"]
    for k, e in enumerate(data.get("edges") or []):
        if e.get("link"):
            yield ("edges", k, "link"), e["link"]
    if data.get("cloud"):
        yield ("cloud", "wan"), data["cloud"]["wan"]


def implausible_values(scenario, points: list[dict[str, Any]]) -> list[tuple[tuple, str]]:
    """(field location, what looks wrong) for each implausible value of a scenario, its sweep points (the
    overrides simulator.scenario.sweep_points gives) and its traces."""
    data = scenario.model_dump(mode="json")
    out: list[tuple[tuple, str]] = []
    for loc, value in _leaves({k: v for k, v in data.items() if k != "sweep"}):
        msg = field_slip(str(loc[-1]), value) if loc else None
        if msg:
            out.append((loc, msg))
    for loc, path, value in _sweep_values(data["sweep"], points):
        msg = field_slip(path.split(".")[-1], value)
        if msg and (loc, msg) not in out:
            out.append((loc, f"{path} = {msg}"))
    for loc, link in _trace_fields(data):
        if link.get("trace") and Path(link["trace"]).is_file():
            trace = load_rate_trace(link["trace"], link.get("trace_scale", 1.0))
            mean = float(trace.bits_until(trace.end_s) / trace.end_s / 1e6) if trace.end_s > 0 else 0.0
            peak = float(trace.rates_bps.max() / 1e6)
            out += [((*loc, "trace"), f"{link['trace']}: {m}") for m in trace_slips(mean, trace.end_s, peak)]
    n_mobiles = sum(g["count"] for g in data["mobiles"])
    total = data["workload"]["frames"] * n_mobiles * len(points) * len(data["policies"]) * data[
        "replications"]
    if total > FRAMES_MAX:
        out.append((("workload", "frames"), f"{total:.3g} frames in the run ({data['workload']['frames']:g} per mobile "
                                            f"device x {n_mobiles} devices x sweep points x policies x replications) "
                                            "is above 1e9: hours of simulation and a frames.parquet of tens of GB"))
    return out


def warn(messages: list[str], category: type[Warning] = ImplausibleValue) -> None:
    """Each message as a warning of `category` (the command line prints them as `edgesim: warning: ...`)."""
    for msg in messages:
        warnings.warn(msg, category, stacklevel=3)


def check_scenario(scenario, points: list[dict[str, Any]], source: str = "<scenario>", line_of=None) -> list[str]:
    """Warn (ImplausibleValue) about each implausible value as `FILE:LINE: field 'a.b': what`; returns the lines.

    points: the sweep's overrides; line_of(loc) gives a field's YAML line where the scenario came from a file."""
    lines = []
    for loc, msg in implausible_values(scenario, points):
        line = line_of(loc) if line_of is not None else None
        lines.append(field_message(f"{source}:{line}" if line else source, loc, msg))
    warn(lines)
    return lines


def check_overrides(scenario, paths, source: str = "--set") -> list[str]:
    """Warn (ImplausibleValue) about implausible values the scenario got at the --set paths (read back after
    validation: '1e7' is a number only then); returns the lines."""
    data, lines = scenario.model_dump(mode="json"), []
    for path in paths:
        node = data
        for part in path.split("."):
            node = node[int(part)] if isinstance(node, list) and part.isdigit() else (
                node.get(part) if isinstance(node, dict) else None)
        msg = field_slip(path.split(".")[-1], node)
        if msg:
            lines.append(field_message(source, tuple(path.split(".")), msg))
    warn(lines)
    return lines


def random_parts(scenario) -> list[str]:
    """What a scenario draws at random (so replications differ); empty when every replication would be the same."""
    w, link = scenario.workload, scenario.link
    parts = [("Poisson captures", w.source == "poisson"), ("sampled service times", w.service_time == "sampled"),
             ("packet loss", link.loss_probability > 0 or (scenario.cloud is not None
                                                           and scenario.cloud.wan.loss_probability > 0)),
             ("a delay distribution", link.delay is not None and link.delay.distribution is not None),
             ("device uncertainty", scenario.uncertainty == "device")]
    return [name for name, on in parts if on]


def replication_note(scenario) -> Optional[str]:
    """Why a run has one replication, or what it misses by it (intervals over replications); None with several."""
    if scenario.replications > 1:
        return None
    drawn = random_parts(scenario)
    if not drawn:
        return ("one replication: nothing in this scenario is drawn at random (periodic captures, median service "
                "times, no loss, no delay distribution), so further replications would repeat it exactly and "
                "intervals over replications would be 0")
    drawn_text = ", ".join(drawn[:-1]) + " and " + drawn[-1] if len(drawn) > 1 else drawn[0]
    return (f"one replication of a scenario that draws {drawn_text} at random: no 95 % intervals; "
            "`replications: 5` (or --set replications=5) gives them")


def run_messages(scenario, summary: pd.DataFrame, device_notes: list[str]) -> tuple[list[str], list[str]]:
    """(notes, warnings) `edgesim run` prints about a run besides the engine's notes: derived devices
    (simulator.devices.fidelity_notes) and the replications; each overloaded (point, policy). The Python API
    raises both as RunWarning."""
    note = replication_note(scenario)
    return [*device_notes, *([note] if note else [])], unstable_warnings(summary)


# ----------------------------------------------------------------------------- stations that never settle

CONSEQUENCE = "its queue grows with the run length; delays depend on the number of frames"


def _unstable(value) -> bool:
    """True for a `stable` cell that says False (a bool, or 'False'/'0' as read back from CSV)."""
    if isinstance(value, str):
        return value.strip().lower() in ("false", "0", "no")
    import pandas as pd  # loaded already: the cell comes from a summary table

    return value is not None and not pd.isna(value) and not bool(value)


def station_columns(summary: pd.DataFrame) -> dict[str, str]:
    """Station name -> its offered-load column, for every utilisation_<station> column of a summary."""
    return {col.removeprefix("utilisation_"): col for col in summary.columns if col.startswith("utilisation_")}


def unstable_warnings(summary: pd.DataFrame) -> list[str]:
    """One line per (point, policy) with a station at or above offered load 1, naming every such station.

    Offered load = arrival rate x mean service demand, per server: at or above 1 there is no steady state. Results
    written before summary.csv had the `stable` column give no warnings; rows of one edge server (scope 'edge')
    are covered by the row of all of them.
    """
    import pandas as pd

    if "stable" not in summary.columns:
        return []
    if "scope" in summary.columns:
        summary = summary[summary["scope"].astype(str) != "edge"]
    stations = station_columns(summary)
    lines = []
    keys = [k for k in ("point", "policy") if k in summary.columns]
    groups = summary.groupby(keys, sort=False) if keys else [((), summary)]
    for key, group in groups:
        loads = {s: float(pd.to_numeric(group[col], errors="coerce").max()) for s, col in stations.items()}
        over = {s: v for s, v in loads.items() if v >= 1}
        if not over and not any(_unstable(v) for v in group["stable"]):
            continue
        key = key if isinstance(key, tuple) else (key,)
        where = dict(zip(keys, key))
        if len(over) == 1:
            (station, load), = over.items()
            what = f"station '{station}' offered load {load:.3g} >= 1"
        elif over:
            what = "stations " + ", ".join(f"'{s}' offered load {v:.3g}" for s, v in over.items()) + " >= 1"
        else:
            what = "a station's offered load >= 1"
        at = "".join([f" at point {where['point']}" if "point" in where else "",
                      f" for policy {where['policy']}" if "policy" in where else ""])
        lines.append(f"{what}{at}: {CONSEQUENCE}")
    return lines
