"""`edgesim testbed`: a scenario run for real on this machine, then simulated with the same capture times.

The mobile device and the edge server are processes (edgesim.testbed.node) in two namespaces joined by a shaped
link (edgesim.testbed.net), each pinned to its own cores with its thread count. In the same session both measure
the scenario's models under that pinning (the session profile, what a user would simulate with). Each sweep point
and policy is then run for real, and simulated twice with the real capture times: from the session profile, and,
as a diagnostic that isolates the link and queue model, from the run's own compute times.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

from edgesim.testbed.clock import ClockOffset, estimate_offset
from edgesim.testbed.compare import comparison_rows, real_frames, simulated_components
from edgesim.testbed.net import (EDGE_ADDR, LinkSettings, ShapedLink, host_congestion_control,
                                 host_slow_start_after_idle)
from edgesim.testbed.replay import TraceReplay, check_replayable, rate_changes
from edgesim.testbed.wire import listen
from profilers.errors import EdgesimError
from profilers.io import atomic_write_text
from profilers.measure import host_hardware
from profilers.schema import LatencyStats, load_profile, save_profile
from simulator.assemble import assemble
from simulator.devices import reference_model
from simulator.link import TCP_IP_OVERHEAD_BYTES, TCP_PAYLOAD_BYTES
from simulator.plan import Topology
from simulator.runner import run_point
from simulator.scenario import Scenario, apply_overrides, sweep_points
from simulator.workload import FrameStreams, capture_windows, trace_captures

PORT = 5301
START_LEAD_S = 0.5
"""The first capture happens this long after the run command, so both processes are waiting for it."""
MOBILE_NAME, EDGE_NAME = "testbed-mobile", "testbed-edge"
CONNECT_WAIT_S = 60.0
"""How long `testbed run --edge` retries a refused connection (the edge server's `serve` may still be starting)."""


@dataclass(frozen=True)
class Placement:
    """Where the two processes run: their cores and torch thread counts (the session profile uses the same)."""

    mobile_cores: tuple[int, ...]
    edge_cores: tuple[int, ...]
    mobile_threads: int = 1
    edge_threads: int = 1


@dataclass(frozen=True)
class TestbedOptions:
    """How the session runs: placement, the TCP the link carries, and how long profiling takes."""

    __test__ = False  # a name pytest would otherwise try to collect

    placement: Placement
    congestion_control: str = ""
    slow_start_after_idle: bool = True
    profile_repeats: int = 20
    codec_repeats: int = 5
    profile_idle_gap_s: float = 0.0  # idle before each timed part of the session profile (session_idle_gap_s)


IDLE_GAP_CAP_S = 0.05  # the session profile's idle gap at most: on this host 10, 50 and 400 ms gave the same slow-down


def session_idle_gap_s(points: list[Scenario]) -> float:
    """Idle time before each timed part of the session profile: the shortest mean capture period of the points, at
    most IDLE_GAP_CAP_S. A process of a pipeline below its capacity idles between frames, and a CPU that idled runs
    the next inference slower than back to back (ResNet-18, 1 thread, this host: 68 ms back to back, 90-100 ms after
    10, 50 or 400 ms idle; docs/sim_vs_real.md), so the profile is taken the way the run will use the CPU."""
    return min(IDLE_GAP_CAP_S, min(1.0 / sc.workload.frame_rate_fps for sc in points))


def default_placement(threads: int = 1) -> Placement:
    """Mobile device on the first half of this process's CPUs, edge server on the second half."""
    cpus = sorted(os.sched_getaffinity(0))
    half = max(1, len(cpus) // 2)
    mobile, edge = cpus[:half], cpus[half:] or cpus[:half]
    return Placement(tuple(mobile), tuple(edge), min(threads, len(mobile)), min(threads, len(edge)))


def check_supported(sc: Scenario) -> None:
    """One mobile device, one edge server, no cloud, a constant or traced link rate with a constant delay: one line
    naming what is not."""
    if len(sc.mobiles) != 1 or sc.mobiles[0].count != 1:
        raise EdgesimError("testbed: the scenario must have exactly one mobile device (mobiles: one entry, count 1)")
    if sc.cloud is not None or len(sc.edge_servers()) != 1 or (sc.edge and sc.edge.servers != 1):
        raise EdgesimError("testbed: the scenario must have one edge server with servers: 1 and no cloud")
    if sc.mobiles[0].link is not None or sc.link.delay is not None or sc.link.loss_probability:
        raise EdgesimError("testbed: link.delay, link.loss_probability and per-mobile links are not replayed by the "
                           "testbed yet; give link.data_rate_mbps or link.trace, and link.propagation_delay_s")
    if sc.link.shared_medium:
        raise EdgesimError("testbed: link.shared_medium needs several mobile devices; the testbed runs one")
    if sc.link.trace:
        check_replayable(sc.link.rate_trace(), f"link.trace {sc.link.trace}")


def link_settings(sc: Scenario, options: TestbedOptions) -> LinkSettings:
    """The shaped link of a sweep point: its rates and the constant one-way delay both ways."""
    up = sc.link.data_rate_mbps * 1e6
    down = (sc.link.downlink_data_rate_mbps or sc.link.data_rate_mbps) * 1e6
    delay = sc.link.propagation_delay_s
    return LinkSettings(up, down, delay, delay, options.congestion_control or host_congestion_control(),
                        options.slow_start_after_idle)


def planned_captures(sc: Scenario) -> np.ndarray:
    """The capture times the simulator draws for the scenario's one mobile device (replication 0)."""
    n = sc.workload.frames
    trace = trace_captures(sc, None) if sc.workload.source == "trace" else None
    return capture_windows(sc, 1, np.arange(n), FrameStreams(sc.seed, 0, 1), trace)


def simulation_scenario(sc: Scenario, policy_index: int, mobile_profile: Path, edge_profile: Path,
                        captures_csv: Path, service_time: Optional[str] = None,
                        slow_start_after_idle: bool = False) -> Scenario:
    """The scenario as the testbed ran it: this session's profiles, one policy, the TCP/IP framing of the link and
    whether its TCP restarts slow start after idle (LinkSettings.restarts_after_idle), the given capture times, one
    replication, no sweep."""
    data = json.loads(sc.model_dump_json())
    data.update(mobiles=[{"device": str(mobile_profile)}], edge={"device": str(edge_profile), "servers": 1},
                edges=[], policies=[data["policies"][policy_index]], sweep={}, replications=1, uncertainty="none",
                profiles=[], devices=[])  # the session's profiles only
    data["link"].update(packet_payload_bytes=TCP_PAYLOAD_BYTES, packet_overhead_bytes=TCP_IP_OVERHEAD_BYTES,
                        slow_start_after_idle=slow_start_after_idle)
    n = len(pd.read_csv(captures_csv))
    data["workload"].update(source="trace", trace=str(captures_csv), frames=n, dataset=None, dataset_split=None)
    if service_time:
        data["workload"]["service_time"] = service_time
    data["outputs"] = {"frames": True, "plots": False, "png": "no"}
    return Scenario.model_validate(data)


def simulate_frames(sc: Scenario) -> pd.DataFrame:
    """The simulator's frame table of a one-point, one-policy scenario."""
    return run_point(sc, 0, {}).frames


class Node:
    """A testbed process: one JSON command a line in, one JSON reply a line out."""

    def __init__(self, command: list[str], what: str) -> None:
        self.what = what
        self._err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                                     text=True)

    def send(self, obj: dict) -> None:
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self._err.seek(0)
            tail = [ln for ln in self._err.read().strip().splitlines() if ln.strip()]
            raise EdgesimError(f"testbed: the {self.what} process ended: {tail[-1] if tail else 'no message'}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"cmd": "quit"})
                self.proc.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait()
        self._err.close()


def node_command(role: str, placement: Placement, models: list[str], host: str, port: int, cc: str) -> list[str]:
    """The command line of a testbed process."""
    cores = placement.mobile_cores if role == "mobile" else placement.edge_cores
    threads = placement.mobile_threads if role == "mobile" else placement.edge_threads
    return [sys.executable, "-m", "edgesim.testbed.node", role, "--cores", ",".join(map(str, cores)),
            "--threads", str(threads), "--models", ",".join(models), "--host", host, "--port", str(port),
            "--congestion-control", cc]


@dataclass
class RunResult:
    """One (sweep point, policy) run: the real frames and both predictions' frames (and, over a rate trace, how
    late each rate change took effect on the real link)."""

    keys: dict
    real: pd.DataFrame
    session: pd.DataFrame
    own: pd.DataFrame
    trace_lag_s: Optional[list[float]] = None


def route_plans(sc: Scenario, policy_index: int, mobile_profile: Path, edge_profile: Path, captures_csv: Path,
                slow_start: bool = False) -> tuple[list[list], np.ndarray, list[str], Topology]:
    """(routes as [model, layer index, encoding], route index per frame, decisions, the simulated stations) of one
    policy: the decisions the simulator makes from the session profile (a stateful policy such as best-split is
    replayed as the simulator decided, not re-decided from the real load); the real link is shaped from the same
    topology (its uplink's rate or trace, its downlink's rate)."""
    sim_sc = simulation_scenario(sc, policy_index, mobile_profile, edge_profile, captures_csv,
                                 slow_start_after_idle=slow_start)
    pt = assemble(sim_sc)
    pol = pt.policies[0]
    routes = pt.routes_of_group(pol)[0]
    plans = []
    for rt in routes:
        sp = reference_model(pt.devices, rt.model).split_point(rt.split_point)
        plans.append([rt.model, sp.layer_index, rt.encoding])
    decisions = [rt.decision for rt in routes]
    frames = simulate_frames(sim_sc)
    index = {d: k for k, d in enumerate(decisions)}
    return plans, np.array([index[d] for d in frames["decision"].astype(str)]), decisions, pt.topo


def split_codec_steps(sim: pd.DataFrame, plans: list[list], route_of_frame: np.ndarray, mobile_profile: Path,
                      edge_profile: Path) -> None:
    """Move the encoding and decoding the simulator charged inside head_s and tail_s (the profiles' measured
    encode_s and decode_s, simulator/policies/base.py's make_route) into their own components, as measured."""
    mob, edge = load_profile(mobile_profile), load_profile(edge_profile)
    enc, dec = np.zeros(len(plans)), np.zeros(len(plans))
    for k, (model_id, layer, encoding) in enumerate(plans):
        if layer == mob.models[model_id].split_points[-1].layer_index:
            continue  # local (cut at the output): nothing sent, nothing encoded
        for arr, prof, step in ((enc, mob, "encode_s"), (dec, edge, "decode_s")):
            sp = next((p for p in prof.models[model_id].split_points if p.layer_index == layer), None)
            arr[k] = getattr(sp, step).get(encoding, 0.0) if sp is not None else 0.0
    sim["encode_s"], sim["decode_s"] = enc[route_of_frame], dec[route_of_frame]
    sim["head_s"] -= sim["encode_s"]
    sim["tail_s"] -= sim["decode_s"]


def own_compute_profiles(real: pd.DataFrame, plans: list[list], route_of_frame: np.ndarray, mobile_profile: Path,
                         edge_profile: Path, folder: Path) -> tuple[Path, Path]:
    """Copies of the session profiles whose head (with encoding) and tail (with decoding) samples at the routes'
    split points are this run's own measured times."""
    mob, edge = load_profile(mobile_profile), load_profile(edge_profile)
    for prof in (mob, edge):  # encoding and decoding are in the samples below: not charged a second time
        for mp in prof.models.values():
            for sp in mp.split_points:
                sp.encode_s, sp.decode_s = {}, {}
    for k, (model_id, layer, _enc) in enumerate(plans):
        frames = real[route_of_frame == k]
        if frames.empty:
            continue
        for prof, part, samples in ((mob, "head_latency", frames["head_s"] + frames["encode_s"]),
                                    (edge, "tail_latency", frames["decode_s"] + frames["tail_s"])):
            mp = prof.models[model_id]
            for sp in mp.split_points:
                if sp.layer_index == layer and getattr(sp, part) is not None and samples.notna().any():
                    setattr(sp, part, LatencyStats.from_samples(samples.dropna().clip(lower=0).tolist()))
    out_m, out_e = folder / "own-mobile.json", folder / "own-edge.json"
    save_profile(mob, out_m)
    save_profile(edge, out_e)
    return out_m, out_e


def expand(sc: Scenario) -> list[Scenario]:
    """The scenario's sweep points, each checked for what the testbed can run."""
    check_supported(sc)
    points = [apply_overrides(sc, ov) for ov in sweep_points(sc)]
    for p in points:
        check_supported(p)
    return points


def run_session(points: list[Scenario], options: TestbedOptions, out: Path, progress: Callable[[str], None] = print,
                edge_address: Optional[str] = None) -> list[RunResult]:
    """Profile, then run every point (a scenario without a sweep) and policy for real and simulate it, all on one
    link and one pair of processes; files go under `out`.

    Without edge_address both processes run here, joined by a shaped link; with HOST:PORT the edge server is
    `edgesim testbed serve` on another machine, reached over the real network (not shaped: the scenario's link
    should state what that network gives), and its stamps are moved onto this clock by the estimated offset."""
    if edge_address and any(sc.link.trace for sc in points):
        raise EdgesimError("testbed: link.trace is replayed by shaping the link between namespaces on one machine; "
                           "with --edge the network is real (give link.data_rate_mbps as it is)")
    models = sorted({m for sc in points for pol in sc.policies for m in pol.models(sc.model)})
    profiles = out / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    mobile_profile, edge_profile = profiles / f"{MOBILE_NAME}.json", profiles / f"{EDGE_NAME}.json"
    first = link_settings(points[0], options)
    cc = first.congestion_control
    results: list[RunResult] = []
    with contextlib.ExitStack() as stack:
        link = None if edge_address else stack.enter_context(ShapedLink(first))
        if link is None:
            host, port = parse_address(edge_address)
            edge = stack.enter_context(contextlib.closing(RemoteEdge(host, port)))
            edge.send({"cmd": "start", "models": models, "congestion_control": cc})
            data_host, data_port = host, port + 1
            mobile_cmd = node_command("mobile", options.placement, models, data_host, data_port, cc)
        else:
            edge = stack.enter_context(contextlib.closing(Node(link.command(
                "edge", node_command("edge", options.placement, models, EDGE_ADDR, PORT, cc)), "edge server")))
            mobile_cmd = link.command("mobile", node_command("mobile", options.placement, models, EDGE_ADDR, PORT, cc))
        edge.read()  # listening
        mobile = stack.enter_context(contextlib.closing(Node(mobile_cmd, "mobile device")))
        mobile.read(), edge.read()  # both ready
        offset = estimate_offset(edge.clock) if link is None else ClockOffset(0.0, 0.0, 0)
        if link is None:
            progress(f"clock offset of the edge server: {offset.offset_s:+.6f} s (+- {offset.error_bound_s:.6f} s)")
        progress(f"profiling {', '.join(models)} on both sides (same pinning and threads as the run)")
        for node, name, path in ((mobile, MOBILE_NAME, mobile_profile), (edge, EDGE_NAME, edge_profile)):
            # one side after the other: in a run the two are seldom busy at once
            node.send({"cmd": "profile", "models": models, "name": name, "repeats": options.profile_repeats,
                       "warmup": 2, "codec_repeats": options.codec_repeats,
                       "idle_gap_s": options.profile_idle_gap_s})
            atomic_write_text(path, node.read()["profile"])
        for k, psc in enumerate(points):
            settings = link_settings(psc, options)
            if link is None:  # a real network: this host's TCP sends the uplink
                settings = replace(settings, slow_start_after_idle=host_slow_start_after_idle())
            else:
                link.set_delays(settings.up_delay_s, settings.down_delay_s)  # the rates: per run, see _one_run
            rate = uplink_mean_mbps(psc)
            for j, pol in enumerate(psc.policies):
                keys = {"point": k, "policy": pol.display, "data_rate_mbps": rate,
                        "propagation_delay_s": psc.link.propagation_delay_s,
                        "frame_rate_fps": psc.workload.frame_rate_fps}
                what = f"trace {Path(psc.link.trace).name}, mean {rate:.3g}" if psc.link.trace else f"{rate:g}"
                progress(f"point {k} ({what} Mbit/s), {pol.display}: {psc.workload.frames} frames")
                res = _one_run(psc, j, keys, mobile, edge, offset, mobile_profile, edge_profile, link,
                               settings.restarts_after_idle)
                if res.trace_lag_s:
                    lag = np.asarray(res.trace_lag_s) * 1e3
                    progress(f"  trace replayed: {lag.size} rate changes, late by {np.median(lag):.1f} ms median, "
                             f"{lag.max():.1f} ms at most")
                results.append(res)
    return results


def uplink_mean_mbps(sc: Scenario) -> float:
    """The uplink's rate: the constant one, or a trace's mean over its own span (its first rate if it has one row)."""
    if not sc.link.trace:
        return sc.link.data_rate_mbps
    trace = sc.link.rate_trace()
    return float(trace.bits_until(trace.end_s) / trace.end_s / 1e6) if trace.end_s else float(trace.rates_bps[0] / 1e6)


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT; one line if it is not."""
    host, _, port = (text or "").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65535:
        raise EdgesimError(f"--edge '{text}': expected HOST:PORT, e.g. 192.168.1.20:5301")
    return host, int(port)


class RemoteEdge:
    """The edge server's process behind `edgesim testbed serve`: the Node interface over a TCP control connection."""

    def __init__(self, host: str, port: int) -> None:
        import socket

        deadline = time.monotonic() + CONNECT_WAIT_S
        while True:  # the server may still be starting: refused connections are retried for a while
            try:
                self.sock = socket.create_connection((host, port), timeout=30)
                break
            except OSError as exc:
                if not isinstance(exc, ConnectionRefusedError) or time.monotonic() > deadline:
                    raise EdgesimError(f"testbed: cannot reach the edge server at {host}:{port} "
                                       f"({exc.strerror or exc}); is `edgesim testbed serve` running there?") from None
                time.sleep(0.5)
        self.sock.settimeout(None)
        self.file = self.sock.makefile("rw")

    def send(self, obj: dict) -> None:
        self.file.write(json.dumps(obj) + "\n")
        self.file.flush()

    def read(self) -> dict:
        line = self.file.readline()
        if not line:
            raise EdgesimError("testbed: the edge server closed the control connection")
        reply = json.loads(line)
        if "error" in reply:
            raise EdgesimError(f"testbed: edge server: {reply['error']}")
        return reply

    def clock(self) -> float:
        """The edge server's monotonic clock now."""
        self.send({"cmd": "clock"})
        return float(self.read()["now"])

    def close(self) -> None:
        try:
            self.send({"cmd": "quit"})
        except OSError:
            pass
        self.file.close()
        self.sock.close()


def serve(host: str, port: int, placement: Placement, progress: Callable[[str], None] = print,
          sessions: Optional[int] = None) -> None:
    """`edgesim testbed serve`: for each runner that connects to HOST:PORT, start an edge server process (its
    frames on PORT + 1) and relay the runner's commands to it; clock probes are answered here (the same clock)."""
    srv = listen(host, port)
    progress(f"edge server waiting for `edgesim testbed run ... --edge HOST:{port}` on {host}:{port}")
    done = 0
    while sessions is None or done < sessions:
        conn, addr = srv.accept()
        progress(f"session from {addr[0]}")
        with conn, conn.makefile("rw") as f:
            _relay(f, host, port + 1, placement)
        done += 1


def _relay(f, host: str, data_port: int, placement: Placement) -> None:
    def reply(obj: dict) -> None:
        f.write(json.dumps(obj) + "\n")
        f.flush()

    start = json.loads(f.readline() or "{}")
    if start.get("cmd") != "start":
        return
    node = Node(node_command("edge", placement, start["models"], host, data_port, start["congestion_control"]),
                "edge server")
    try:
        reply(node.read())  # listening
        reply(node.read())  # ready: the runner's mobile device connected
        for line in f:
            cmd = json.loads(line)
            if cmd["cmd"] == "clock":
                reply({"now": time.monotonic()})
                continue
            if cmd["cmd"] == "quit":
                break
            node.send(cmd)
            reply(node.read())
    except EdgesimError as exc:
        reply({"error": str(exc)})
    finally:
        node.close()


def _one_run(sc: Scenario, j: int, keys: dict, mobile: Node, edge, offset: ClockOffset, mobile_profile: Path,
             edge_profile: Path, link: Optional[ShapedLink] = None, slow_start: bool = False) -> RunResult:
    """One policy of one point for real, then simulated twice; on a shaped link the uplink follows the simulated
    topology's rate trace from the first capture (trace time 0) on the run's monotonic clock."""
    replay = None
    with tempfile.TemporaryDirectory(prefix="edgesim-testbed-") as tmp:
        tmp = Path(tmp)
        planned = tmp / "planned.csv"
        pd.DataFrame({"capture_time_s": planned_captures(sc)}).to_csv(planned, index=False)
        plans, route_of_frame, decisions, topo = route_plans(sc, j, mobile_profile, edge_profile, planned, slow_start)
        capture_s = pd.read_csv(planned)["capture_time_s"].to_numpy(float)
        capture_s = capture_s - capture_s[0]
        cmd = {"cmd": "run", "routes": plans, "route_of_frame": route_of_frame.tolist()}
        uplink = topo.uplink[0]
        if link is not None:
            link.set_rates(uplink.rate_bps_at(0.0), topo.downlink_bps)
        t0 = _monotonic_of(mobile) + START_LEAD_S
        if link is not None and not uplink.is_constant:
            replay = TraceReplay(rate_changes(uplink), t0, lambda r: link.set_rates(r, topo.downlink_bps)).start()
        try:
            edge.send(cmd)
            mobile.send({**cmd, "capture_s": capture_s.tolist(), "t0": t0})
            m, e = mobile.read()["stamps"], edge.read()["stamps"]
        finally:
            if replay is not None:
                replay.stop()
        e = [{k: (offset.to_local(v) if k != "frame" else v) for k, v in row.items()} for row in e]
        real = real_frames(m, e, t0)
        real.insert(1, "decision", np.array(decisions)[route_of_frame])
        real_csv = tmp / "real.csv"
        pd.DataFrame({"capture_time_s": real["capture_s"]}).to_csv(real_csv, index=False)
        session = simulated_components(simulate_frames(simulation_scenario(sc, j, mobile_profile, edge_profile, real_csv,
                                                                           slow_start_after_idle=slow_start)))
        split_codec_steps(session, plans, route_of_frame, mobile_profile, edge_profile)
        own_m, own_e = own_compute_profiles(real, plans, route_of_frame, mobile_profile, edge_profile, tmp)
        own = simulated_components(simulate_frames(simulation_scenario(sc, j, own_m, own_e, real_csv, "sampled",
                                                                       slow_start)))
    return RunResult(keys, real, session, own, replay.lag_s() if replay is not None else None)


def _monotonic_of(node: Node) -> float:
    """The node's monotonic clock now (the same clock as ours on one host; kept as a call for two hosts)."""
    node.send({"cmd": "now"})
    return float(node.read()["now"])


def write_outputs(results: list[RunResult], out: Path, warmup_frames: int, context: dict) -> pd.DataFrame:
    """frames.csv (every real frame beside its simulated delay), sim_vs_real.csv and testbed.json under `out`."""
    frames, rows = [], []
    for res in results:
        real = res.real.copy()
        for name, sim in (("session", res.session), ("own", res.own)):
            real[f"sim_{name}_delay_s"] = sim["delay_s"].to_numpy()
        for key, value in reversed(list(res.keys.items())):
            real.insert(0, key, value)
        frames.append(real)
        keep = res.real["frame"].to_numpy() >= warmup_frames
        for name, sim in (("session-profile", res.session), ("run-compute", res.own)):
            rows += comparison_rows(res.real[keep], sim[keep], res.keys, name)
    frames_df = pd.concat(frames, ignore_index=True)
    table = pd.DataFrame(rows)
    atomic_write_text(out / "frames.csv", frames_df.to_csv(index=False, float_format="%.9f"))
    atomic_write_text(out / "sim_vs_real.csv", table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "testbed.json", json.dumps(context, indent=1) + "\n")
    return table


def session_context(options: TestbedOptions, settings: LinkSettings) -> dict:
    """What the run depended on: machine, load, congestion control, date, placement."""
    hw = host_hardware()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": hw.cpu_model, "cores": hw.cores, "load_average_1_5_15": list(os.getloadavg()),
        "congestion_control": settings.congestion_control, "slow_start_after_idle": settings.slow_start_after_idle,
        "mobile_cores": list(options.placement.mobile_cores), "edge_cores": list(options.placement.edge_cores),
        "mobile_threads": options.placement.mobile_threads, "edge_threads": options.placement.edge_threads,
        "profile_idle_gap_s": options.profile_idle_gap_s,
        "tcp_framing": f"{TCP_PAYLOAD_BYTES} B payload + {TCP_IP_OVERHEAD_BYTES} B IPv4/TCP headers per segment",
    }


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and p95 delay per run, real and both predictions, with relative errors (for the console and docs)."""
    d = table[table["quantity"] == "delay_s"]
    wide = d.pivot_table(index=["point", "data_rate_mbps", "policy"], columns=["prediction", "statistic"],
                         values=["real_s", "simulated_s", "relative_error"], aggfunc="first", sort=False)
    rows = []
    for idx, r in wide.iterrows():
        rows.append({"data_rate_mbps": idx[1], "policy": idx[2],
                     "real_mean_ms": 1e3 * r[("real_s", "session-profile", "mean")],
                     "sim_mean_ms": 1e3 * r[("simulated_s", "session-profile", "mean")],
                     "err_mean": r[("relative_error", "session-profile", "mean")],
                     "real_p95_ms": 1e3 * r[("real_s", "session-profile", "p95")],
                     "sim_p95_ms": 1e3 * r[("simulated_s", "session-profile", "p95")],
                     "err_p95": r[("relative_error", "session-profile", "p95")],
                     "own_err_mean": r[("relative_error", "run-compute", "mean")],
                     "own_err_p95": r[("relative_error", "run-compute", "p95")]})
    return pd.DataFrame(rows)

