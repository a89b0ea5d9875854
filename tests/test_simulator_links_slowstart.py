"""TCP's slow start after idle on the uplink (link.slow_start_after_idle): the kernel against the closed form,
no effect on a busy link, and both engines frame by frame."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from simulator import run
from simulator.link import LINUX_RTO_MIN_S, RateTrace, SlowStart
from tests.sim_helpers import scenario_dict, write_toy_profiles

SEGMENT_BYTES = 1500  # 1448 payload + 52 headers


def slow_start_closed_form(segments: int, rate_bps: float, rtt_s: float, window0: int) -> float:
    """Kurose & Ross's slow-start latency (Computer Networking, 'TCP latency modelling'), window0 segments at
    first: N s + sum over the first P rounds of (s + RTT - window0 2^k s), s one segment's serialisation, P the
    rounds that stall (window0 2^k s < s + RTT) among all but the transfer's last round."""
    s = SEGMENT_BYTES * 8 / rate_bps
    rounds = next(k for k in range(64) if window0 * (2 ** k - 1) >= segments)  # rounds the transfer takes
    stalls = sum(1 for k in range(64) if window0 * 2 ** k * s < s + rtt_s)
    return segments * s + sum(s + rtt_s - window0 * 2 ** k * s for k in range(min(stalls, rounds - 1)))


def _link(rate_mbps: float, rtt_s: float, window0: int = 10) -> RateTrace:
    return replace(RateTrace.constant(rate_mbps), slow_start=SlowStart(rtt_s, SEGMENT_BYTES, window0))


def test_three_hundred_segments_after_idle_by_hand():
    """50 Mbit/s, RTT 20 ms: windows of 10, 20, 40, 80 segments each wait for their first ACK (0.24 ms + 20 ms),
    the 160-segment window covers the bandwidth-delay product: 300 x 0.24 ms + 17.84 + 15.44 + 10.64 + 1.04 ms."""
    link = _link(50.0, 0.020)
    end = link.transfer_end(10.0, 300 * SEGMENT_BYTES * 8.0, 0.0)
    assert end - 10.0 == pytest.approx(0.072 + 0.01784 + 0.01544 + 0.01064 + 0.00104, abs=1e-12)


@pytest.mark.parametrize("segments,rate_mbps,rtt_s,window0", [
    (1, 50.0, 0.01, 10), (10, 50.0, 0.01, 10), (11, 50.0, 0.01, 10), (18, 50.0, 0.01, 10), (300, 50.0, 0.02, 10),
    (1000, 10.0, 0.05, 10), (5000, 100.0, 0.1, 4), (70, 1.0, 0.01, 10), (64, 20.0, 0.03, 1)])
def test_one_transfer_after_idle_is_the_closed_form(segments, rate_mbps, rtt_s, window0):
    link = _link(rate_mbps, rtt_s, window0)
    bits = segments * SEGMENT_BYTES * 8.0
    took = link.transfer_end(5.0, bits, 1.0) - 5.0  # idle 4 s, far beyond the RTO
    assert took == pytest.approx(slow_start_closed_form(segments, rate_mbps * 1e6, rtt_s, window0), rel=1e-12)
    assert took >= bits / (rate_mbps * 1e6) * (1 - 1e-12)  # never faster than the rate (up to rounding)


def test_no_effect_on_a_busy_link_or_after_a_short_idle():
    link = _link(50.0, 0.01)
    bits, plain = 100 * SEGMENT_BYTES * 8.0, 100 * SEGMENT_BYTES * 8.0 / 50e6
    rto = 0.01 + LINUX_RTO_MIN_S
    assert link.transfer_end(3.0, bits, 3.0) == pytest.approx(3.0 + plain, abs=1e-12)  # queued right behind
    assert link.transfer_end(3.0, bits, 3.0 - 0.99 * rto) == pytest.approx(3.0 + plain, abs=1e-12)
    assert link.transfer_end(3.0, bits, 3.0 - 1.01 * rto) > 3.0 + plain + 0.01  # a stalled round at least
    # no slow start on the link: the plain finish time whatever the idle
    assert RateTrace.constant(50.0).transfer_end(3.0, bits, -100.0) == pytest.approx(3.0 + plain, abs=1e-12)


def test_arrays_and_scalars_agree():
    link = _link(10.0, 0.04)
    start, bits, last = np.array([1.0, 2.0, 2.5]), np.array([2e5, 2e5, 2e5]), np.array([0.0, 1.9, 2.0])
    vec = link.transfer_end(start, bits, last)
    assert vec == pytest.approx([link.transfer_end(float(a), float(b), float(c)) for a, b, c in zip(start, bits, last)])
    assert vec[1] == pytest.approx(2.0 + 2e5 / 10e6)  # idle 0.1 s < RTO 0.24 s


def test_over_a_rate_trace_each_round_follows_the_rate():
    """The rounds' serialisation over a trace: 10 segments at 1 Mbit/s (120 ms, beyond RTT + s = 62 ms: no stall)
    then the rest; at 100 Mbit/s the first window stalls until its ACK."""
    trace = RateTrace(np.array([0.0, 1.0]), np.array([1e6, 100e6]))
    link = replace(trace, slow_start=SlowStart(0.05, SEGMENT_BYTES))
    bits = 30 * SEGMENT_BYTES * 8.0
    assert link.transfer_end(0.5, bits, 0.0) == pytest.approx(0.5 + bits / 1e6)
    s = SEGMENT_BYTES * 8 / 100e6
    assert link.transfer_end(2.0, bits, 0.0) == pytest.approx(2.0 + s + 0.05 + 20 * s)


@pytest.fixture()
def profiles(tmp_path):
    return write_toy_profiles(tmp_path)


def _scenario(profiles, engine, mobiles=1, fps=0.5, slow_start=True, **link):
    """Offloading the toy model's 768-byte float32 input in 16 packets of 48 + 52 bytes (several windows)."""
    link = {"packet_payload_bytes": 48, "packet_overhead_bytes": 52, "initial_window_segments": 2, **link}
    return scenario_dict(
        profiles, engine=engine, policies=[{"name": "offload", "encoding": "float32"}],
        mobiles=[{"device": "toy-mobile", "count": mobiles}],
        link={"data_rate_mbps": 0.5, "propagation_delay_s": 0.005, "slow_start_after_idle": slow_start, **link},
        workload={"source": "poisson", "frame_rate_fps": fps, "frames": 60, "service_time": "sampled"})


@pytest.mark.parametrize("engine", ["compiled", "simpy"])
def test_each_transfer_after_idle_takes_the_closed_form(profiles, engine):
    """Offloading 768 float32 bytes over 0.5 Mbit/s, RTT 10 ms, frames 1 s apart on average: each transfer after
    more than RTT + 0.2 s idle takes the closed form, the others bits / rate; initial window 1 segment of 100 B."""
    data = _scenario(profiles, engine, fps=1.0, initial_window_segments=1)
    frames, _ = run(data)
    start = frames["capture_s"] + frames["mobile_queue_s"] + frames["head_s"] + frames["uplink_queue_s"]
    last_end = np.concatenate(([0.0], (start + frames["transfer_s"]).to_numpy()[:-1]))
    idle = start.to_numpy() - last_end
    segments = 768 // 48
    after_idle = slow_start_closed_form_bytes(segments, 100, 0.5e6, 0.01)
    expected = np.where(idle > 0.01 + LINUX_RTO_MIN_S, after_idle, segments * 100 * 8 / 0.5e6)
    assert (idle > 0.21).sum() > 10 and (idle < 0.21).sum() > 3  # both cases occur
    np.testing.assert_allclose(frames["transfer_s"], expected, rtol=0, atol=1e-9)


def slow_start_closed_form_bytes(segments: int, segment_bytes: int, rate_bps: float, rtt_s: float) -> float:
    """The closed form above for segments of segment_bytes on the wire and an initial window of one segment."""
    s = segment_bytes * 8 / rate_bps
    rounds = math.ceil(math.log2(segments + 1))
    stalls = sum(1 for k in range(64) if 2 ** k * s < s + rtt_s)
    return segments * s + sum(s + rtt_s - 2 ** k * s for k in range(min(stalls, rounds - 1)))


@pytest.mark.parametrize("mobiles,fps", [(1, 0.5), (1, 20.0), (3, 1.0)])
def test_both_engines_agree_frame_by_frame(profiles, mobiles, fps, monkeypatch):
    """One camera (Lindley's recursion in the compiled engine), a busy one, and three (its event loop)."""
    import simulator.compiled as compiled

    by_recursion, original = [], compiled._lindley
    monkeypatch.setattr(compiled, "_lindley", lambda *a: by_recursion.append(bool(original(*a))) or by_recursion[-1])
    frames = {e: run(_scenario(profiles, e, mobiles, fps))[0] for e in ("compiled", "simpy")}
    assert by_recursion == ([True] if mobiles == 1 else [])
    cols = ["capture_s", "transfer_s", "delay_s"]
    pd.testing.assert_frame_equal(frames["compiled"][cols], frames["simpy"][cols], check_exact=False, rtol=0,
                                  atol=1e-9)  # the engines' tolerance (tests/test_simulator_compiled.py)
    plain = run(_scenario(profiles, "compiled", mobiles, fps, slow_start=False))[0]
    slower = (frames["compiled"]["transfer_s"] - plain["transfer_s"]).to_numpy()
    assert (slower >= -1e-12).all() and (slower > 1e-4).any()
