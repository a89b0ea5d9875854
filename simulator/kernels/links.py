"""A link's rules, written once for both engines: the rate at a time, when a transfer over a rate trace ends (with
TCP's slow start after idle where the link has it), the bandwidth a prediction plans with, and a varying one-way
delay kept in FIFO order.

Traces come packed (link.PackedSteps, built by link.pack_steps): trace k is steps[offsets[k]:offsets[k + 1]], each
step a record (start_s, value, integral: the value integrated from 0 to start_s), with periods[k] (period_s, 0 when
the last step holds on; integral: the value integrated over one period; and link.PERIOD's slow-start fields).
"""

from __future__ import annotations

import numpy as np

from simulator.jit import njit

MIN_PLANNING_BPS = 1.0
"""The least bandwidth a prediction divides by (1 bit/s): during an outage every transfer looks ~forever away."""


@njit(cache=True)
def planning_bps(rate_bps: float) -> float:
    """The bandwidth a prediction divides by: the rate or estimate, at least MIN_PLANNING_BPS (an outage makes
    sending look very slow, not undefined). One clamp for every link a policy or the assignment plans over."""
    return rate_bps if rate_bps > MIN_PLANNING_BPS else MIN_PLANNING_BPS


@njit(cache=True)
def _search(steps, lo, hi, v, by_integral, right):
    """numpy.searchsorted on the start_s (or integral) of steps[lo:hi], side right or left, as an offset from lo."""
    a_lo, a_hi = lo, hi
    while a_lo < a_hi:
        mid = (a_lo + a_hi) >> 1
        x = steps[mid].integral if by_integral else steps[mid].start_s
        if x < v or (right and x == v):
            a_lo = mid + 1
        else:
            a_hi = mid
    return a_lo - lo


@njit(cache=True)
def segment(packed, k, t_s):
    """(index of the step of trace k holding at t_s, t_s within the period)."""
    offsets, steps, periods = packed
    lo, hi = offsets[k], offsets[k + 1]
    t = t_s
    if periods[k].period_s != 0.0:
        t = np.mod(t, periods[k].period_s)
    j = _search(steps, lo, hi, t, False, True) - 1
    if j < 0:
        j = 0
    return j, t


@njit(cache=True)
def value_at(packed, k, t_s):
    """Trace k's value at t_s: a link's data rate in bit/s, or a delay trace's one-way delay in s."""
    lo = packed[0][k]
    if packed[0][k + 1] - lo == 1:  # a constant link
        return packed[1][lo].value
    j, _ = segment(packed, k, t_s)
    return packed[1][lo + j].value


@njit(cache=True)
def integral_until(packed, k, t_s):
    """Trace k integrated from 0 to t_s: the bits a link can carry by then, C(t)."""
    j, t = segment(packed, k, t_s)
    step = packed[1][packed[0][k] + j]
    out = step.integral + (t - step.start_s) * step.value
    period = packed[2][k]
    if period.period_s != 0.0:
        out = out + np.floor(t_s / period.period_s) * period.integral
    return out


@njit(cache=True)
def finish_time(packed, k, start_s, bits):
    """When a transfer of `bits` starting at start_s on link k ends: C^-1(C(start) + bits), exact for the trace
    (a transfer cannot end inside an outage: it ends where the rate comes back and the last bits go)."""
    offsets, steps, periods = packed
    lo, hi = offsets[k], offsets[k + 1]
    if hi - lo == 1:
        return start_s + bits / steps[lo].value
    target = integral_until(packed, k, start_s) + bits
    period_s, period_bits = periods[k].period_s, periods[k].integral
    if period_s != 0.0:
        n = np.floor(target / period_bits)
        rem = target - n * period_bits
        if rem <= 0 and n > 0:  # reached exactly at a period's end: the end of the previous period's last bits
            n, rem = n - 1, period_bits
        j = _search(steps, lo, hi, rem, True, False) - 1
        j = min(max(j, 0), hi - lo - 1)
        rate = steps[lo + j].value if steps[lo + j].value > 0 else np.inf
        out = n * period_s + steps[lo + j].start_s + (rem - steps[lo + j].integral) / rate
        return max(out, start_s)
    j = _search(steps, lo, hi, target, True, True) - 1
    if j < 0:
        j = 0
    if not steps[lo + j].value > 0:  # skip a zero-rate step: the transfer cannot end inside it
        j = min(j + 1, hi - lo - 1)
    out = steps[lo + j].start_s + (target - steps[lo + j].integral) / steps[lo + j].value
    return max(out, start_s)


@njit(cache=True)
def transfer_end(packed, k, start_s, bits, last_end_s):
    """When a transfer of `bits` starting at start_s on link k ends, the link's previous transfer having ended at
    last_end_s (0 or less: none since the run began at 0): finish_time, unless link k has TCP's slow start after
    idle (link.SlowStart) and was idle longer than its RTO.

    Then (RFC 5681 section 4.1) the congestion window restarts at the initial window W0 (RFC 6928: 10 segments) and
    doubles every round trip (section 3.1, one ACK per segment; ssthresh above the bandwidth-delay product, no
    loss). Round j sends W0 2^j bits from t_j; its first ACK is back at t_j + segment/rate + RTT, when round j + 1
    starts: if the window was serialised before then, the link idled in between. Once a round's window is still
    being serialised when its first ACK returns (W0 2^j >= rate x RTT + segment: the window covers the
    bandwidth-delay product) the link stays busy and the rest goes at the link's rate. On a constant rate R:
    bits/R + sum over the stalled rounds of (segment/R + RTT - W0 2^j/R) (Kurose & Ross's slow-start latency
    model). Linux halves the window per RTO of idle down to W0 (RFC 2861) where RFC 5681 restarts at W0 at once:
    the same after idle of two RTOs or more from a window of at most 4 W0."""
    p = packed[2][k]
    last = last_end_s if last_end_s > 0.0 else 0.0
    if not start_s - last > p.restart_idle_s:
        return finish_time(packed, k, start_s, bits)
    t, left, window = start_s, bits, p.window_bits
    while left > window:
        acked = finish_time(packed, k, t, p.segment_bits) + p.rtt_s
        if finish_time(packed, k, t, window) >= acked:  # the window fills the pipe: the link stays busy
            break
        t, left, window = acked, left - window, 2.0 * window
    return finish_time(packed, k, t, left)


@njit(cache=True)
def fixed_rate(packed, k):
    """True when a transfer on link k takes bits / rate wherever it starts: one constant rate, no slow start."""
    return packed[0][k + 1] - packed[0][k] == 1 and packed[2][k].restart_idle_s == np.inf


@njit(cache=True)
def transfer_ends(packed, k, start_s, bits, last_end_s):
    """transfer_end of each (start, bits, previous end) on link k."""
    out = np.empty(start_s.size)
    for i in range(start_s.size):
        out[i] = transfer_end(packed, k, start_s[i], bits[i], last_end_s[i])
    return out


@njit(cache=True)
def finish_times(packed, k, start_s, bits):
    """finish_time of each (start, bits) pair on link k."""
    out = np.empty(start_s.size)
    for i in range(start_s.size):
        out[i] = finish_time(packed, k, start_s[i], bits[i])
    return out


@njit(cache=True)
def values_at(packed, k, t_s):
    """value_at at each time."""
    out = np.empty(t_s.size)
    for i in range(t_s.size):
        out[i] = value_at(packed, k, t_s[i])
    return out


@njit(cache=True)
def integrals_until(packed, k, t_s):
    """integral_until at each time."""
    out = np.empty(t_s.size)
    for i in range(t_s.size):
        out[i] = integral_until(packed, k, t_s[i])
    return out


@njit(cache=True)
def fifo_delay(now_s, delay_s, last_arrival_s, fifo):
    """(the delay a transfer sent now meets, the path's latest arrival after it): its own delay, held behind the
    transfer sent before it on a FIFO path, arrival_i = max(sent_i + delay_i, arrival_{i-1}) (link.LinkDelay)."""
    arrive = now_s + delay_s
    if fifo and arrive < last_arrival_s:
        arrive = last_arrival_s
    return arrive - now_s, (arrive if arrive > last_arrival_s else last_arrival_s)
