"""The two ends of the network-only check, run inside the testbed's namespaces (standard library only: they
start in a fraction of a second).

    python -m edgesim.testbed.probe_node serve CC [--cpu N]
    python -m edgesim.testbed.probe_node send CC [--cpu N] [--gap-s S] SIZE...
"""

from __future__ import annotations

import argparse
import json
import os
import time

from edgesim.testbed.net import EDGE_ADDR
from edgesim.testbed.wire import connect, listen, recv_message, send_message

PROBE_PORT = 5201


def _serve(congestion_control: str, addr: str = EDGE_ADDR) -> None:
    """Accept one client; stamp the arrival of each message's last byte, acknowledge it; print the stamps at EOF."""
    srv = listen(addr, PROBE_PORT, congestion_control)
    print("listening", flush=True)
    conn, _ = srv.accept()
    ends = []
    while (msg := recv_message(conn)) is not None:
        ends.append(time.monotonic())
        conn.sendall(b"k")
    print(json.dumps(ends), flush=True)


def _send(congestion_control: str, sizes: list[int], gap_s: float = 0.0, addr: str = EDGE_ADDR) -> None:
    """Send one message per size, each gap_s after the previous one's acknowledgement; print the send times."""
    sock = connect(addr, PROBE_PORT, congestion_control)
    starts = []
    for k, size in enumerate(sizes):
        payload = bytes(size)
        if k and gap_s > 0:
            time.sleep(gap_s)
        starts.append(time.monotonic())
        send_message(sock, k, payload)
        if sock.recv(1) != b"k":
            raise SystemExit("probe: no acknowledgement")
    sock.close()
    print(json.dumps(starts), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="probe_node")
    parser.add_argument("role", choices=["serve", "send"])
    parser.add_argument("congestion_control")
    parser.add_argument("sizes", nargs="*", type=int)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    parser.add_argument("--gap-s", type=float, default=0.0, help="send: idle time before each message after the first")
    parser.add_argument("--addr", default=EDGE_ADDR, help="the server's address (the cloud's for the WAN hop)")
    args = parser.parse_intermixed_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.role == "serve":
        _serve(args.congestion_control, args.addr)
    else:
        _send(args.congestion_control, args.sizes, args.gap_s, args.addr)
