"""Rate-trace replay on the testbed's link: the schedule of rate changes, the replay thread's bookkeeping on the
run's clock, and what the runner refuses (no root, no torch)."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from edgesim.testbed.replay import RateChange, TraceReplay, check_replayable, rate_changes
from profilers.errors import EdgesimError
from simulator.link import RateTrace


def test_changes_of_a_held_trace_skip_time_zero_and_repeated_rates():
    trace = RateTrace(np.array([0.0, 1.0, 2.0, 3.5]), np.array([5e6, 1e6, 1e6, 8e6]))
    assert list(rate_changes(trace)) == [RateChange(1.0, 1e6), RateChange(3.5, 8e6)]


def test_a_wrapped_trace_repeats_its_changes_for_ever():
    trace = RateTrace(np.array([0.0, 0.5]), np.array([2e6, 4e6]), period_s=2.0)
    first = list(itertools.islice(rate_changes(trace), 5))
    assert first == [RateChange(0.5, 4e6), RateChange(2.0, 2e6), RateChange(2.5, 4e6), RateChange(4.0, 2e6),
                     RateChange(4.5, 4e6)]


def test_a_shifted_trace_is_replayed_from_its_offset():
    """The runner replays the simulated topology's uplink, already shifted by trace_offset_s."""
    trace = RateTrace(np.array([0.0, 1.0, 2.0]), np.array([1e6, 3e6, 6e6])).shifted(1.5)
    assert trace.rate_bps_at(0.0) == 3e6
    assert list(rate_changes(trace)) == [RateChange(0.5, 6e6)]


def test_an_outage_cannot_be_shaped():
    with pytest.raises(EdgesimError, match="zero rate from 1 s"):
        check_replayable(RateTrace(np.array([0.0, 1.0, 2.0]), np.array([1e6, 0.0, 1e6])), "link.trace x.csv")


class FakeClock:
    """A monotonic clock that advances only when the replay waits, by what it waits (plus each set_rate's cost)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        return False


def test_replay_applies_each_change_at_t0_plus_its_time_started_early_by_what_changes_take():
    clock = FakeClock(100.0)
    set_to, cost = [], iter([0.004, 0.006, 0.002, 0.005])

    def set_rate(rate):  # tc calls that take 4, 6, 2 and 5 ms
        set_to.append((clock.now, rate))
        clock.now += next(cost)

    trace = RateTrace(np.array([0.0, 0.3, 0.7]), np.array([1e6, 2e6, 3e6]), period_s=1.0)
    replay = TraceReplay(itertools.islice(rate_changes(trace), 4), t0=100.5, set_rate=set_rate, clock=clock)
    replay.wait = clock.wait
    replay.run()
    # the first at its time, the others early by the median of the calls before: 4 ms, then 5 ms, then 4 ms
    assert set_to == [(pytest.approx(100.8), 2e6), (pytest.approx(101.196), 3e6), (pytest.approx(101.495), 1e6),
                      (pytest.approx(101.796), 2e6)]
    assert [s for s, _a, _r in replay.applied] == pytest.approx([100.8, 101.2, 101.5, 101.8])
    assert replay.lag_s() == pytest.approx([0.004, 0.002, -0.003, 0.001])


def test_a_change_already_due_is_applied_at_once_and_stop_ends_the_replay():
    clock = FakeClock(10.0)
    rates, applied = [], threading.Event()

    def set_rate(rate):
        rates.append(rate)
        applied.set()

    replay = TraceReplay(iter([RateChange(0.0, 1e6), RateChange(3600.0, 2e6)]), t0=9.0, set_rate=set_rate,
                         clock=clock)
    replay.start()
    assert applied.wait(60)
    replay.stop()  # the second change is an hour away: stop wakes the thread, which returns without applying it
    assert rates == [1e6] and replay.lag_s() == [1.0]


def test_an_error_in_the_replay_is_raised_by_stop():
    def fail(_rate):
        raise RuntimeError("tc: no such device")

    replay = TraceReplay(iter([RateChange(0.0, 1e6)]), t0=0.0, set_rate=fail, clock=lambda: 1.0)
    replay.run()
    with pytest.raises(EdgesimError, match="replaying the link trace failed: tc: no such device"):
        replay.stop()
