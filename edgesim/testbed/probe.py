"""The network-only check: timed TCP transfers through a shaped link, against simulator/link.py's prediction.

No torch: a client in the mobile device's namespace sends messages of given sizes one after the other (each
after the previous one's 1-byte acknowledgement), a server in the edge server's namespace stamps when each
message's last byte arrived; both stamp CLOCK_MONOTONIC, which the namespaces share, so transfer = end - start.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

from edgesim.testbed.net import LinkSettings, ShapedLink
from edgesim.testbed.wire import HEADER_BYTES
from simulator.link import TCP_IP_OVERHEAD_BYTES, TCP_PAYLOAD_BYTES, Packetiser


def predicted_transfer_s(size_bytes: int, rate_bps: float, delay_s: float) -> float:
    """simulator/link.py's time for one message: wire bytes (TCP/IP framing of TCP_PAYLOAD_BYTES-byte segments
    with TCP_IP_OVERHEAD_BYTES each) at the link rate, plus the one-way delay."""
    wire = Packetiser(TCP_PAYLOAD_BYTES, TCP_IP_OVERHEAD_BYTES).wire_bytes(np.array([size_bytes + HEADER_BYTES]))
    return float(wire[0]) * 8.0 / rate_bps + delay_s


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
    def relative_error(self) -> float:
        """Measured median / predicted - 1."""
        return self.median_s / self.predicted_s - 1.0


def check_transfers(settings: LinkSettings, size_bytes: int, repeats: int = 3, warmup_bytes: int = 200_000) -> TransferCheck:
    """Shape a link, send `repeats` messages of size_bytes after a warm-up message, and compare with the model."""
    with ShapedLink(settings) as link:
        server = subprocess.Popen(link.command("edge", [sys.executable, "-m", "edgesim.testbed.probe_node", "serve",
                                                          settings.congestion_control]),
                                  stdout=subprocess.PIPE, text=True)
        try:
            if server.stdout.readline().strip() != "listening":
                raise RuntimeError("probe server did not start")
            client = subprocess.run(link.command("mobile", [sys.executable, "-m", "edgesim.testbed.probe_node", "send",
                                                             settings.congestion_control, str(warmup_bytes)] + [str(size_bytes)] * repeats),
                                    capture_output=True, text=True, timeout=120)
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
    return TransferCheck(size_bytes, measured, predicted_transfer_s(size_bytes, settings.up_rate_bps, settings.up_delay_s))
