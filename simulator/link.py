"""Wireless link: packetisation, per-packet overhead, loss with retransmission, constant or traced data rate.

A link is busy for size/rate (serialisation); propagation delay pipelines and does not hold the link
(STYLE.md rule 11).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from profilers.errors import EdgesimError


@dataclass(frozen=True)
class RateTrace:
    """Piecewise-constant data rate: rates_bps[k] holds from times_s[k] until times_s[k+1]; the last one holds on."""

    times_s: np.ndarray
    rates_bps: np.ndarray

    def __post_init__(self) -> None:
        cum = np.concatenate(([0.0], np.cumsum(np.diff(self.times_s) * self.rates_bps[:-1])))
        object.__setattr__(self, "_cum_bits", cum)

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
        k = int(np.searchsorted(self.times_s, t_s, side="right")) - 1
        return float(self.rates_bps[max(k, 0)])

    def bits_until(self, t_s: np.ndarray | float) -> np.ndarray | float:
        """Bits the link can carry from time 0 to t_s: C(t) = integral of the rate."""
        t = np.asarray(t_s, dtype=float)
        k = np.clip(np.searchsorted(self.times_s, t, side="right") - 1, 0, None)
        out = self._cum_bits[k] + (t - self.times_s[k]) * self.rates_bps[k]
        return out if out.ndim else float(out)

    def finish_time(self, start_s: np.ndarray | float, bits: np.ndarray | float) -> np.ndarray | float:
        """When a transmission of `bits` starting at start_s ends: C^-1(C(start) + bits), exact for the trace."""
        if self.is_constant:
            out = np.asarray(start_s, dtype=float) + np.asarray(bits, dtype=float) / self.rates_bps[0]
            return out if out.ndim else float(out)
        target = np.asarray(self.bits_until(start_s), dtype=float) + np.asarray(bits, dtype=float)
        k = np.clip(np.searchsorted(self._cum_bits, target, side="right") - 1, 0, None)
        # skip zero-rate segments: the transmission cannot end inside them
        k = np.where(self.rates_bps[k] > 0, k, np.minimum(k + 1, len(self.rates_bps) - 1))
        out = self.times_s[k] + (target - self._cum_bits[k]) / self.rates_bps[k]
        out = np.maximum(out, np.asarray(start_s, dtype=float))
        return out if out.ndim else float(out)


def trace_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of every line that is neither blank nor a `#` comment; one line if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EdgesimError(f"{path}: trace not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgesimError(f"{path}: cannot read trace: {exc}") from None
    numbered = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    return [(n, line) for n, line in numbered if line and not line.startswith("#")]


def load_rate_trace(path: str | Path, scale: float = 1.0) -> RateTrace:
    """Read a CSV trace with columns time_s,data_rate_mbps (extra columns such as rtt_ms and `#` comment lines
    are skipped); one clear `FILE:LINE: what` line on any problem."""
    path = Path(path)
    numbered = trace_lines(path)
    if not numbered:
        raise EdgesimError(f"{path}:1: link trace is empty (needs a header time_s,data_rate_mbps and rows)")
    linenos = [n for n, _ in numbered]
    try:
        reader = csv.DictReader(line for _, line in numbered)
        fields = reader.fieldnames or []
        if "time_s" not in fields or "data_rate_mbps" not in fields:
            raise EdgesimError(f"{path}:{linenos[0]}: link trace needs columns time_s,data_rate_mbps "
                               f"(found: {', '.join(fields) or 'none'})")
        times, rates = [], []
        for lineno, row in zip(linenos[1:], reader):
            try:
                t, r = float(row["time_s"]), float(row["data_rate_mbps"])
            except (TypeError, ValueError):
                raise EdgesimError(f"{path}:{lineno}: time_s and data_rate_mbps must be numbers") from None
            if not (np.isfinite(t) and np.isfinite(r)) or r < 0 or t < 0:
                raise EdgesimError(f"{path}:{lineno}: time_s and data_rate_mbps must be finite and >= 0")
            if times and t <= times[-1]:
                raise EdgesimError(f"{path}:{lineno}: time_s must increase strictly")
            times.append(t)
            rates.append(r * scale * 1e6)
    except csv.Error as exc:
        raise EdgesimError(f"{path}: cannot read link trace: {exc}") from None
    if not times:
        raise EdgesimError(f"{path}:{linenos[0]}: link trace has no rows after the header")
    if times[0] != 0.0:
        raise EdgesimError(f"{path}:{linenos[1]}: the first time_s must be 0")
    if rates[-1] <= 0:
        raise EdgesimError(f"{path}:{linenos[len(times)]}: the last data_rate_mbps must be > 0 "
                           "(it holds after the trace ends)")
    return RateTrace(np.asarray(times), np.asarray(rates))


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
        keep = 1.0 - self.loss_probability
        resent_full = rng.negative_binomial(np.maximum(full, 1), keep) * (full > 0)
        resent_last = rng.negative_binomial(1, keep, size=size.shape) * (last > 0)
        return resent_full * (self.payload_bytes + self.overhead_bytes) + resent_last * (last + self.overhead_bytes)
