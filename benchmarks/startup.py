"""Start-up of the command line: wall time and peak memory of `edgesim -h`, `--version`, `list policies` and
`validate` of a shipped scenario, and which heavy libraries each imported.

`python -m benchmarks.startup` prints one JSON object. Each command runs in a fresh child process (best of three
wall and CPU times, measured here with time.perf_counter and getrusage around the process: on a shared machine the
CPU time is the steadier figure; peak = the child's VmHWM, as benchmarks.memory reads it), so the figures include
the interpreter's own start-up.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.memory import _CLI, _PEAK, ROOT

HEAVY = ("torch", "transformers", "numba", "plotly", "scipy", "pandas", "pyarrow", "simpy")
"""Libraries whose import the start-up budget cannot afford (1 s and 200 MB for the commands below)."""

_LOADED = """
import atexit
import sys
def _loaded():
    print("loaded:" + ",".join(m for m in %r if m in sys.modules), file=sys.stderr)
atexit.register(_loaded)
""" % (HEAVY,)

COMMANDS = {"edgesim -h": ["-h"], "edgesim --version": ["--version"], "edgesim list policies": ["list", "policies"],
            "edgesim validate scenarios/matsubara2019_fig3.yaml": ["validate", "scenarios/matsubara2019_fig3.yaml"]}


def measure(args: list[str], repeats: int = 3) -> dict:
    """Best wall time of `edgesim ARGS` in a fresh process, its peak memory and the heavy libraries it imported."""
    best, best_cpu, peak_kb, loaded = float("inf"), float("inf"), 0, []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", _LOADED + _PEAK + _CLI] + args, cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        best = min(best, time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best_cpu = min(best_cpu, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if res.returncode != 0:
            raise RuntimeError(f"edgesim {' '.join(args)} failed: {res.stderr.strip().splitlines()[-1:]}")
        lines = res.stderr.strip().splitlines()
        peak_kb = max(peak_kb, int(next(ln for ln in lines if ln.isdigit())))  # VmHWM in kB
        loaded = next(ln for ln in lines if ln.startswith("loaded:"))[len("loaded:"):].split(",")
    return {"seconds": best, "cpu_s": best_cpu, "peak_rss_mb": peak_kb / 1024, "heavy_imports": [m for m in loaded if m]}


def report() -> dict:
    """measure() for each of COMMANDS."""
    return {label: measure(args) for label, args in COMMANDS.items()}


def main() -> int:
    print(json.dumps(report(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
