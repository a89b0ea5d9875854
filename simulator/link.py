"""Wireless link: packetisation, per-packet overhead, loss with retransmission, constant or traced data rate.

A link is busy for size/rate (serialisation); propagation delay pipelines and does not hold the link
(STYLE.md rule 11).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from scipy.special import ndtri

from profilers.errors import EdgesimError
from profilers.io import read_text


def _segment(times_s: np.ndarray, t_s: np.ndarray, period_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(index of the step holding at t, t within the period) for a step function starting at times_s."""
    t = np.asarray(t_s, dtype=float)
    if period_s:
        t = np.mod(t, period_s)
    return np.clip(np.searchsorted(times_s, t, side="right") - 1, 0, None), t


@dataclass(frozen=True)
class RateTrace:
    """Piecewise-constant data rate: rates_bps[k] holds from times_s[k] until times_s[k+1].

    After the last step either the last rate holds on (period_s = 0), or the trace repeats with period period_s
    (the steps then cover [0, period_s), the `wrap` end of a scenario's trace).
    """

    times_s: np.ndarray
    rates_bps: np.ndarray
    period_s: float = 0.0

    def __post_init__(self) -> None:
        cum = np.concatenate(([0.0], np.cumsum(np.diff(self.times_s) * self.rates_bps[:-1])))
        object.__setattr__(self, "_cum_bits", cum)
        if self.period_s:
            total = cum[-1] + (self.period_s - self.times_s[-1]) * self.rates_bps[-1]
            if total <= 0:
                raise EdgesimError("a repeating link trace must carry some bits in each period")
            object.__setattr__(self, "_period_bits", float(total))

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
        k, _ = _segment(self.times_s, t_s, self.period_s)
        return float(self.rates_bps[int(k)])

    def bits_until(self, t_s: np.ndarray | float) -> np.ndarray | float:
        """Bits the link can carry from time 0 to t_s: C(t) = integral of the rate."""
        k, t = _segment(self.times_s, t_s, self.period_s)
        out = self._cum_bits[k] + (t - self.times_s[k]) * self.rates_bps[k]
        if self.period_s:
            out = out + np.floor(np.asarray(t_s, dtype=float) / self.period_s) * self._period_bits
        return out if np.ndim(out) else float(out)

    def finish_time(self, start_s: np.ndarray | float, bits: np.ndarray | float) -> np.ndarray | float:
        """When a transmission of `bits` starting at start_s ends: C^-1(C(start) + bits), exact for the trace."""
        if self.is_constant:
            out = np.asarray(start_s, dtype=float) + np.asarray(bits, dtype=float) / self.rates_bps[0]
            return out if out.ndim else float(out)
        target = np.asarray(self.bits_until(start_s), dtype=float) + np.asarray(bits, dtype=float)
        if self.period_s:
            return self._finish_periodic(np.asarray(start_s, dtype=float), target)
        k = np.clip(np.searchsorted(self._cum_bits, target, side="right") - 1, 0, None)
        # skip zero-rate segments: the transmission cannot end inside them
        k = np.where(self.rates_bps[k] > 0, k, np.minimum(k + 1, len(self.rates_bps) - 1))
        out = self.times_s[k] + (target - self._cum_bits[k]) / self.rates_bps[k]
        out = np.maximum(out, np.asarray(start_s, dtype=float))
        return out if out.ndim else float(out)

    def _finish_periodic(self, start_s: np.ndarray, target: np.ndarray) -> np.ndarray | float:
        """C^-1 of a repeating trace: whole periods, then the step inside the period where the target is reached."""
        n = np.floor(target / self._period_bits)
        rem = target - n * self._period_bits
        last = rem <= 0  # reached exactly at a period's end: the end of the previous period's last bits
        n, rem = np.where(last & (n > 0), n - 1, n), np.where(last & (n > 0), self._period_bits, rem)
        k = np.clip(np.searchsorted(self._cum_bits, rem, side="left") - 1, 0, len(self.rates_bps) - 1)
        out = n * self.period_s + self.times_s[k] + (rem - self._cum_bits[k]) / np.where(self.rates_bps[k] > 0,
                                                                                       self.rates_bps[k], np.inf)
        out = np.maximum(out, start_s)
        return out if out.ndim else float(out)

    @property
    def end_s(self) -> float:
        """Where the trace's own data ends: its period, or its last step (after which the last rate holds)."""
        return self.period_s or float(self.times_s[-1])

    def shifted(self, offset_s: float) -> "RateTrace":
        """The same link seen offset_s seconds into the trace: rate'(t) = rate(t + offset_s)."""
        if offset_s == 0:
            return self
        if self.period_s:
            o = offset_s % self.period_s
            k = int(np.searchsorted(self.times_s, o, side="right") - 1)
            times = np.concatenate(([0.0], self.times_s[k + 1:] - o, self.times_s[:k + 1] + self.period_s - o))
            rates = np.concatenate((self.rates_bps[k:], self.rates_bps[:k + 1]))
            keep = np.concatenate(([True], np.diff(times) > 0)) & (times < self.period_s)
            return RateTrace(times[keep], rates[keep], self.period_s)
        if offset_s >= self.times_s[-1] and len(self.times_s) > 1:
            raise EdgesimError(f"offset {offset_s:g} s is at or beyond the trace's end ({self.times_s[-1]:g} s)")
        k = int(np.searchsorted(self.times_s, offset_s, side="right") - 1)
        return RateTrace(np.concatenate(([0.0], self.times_s[k + 1:] - offset_s)), self.rates_bps[k:])


@dataclass(frozen=True)
class DelayTrace:
    """One-way propagation delay over time: half the round-trip time of a trace's rtt_ms column, stepwise."""

    times_s: np.ndarray
    one_way_s: np.ndarray
    period_s: float = 0.0

    def at(self, t_s: np.ndarray | float) -> np.ndarray:
        """One-way delay at times t_s."""
        k, _ = _segment(self.times_s, t_s, self.period_s)
        return self.one_way_s[k]

    def shifted(self, offset_s: float) -> "DelayTrace":
        """The same delays seen offset_s seconds into the trace."""
        if offset_s == 0:
            return self
        rate = RateTrace(self.times_s, np.ones_like(self.one_way_s), self.period_s).shifted(offset_s)
        return DelayTrace(rate.times_s, self.at(rate.times_s + offset_s), self.period_s)


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


#: the most rows a trace (link, capture or dataset) may hold: 11.6 days of a 1 s trace
MAX_TRACE_ROWS = 1_000_000
#: the largest trace file read, in bytes (checked before reading)
MAX_TRACE_BYTES = 100_000_000


def check_trace_size(path: Path) -> None:
    """A trace file over MAX_TRACE_BYTES is refused before it is read (a missing one is the reader's to report)."""
    try:
        size = Path(path).stat().st_size
    except OSError:
        return
    if size > MAX_TRACE_BYTES:
        raise EdgesimError(f"{path}: {size:,} bytes; a trace is at most {MAX_TRACE_BYTES:,} bytes and "
                           f"{MAX_TRACE_ROWS:,} rows")


def check_trace_rows(path: Path, rows: int, what: str = "trace") -> None:
    """One line when a trace holds more than MAX_TRACE_ROWS rows."""
    if rows > MAX_TRACE_ROWS:
        raise EdgesimError(f"{path}: more than {MAX_TRACE_ROWS:,} rows; a {what} holds at most {MAX_TRACE_ROWS:,} "
                           "(resample it, e.g. to 1 s steps)")


def trace_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of every line that is neither blank nor a `#` comment; one line if unreadable."""
    check_trace_size(path)
    numbered = [(n, line.strip()) for n, line in enumerate(read_text(path, "trace").splitlines(), start=1)]
    kept = [(n, line) for n, line in numbered if line and not line.startswith("#")]
    check_trace_rows(path, len(kept) - 1, "link trace")
    return kept


def _read_columns(path: Path, column: str, needs: str) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(file line of each row, time_s, `column`) of a link trace CSV (extra columns and `#` comment lines are
    skipped): times from 0 and strictly increasing, values finite and >= 0; one `FILE:LINE: what` line if not."""
    numbered = trace_lines(path)
    if not numbered:
        raise EdgesimError(f"{path}:1: link trace is empty (needs a header time_s,data_rate_mbps and rows)")
    linenos = [n for n, _ in numbered]
    try:
        reader = csv.DictReader(line for _, line in numbered)
        fields = reader.fieldnames or []
        if "time_s" not in fields or column not in fields:
            raise EdgesimError(f"{path}:{linenos[0]}: {needs} (found: {', '.join(fields) or 'none'})")
        times, values = [], []
        for lineno, row in zip(linenos[1:], reader):
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
    except csv.Error as exc:
        raise EdgesimError(f"{path}: cannot read link trace: {exc}") from None
    if not times:
        raise EdgesimError(f"{path}:{linenos[0]}: link trace has no rows after the header")
    if times[0] != 0.0:
        raise EdgesimError(f"{path}:{linenos[1]}: the first time_s must be 0")
    return linenos[1:], np.asarray(times), np.asarray(values)


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


DEFAULT_PACKET_PAYLOAD_BYTES = 1460
"""Payload per packet when a scenario names none: the TCP MSS of a 1500-byte Ethernet/Wi-Fi MTU (RFC 879)."""


@dataclass(frozen=True)
class Packetiser:
    """Turns a payload into bytes on the wire: per-packet overhead and resent lost packets."""

    payload_bytes: int = DEFAULT_PACKET_PAYLOAD_BYTES
    overhead_bytes: int = 0
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
