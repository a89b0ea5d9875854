"""Is this host quiet enough to measure on? Load, other processes' CPU, steal, frequency scaling, pinning.

A profile's latencies are only as good as the host was quiet: these functions observe the host over a window
(system CPU time from psutil minus this process's own) and say, with numbers, when it was too busy for the
cores the measurement needs.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

from profilers.errors import EdgesimError
from profilers.schema import HostState

#: other processes may use this much of the cores a measurement needs before the host counts as busy
BUSY_INTRUSION_CORES = 0.25
#: steal above this share of CPU time (a virtual machine's neighbours) counts as busy
BUSY_STEAL_PERCENT = 5.0
SCALING_GOVERNORS = ("performance",)


@dataclass(frozen=True)
class _Counters:
    """System-wide and own CPU seconds at one instant."""

    wall_s: float
    busy_s: float
    steal_s: Optional[float]
    total_s: float
    own_s: float


def _counters() -> _Counters:
    import psutil

    cpu = psutil.cpu_times()
    idle = cpu.idle + getattr(cpu, "iowait", 0.0)
    steal = getattr(cpu, "steal", None)
    total = sum(cpu)
    # guest time is already counted in user time on Linux
    total -= getattr(cpu, "guest", 0.0) + getattr(cpu, "guest_nice", 0.0)
    busy = total - idle - (steal or 0.0)
    own = psutil.Process().cpu_times()
    return _Counters(time.perf_counter(), busy, steal, total, own.user + own.system)


def _affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _governor(cpu: int) -> Optional[str]:
    try:
        with open(f"/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor", encoding="ascii") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def _state(start: _Counters, end: _Counters) -> HostState:
    """The host between two counter readings."""
    import psutil

    window = max(end.wall_s - start.wall_s, 1e-9)
    other = max(0.0, (end.busy_s - start.busy_s) - (end.own_s - start.own_s)) / window
    steal = None
    if start.steal_s is not None and end.steal_s is not None and end.total_s > start.total_s:
        steal = 100.0 * (end.steal_s - start.steal_s) / (end.total_s - start.total_s)
    affinity = _affinity()
    freq = None
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, FileNotFoundError):
        freq = None
    try:
        load1 = os.getloadavg()[0]
    except (AttributeError, OSError):
        load1 = None
    return HostState(
        window_s=round(window, 3), logical_cpus=int(psutil.cpu_count(logical=True) or 1), affinity=affinity,
        load_avg_1min=None if load1 is None else round(load1, 2), other_cpu_cores=round(other, 3),
        steal_percent=None if steal is None else round(max(steal, 0.0), 2),
        governor=_governor(affinity[0] if affinity else 0),
        freq_mhz=round(freq.current, 1) if freq and freq.current else None,
        freq_max_mhz=round(freq.max, 1) if freq and freq.max else None)


def observe(window_s: float) -> HostState:
    """The host over the next window_s seconds (this process idle meanwhile)."""
    start = _counters()
    time.sleep(max(window_s, 0.0))
    return _state(start, _counters())


class Watch:
    """The host while something runs: start() before it, stop() after; other processes' CPU in between."""

    def __init__(self) -> None:
        self._start: Optional[_Counters] = None

    def start(self) -> None:
        self._start = _counters()

    def stop(self) -> HostState:
        assert self._start is not None, "Watch.stop before start"
        return _state(self._start, _counters())


def busy_reasons(state: HostState, threads: int) -> list[str]:
    """Why the host is too busy to measure `threads` threads on it, with the numbers; empty when it is not.

    Other processes may use the cores the measurement does not need, plus BUSY_INTRUSION_CORES of those it does."""
    cpus = len(state.affinity) or state.logical_cpus
    spare = max(state.logical_cpus - min(threads, cpus), 0)
    reasons = []
    if state.other_cpu_cores is not None and state.other_cpu_cores > spare + BUSY_INTRUSION_CORES:
        reasons.append(f"other processes used {state.other_cpu_cores:.2f} of {state.logical_cpus} CPUs over "
                       f"{state.window_s:.1f} s while {threads} thread(s) were needed (at most "
                       f"{spare + BUSY_INTRUSION_CORES:.2f} allowed); 1-minute load average "
                       f"{state.load_avg_1min if state.load_avg_1min is not None else 'unknown'}")
    if state.steal_percent is not None and state.steal_percent > BUSY_STEAL_PERCENT:
        reasons.append(f"steal time {state.steal_percent:.1f}% of CPU time (the hypervisor ran other guests; "
                       f"at most {BUSY_STEAL_PERCENT:g}% allowed)")
    return reasons


def scaling_note(state: HostState) -> Optional[str]:
    """A note when frequency scaling may move the clock during a measurement (governor not 'performance')."""
    if state.governor is None or state.governor in SCALING_GOVERNORS:
        return None
    freq = (f" (now {state.freq_mhz:.0f} of {state.freq_max_mhz:.0f} MHz)"
            if state.freq_mhz and state.freq_max_mhz else "")
    return (f"CPU frequency governor '{state.governor}'{freq}: the clock may change during the measurement; "
            "'performance' holds it")


def parse_cores(text: Optional[str]) -> Optional[tuple[int, ...]]:
    """'0,1' or '0-3' -> CPU indices (sorted, unique); one line on anything else."""
    if text is None:
        return None
    cores: set[int] = set()
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            lo, sep, hi = part.partition("-")
            cores.update(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    except ValueError:
        cores = set()
    if not cores or min(cores) < 0:
        raise EdgesimError(f"--cores '{text}': expected CPU indices such as 0,1 or 0-3")
    return tuple(sorted(cores))


@contextmanager
def pinned(cores: Optional[Sequence[int]]) -> Iterator[list[int]]:
    """This process's threads restricted to `cores` inside the block (Linux sched_setaffinity), then restored."""
    before = _affinity()
    if not cores:
        yield before
        return
    allowed = set(before)
    missing = sorted(set(cores) - allowed)
    if missing:
        raise EdgesimError(f"--cores: CPU(s) {', '.join(map(str, missing))} not available to this process; "
                           f"available: {', '.join(map(str, sorted(allowed)))}")
    if not hasattr(os, "sched_setaffinity"):
        raise EdgesimError("--cores: pinning needs sched_setaffinity (Linux); leave --cores out here")
    _set_all_threads(set(cores))
    try:
        yield sorted(cores)
    finally:
        _set_all_threads(set(before))


def _set_all_threads(cores: set[int]) -> None:
    """Affinity of every thread of this process (a thread pool started earlier keeps its own otherwise)."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cores)
        except OSError:  # a thread that ended meanwhile
            pass
