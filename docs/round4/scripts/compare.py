"""Two-profile agreement: |median2/median1 - 1| for every split point's head and tail; where both profiles timed the
host reference (measurement_check.host_reference), also with the host's speed taken out (ratio / reference ratio)."""
import json, sys, statistics
a, b = sys.argv[1], sys.argv[2]
print("| model | parts compared | max abs diff | median abs diff | within 5 % | whole model set1 / set2 ms "
      "| host reference set1 / set2 ms | with the host's speed taken out: max / median abs diff, within 5 % |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for m in ["resnet18", "densenet201", "mobilenet_v3_large"]:
    p1 = json.load(open(f"{a}/{m}.json")); p2 = json.load(open(f"{b}/{m}.json"))
    m1 = next(iter(p1["models"].values())); m2 = next(iter(p2["models"].values()))
    r1 = (m1.get("measurement_check") or {}).get("host_reference"); r2 = (m2.get("measurement_check") or {}).get("host_reference")
    ref = r2["median_s"] / r1["median_s"] if r1 and r2 else None
    diffs, norm, rows = [], [], []
    for s1, s2 in zip(m1["split_points"], m2["split_points"]):
        assert s1["name"] == s2["name"]
        for part in ("head_latency", "tail_latency"):
            x, y = s1.get(part), s2.get(part)
            if not x or not y or x["median_s"] < 1e-4:
                continue
            d = y["median_s"] / x["median_s"] - 1
            diffs.append(abs(d)); rows.append((s1["name"], part, x["median_s"], y["median_s"], d))
            if ref:
                norm.append(abs((1 + d) / ref - 1))
    w1 = m1["split_points"][0]["tail_latency"]["median_s"] * 1e3; w2 = m2["split_points"][0]["tail_latency"]["median_s"] * 1e3
    refs = f"{1e3 * r1['median_s']:.2f} / {1e3 * r2['median_s']:.2f}" if ref else "-"
    normed = (f"{100 * max(norm):.1f} % / {100 * statistics.median(norm):.1f} %, {sum(d <= 0.05 for d in norm)}/{len(norm)}"
              if ref else "-")
    print(f"| {m} | {len(diffs)} | {100*max(diffs):.1f} % | {100*statistics.median(diffs):.1f} % | "
          f"{sum(d <= 0.05 for d in diffs)}/{len(diffs)} | {w1:.1f} / {w2:.1f} | {refs} | {normed} |")
    if "-v" in sys.argv:
        for r in rows:
            print(f"    {r[0]:<24} {r[1]:<13} {1e3*r[2]:9.2f} {1e3*r[3]:9.2f} {100*r[4]:+6.1f} %")
