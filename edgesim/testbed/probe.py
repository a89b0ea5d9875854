"""The network-only check: timed TCP transfers through a shaped link, against simulator/link.py's prediction.

No torch: a client in the mobile device's namespace sends messages of given sizes one after the other (each
after the previous one's 1-byte acknowledgement, optionally after an idle gap), a server in the edge server's
namespace stamps when each message's last byte arrived; both stamp CLOCK_MONOTONIC, which the namespaces share, so
transfer = end - start. The two are pinned to different CPUs where there are two, and the check compares the
fastest repeat: load on the host can only add time to a transfer (a late wake-up of a process or of the helper),
never take it away, so the fastest repeat is the closest to the link's own time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from typing import Callable, Optional

import numpy as np

from edgesim.testbed.net import CLOUD_ADDR, EDGE_ADDR, LinkSettings, ShapedLink
from edgesim.testbed.wire import HEADER_BYTES
from simulator.link import LINUX_RTO_MIN_S, TCP_IP_OVERHEAD_BYTES, TCP_PAYLOAD_BYTES, Packetiser, RateTrace, SlowStart


def _model_s(link: RateTrace, start_s: float, size_bytes: int, delay_s: float) -> float:
    """simulator/link.py's time for one message starting at start_s on an idle link: its wire bits (TCP/IP framing
    of TCP_PAYLOAD_BYTES-byte segments with TCP_IP_OVERHEAD_BYTES each, message header included) through
    link.transfer_end, plus the one-way delay."""
    wire = Packetiser(TCP_PAYLOAD_BYTES, TCP_IP_OVERHEAD_BYTES).wire_bytes(np.array([size_bytes + HEADER_BYTES]))
    return float(link.transfer_end(start_s, float(wire[0]) * 8.0, 0.0)) - start_s + delay_s


def predicted_transfer_s(size_bytes: int, rate_bps: float, delay_s: float, slow_start_rtt_s: Optional[float] = None
                         ) -> float:
    """simulator/link.py's time for one message at a constant rate (_model_s); with
    slow_start_rtt_s, the same message after a long idle on a link that restarts slow start (link.SlowStart with
    that RTT)."""
    link = RateTrace.constant(rate_bps / 1e6)
    if slow_start_rtt_s is not None:
        link = replace(link, slow_start=SlowStart(slow_start_rtt_s, TCP_PAYLOAD_BYTES + TCP_IP_OVERHEAD_BYTES))
    return _model_s(link, 1e3, size_bytes, delay_s)  # long after the link's start (time 0), whence idle is counted


def predicted_step_transfer_s(size_bytes: int, rate_bps: float, new_rate_bps: float, change_s: float,
                              delay_s: float) -> float:
    """simulator/link.py's time for one message whose link changes from rate_bps to new_rate_bps change_s after
    the message starts (_model_s over the two steps)."""
    return _model_s(RateTrace(np.array([0.0, change_s]), np.array([rate_bps, new_rate_bps])), 0.0, size_bytes, delay_s)


@dataclass(frozen=True)
class TransferCheck:
    """Measured transfers of one size against the link model's prediction."""

    size_bytes: int
    measured_s: list[float]
    predicted_s: float

    @property
    def median_s(self) -> float:
        return float(np.median(self.measured_s))

    @property
    def fastest_s(self) -> float:
        return float(np.min(self.measured_s))

    @property
    def relative_error(self) -> float:
        """Fastest measured / predicted - 1 (load only adds time: see the module's docstring)."""
        return self.fastest_s / self.predicted_s - 1.0


def probe_cpus() -> tuple[Optional[int], Optional[int]]:
    """(client's CPU, server's CPU): the first and the last this process may use, None where there is only one."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[-1]) if len(cpus) > 1 else (None, None)


def _timed_messages(settings: LinkSettings, sizes: list[int], gap_s: float = 0.0, wan: bool = False,
                    during: Optional[Callable[[ShapedLink], None]] = None) -> list[tuple[float, float]]:
    """Shape a link, send one message per size (each gap_s after the previous one's acknowledgement) and return
    (start, end) of each on the monotonic clock; `during(link)` runs in this process while the client sends.
    wan: the hop shaped with `settings` is the WAN, from the edge server's namespace to the cloud's (the uplink
    then as fast, unused)."""
    client_cpu, server_cpu = probe_cpus()
    client_side, server_side, addr = ("edge", "cloud", CLOUD_ADDR) if wan else ("mobile", "edge", EDGE_ADDR)

    def probe(role: str, cpu: Optional[int], *args: str) -> list[str]:
        pin = ["--cpu", str(cpu)] if cpu is not None else []
        return [sys.executable, "-m", "edgesim.testbed.probe_node", role, settings.congestion_control, *pin,
                "--addr", addr, *args]

    with ShapedLink(settings, wan=settings if wan else None) as link:
        server = subprocess.Popen(link.command(server_side, probe("serve", server_cpu)), stdout=subprocess.PIPE,
                                  text=True)
        client = None
        try:
            if server.stdout.readline().strip() != "listening":
                raise RuntimeError("probe server did not start")
            client = subprocess.Popen(link.command(client_side, probe("send", client_cpu, "--gap-s", str(gap_s),
                                                                       *map(str, sizes))),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if during is not None:
                during(link)
            out, err = client.communicate(timeout=120 + len(sizes) * gap_s)
            if client.returncode != 0:
                raise RuntimeError(f"probe client failed: {err.strip()[-400:]}")
            ends = json.loads(server.stdout.readline())
            server.wait(timeout=10)
        finally:
            for proc in (server, client):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
    return list(zip(json.loads(out), ends))


def check_transfers(settings: LinkSettings, size_bytes: int, repeats: int = 3, warmup_bytes: int = 200_000,
                    gap_s: float = 0.0, wan: bool = False) -> TransferCheck:
    """Send `repeats` messages of size_bytes after a warm-up message (each gap_s after the previous one's
    acknowledgement) and compare with the model (after a gap beyond the RTO on a link whose TCP restarts slow start
    after idle: the model with link.SlowStart). wan: as _timed_messages."""
    timed = _timed_messages(settings, [warmup_bytes] + [size_bytes] * repeats, gap_s, wan)
    measured = [end - start for start, end in timed[1:]]
    rtt_s = settings.up_delay_s + settings.down_delay_s
    idle = settings.restarts_after_idle and gap_s > rtt_s + LINUX_RTO_MIN_S
    return TransferCheck(size_bytes, measured, predicted_transfer_s(size_bytes, settings.up_rate_bps,
                                                                    settings.up_delay_s, rtt_s if idle else None))


@dataclass(frozen=True)
class StepCheck:
    """One message during which the uplink's rate changed: measured and predicted, and when the change took
    effect, in seconds after the message started."""

    measured_s: float
    predicted_s: float
    change_s: float

    @property
    def relative_error(self) -> float:
        return self.measured_s / self.predicted_s - 1.0


def check_rate_step(settings: LinkSettings, size_bytes: int, new_up_rate_bps: float, change_after_s: float,
                    warmup_bytes: int = 200_000, pause_s: float = 1.0) -> StepCheck:
    """Send size_bytes (after a warm-up message and pause_s idle) while the uplink's rate changes to
    new_up_rate_bps change_after_s after the client starts, and compare with RateTrace.transfer_end over the two
    rates, the change placed where it took effect (between writing it to the helpers and that returning). Where
    the message started is known only afterwards: change_s says where the change fell in it."""
    changed: list[float] = []

    def change(link: ShapedLink) -> None:
        time.sleep(change_after_s)
        before = time.monotonic()
        link.set_rates(new_up_rate_bps, settings.down_rate_bps)
        changed.append((before + time.monotonic()) / 2)

    (_, _), (start, end) = _timed_messages(settings, [warmup_bytes, size_bytes], pause_s, during=change)
    change_s = changed[0] - start
    return StepCheck(end - start, predicted_step_transfer_s(size_bytes, settings.up_rate_bps, new_up_rate_bps,
                                                            change_s, settings.up_delay_s), change_s)
