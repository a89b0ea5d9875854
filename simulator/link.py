"""Wireless link: packetisation, per-packet overhead, loss with retransmission, constant or traced data rate,
TCP's slow start after idle.

A link is busy for size/rate (serialisation); propagation delay pipelines and does not hold the link
(STYLE.md rule 11). The link kernels (simulator.kernels.links, numba) are imported where they run, not here:
importing this module (scenario parsing, `edgesim validate`, `edgesim list`) does not import numba.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple, Optional

import numpy as np

from profilers.errors import EdgesimError
from simulator.csvtable import read_csv_table


STEP = np.dtype([("start_s", float), ("value", float), ("integral", float)])
"""One step of a packed trace: from start_s the value holds (a rate in bit/s, or a one-way delay in s); integral is
the value integrated from 0 to start_s (the bits a link carried by then)."""
PERIOD = np.dtype([("period_s", float), ("integral", float), ("restart_idle_s", float), ("rtt_s", float),
                   ("segment_bits", float), ("window_bits", float)])
"""A packed trace's period (0: its last step holds on) and its value integrated over one period; on a link with
TCP's slow start after idle (SlowStart), after how long idle it restarts (the RTO; inf: never), the RTT, a full
segment's and the initial window's bits on the wire."""


class PackedSteps(NamedTuple):
    """Step functions (rate or delay traces) in flat arrays, as the kernels of simulator.kernels.links read them:
    trace k is steps[offsets[k]:offsets[k + 1]], with periods[k]."""

    offsets: np.ndarray  # (K + 1,) int64
    steps: np.ndarray  # (S,) STEP records
    periods: np.ndarray  # (K,) PERIOD records


def _pack_one(t) -> PackedSteps:
    """One trace's STEP records and PERIOD record (pack_steps' rule; a trace keeps them as its `packed`)."""
    values, n = t.step_values, len(t.times_s)
    steps, period = np.zeros(n, STEP), np.zeros(1, PERIOD)
    period["restart_idle_s"] = np.inf
    steps["start_s"], steps["value"] = t.times_s, values
    steps["integral"] = np.concatenate(([0.0], np.cumsum(np.diff(t.times_s) * values[:-1])))
    period["period_s"] = t.period_s
    period["integral"] = steps["integral"][-1] + (t.period_s - t.times_s[-1]) * values[-1] if t.period_s else 0.0
    if t.slow_start is not None:
        ss = t.slow_start
        period["restart_idle_s"], period["rtt_s"] = ss.rto_s, ss.rtt_s
        period["segment_bits"] = 8.0 * ss.segment_bytes
        period["window_bits"] = 8.0 * ss.segment_bytes * ss.initial_window_segments
    return PackedSteps(np.array([0, n], np.int64), steps, period)


def pack_steps(traces: list) -> PackedSteps:
    """Pack RateTraces and DelayTraces (each a step function of time) for the link kernels; the link module's one
    way in for both engines (nothing else reads a trace's arrays). Each trace was packed once when it was made
    (`packed`): this joins them, so a city's uplinks sharing one trace cost a copy each, not a packing."""
    if not traces:
        return PackedSteps(np.zeros(1, np.int64), np.zeros(1, STEP), RateTrace.constant(1.0).packed.periods)
    distinct = list({id(t): t for t in traces}.values())  # in order of first use
    number = {id(t): k for k, t in enumerate(distinct)}
    which = np.array([number[id(t)] for t in traces], np.int64)
    lengths = np.array([len(t.times_s) for t in distinct], np.int64)
    starts = np.cumsum(lengths) - lengths  # where each distinct trace's steps begin among theirs
    offsets = np.concatenate(([0], np.cumsum(lengths[which]))).astype(np.int64)
    rows = np.repeat(starts[which] - offsets[:-1], lengths[which]) + np.arange(offsets[-1])
    steps = np.concatenate([t.packed.steps for t in distinct])[rows]
    periods = np.concatenate([t.packed.periods for t in distinct])[which]
    return PackedSteps(offsets, steps, periods)


@functools.cache
def _on_one_trace(name: str, floats: int):
    """Link kernel `name` for one PackedSteps and `floats` floats, called from Python without numba's per-call
    dispatch; compiled (and numba imported) on first use, then a cache lookup per call."""
    from simulator.kernels import links, python_entry
    return python_entry(getattr(links, name), pack_steps([RateTrace.constant(1.0)]), 0, *(0.0,) * floats)


@functools.cache
def _on_arrays(name: str):
    """Link kernel `name` over arrays (numba dispatches by type), imported on first use."""
    from simulator.kernels import links
    return getattr(links, name)


def _each(scalar: str, vector: str, packed: PackedSteps, *args):
    """Kernel `scalar` over scalars, or `vector` over arrays (broadcast): a float for scalars, else an array of the
    broadcast shape."""
    if all(isinstance(a, float) for a in args):  # Python and numpy floats: one call of the scalar kernel
        return float(_on_one_trace(scalar, len(args))(packed, 0, *args))
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in args))
    flat = [np.ascontiguousarray(a).ravel() for a in arrays]
    out = _on_arrays(vector)(packed, 0, *flat).reshape(arrays[0].shape)
    return out if out.ndim else float(out)


LINUX_RTO_MIN_S = 0.2
"""What Linux's retransmission timeout adds to the smoothed RTT on a steady path: RTO = srtt + rttvar with rttvar
at least TCP_RTO_MIN = 200 ms (net/ipv4/tcp_input.c, tcp_rtt_estimator and __tcp_set_rto); RFC 6298 section 2.4
asks for at least 1 s."""
INITIAL_WINDOW_SEGMENTS = 10
"""TCP's initial congestion window in segments (RFC 6928; Linux's TCP_INIT_CWND)."""


@dataclass(frozen=True)
class SlowStart:
    """TCP's slow start after idle on a link (RFC 5681 section 4.1; Linux net.ipv4.tcp_slow_start_after_idle = 1 with
    a loss-based congestion control such as cubic or reno, BBR being exempt): after sending nothing for longer than
    the RTO the sender's window restarts at the initial window and doubles every RTT (simulator.kernels.links.
    transfer_end states the model)."""

    rtt_s: float  # the round trip a window's first ACK takes beyond its segment's serialisation
    segment_bytes: int  # one full segment on the wire: payload and headers
    initial_window_segments: int = INITIAL_WINDOW_SEGMENTS

    @property
    def rto_s(self) -> float:
        """Idle longer than this restarts slow start: Linux's RTO on a steady path, RTT + 200 ms."""
        return self.rtt_s + LINUX_RTO_MIN_S


@dataclass(frozen=True)
class RateTrace:
    """Piecewise-constant data rate: rates_bps[k] holds from times_s[k] until times_s[k+1].

    After the last step either the last rate holds on (period_s = 0), or the trace repeats with period period_s
    (the steps then cover [0, period_s), the `wrap` end of a scenario's trace). Evaluated by the link kernels
    (simulator.kernels.links), the same ones the compiled engine runs.
    """

    times_s: np.ndarray
    rates_bps: np.ndarray
    period_s: float = 0.0
    slow_start: Optional[SlowStart] = None  # TCP's slow start after idle on this link (None: never)

    def __post_init__(self) -> None:
        packed = _pack_one(self)
        if self.period_s and packed.periods[0]["integral"] <= 0:
            raise EdgesimError("a repeating link trace must carry some bits in each period")
        object.__setattr__(self, "packed", packed)

    @property
    def step_values(self) -> np.ndarray:
        """The value of each step (pack_steps reads it): the rates."""
        return self.rates_bps

    @classmethod
    def constant(cls, data_rate_mbps: float) -> "RateTrace":
        """A link whose rate never changes."""
        return cls(np.array([0.0]), np.array([data_rate_mbps * 1e6]))

    @property
    def is_constant(self) -> bool:
        """True when the rate never changes (the fast, closed-form case)."""
        return len(self.rates_bps) == 1

    def rate_bps_at(self, t_s: float) -> float:
        """Data rate in bit/s at time t_s."""
        return float(_on_one_trace("value_at", 1)(self.packed, 0, float(t_s)))

    def bits_until(self, t_s: np.ndarray | float) -> np.ndarray | float:
        """Bits the link can carry from time 0 to t_s: C(t) = integral of the rate."""
        return _each("integral_until", "integrals_until", self.packed, t_s)

    def finish_time(self, start_s: np.ndarray | float, bits: np.ndarray | float) -> np.ndarray | float:
        """When a transmission of `bits` starting at start_s ends: C^-1(C(start) + bits), exact for the trace."""
        return _each("finish_time", "finish_times", self.packed, start_s, bits)

    def transfer_end(self, start_s: np.ndarray | float, bits: np.ndarray | float,
                     last_end_s: np.ndarray | float) -> np.ndarray | float:
        """When a transfer starting at start_s ends, the link's previous one having ended at last_end_s: finish_time,
        or longer after idle on a link with slow start (simulator.kernels.links.transfer_end, as both engines)."""
        return _each("transfer_end", "transfer_ends", self.packed, start_s, bits, last_end_s)

    @property
    def end_s(self) -> float:
        """Where the trace's own data ends: its period, or its last step (after which the last rate holds)."""
        return self.period_s or float(self.times_s[-1])

    def shifted(self, offset_s: float) -> "RateTrace":
        """The same link seen offset_s seconds into the trace: rate'(t) = rate(t + offset_s) (itself at offset 0:
        a trace is immutable, so the devices of a city on one link share it)."""
        if offset_s == 0:
            return self
        return RateTrace(*shift_steps(self.times_s, self.rates_bps, self.period_s, offset_s), self.period_s,
                         self.slow_start)


def shift_steps(times_s: np.ndarray, values: np.ndarray, period_s: float,
                offset_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(times, values) of a step function seen offset_s seconds in: value'(t) = value(t + offset_s); the one trace
    offset rule of rate and delay traces (a held trace cannot be entered at or after its last step)."""
    if offset_s == 0:
        return times_s, values
    if period_s:
        o = offset_s % period_s
        k = int(np.searchsorted(times_s, o, side="right") - 1)
        times = np.concatenate(([0.0], times_s[k + 1:] - o, times_s[:k + 1] + period_s - o))
        shifted = np.concatenate((values[k:], values[:k + 1]))
        keep = np.concatenate(([True], np.diff(times) > 0)) & (times < period_s)
        return times[keep], shifted[keep]
    if offset_s >= times_s[-1] and len(times_s) > 1:
        raise EdgesimError(f"offset {offset_s:g} s is at or beyond the trace's end ({times_s[-1]:g} s)")
    k = int(np.searchsorted(times_s, offset_s, side="right") - 1)
    return np.concatenate(([0.0], times_s[k + 1:] - offset_s)), values[k:]


@dataclass(frozen=True)
class DelayTrace:
    """One-way propagation delay over time: half the round-trip time of a trace's rtt_ms column, stepwise."""

    times_s: np.ndarray
    one_way_s: np.ndarray
    period_s: float = 0.0
    slow_start: ClassVar[None] = None  # pack_steps reads it: a delay has no congestion window

    def __post_init__(self) -> None:
        object.__setattr__(self, "packed", _pack_one(self))

    @property
    def step_values(self) -> np.ndarray:
        """The value of each step (pack_steps reads it): the one-way delays."""
        return self.one_way_s

    def at(self, t_s: np.ndarray | float) -> np.ndarray:
        """One-way delay at times t_s."""
        return np.asarray(_each("value_at", "values_at", self.packed, t_s))

    def shifted(self, offset_s: float) -> "DelayTrace":
        """The same delays seen offset_s seconds into the trace (itself at offset 0)."""
        if offset_s == 0:
            return self
        return DelayTrace(*shift_steps(self.times_s, self.one_way_s, self.period_s, offset_s), self.period_s)


@dataclass(frozen=True)
class LinkDelay:
    """One-way propagation delay of each transfer: following a trace's RTT, or drawn from a stated distribution.

    Drawn by inverse transform from a per-frame uniform u (common random numbers): uniform mean +- sqrt(3) std,
    normal and lognormal with the given mean and std (normal truncated at 0), exponential with the given mean.
    On a FIFO link (fifo=True) a transfer never arrives before the one sent before it on the same path:
    arrival_i = max(sent_i + delay_i, arrival_{i-1}), so jitter does not reorder frames.
    """

    mean_s: float
    trace: Optional[DelayTrace] = None
    distribution: Optional[str] = None
    std_s: float = 0.0
    fifo: bool = True

    def sample(self, t_s: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Delays of transfers ending at t_s with uniforms u."""
        from scipy.special import ndtri  # here: importing the link module stays light
        t_s, u = np.asarray(t_s, dtype=float), np.asarray(u, dtype=float)
        if self.trace is not None:
            return np.asarray(self.trace.at(t_s), dtype=float)
        m, s = self.mean_s, self.std_s
        if self.distribution == "uniform":
            return np.maximum(m + s * np.sqrt(12.0) * (u - 0.5), 0.0)
        if self.distribution == "normal":
            return np.maximum(m + s * ndtri(u), 0.0)
        if self.distribution == "exponential":
            return -m * np.log1p(-u)
        if self.distribution == "lognormal":
            sigma2 = np.log1p((s / m) ** 2)
            return np.exp(np.log(m) - sigma2 / 2 + np.sqrt(sigma2) * ndtri(u))
        return np.full(np.shape(u), m)


def _read_columns(path: Path, column: str, needs: str) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(file line of each row, time_s, `column`) of a link trace CSV (extra columns and `#` comment lines are
    skipped): times from 0 and strictly increasing, values finite and >= 0; one `FILE:LINE: what` line if not."""
    table = read_csv_table(path, ["time_s", column], needs,
                           "link trace is empty (needs a header time_s,data_rate_mbps and rows)",
                           "link trace has no rows after the header")
    times, values = [], []
    for lineno, row in zip(table.linenos, table.rows):
        try:
            t, v = float(row["time_s"]), float(row[column])
        except (TypeError, ValueError):
            raise EdgesimError(f"{path}:{lineno}: time_s and {column} must be numbers") from None
        if not (np.isfinite(t) and np.isfinite(v)) or v < 0 or t < 0:
            raise EdgesimError(f"{path}:{lineno}: time_s and {column} must be finite and >= 0")
        if times and t <= times[-1]:
            raise EdgesimError(f"{path}:{lineno}: time_s must increase strictly")
        times.append(t)
        values.append(v)
    if times[0] != 0.0:
        raise EdgesimError(f"{path}:{table.linenos[0]}: the first time_s must be 0")
    return table.linenos, np.asarray(times), np.asarray(values)


def _steps(path: Path, linenos: list[int], times: np.ndarray, values: np.ndarray,
           end: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(step times, step values, period_s) of a trace: all rows held (period 0), or with end 'wrap' the rows
    before the last, repeating with the last row's time as the period."""
    if end != "wrap":
        return times, values, 0.0
    if len(times) < 2:
        raise EdgesimError(f"{path}:{linenos[0]}: a trace that wraps around needs at least two rows (the last "
                           "time is where it ends)")
    return times[:-1], values[:-1], float(times[-1])


def load_rate_trace(path: str | Path, scale: float = 1.0, end: str = "hold") -> RateTrace:
    """Read a CSV trace with columns time_s,data_rate_mbps (extra columns such as rtt_ms and `#` comment lines
    are skipped); one clear `FILE:LINE: what` line on any problem.

    end 'hold': the last rate holds after the last time; 'wrap': the last time is where the trace ends and it
    repeats from 0 (the last row's rate is then not used).
    """
    path = Path(path)
    linenos, times, rates_mbps = _read_columns(path, "data_rate_mbps", "link trace needs columns time_s,data_rate_mbps")
    if rates_mbps[-1] <= 0:
        raise EdgesimError(f"{path}:{linenos[-1]}: the last data_rate_mbps must be > 0 (it holds after the trace ends)")
    return RateTrace(*_steps(path, linenos, times, rates_mbps * scale * 1e6, end))


def load_delay_trace(path: str | Path, end: str = "hold") -> DelayTrace:
    """Read the rtt_ms column of a link trace (as `edgesim trace import` writes it) as a one-way delay, rtt / 2."""
    path = Path(path)
    linenos, times, rtt_ms = _read_columns(path, "rtt_ms", "link.delay.from_trace needs an rtt_ms column "
                                                          "(edgesim trace import --rtt-column writes it)")
    return DelayTrace(*_steps(path, linenos, times, rtt_ms / 2e3, end))


TCP_PAYLOAD_BYTES = 1448
"""Payload per packet when a scenario names none: a TCP segment with timestamps over a 1500-byte MTU, 1500 - 20
(IPv4) - 32 (TCP with the timestamp option, RFC 7323), what Linux sends by default (1460 without timestamps,
RFC 879)."""
TCP_IP_OVERHEAD_BYTES = 52
"""Header bytes per packet when a scenario names none: IPv4 and TCP with timestamps (20 + 32), what tc tbf counted
per 1448-byte segment on the testbed's link (measured, docs/sim_vs_real.md); 66 on Ethernet, which adds 14. A
scenario gets the payload-only link of earlier versions with packet_overhead_bytes: 0 (and 1460 for the MSS)."""


@dataclass(frozen=True)
class Packetiser:
    """Turns a payload into bytes on the wire: per-packet overhead and resent lost packets."""

    payload_bytes: int = TCP_PAYLOAD_BYTES
    overhead_bytes: int = TCP_IP_OVERHEAD_BYTES
    loss_probability: float = 0.0

    def packets(self, size_bytes: np.ndarray) -> np.ndarray:
        """Packets needed for each payload (0 for an empty one)."""
        return -(-np.asarray(size_bytes, dtype=np.int64) // self.payload_bytes)

    def wire_bytes(self, size_bytes: np.ndarray, resent_bytes: np.ndarray | int = 0) -> np.ndarray:
        """Payload plus per-packet overhead, plus the bytes of resent packets (link-layer ARQ)."""
        size = np.asarray(size_bytes, dtype=np.int64)
        return size + self.packets(size) * self.overhead_bytes + np.asarray(resent_bytes)

    def draw_resent_bytes(self, rng: np.random.Generator, size_bytes: np.ndarray) -> np.ndarray:
        """Wire bytes of resent packets per payload: each packet is lost independently and resent as it was.

        A payload of s bytes is floor(s/P) full packets and, when P does not divide s, one last packet of s mod P
        bytes; every packet carries the per-packet overhead. Resends of the k full packets are NB(k, 1 - p) and
        those of the last packet NB(1, 1 - p) (failures before each packet's success), so the expected resent
        bytes are p/(1 - p) x (s + packets x overhead): a resend repeats the packet that was lost, no more.
        """
        size = np.asarray(size_bytes, dtype=np.int64)
        if self.loss_probability <= 0:
            return np.zeros_like(size)
        full, last = size // self.payload_bytes, size % self.payload_bytes
        # one (full packets, last packet) pair of draws per payload, payload after payload: the numbers a frame
        # gets do not depend on how many frames are drawn at once (windows of a long run)
        counts = np.stack([np.maximum(full, 1), np.ones_like(full)], axis=-1)
        resent = rng.negative_binomial(counts, 1.0 - self.loss_probability)
        resent_full, resent_last = resent[..., 0] * (full > 0), resent[..., 1] * (last > 0)
        return resent_full * (self.payload_bytes + self.overhead_bytes) + resent_last * (last + self.overhead_bytes)
