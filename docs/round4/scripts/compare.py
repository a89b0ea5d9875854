"""Two-profile agreement: |median2/median1 - 1| for every split point's head and tail."""
import json, sys, statistics
a, b = sys.argv[1], sys.argv[2]
print("| model | parts compared | max abs diff | median abs diff | within 5 % | whole model set1 / set2 ms |")
print("|---|---:|---:|---:|---:|---:|")
for m in ["resnet18", "densenet201", "mobilenet_v3_large"]:
    p1 = json.load(open(f"{a}/{m}.json")); p2 = json.load(open(f"{b}/{m}.json"))
    m1 = next(iter(p1["models"].values())); m2 = next(iter(p2["models"].values()))
    diffs = []
    rows = []
    for s1, s2 in zip(m1["split_points"], m2["split_points"]):
        assert s1["name"] == s2["name"]
        for part in ("head_latency", "tail_latency"):
            x, y = s1.get(part), s2.get(part)
            if not x or not y or x["median_s"] < 1e-4:
                continue
            d = y["median_s"] / x["median_s"] - 1
            diffs.append(abs(d)); rows.append((s1["name"], part, x["median_s"], y["median_s"], d))
    whole = [s for s in m1["split_points"] if s["layer_index"] == 0]
    w1 = m1["split_points"][0]["tail_latency"]["median_s"] * 1e3; w2 = m2["split_points"][0]["tail_latency"]["median_s"] * 1e3
    print(f"| {m} | {len(diffs)} | {100*max(diffs):.1f} % | {100*statistics.median(diffs):.1f} % | "
          f"{sum(d <= 0.05 for d in diffs)}/{len(diffs)} | {w1:.1f} / {w2:.1f} |")
    if "-v" in sys.argv:
        for r in rows:
            print(f"    {r[0]:<24} {r[1]:<13} {1e3*r[2]:9.2f} {1e3*r[3]:9.2f} {100*r[4]:+6.1f} %")
