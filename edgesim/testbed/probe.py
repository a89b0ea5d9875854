"""The network-only check: timed TCP transfers through a shaped link, against simulator/link.py's prediction.

No torch: a client in the mobile device's namespace sends messages of given sizes one after the other (each
after the previous one's 1-byte acknowledgement, optionally after an idle gap), a server in the edge server's
namespace stamps when each message's last byte arrived; both stamp CLOCK_MONOTONIC, which the namespaces share, so
transfer = end - start. The two are pinned to different CPUs where there are two, and the check compares the
fastest repeat: load on the host can only add time to a transfer (a late wake-up, a late tbf timer), never take
it away, so the fastest repeat is the closest to the link's own time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from edgesim.testbed.net import CLOUD_ADDR, EDGE_ADDR, LinkSettings, ShapedLink
from edgesim.testbed.wire import HEADER_BYTES
from simulator.link import LINUX_RTO_MIN_S, TCP_IP_OVERHEAD_BYTES, TCP_PAYLOAD_BYTES, Packetiser, RateTrace, SlowStart


def predicted_transfer_s(size_bytes: int, rate_bps: float, delay_s: float, slow_start_rtt_s: Optional[float] = None
                         ) -> float:
    """simulator/link.py's time for one message: wire bytes (TCP/IP framing of TCP_PAYLOAD_BYTES-byte segments
    with TCP_IP_OVERHEAD_BYTES each) at the link rate, plus the one-way delay; with slow_start_rtt_s, the same
    message after a long idle on a link that restarts slow start (link.SlowStart with that RTT)."""
    wire = Packetiser(TCP_PAYLOAD_BYTES, TCP_IP_OVERHEAD_BYTES).wire_bytes(np.array([size_bytes + HEADER_BYTES]))
    link = RateTrace.constant(rate_bps / 1e6)
    if slow_start_rtt_s is not None:
        link = replace(link, slow_start=SlowStart(slow_start_rtt_s, TCP_PAYLOAD_BYTES + TCP_IP_OVERHEAD_BYTES))
    start_s = 1e3  # long after the link's start (time 0), when a transfer_end counts its idle from
    return link.transfer_end(start_s, float(wire[0]) * 8.0, 0.0) - start_s + delay_s


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


def check_transfers(settings: LinkSettings, size_bytes: int, repeats: int = 3, warmup_bytes: int = 200_000,
                    gap_s: float = 0.0, wan: bool = False) -> TransferCheck:
    """Shape a link, send `repeats` messages of size_bytes after a warm-up message (each gap_s after the previous
    one's acknowledgement), and compare with the model (after a gap beyond the RTO on a link whose TCP restarts
    slow start after idle: the model with link.SlowStart). wan: the hop shaped with `settings` is the WAN, from
    the edge server's namespace to the cloud's (the uplink then as fast, unused)."""
    client_cpu, server_cpu = probe_cpus()
    client_side, server_side, addr = ("edge", "cloud", CLOUD_ADDR) if wan else ("mobile", "edge", EDGE_ADDR)

    def probe(role: str, cpu: Optional[int], *args: str) -> list[str]:
        pin = ["--cpu", str(cpu)] if cpu is not None else []
        return [sys.executable, "-m", "edgesim.testbed.probe_node", role, settings.congestion_control, *pin,
                "--addr", addr, *args]

    with ShapedLink(settings, wan=settings if wan else None) as link:
        server = subprocess.Popen(link.command(server_side, probe("serve", server_cpu)), stdout=subprocess.PIPE,
                                  text=True)
        try:
            if server.stdout.readline().strip() != "listening":
                raise RuntimeError("probe server did not start")
            client = subprocess.run(link.command(client_side, probe("send", client_cpu, "--gap-s", str(gap_s),
                                                                 str(warmup_bytes), *[str(size_bytes)] * repeats)),
                                    capture_output=True, text=True, timeout=120 + repeats * gap_s)
            if client.returncode != 0:
                raise RuntimeError(f"probe client failed: {client.stderr.strip()[-400:]}")
            ends = json.loads(server.stdout.readline())
            server.wait(timeout=10)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    starts = json.loads(client.stdout)
    measured = [e - s for s, e in zip(starts[1:], ends[1:])]
    rtt_s = settings.up_delay_s + settings.down_delay_s
    idle = settings.restarts_after_idle and gap_s > rtt_s + LINUX_RTO_MIN_S
    return TransferCheck(size_bytes, measured, predicted_transfer_s(size_bytes, settings.up_rate_bps,
                                                                    settings.up_delay_s, rtt_s if idle else None))
