"""`edgesim testbed`: a scenario run for real on this machine, then simulated with the same capture times.

Each mobile device, the edge server and, where the scenario has one, the cloud are processes (edgesim.testbed.node),
each in its own namespace: every mobile device's joined to the edge server's by its own shaped hop, the edge
server's to the cloud's by the shaped WAN (edgesim.testbed.net); each process is pinned to its cores with its
thread count (mobile devices share theirs). In the same session one mobile device, the edge server and the cloud
measure the scenario's models under that pinning (the session profile, what a user would simulate with). Each sweep point
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
from edgesim.testbed.compare import comparison_rows, real_frames, shared_cpu_overlap, simulated_components
from edgesim.testbed.net import (CLOUD_ADDR, LinkSettings, ShapedLink, host_congestion_control,
                                 host_slow_start_after_idle, uplink_addresses)
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
MOBILE_NAME, EDGE_NAME, CLOUD_NAME = "testbed-mobile", "testbed-edge", "testbed-cloud"
CONNECT_WAIT_S = 60.0
"""How long `testbed run --edge` retries a refused connection (the edge server's `serve` may still be starting)."""


@dataclass(frozen=True)
class Placement:
    """Where the processes run: their cores and torch thread counts (the session profile uses the same); every
    mobile device on mobile_cores, the cloud on cloud_cores (default: the edge server's)."""

    mobile_cores: tuple[int, ...]
    edge_cores: tuple[int, ...]
    mobile_threads: int = 1
    edge_threads: int = 1
    cloud_cores: tuple[int, ...] = ()

    def cores(self, role: str) -> tuple[int, ...]:
        """The cores of a role (mobile, edge or cloud)."""
        return {"mobile": self.mobile_cores, "edge": self.edge_cores,
                "cloud": self.cloud_cores or self.edge_cores}[role]

    def threads(self, role: str) -> int:
        """The torch threads of a role (the cloud's: the edge server's count)."""
        return self.mobile_threads if role == "mobile" else self.edge_threads


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
    """Mobile devices on the first half of this process's CPUs, edge server (and cloud) on the second half."""
    cpus = sorted(os.sched_getaffinity(0))
    half = max(1, len(cpus) // 2)
    mobile, edge = cpus[:half], cpus[half:] or cpus[:half]
    return Placement(tuple(mobile), tuple(edge), min(threads, len(mobile)), min(threads, len(edge)))


def n_mobiles(sc: Scenario) -> int:
    """The scenario's mobile devices (every group's count)."""
    return sum(g.count for g in sc.mobiles)


def check_supported(sc: Scenario) -> None:
    """Mobile devices on the scenario's link (a hop each), one edge server with servers: 1, at most a cloud with
    servers: 1, no batching and a constant WAN, a constant or traced link rate with a constant delay: one line
    naming what is not."""
    if len(sc.edge_servers()) != 1 or any(e.link is not None for e in sc.edges):
        raise EdgesimError("testbed: the scenario must have one edge server ('edge:', or one 'edges:' entry without "
                           "its own link)")
    if sc.edge_servers()[0].servers != 1:
        raise EdgesimError("testbed: the edge server must have servers: 1 (the testbed's edge server is one process "
                           "that serves the frames of every mobile device one at a time, FIFO)")
    if any(g.link is not None for g in sc.mobiles) or sc.link.delay is not None or sc.link.loss_probability:
        raise EdgesimError("testbed: link.delay, link.loss_probability and per-mobile links are not replayed by the "
                           "testbed yet; give link.data_rate_mbps or link.trace, and link.propagation_delay_s")
    if sc.link.shared_medium:
        raise EdgesimError("testbed: link.shared_medium is not replayed: the testbed gives each mobile device its own "
                           "shaped hop to the edge server")
    if sc.cloud is not None and (sc.cloud.servers != 1 or sc.cloud.batching is not None):
        raise EdgesimError("testbed: the cloud must have servers: 1 and no batching (one process that serves one "
                           "frame at a time, FIFO)")
    if sc.cloud is not None and (sc.cloud.wan.trace or sc.cloud.wan.loss_probability):
        raise EdgesimError("testbed: cloud.wan must have a constant data_rate_mbps and no loss_probability")
    if sc.link.trace:
        check_replayable(sc.link.rate_trace(), f"link.trace {sc.link.trace}")


def link_settings(sc: Scenario, options: TestbedOptions) -> LinkSettings:
    """The shaped link of a sweep point: its rates and the constant one-way delay both ways."""
    up = sc.link.data_rate_mbps * 1e6
    down = (sc.link.downlink_data_rate_mbps or sc.link.data_rate_mbps) * 1e6
    delay = sc.link.propagation_delay_s
    return LinkSettings(up, down, delay, delay, options.congestion_control or host_congestion_control(),
                        options.slow_start_after_idle)


def wan_settings(sc: Scenario, options: TestbedOptions) -> Optional[LinkSettings]:
    """The shaped WAN between the edge server and the cloud (None: no cloud): its rates and one-way delay."""
    if sc.cloud is None:
        return None
    w = sc.cloud.wan
    return LinkSettings(w.data_rate_mbps * 1e6, (w.downlink_data_rate_mbps or w.data_rate_mbps) * 1e6,
                        w.propagation_delay_s, w.propagation_delay_s,
                        options.congestion_control or host_congestion_control(), options.slow_start_after_idle)


def planned_captures(sc: Scenario) -> np.ndarray:
    """The capture times the simulator draws for the scenario's one mobile device (replication 0)."""
    n = sc.workload.frames
    trace = trace_captures(sc, None) if sc.workload.source == "trace" else None
    return capture_windows(sc, 1, np.arange(n), FrameStreams(sc.seed, 0, 1), trace)


def simulation_scenario(sc: Scenario, policy_index: int, mobile_profile: Path, edge_profile: Path,
                        captures_csv: Optional[Path], service_time: Optional[str] = None,
                        slow_start_after_idle: bool = False, cloud_profile: Optional[Path] = None) -> Scenario:
    """The scenario as the testbed ran it: this session's profiles (every mobile device the session's mobile one),
    one policy, the TCP/IP framing of the link and whether its TCP restarts slow start after idle
    (LinkSettings.restarts_after_idle), the given capture times (None: the scenario's own, as the real cameras
    followed them), one replication, no sweep."""
    data = json.loads(sc.model_dump_json())
    data.update(mobiles=[{"device": str(mobile_profile), "count": n_mobiles(sc)}],
                edge={"device": str(edge_profile), "servers": 1}, edges=[],
                policies=[data["policies"][policy_index]], sweep={}, replications=1, uncertainty="none",
                profiles=[], devices=[])  # the session's profiles only
    if data.get("cloud"):
        data["cloud"]["device"] = str(cloud_profile)
    data["link"].update(packet_payload_bytes=TCP_PAYLOAD_BYTES, packet_overhead_bytes=TCP_IP_OVERHEAD_BYTES,
                        slow_start_after_idle=slow_start_after_idle)
    if captures_csv is not None:
        n = len(pd.read_csv(captures_csv))
        data["workload"].update(source="trace", trace=str(captures_csv), frames=n, dataset=None, dataset_split=None)
    if service_time:
        data["workload"]["service_time"] = service_time
    data["outputs"] = {"frames": True, "plots": False, "png": "no"}
    return Scenario.model_validate(data)


def simulate_frames(sc: Scenario) -> pd.DataFrame:
    """The simulator's frame table of a one-point, one-policy scenario, in frame order (mobile device after mobile
    device: frame id = device x frames + its sequence number)."""
    return run_point(sc, 0, {}).frames.sort_values("frame", kind="stable").reset_index(drop=True)


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


def node_command(role: str, placement: Placement, models: list[str], host: str, port: int, cc: str,
                 mobiles: int = 1, cloud: str = "") -> list[str]:
    """The command line of a testbed process (an edge server also: how many mobile devices connect, its cloud)."""
    return [sys.executable, "-m", "edgesim.testbed.node", role, "--cores", ",".join(map(str, placement.cores(role))),
            "--threads", str(placement.threads(role)), "--models", ",".join(models), "--host", host, "--port",
            str(port), "--congestion-control", cc, "--mobiles", str(mobiles), "--cloud", cloud]


@dataclass
class RunResult:
    """One (sweep point, policy) run: the real frames and both predictions' frames (and, over a rate trace, how
    late each rate change took effect on the real link)."""

    keys: dict
    real: pd.DataFrame
    session: pd.DataFrame
    own: pd.DataFrame
    trace_lag_s: Optional[list[float]] = None
    shared_cpu_s: tuple[float, float] = (0.0, 0.0)  # compute overlapped on a shared CPU, compute of those processes


@dataclass(frozen=True)
class SessionProfiles:
    """The profiles a simulation of the testbed reads: the mobile devices', the edge server's, the cloud's."""

    mobile: Path
    edge: Path
    cloud: Optional[Path] = None


def route_plan(rt, devices: dict) -> list:
    """A route as the processes run it: [model, layer index, encoding] and, for a route through the cloud, [cloud
    layer index, WAN encoding] (a place_route's split point and encoding read 'a|b')."""
    model = reference_model(devices, rt.model)
    points, encodings = rt.split_point.split("|"), rt.encoding.split("|")
    plan = [rt.model, model.split_point(points[0]).layer_index, encodings[0]]
    if len(points) == 2:
        plan += [model.split_point(points[1]).layer_index, encodings[1]]
    return plan


def route_plans(sc: Scenario, policy_index: int, profiles: SessionProfiles, captures_csv: Optional[Path],
                slow_start: bool = False) -> tuple[list[list], np.ndarray, list[str], Topology, pd.DataFrame]:
    """(routes as route_plan gives them, route index per frame, decisions, the simulated stations, the simulated
    frames) of one policy: the decisions the simulator makes from the session profile (a stateful policy such as
    best-split is replayed as the simulator decided, not re-decided from the real load); the real link is shaped
    from the same topology (its uplink's rate or trace, its downlink's rate)."""
    sim_sc = simulation_scenario(sc, policy_index, profiles.mobile, profiles.edge, captures_csv,
                                 slow_start_after_idle=slow_start, cloud_profile=profiles.cloud)
    pt = assemble(sim_sc)
    routes = pt.routes_of_group(pt.policies[0])[0]
    plans = [route_plan(rt, pt.devices) for rt in routes]
    decisions = [rt.decision for rt in routes]
    frames = simulate_frames(sim_sc)
    index = {d: k for k, d in enumerate(decisions)}
    return plans, np.array([index[d] for d in frames["decision"].astype(str)]), decisions, pt.topo, frames


def _codec_s(profile, model_id: str, layer: int, encoding: str, step: str) -> float:
    """A profile's measured encode_s or decode_s at the split point of a layer index (0 where not measured)."""
    sp = next((p for p in profile.models[model_id].split_points if p.layer_index == layer), None)
    return getattr(sp, step).get(encoding, 0.0) if sp is not None else 0.0


def split_codec_steps(sim: pd.DataFrame, plans: list[list], route_of_frame: np.ndarray,
                      profiles: SessionProfiles) -> None:
    """Move the encoding and decoding the simulator charged inside head_s, tail_s and cloud_s (the profiles'
    measured encode_s and decode_s, simulator/policies/base.py's make_route and place_route) into their own
    components, as measured."""
    mob, edge = load_profile(profiles.mobile), load_profile(profiles.edge)
    cloud = load_profile(profiles.cloud) if profiles.cloud is not None else None
    steps = {c: np.zeros(len(plans)) for c in ("encode_s", "decode_s", "wan_encode_s", "cloud_decode_s")}
    for k, (model_id, layer, encoding, *beyond) in enumerate(plans):
        if layer == mob.models[model_id].split_points[-1].layer_index:
            continue  # local (cut at the output): nothing sent, nothing encoded
        steps["encode_s"][k] = _codec_s(mob, model_id, layer, encoding, "encode_s")
        if not beyond or beyond[0] != layer:  # the edge server runs a part: it decodes what came up
            steps["decode_s"][k] = _codec_s(edge, model_id, layer, encoding, "decode_s")
        if beyond:
            if beyond[0] != layer:
                steps["wan_encode_s"][k] = _codec_s(edge, model_id, beyond[0], beyond[1], "encode_s")
            steps["cloud_decode_s"][k] = _codec_s(cloud, model_id, beyond[0], beyond[1], "decode_s")
    for col, arr in steps.items():
        if col in sim.columns:
            sim[col] = arr[route_of_frame]
    sim["head_s"] -= sim["encode_s"]
    sim["tail_s"] -= sim["decode_s"] + sim.get("wan_encode_s", 0.0)
    if "cloud_s" in sim.columns:
        sim["cloud_s"] -= sim["cloud_decode_s"]


def _replayed(samples: pd.Series) -> Optional[LatencyStats]:
    """A run's measured times as a profile's latency statistics (None where none was measured)."""
    v = samples.dropna()
    return LatencyStats.from_samples(v.clip(lower=0).tolist()) if len(v) else None


def _set_latency(profile, model_id: str, layer: int, part: str, stats: Optional[LatencyStats]) -> None:
    """Replace a profile's head_latency or tail_latency at the split point of a layer index (where it has one)."""
    for sp in profile.models[model_id].split_points:
        if stats is not None and sp.layer_index == layer and getattr(sp, part) is not None:
            setattr(sp, part, stats)


def own_compute_profiles(real: pd.DataFrame, plans: list[list], route_of_frame: np.ndarray, profiles: SessionProfiles,
                         folder: Path) -> SessionProfiles:
    """Copies of the session profiles whose times at the routes' split points are this run's own measured ones: the
    head (with encoding), the edge server's part (with decoding and the WAN's encoding) and the cloud's (with
    decoding).

    An edge server's part between two inner split points a < b is simulated as its head up to b scaled by
    (head(b) - head(a)) / head(b) (Device.part_time): with head(b) = 2 x the run's times and head(a) their median,
    that scale is 1/2 and the part replays the run's times exactly."""
    mob, edge = load_profile(profiles.mobile), load_profile(profiles.edge)
    cloud = load_profile(profiles.cloud) if profiles.cloud is not None else None
    for prof in (mob, edge, cloud):  # encoding and decoding are in the samples below: not charged a second time
        for mp in (prof.models.values() if prof is not None else ()):
            for sp in mp.split_points:
                sp.encode_s, sp.decode_s = {}, {}
    for k, (model_id, layer, encoding, *beyond) in enumerate(plans):
        f = real[route_of_frame == k]
        if f.empty:
            continue
        _set_latency(mob, model_id, layer, "head_latency", _replayed(f["head_s"] + f["encode_s"]))
        if layer == 0:  # no head: the encoding stays a fixed step of its own (make_route), the run's median
            for sp in mob.models[model_id].split_points[:1]:  # the input's (layer 0)
                sp.encode_s = {encoding: float(f["encode_s"].median())}
        if not beyond:
            _set_latency(edge, model_id, layer, "tail_latency", _replayed(f["decode_s"] + f["tail_s"]))
            continue
        part = f["decode_s"] + f["tail_s"] + f["wan_encode_s"]
        if beyond[0] > layer and layer == 0:
            _set_latency(edge, model_id, beyond[0], "head_latency", _replayed(part))
        elif beyond[0] > layer:
            _set_latency(edge, model_id, beyond[0], "head_latency", _replayed(2 * part))
            _set_latency(edge, model_id, layer, "head_latency", _replayed(pd.Series([part.median()])))
        _set_latency(cloud, model_id, beyond[0], "tail_latency", _replayed(f["cloud_decode_s"] + f["cloud_s"]))
    out = SessionProfiles(save_profile(mob, folder / "own-mobile.json"), save_profile(edge, folder / "own-edge.json"),
                          save_profile(cloud, folder / "own-cloud.json") if cloud is not None else None)
    return out


def expand(sc: Scenario) -> list[Scenario]:
    """The scenario's sweep points, each checked for what the testbed can run (all with the same mobile devices and
    tiers: one set of processes and namespaces serves them all)."""
    check_supported(sc)
    points = [apply_overrides(sc, ov) for ov in sweep_points(sc)]
    for p in points:
        check_supported(p)
        if n_mobiles(p) != n_mobiles(sc) or (p.cloud is None) != (sc.cloud is None):
            raise EdgesimError("testbed: every sweep point must have the same mobile devices and cloud (one set of "
                               "processes runs them all)")
    return points


def check_two_machines(points: list[Scenario]) -> None:
    """What `--edge HOST:PORT` (two machines) cannot run, in one line: a rate trace, several mobile devices, a cloud."""
    if any(sc.link.trace for sc in points):
        raise EdgesimError("testbed: link.trace is replayed by shaping the link between namespaces on one machine; "
                           "with --edge the network is real (give link.data_rate_mbps as it is)")
    if n_mobiles(points[0]) != 1 or points[0].cloud is not None:
        raise EdgesimError("testbed: --edge (two machines) runs one mobile device and one edge server without a cloud; "
                           "run several mobile devices or a cloud on one machine (without --edge)")


def run_session(points: list[Scenario], options: TestbedOptions, out: Path, progress: Callable[[str], None] = print,
                edge_address: Optional[str] = None) -> list[RunResult]:
    """Profile, then run every point (a scenario without a sweep) and policy for real and simulate it, all on one
    set of links and processes; files go under `out`.

    Without edge_address every process runs here, joined by shaped hops; with HOST:PORT the edge server is
    `edgesim testbed serve` on another machine, reached over the real network (not shaped: the scenario's link
    should state what that network gives), and its stamps are moved onto this clock by the estimated offset."""
    if edge_address:
        check_two_machines(points)
    models = sorted({m for sc in points for pol in sc.policies for m in pol.models(sc.model)})
    folder = out / "profiles"
    folder.mkdir(parents=True, exist_ok=True)
    n_mob, has_cloud = n_mobiles(points[0]), points[0].cloud is not None
    profiles = SessionProfiles(folder / f"{MOBILE_NAME}.json", folder / f"{EDGE_NAME}.json",
                               folder / f"{CLOUD_NAME}.json" if has_cloud else None)
    first = link_settings(points[0], options)
    cc = first.congestion_control
    results: list[RunResult] = []
    with contextlib.ExitStack() as stack:
        link = None if edge_address else stack.enter_context(
            ShapedLink(first, mobiles=n_mob, wan=wan_settings(points[0], options)))
        cloud = None
        if link is None:
            host, port = parse_address(edge_address)
            edge = stack.enter_context(contextlib.closing(RemoteEdge(host, port)))
            edge.send({"cmd": "start", "models": models, "congestion_control": cc})
            mobile_cmds = [node_command("mobile", options.placement, models, host, port + 1, cc)]
        else:
            if has_cloud:  # listening before the edge server connects to it
                cloud = stack.enter_context(contextlib.closing(Node(link.command(
                    "cloud", node_command("cloud", options.placement, models, CLOUD_ADDR, PORT, cc)), "cloud")))
                cloud.read()
            edge = stack.enter_context(contextlib.closing(Node(link.command("edge", node_command(
                "edge", options.placement, models, "0.0.0.0", PORT, cc, n_mob,
                f"{CLOUD_ADDR}:{PORT}" if has_cloud else "")), "edge server")))
            mobile_cmds = [link.command("mobile", node_command("mobile", options.placement, models,
                                                               uplink_addresses(k)[1], PORT, cc), k)
                           for k in range(n_mob)]
        edge.read()  # listening
        mobiles = [stack.enter_context(contextlib.closing(Node(c, f"mobile device {k}")))
                   for k, c in enumerate(mobile_cmds)]
        for node in (*mobiles, edge, *([cloud] if cloud else [])):
            node.read()  # ready
        offset = estimate_offset(edge.clock) if link is None else ClockOffset(0.0, 0.0, 0)
        if link is None:
            progress(f"clock offset of the edge server: {offset.offset_s:+.6f} s (+- {offset.error_bound_s:.6f} s)")
        progress(f"profiling {', '.join(models)} on {'every tier' if cloud else 'both sides'} (same pinning and "
                 f"threads as the run)")
        for node, name, path in ((mobiles[0], MOBILE_NAME, profiles.mobile), (edge, EDGE_NAME, profiles.edge),
                                 (cloud, CLOUD_NAME, profiles.cloud)):
            if node is None:
                continue
            # one process after the other: in a run they are seldom busy at once
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
                wan = wan_settings(psc, options)
                if wan is not None:
                    link.set_wan((wan.up_rate_bps, wan.down_rate_bps), (wan.up_delay_s, wan.down_delay_s))
            rate = uplink_mean_mbps(psc)
            for j, pol in enumerate(psc.policies):
                keys = {"scenario": psc.name, "point": k, "policy": pol.display, "data_rate_mbps": rate,
                        "propagation_delay_s": psc.link.propagation_delay_s,
                        "frame_rate_fps": psc.workload.frame_rate_fps}
                what = f"trace {Path(psc.link.trace).name}, mean {rate:.3g}" if psc.link.trace else f"{rate:g}"
                progress(f"point {k} ({what} Mbit/s), {pol.display}: {psc.workload.frames} frames"
                         + (f" from each of {n_mob} mobile devices" if n_mob > 1 else ""))
                res = _one_run(psc, j, keys, Processes(mobiles, edge, cloud), offset, profiles, link,
                               settings.restarts_after_idle)
                cores = {r: options.placement.cores(r) for r in ("mobile", "edge", "cloud")}
                res.shared_cpu_s = shared_cpu_overlap(res.real, cores) if link is not None else (0.0, 0.0)
                if res.shared_cpu_s[1] > 0:
                    progress(f"  processes sharing a CPU computed at once for {1e3 * res.shared_cpu_s[0]:.1f} ms of "
                             f"their {res.shared_cpu_s[1]:.2f} s of compute")
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


@dataclass(frozen=True)
class Processes:
    """The testbed's processes of one session: the mobile devices, the edge server and the cloud (or None)."""

    mobiles: list
    edge: object
    cloud: Optional[Node] = None


def _one_run(sc: Scenario, j: int, keys: dict, procs: Processes, offset: ClockOffset, profiles: SessionProfiles,
             link: Optional[ShapedLink] = None, slow_start: bool = False) -> RunResult:
    """One policy of one point for real, then simulated twice; on a shaped link the uplinks follow the simulated
    topology's rate trace from the first capture (trace time 0) on the run's monotonic clock.

    One mobile device captures at the scenario's times and is simulated at the times it really captured; several
    capture at the scenario's own times (each device's offset or Poisson stream) and are simulated at those."""
    replays: list[TraceReplay] = []
    one = len(procs.mobiles) == 1
    with tempfile.TemporaryDirectory(prefix="edgesim-testbed-") as tmp:
        tmp = Path(tmp)
        planned = tmp / "planned.csv" if one else None
        if one:
            pd.DataFrame({"capture_time_s": planned_captures(sc)}).to_csv(planned, index=False)
        plans, route_of_frame, decisions, topo, planned_frames = route_plans(sc, j, profiles, planned, slow_start)
        capture_s = planned_frames["capture_s"].to_numpy(float)
        if one:
            capture_s = capture_s - capture_s[0]
        per = capture_s.size // len(procs.mobiles)
        cmd = {"cmd": "run", "routes": plans, "route_of_frame": route_of_frame.tolist()}
        uplinks = topo.uplink[:len(procs.mobiles)]  # each mobile device's own (its offset into a trace)
        if link is not None:
            for k, uplink in enumerate(uplinks):
                link.set_rates(uplink.rate_bps_at(0.0), topo.downlink_bps, k)
        t0 = _monotonic_of(procs.mobiles[0]) + START_LEAD_S
        if link is not None:
            replays = [TraceReplay(rate_changes(uplink), t0,
                                   lambda r, k=k: link.set_rates(r, topo.downlink_bps, k)).start()
                       for k, uplink in enumerate(uplinks) if not uplink.is_constant]
        servers = [procs.edge, *([procs.cloud] if procs.cloud else [])]
        try:
            for node in servers:
                node.send(cmd)
            for k, mob in enumerate(procs.mobiles):
                ids = list(range(k * per, (k + 1) * per))
                mob.send({**cmd, "capture_s": capture_s[ids].tolist(), "frame_ids": ids, "t0": t0})
            m = [{**row, "mobile": k} for k, mob in enumerate(procs.mobiles) for row in mob.read()["stamps"]]
            e, c = [node.read()["stamps"] for node in servers] + [None] * (2 - len(servers))
        finally:
            for replay in replays:
                replay.stop()
        e = [{k: (offset.to_local(v) if k != "frame" else v) for k, v in row.items()} for row in e]
        real = real_frames(m, e, t0, c)
        real.insert(1, "decision", np.array(decisions)[route_of_frame])
        real_csv = None
        if one:  # simulated at the times the camera really captured
            real_csv = tmp / "real.csv"
            pd.DataFrame({"capture_time_s": real["capture_s"]}).to_csv(real_csv, index=False)
            planned_frames = simulate_frames(simulation_scenario(sc, j, profiles.mobile, profiles.edge, real_csv,
                                                                 slow_start_after_idle=slow_start,
                                                                 cloud_profile=profiles.cloud))
        session = simulated_components(planned_frames)
        split_codec_steps(session, plans, route_of_frame, profiles)
        own_p = own_compute_profiles(real, plans, route_of_frame, profiles, tmp)
        own = simulated_components(simulate_frames(simulation_scenario(sc, j, own_p.mobile, own_p.edge, real_csv,
                                                                       "sampled", slow_start, own_p.cloud)))
    return RunResult(keys, real, session, own, [s for r in replays for s in r.lag_s()] if replays else None)


def _monotonic_of(node: Node) -> float:
    """The node's monotonic clock now (the same clock as ours on one host; kept as a call for two hosts)."""
    node.send({"cmd": "now"})
    return float(node.read()["now"])


def comparison_of(res: RunResult, warmup_frames: int) -> list[dict]:
    """sim_vs_real.csv rows of one run: both predictions over all its frames (mobile 'all') and, with several
    mobile devices, over each device's (mobile k); each device's first warmup_frames left out."""
    real = res.real
    keep = (real.groupby("mobile").cumcount() >= warmup_frames).to_numpy()
    devices = sorted(real["mobile"].unique())
    rows = []
    for name, sim in (("session-profile", res.session), ("run-compute", res.own)):
        for mobile in ["all", *(devices if len(devices) > 1 else [])]:
            sel = keep if mobile == "all" else keep & (real["mobile"] == mobile).to_numpy()
            rows += comparison_rows(real[sel], sim[sel], {**res.keys, "mobile": str(mobile)}, name)
    return rows


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
        rows += comparison_of(res, warmup_frames)
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
        "cloud_cores": list(options.placement.cores("cloud")),
        "mobile_threads": options.placement.mobile_threads, "edge_threads": options.placement.edge_threads,
        "profile_idle_gap_s": options.profile_idle_gap_s,
        "tcp_framing": f"{TCP_PAYLOAD_BYTES} B payload + {TCP_IP_OVERHEAD_BYTES} B IPv4/TCP headers per segment",
    }


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and p95 delay per run, real and both predictions, with relative errors (for the console and docs)."""
    d = table[(table["quantity"] == "delay_s") & (table["mobile"] == "all")]
    wide = d.pivot_table(index=["scenario", "point", "data_rate_mbps", "policy"], columns=["prediction", "statistic"],
                         values=["real_s", "simulated_s", "relative_error"], aggfunc="first", sort=False)
    rows = []
    for idx, r in wide.iterrows():
        rows.append({"scenario": idx[0], "point": idx[1], "data_rate_mbps": idx[2], "policy": idx[3],
                     "real_mean_ms": 1e3 * r[("real_s", "session-profile", "mean")],
                     "sim_mean_ms": 1e3 * r[("simulated_s", "session-profile", "mean")],
                     "err_mean": r[("relative_error", "session-profile", "mean")],
                     "real_p95_ms": 1e3 * r[("real_s", "session-profile", "p95")],
                     "sim_p95_ms": 1e3 * r[("simulated_s", "session-profile", "p95")],
                     "err_p95": r[("relative_error", "session-profile", "p95")],
                     "own_err_mean": r[("relative_error", "run-compute", "mean")],
                     "own_err_p95": r[("relative_error", "run-compute", "p95")]})
    return pd.DataFrame(rows)

