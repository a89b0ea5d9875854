"""Re-simulate a `make testbed` results folder's session-profile prediction with `service_time: sampled` (draws from
the session profile's idle-gap samples) instead of the scenario's median, at the same capture times, and compare
mean and p95 of the capture-to-output delay with the real run. Usage: resim_sampled.py RESULTS_DIR [FRAMES]."""
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from edgesim.testbed.bench import MULTI_SCENARIO, SCENARIO, bench_points, multi_points
from edgesim.testbed.runner import simulate_frames, simulation_scenario
from simulator.scenario import load_scenario

res = Path(sys.argv[1]); frames = int(sys.argv[2]) if len(sys.argv) > 2 else 100
real = pd.read_csv(res / "frames.csv")
sessions = {"testbed_resnet18": (bench_points(load_scenario(SCENARIO), frames), res / "profiles", True),
            "testbed_multi": (multi_points(load_scenario(MULTI_SCENARIO), 50), res / "multi" / "profiles", False)}
rows = []
tmp = Path(tempfile.mkdtemp())
for (scn, point, policy), g in real.groupby(["scenario", "point", "policy"], sort=False):
    points, prof, one = sessions[scn]
    sc = points[point]
    j = [p.display for p in sc.policies].index(policy)
    warm = sc.workload.warmup_frames
    csv = None
    if one:
        csv = tmp / f"{scn}_{point}_{policy}.csv"
        pd.DataFrame({"capture_time_s": g.sort_values("frame")["capture_s"].to_numpy()}).to_csv(csv, index=False)
    cloud = prof / "testbed-cloud.json" if (prof / "testbed-cloud.json").exists() else None
    out = {}
    for mode in ("median", "sampled"):
        sim = simulate_frames(simulation_scenario(sc, j, prof / "testbed-mobile.json", prof / "testbed-edge.json", csv,
                                                  mode, False, cloud))
        sim = sim[sim["frame"] % (len(sim) // max(1, g["mobile"].nunique())) >= warm] if not one else sim.iloc[warm:]
        d = sim["delay_s"].to_numpy(dtype=float)
        out[mode] = (d.mean(), np.percentile(d, 95))
    r = g.sort_values("frame")
    r = r[r.groupby("mobile").cumcount() >= warm]["delay_s"].to_numpy(dtype=float)
    rm, rp = r.mean(), np.percentile(r, 95)
    rows.append((scn, sc.link.data_rate_mbps, policy, 1e3 * rm, 1e3 * rp,
                 *(x for mode in ("median", "sampled") for x in (100 * (out[mode][0] / rm - 1), 100 * (out[mode][1] / rp - 1)))))
print("| scenario | Mbit/s | policy | real mean ms | real p95 ms | median: err mean | median: err p95 | sampled: err mean | sampled: err p95 | sampled meets 5 % / 10 % |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|:---:|")
met = 0
for s, rate, pol, rm, rp, mm, mp, sm, sp in rows:
    ok = abs(sm) <= 5 and abs(sp) <= 10
    met += ok
    print(f"| {s} | {rate:g} | {pol} | {rm:.1f} | {rp:.1f} | {mm:+.1f}% | {mp:+.1f}% | {sm:+.1f}% | {sp:+.1f}% | {'yes' if ok else 'no'} |")
print(f"\n{met} of {len(rows)} configurations meet both goals with sampled service times.")
