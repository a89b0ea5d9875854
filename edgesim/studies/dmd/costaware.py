"""A cost-aware operating point for the switcher (issue 29): the deferral fraction that minimises the simulator's
energy or delay per frame subject to an F1 floor on train, instead of 000 A.4's best-F1 bucket.

Cost per frame at a fraction f is the simulator's replay of the test split with f deferred (cost_vs_deferred.csv,
linear between its 0, 10, ..., 100 % points: with frames that never queue, cost is linear in the frames deferred).
The floor is met on the train split's switcher curve; the chosen fraction's threshold (taken on train) then
defers test frames, whose F1 and share deferred are measured, and whose cost is read off the same sweep.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from edgesim.studies.dmd.deferral import curve_fractions, default_positive, metrics_along, threshold_for_fraction
from simulator.deferral import n_deferred
from simulator.metrics import f1_score

#: cost name -> (cost_vs_deferred column, unit)
COSTS = {"energy": ("sim_energy_kj", "kJ over the test split"), "delay": ("sim_delay_mean_ms", "ms mean per frame")}


def cost_at(sweep: pd.DataFrame, fraction: float, column: str, method: str = "switcher") -> float:
    """The simulated cost at a deferral fraction: linear between the sweep's points for `method`."""
    g = sweep[sweep["method"] == method].sort_values("offload_fraction")
    return float(np.interp(fraction, g["offload_fraction"].to_numpy(float), g[column].to_numpy(float)))


def cost_aware_rows(trace: pd.DataFrame, sweep: pd.DataFrame, n_test: int, table1_fraction: float,
                    f1_floor_pct: Optional[float] = None, n_points: int = 101) -> pd.DataFrame:
    """Per cost (energy, delay): the cheapest train fraction whose train switcher F1 reaches the floor (default: the
    large model alone on train), its test F1 / % large, and the simulated cost there and at Table 1's switcher point
    (000 A.4's best-F1 bucket, deferring table1_fraction of the test frames)."""
    train = trace[trace["split"] == "train"].reset_index(drop=True)
    test = trace[trace["split"] == "test"].reset_index(drop=True)
    positive = default_positive(trace)
    fr = curve_fractions(n_points)
    ks = np.array([n_deferred(len(train), f) for f in fr])
    f1_train, _ = metrics_along(train, np.argsort(train["switcher_score"].to_numpy(), kind="stable"), ks, positive)
    floor = (100 * f1_score(train["label"].to_numpy(), train["cloud_pred"].to_numpy(), positive)
             if f1_floor_pct is None else float(f1_floor_pct))
    ok = np.flatnonzero(100 * f1_train >= floor - 1e-9)
    rows = []
    for cost, (column, unit) in COSTS.items():
        per_fraction = np.array([cost_at(sweep, f, column) for f in fr])
        if len(ok):
            best = ok[np.argmin(per_fraction[ok])]
            thr = threshold_for_fraction(train["switcher_score"].to_numpy(), fr[best])
            defer = test["switcher_score"].to_numpy() < thr
            pred = np.where(defer, test["cloud_pred"].to_numpy(), test["edge_pred"].to_numpy())
            test_f1 = 100 * f1_score(test["label"].to_numpy(), pred, positive)
            test_large = float(defer.mean()) if len(defer) else 0.0
        else:
            best, test_f1, test_large = None, float("nan"), float("nan")
        rows.append({
            "cost": cost, "f1_floor_pct": floor,
            "floor_source": "large model alone on train" if f1_floor_pct is None else "stated (--f1-floor)",
            "train_offload_fraction": float(fr[best]) if best is not None else float("nan"),
            "train_f1_pct": 100 * float(f1_train[best]) if best is not None else float("nan"),
            "test_f1_pct": test_f1, "test_large_model_pct": 100 * test_large,
            "sim_cost": cost_at(sweep, test_large, column) if best is not None else float("nan"),
            "sim_cost_table1_switcher": cost_at(sweep, table1_fraction, column), "unit": unit, "n_test": int(n_test),
        })
    return pd.DataFrame(rows)
