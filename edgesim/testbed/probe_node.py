"""The two ends of the network-only check, run inside the testbed's namespaces (standard library only: they
start in a fraction of a second)."""

from __future__ import annotations

import json
import sys
import time

from edgesim.testbed.net import EDGE_ADDR
from edgesim.testbed.wire import connect, listen, recv_message, send_message

PROBE_PORT = 5201


def _serve(congestion_control: str) -> None:
    """Accept one client; stamp the arrival of each message's last byte, acknowledge it; print the stamps at EOF."""
    srv = listen(EDGE_ADDR, PROBE_PORT, congestion_control)
    print("listening", flush=True)
    conn, _ = srv.accept()
    ends = []
    while (msg := recv_message(conn)) is not None:
        ends.append(time.monotonic())
        conn.sendall(b"k")
    print(json.dumps(ends), flush=True)


def _send(congestion_control: str, sizes: list[int]) -> None:
    """Send one message per size, each after the previous one's acknowledgement; print the send times."""
    sock = connect(EDGE_ADDR, PROBE_PORT, congestion_control)
    starts = []
    for k, size in enumerate(sizes):
        payload = bytes(size)
        starts.append(time.monotonic())
        send_message(sock, k, payload)
        if sock.recv(1) != b"k":
            raise SystemExit("probe: no acknowledgement")
    sock.close()
    print(json.dumps(starts), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        _serve(sys.argv[2])
    else:
        _send(sys.argv[2], [int(x) for x in sys.argv[3:]])
