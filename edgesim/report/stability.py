"""Overloaded stations in a summary: one warning per (point, policy) whose offered load reaches 1 at some station.

A station with offered load (arrival rate x mean service demand, per server) at or above 1 has no steady state:
its queue grows with the run length, so mean delays (and gains built from them) depend on the number of frames.
summary.csv carries `utilisation_<station>` columns and a `stable` flag; results written before them have none,
and then there is nothing to warn about.
"""

from __future__ import annotations

import pandas as pd

#: summary.csv columns with each station's offered load, by the station's name in the warning
STATIONS = {"mobile": "utilisation_mobile", "uplink": "utilisation_uplink", "server": "utilisation_server"}
CONSEQUENCE = "its queue grows with the run length; delays depend on the number of frames"


def _unstable(value) -> bool:
    """True for a `stable` cell that says False (a bool, or 'False'/'0' as read back from CSV)."""
    if isinstance(value, str):
        return value.strip().lower() in ("false", "0", "no")
    return value is not None and not pd.isna(value) and not bool(value)


def unstable_warnings(summary: pd.DataFrame) -> list[str]:
    """One line per unstable (point, policy): the stations at or above offered load 1, and what that means."""
    if "stable" not in summary.columns:
        return []
    lines = []
    keys = [k for k in ("point", "policy") if k in summary.columns]
    groups = summary.groupby(keys, sort=False) if keys else [((), summary)]
    for key, group in groups:
        if not any(_unstable(v) for v in group["stable"]):
            continue
        key = key if isinstance(key, tuple) else (key,)
        where = dict(zip(keys, key))
        loads = {station: float(pd.to_numeric(group[col], errors="coerce").max())
                 for station, col in STATIONS.items() if col in group.columns}
        over = {s: v for s, v in loads.items() if v >= 1}
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
