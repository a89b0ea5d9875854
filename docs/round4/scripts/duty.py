"""Does an idle gap before each inference slow it down? resnet18, 1 thread, pinned to CPU 0."""
import os, sys, time, statistics as st
os.sched_setaffinity(0, {int(sys.argv[1]) if len(sys.argv) > 1 else 0})
import torch, torchvision
torch.set_num_threads(1)
m = torchvision.models.resnet18().eval(); x = torch.randn(1, 3, 224, 224)
def run(gap_s, n=25):
    out = []
    with torch.inference_mode():
        for _ in range(n):
            if gap_s: time.sleep(gap_s)
            t = time.perf_counter(); m(x); out.append((time.perf_counter() - t) * 1e3)
    return out
run(0, 5)
for gap in (0, 0.4, 0, 0.05, 0.4, 0.01):
    r = run(gap)
    print(f"gap {gap*1e3:5.0f} ms: median {st.median(r):6.1f} ms  min {min(r):6.1f}  p90 {sorted(r)[int(.9*len(r))]:6.1f}", flush=True)
