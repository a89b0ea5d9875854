"""A link rate trace replayed on the testbed's link: the uplink's rate in its es_delay helpers changed at the
trace's times, by a thread on the run's monotonic clock, with the time each change took effect recorded.

A change is one line to each helper and takes effect about when it has been written: each change is started early by
the median time the changes before it took, so that it lands on time.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from profilers.errors import EdgesimError
from simulator.link import RateTrace


@dataclass(frozen=True)
class RateChange:
    """From at_s seconds after the run's start (trace time) the uplink carries rate_bps."""

    at_s: float
    rate_bps: float


def rate_changes(trace: RateTrace) -> Iterator[RateChange]:
    """The trace's rate changes after time 0, in order (a repeating trace without end; a held one stops at its last
    step). Steps that keep the rate are left out: nothing to change."""
    current = float(trace.rates_bps[0])
    base = 0.0
    while True:
        for t, rate in zip(trace.times_s, trace.rates_bps):
            if (base > 0.0 or t > 0.0) and rate != current:
                current = float(rate)
                yield RateChange(base + float(t), current)
        if not trace.period_s:
            return
        base += trace.period_s


def check_replayable(trace: RateTrace, where: str) -> None:
    """One line if one of the trace's rates is an outage (rate 0), which the testbed's link does not carry."""
    zero = [float(t) for t, r in zip(trace.times_s, trace.rates_bps) if not r > 0]
    if zero:
        raise EdgesimError(f"testbed: {where} has a zero rate from {zero[0]:g} s; the testbed's link carries no outage "
                           "(the simulator can: run it with `edgesim run`)")


@dataclass
class TraceReplay:
    """Applies rate changes at t0 + at_s on the monotonic clock (set_rate: the link's uplink rate) until stopped,
    each started early by the median duration of the set_rate calls so far; `applied` holds (scheduled, applied,
    rate) of each change, applied being when set_rate returned."""

    changes: Iterator[RateChange]
    t0: float
    set_rate: Callable[[float], None]
    clock: Callable[[], float] = time.monotonic
    applied: list[tuple[float, float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="edgesim-trace-replay", daemon=True)
        self.error: BaseException | None = None

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when stopped meanwhile."""
        return self._stop.wait(seconds)

    def run(self) -> None:
        """The replay itself (the thread's body; callable directly, e.g. with a test's clock)."""
        took: list[float] = []  # how long each set_rate call lasted
        try:
            for change in self.changes:
                target = self.t0 + change.at_s
                left = target - (statistics.median(took) if took else 0.0) - self.clock()
                if (left > 0 and self.wait(left)) or self._stop.is_set():
                    return
                called = self.clock()
                self.set_rate(change.rate_bps)
                applied = self.clock()
                took.append(applied - called)
                self.applied.append((target, applied, change.rate_bps))
        except BaseException as exc:  # reported by stop(), in the runner's thread
            self.error = exc

    def start(self) -> "TraceReplay":
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the replay; raise what went wrong in it, if anything."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.error is not None:
            raise EdgesimError(f"testbed: replaying the link trace failed: {self.error}")

    def lag_s(self) -> list[float]:
        """How late each change took effect (applied - scheduled; negative: early)."""
        return [a - s for s, a, _ in self.applied]
