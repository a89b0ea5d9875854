"""One testbed process: the mobile device or the edge server, pinned to its cores, running real model parts.

Started by the runner inside its namespace (`python -m edgesim.testbed.node ROLE ...`); the runner sends one
JSON command a line on stdin and reads one JSON reply a line on stdout. Every stamp is time.monotonic()
(CLOCK_MONOTONIC, shared by the namespaces of one host; a second host's stamps are shifted by the clock offset
the runner estimates, edgesim.testbed.clock).

Per frame the mobile device stamps capture, head start and end, encoded (handed to TCP) and done (result back);
the edge server stamps received (last byte in), tail start (taken from its queue), decoded and tail end. A frame's
delay is done - capture and its components are the differences of consecutive stamps, so they add up to it.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Optional

import profilers.models  # noqa: F401  (registers the models)
from edgesim.testbed.wire import connect, listen, recv_message, send_message
from profilers.codec import decode_image, decode_tensor, encode_image, encode_tensor
from profilers.measure import MeasureOptions, _model_input, host_hardware, real_image, steady_allocator
from profilers.models.registry import build
from profilers.profiling import measure_into
from profilers.schema import dump_profile

END_OF_RUN = -1
"""Frame id of the message that ends a run (the edge server then reports its stamps)."""


@dataclass(frozen=True)
class RoutePlan:
    """What a frame's route runs: the model, the layer index it is cut at and the encoding on the link.

    layer_index 0: the input crosses (full offloading); layer_index = number of blocks: nothing crosses (local)."""

    model_id: str
    layer_index: int
    encoding: str


class Models:
    """The registered models this process runs, built once with random weights (timing does not depend on them)."""

    def __init__(self, model_ids: list[str]) -> None:
        import torch

        torch.manual_seed(0)
        self.models = {m: build(m) for m in model_ids}
        first = self.models[model_ids[0]]
        c, h, w = first.input_shape
        self.image, _ = real_image(h, w)
        self.input, _, _ = _model_input(first, "cpu")
        self.shapes: dict[tuple[str, int], list[int]] = {}
        with torch.inference_mode():  # the tensor shape at every block boundary (what a tail decodes into)
            for mid, model in self.models.items():
                x = self.input
                self.shapes[(mid, 0)] = list(model.input_shape)
                for k, block in enumerate(model.blocks, start=1):
                    x = block(x)
                    self.shapes[(mid, k)] = list(x.shape[1:])

    def run(self, model_id: str, start: int, end: int, x):
        """Blocks [start, end) of the model on x."""
        for block in self.models[model_id].blocks[start:end]:
            x = block(x)
        return x

    def n_blocks(self, model_id: str) -> int:
        return len(self.models[model_id].blocks)


def _pin(cores: list[int], threads: int) -> None:
    """This process (and the torch threads it starts) on `cores`, torch with `threads` intra-op threads."""
    os.sched_setaffinity(0, set(cores))
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def _reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------------------------------ mobile


def run_mobile(models: Models, sock, routes: list[RoutePlan], route_of_frame: list[int], capture_s: list[float],
               t0: float) -> list[dict]:
    """Capture at t0 + capture_s, run each frame's head, encode, send; stamp everything; wait for every result."""
    import torch

    n = len(capture_s)
    stamps = [dict(frame=i) for i in range(n)]
    captured: "queue.Queue[Optional[int]]" = queue.Queue()
    outgoing: "queue.Queue[Optional[tuple[int, bytes]]]" = queue.Queue()
    pending = {i for i in range(n) if routes[route_of_frame[i]].layer_index < models.n_blocks(routes[route_of_frame[i]].model_id)}
    all_back = threading.Event()
    if not pending:
        all_back.set()

    def camera() -> None:
        for i, t in enumerate(capture_s):
            wait = t0 + t - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            stamps[i]["capture"] = time.monotonic()
            captured.put(i)
        captured.put(None)

    def sender() -> None:
        while (item := outgoing.get()) is not None:
            send_message(sock, *item)

    def receiver() -> None:
        left = set(pending)
        while left:
            msg = recv_message(sock)
            if msg is None:
                break
            stamps[msg[0]]["done"] = time.monotonic()
            left.discard(msg[0])
        all_back.set()

    threads = [threading.Thread(target=f, daemon=True) for f in (camera, sender, receiver)]
    for th in threads:
        th.start()
    with torch.inference_mode():
        while (i := captured.get()) is not None:
            route = routes[route_of_frame[i]]
            s = stamps[i]
            s["head_start"] = time.monotonic()
            if route.layer_index == 0:
                s["head_end"] = s["head_start"]
                payload = encode_image(models.image, route.encoding)
            else:
                out = models.run(route.model_id, 0, route.layer_index, models.input)
                s["head_end"] = time.monotonic()
                if i not in pending:  # local: the head was the whole model
                    s["encoded"] = s["done"] = s["head_end"]
                    continue
                payload = encode_tensor(out[0], route.encoding)
            s["encoded"] = time.monotonic()
            outgoing.put((i, payload))
    outgoing.put(None)
    all_back.wait()
    send_message(sock, END_OF_RUN, b"")
    return stamps


# ------------------------------------------------------------------------------------------------ edge


def run_edge(models: Models, conn, routes: list[RoutePlan], route_of_frame: list[int]) -> list[dict]:
    """Receive frames until END_OF_RUN; decode, run each tail in arrival order, send the result back; stamp."""
    import torch

    stamps: dict[int, dict] = {}
    arrived: "queue.Queue[Optional[tuple[int, bytes]]]" = queue.Queue()

    def receiver() -> None:
        while True:
            msg = recv_message(conn)
            if msg is None or msg[0] == END_OF_RUN:
                break
            stamps[msg[0]] = {"frame": msg[0], "received": time.monotonic()}
            arrived.put(msg)
        arrived.put(None)

    th = threading.Thread(target=receiver, daemon=True)
    th.start()
    with torch.inference_mode():
        while (item := arrived.get()) is not None:
            i, payload = item
            route, s = routes[route_of_frame[i]], stamps[i]
            s["tail_start"] = time.monotonic()
            shape = models.shapes[(route.model_id, route.layer_index)]
            x = (decode_image(payload, route.encoding, tuple(shape)) if route.layer_index == 0
                 else decode_tensor(payload, route.encoding, shape))
            s["decoded"] = time.monotonic()
            out = models.run(route.model_id, route.layer_index, models.n_blocks(route.model_id), x)
            s["tail_end"] = time.monotonic()
            send_message(conn, i, out.detach().float().contiguous().numpy().tobytes())
    return [stamps[k] for k in sorted(stamps)]


# ------------------------------------------------------------------------------------------------ main


def _profile(cmd: dict, threads: int, role: str) -> dict:
    """Measure the models here, under this process's pinning and threads: the device profile's JSON text."""
    hw = host_hardware()
    hw = hw.model_copy(update={"cores": len(os.sched_getaffinity(0))})
    profile = measure_into((build(mid) for mid in cmd["models"]), cmd["name"], MeasureOptions(
        split_points="auto", repeats=cmd["repeats"], warmup=cmd["warmup"], threads=threads,
        idle_gap_s=cmd.get("idle_gap_s", 0.0)), kind=role, hardware=hw, codec_repeats=cmd["codec_repeats"])
    return {"profile": dump_profile(profile)}


def main(argv: Optional[list[str]] = None) -> None:
    """Serve the runner's commands until 'quit' (or the end of stdin)."""
    ap = argparse.ArgumentParser(prog="edgesim.testbed.node")
    ap.add_argument("role", choices=["mobile", "edge"])
    ap.add_argument("--cores", required=True, help="comma-separated CPU numbers")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--models", required=True, help="comma-separated model ids")
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--congestion-control", default="")
    args = ap.parse_args(argv)
    _pin([int(c) for c in args.cores.split(",")], args.threads)
    steady_allocator()  # the run's processes reuse tensor memory as the session profile's do
    models = Models(args.models.split(","))
    if args.role == "edge":
        srv = listen(args.host, args.port, args.congestion_control or None)
        _reply({"listening": True})
        sock, _ = srv.accept()
    else:
        sock = connect(args.host, args.port, args.congestion_control or None)
    import socket

    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _reply({"ready": True})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        if cmd["cmd"] == "profile":
            _reply(_profile(cmd, args.threads, args.role))
            continue
        if cmd["cmd"] == "now":
            _reply({"now": time.monotonic()})
            continue
        routes = [RoutePlan(*r) for r in cmd["routes"]]
        if args.role == "mobile":
            stamps = run_mobile(models, sock, routes, cmd["route_of_frame"], cmd["capture_s"], cmd["t0"])
        else:
            stamps = run_edge(models, sock, routes, cmd["route_of_frame"])
        _reply({"stamps": stamps})


if __name__ == "__main__":
    main()
