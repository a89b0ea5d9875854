"""One testbed process: a mobile device, the edge server or the cloud, pinned to its cores, running real model parts.

Started by the runner inside its namespace (`python -m edgesim.testbed.node ROLE ...`); the runner sends one
JSON command a line on stdin and reads one JSON reply a line on stdout. Every stamp is time.monotonic()
(CLOCK_MONOTONIC, shared by the namespaces of one host; a second host's stamps are shifted by the clock offset
the runner estimates, edgesim.testbed.clock).

Per frame the mobile device stamps capture, head start and end, encoded (handed to TCP) and done (result back);
the edge server stamps received (last byte in), tail start (taken from its queue), decoded and tail end, and for a
frame that goes on to the cloud, wan_encoded (its part's output encoded, or the frame as it came when it only
relays it) and back (the cloud's result in); the cloud stamps received, tail start, decoded and tail end as the
edge server does (the runner names them cloud_*). A frame's delay is done - capture and its components are the
differences of consecutive stamps, so they add up to it. The edge server takes the frames of every mobile device
in one FIFO queue (one server, as the simulator's edge server with servers: 1).
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

    layer_index 0: the input crosses (full offloading); layer_index = number of blocks: nothing crosses (local).
    cloud_layer: where the cloud's part begins (None: nothing runs in the cloud; = layer_index: the edge server relays
    the frame as it came), sent over the WAN in wan_encoding."""

    model_id: str
    layer_index: int
    encoding: str
    cloud_layer: Optional[int] = None
    wan_encoding: str = ""


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

    def decode(self, model_id: str, layer: int, encoding: str, payload: bytes):
        """The tensor a part starting at block `layer` takes, from its payload (the input image at layer 0)."""
        shape = self.shapes[(model_id, layer)]
        return (decode_image(payload, encoding, tuple(shape)) if layer == 0
                else decode_tensor(payload, encoding, shape))


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
               t0: float, frame_ids: Optional[list[int]] = None) -> list[dict]:
    """Capture at t0 + capture_s, run each frame's head, encode, send; stamp everything; wait for every result.

    frame_ids: the run's ids of this device's frames (default 0..n-1), which index route_of_frame and name the
    frames on the wire."""
    import torch

    n = len(capture_s)
    ids = list(range(n)) if frame_ids is None else list(frame_ids)
    local_of = {f: i for i, f in enumerate(ids)}
    stamps = [dict(frame=f) for f in ids]
    captured: "queue.Queue[Optional[int]]" = queue.Queue()
    outgoing: "queue.Queue[Optional[tuple[int, bytes]]]" = queue.Queue()
    route_of = [routes[route_of_frame[f]] for f in ids]
    pending = {i for i in range(n) if route_of[i].layer_index < models.n_blocks(route_of[i].model_id)}
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
            i = local_of[msg[0]]
            stamps[i]["done"] = time.monotonic()
            left.discard(i)
        all_back.set()

    threads = [threading.Thread(target=f, daemon=True) for f in (camera, sender, receiver)]
    for th in threads:
        th.start()
    with torch.inference_mode():
        while (i := captured.get()) is not None:
            route, s = route_of[i], stamps[i]
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
            outgoing.put((ids[i], payload))
    outgoing.put(None)
    all_back.wait()
    send_message(sock, END_OF_RUN, b"")
    return stamps


# ------------------------------------------------------------------------------------------------ edge, cloud


def run_server(models: Models, conns: list, routes: list[RoutePlan], route_of_frame: list[int], cloud_tier: bool = False,
               wan=None) -> list[dict]:
    """Receive frames from every connection until each sends END_OF_RUN; decode and run each frame's part in arrival
    order (one FIFO queue), send the result back or, with `wan`, on to the cloud; stamp.

    The edge server (cloud_tier False) runs blocks [layer_index, cloud_layer or the end); a frame whose cloud part
    begins where it arrived is relayed as it came, without the queue. The cloud (cloud_tier True, one connection:
    the edge server's) runs [cloud_layer, end) and echoes END_OF_RUN after its last result."""
    import torch

    stamps: dict[int, dict] = {}
    reply_to: dict[int, object] = {}
    locks = {id(c): threading.Lock() for c in conns}
    arrived: "queue.Queue[Optional[tuple[int, bytes]]]" = queue.Queue()
    forward: "queue.Queue[Optional[tuple[int, bytes]]]" = queue.Queue()

    def answer(i: int, payload: bytes) -> None:
        conn = reply_to[i]
        with locks[id(conn)]:
            send_message(conn, i, payload)

    def receiver(conn) -> None:
        while True:
            msg = recv_message(conn)
            if msg is None or msg[0] == END_OF_RUN:
                break
            t = time.monotonic()
            stamps[msg[0]], reply_to[msg[0]] = {"frame": msg[0], "received": t}, conn
            route = routes[route_of_frame[msg[0]]]
            if not cloud_tier and route.cloud_layer == route.layer_index:  # nothing to run here: relayed
                stamps[msg[0]].update(tail_start=t, decoded=t, tail_end=t, wan_encoded=t)
                forward.put(msg)
            else:
                arrived.put(msg)
        arrived.put(None)

    def wan_sender() -> None:
        while (item := forward.get()) is not None:
            send_message(wan, *item)
        send_message(wan, END_OF_RUN, b"")

    def wan_receiver() -> None:
        while (msg := recv_message(wan)) is not None and msg[0] != END_OF_RUN:
            stamps[msg[0]]["back"] = time.monotonic()
            answer(*msg)

    threads = [threading.Thread(target=receiver, args=(c,), daemon=True) for c in conns]
    if wan is not None:
        threads += [threading.Thread(target=f, daemon=True) for f in (wan_sender, wan_receiver)]
    for th in threads:
        th.start()
    ended = 0
    with torch.inference_mode():
        while ended < len(conns):
            if (item := arrived.get()) is None:
                ended += 1
                continue
            i, payload = item
            route, s = routes[route_of_frame[i]], stamps[i]
            mid, end = route.model_id, models.n_blocks(route.model_id)
            start, encoding = ((route.cloud_layer, route.wan_encoding) if cloud_tier
                               else (route.layer_index, route.encoding))
            if not cloud_tier and route.cloud_layer is not None:
                end = route.cloud_layer
            s["tail_start"] = time.monotonic()
            x = models.decode(mid, start, encoding, payload)
            s["decoded"] = time.monotonic()
            out = models.run(mid, start, end, x)
            s["tail_end"] = time.monotonic()
            if end < models.n_blocks(mid):  # the rest runs in the cloud
                payload = encode_tensor(out[0], route.wan_encoding)
                s["wan_encoded"] = time.monotonic()
                forward.put((i, payload))
            else:
                answer(i, out.detach().float().contiguous().numpy().tobytes())
    forward.put(None)
    if cloud_tier:
        send_message(conns[0], END_OF_RUN, b"")
    for th in threads[len(conns):]:
        th.join()
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
    ap.add_argument("role", choices=["mobile", "edge", "cloud"])
    ap.add_argument("--cores", required=True, help="comma-separated CPU numbers")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--models", required=True, help="comma-separated model ids")
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--congestion-control", default="")
    ap.add_argument("--mobiles", type=int, default=1, help="edge server: the mobile devices that connect")
    ap.add_argument("--cloud", default="", metavar="HOST:PORT", help="edge server: the cloud it forwards to")
    args = ap.parse_args(argv)
    _pin([int(c) for c in args.cores.split(",")], args.threads)
    steady_allocator()  # the run's processes reuse tensor memory as the session profile's do
    models = Models(args.models.split(","))
    cc = args.congestion_control or None
    wan = None
    if args.cloud:  # the cloud listens before the edge server starts
        host, _, port = args.cloud.rpartition(":")
        wan = connect(host, int(port), cc)
    if args.role == "mobile":
        conns = [connect(args.host, args.port, cc)]
    else:
        srv = listen(args.host, args.port, cc)
        _reply({"listening": True})
        conns = [srv.accept()[0] for _ in range(args.mobiles if args.role == "edge" else 1)]
    import socket

    for sock in conns:
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
            stamps = run_mobile(models, conns[0], routes, cmd["route_of_frame"], cmd["capture_s"], cmd["t0"],
                                cmd.get("frame_ids"))
        else:
            stamps = run_server(models, conns, routes, cmd["route_of_frame"], args.role == "cloud", wan)
        _reply({"stamps": stamps})


if __name__ == "__main__":
    main()
