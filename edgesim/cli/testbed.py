"""`edgesim testbed SCENARIO --out DIR`: run a scenario for real on this machine and compare it with its simulation."""

from __future__ import annotations

import math

import os
import shutil
from pathlib import Path
from typing import Optional

import typer

from edgesim.cli.simulate import _parse_sets
from profilers.errors import EdgesimError

# the testbed (pandas, plotly for its report) is imported by the command that runs it, so that other edgesim
# commands start without it


def _cores(text: Optional[str], what: str) -> Optional[tuple[int, ...]]:
    if text is None:
        return None
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise EdgesimError(f"{what} '{text}': expected CPU numbers separated by commas, e.g. 0 or 0,1") from None


def testbed(
    args: list[str] = typer.Argument(..., metavar="SCENARIO | serve | run SCENARIO", show_default=False,
                                     help="a scenario YAML (mobile devices, one edge server, maybe a cloud); 'serve' on "
                                          "the edge server of two machines; 'run SCENARIO' with --edge on the mobile "
                                          "device"),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR",
                                       help="folder for frames.csv, sim_vs_real.csv, report.html, profiles"),
    edge: Optional[str] = typer.Option(None, "--edge", metavar="HOST:PORT",
                                       help="the edge server's `edgesim testbed serve` (two machines)"),
    host: str = typer.Option("0.0.0.0", "--host", help="serve: the address to listen on"),
    port: int = typer.Option(5301, "--port", min=1, max=65534, help="serve: control port (frames use PORT + 1)"),
    set_: list[str] = typer.Option([], "--set", metavar="PATH=VALUE", show_default=False,
                                   help="override a field, e.g. workload.frames=20 (repeatable)"),
    mobile_cores: Optional[str] = typer.Option(None, metavar="CPUS", help="the mobile device's CPUs (default: first half)"),
    edge_cores: Optional[str] = typer.Option(None, metavar="CPUS", help="the edge server's CPUs (default: second half)"),
    cloud_cores: Optional[str] = typer.Option(None, metavar="CPUS", help="the cloud's CPUs (default: the edge server's)"),
    threads: int = typer.Option(1, min=1, help="torch threads of each process (and of the session profile)"),
    congestion_control: str = typer.Option("", metavar="NAME",
                                           help="TCP congestion control of the link (default: the host's)"),
    slow_start_after_idle: bool = typer.Option(True, "--slow-start-after-idle/--no-slow-start-after-idle",
                                               help="net.ipv4.tcp_slow_start_after_idle in the testbed's namespaces"),
    profile_repeats: int = typer.Option(20, min=1, help="timed runs per model in the session profile"),
    profile_idle_gap: Optional[float] = typer.Option(None, metavar="SECONDS", help="idle before each timed part of the "
                                                     "session profile (default: the shortest capture period, at most "
                                                     "0.05 s: the run's CPUs idle between frames too)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing DIR"),
) -> None:
    """Run a scenario for real (each mobile device, the edge server and a cloud as processes pinned to cores, real
    models with random weights, real encodings, TCP through network namespaces joined by a shaping helper; mobile
    devices share their CPUs), simulate it with the same capture times, and write sim_vs_real.csv. On one machine it
    needs root, iproute2, TUN and gcc; on two, `edgesim testbed serve` on the edge server and
    `edgesim testbed run SCENARIO --edge HOST:PORT --out DIR` on the mobile device."""
    from edgesim.testbed.net import available_congestion_control, require
    from edgesim.testbed.report import write_report
    from edgesim.testbed.runner import (Placement, TestbedOptions, check_two_machines, default_placement, expand,
                                        link_settings, run_session, serve, session_context, session_idle_gap_s,
                                        summary_table, write_outputs)
    from profilers.measure import MAX_IDLE_GAP_S
    from simulator.scenario import apply_overrides, load_scenario

    placement = default_placement(threads)
    m, e = _cores(mobile_cores, "--mobile-cores"), _cores(edge_cores, "--edge-cores")
    c = _cores(cloud_cores, "--cloud-cores")
    if m or e or c:
        placement = Placement(m or placement.mobile_cores, e or placement.edge_cores, threads, threads, c or ())
    if args == ["serve"]:
        if e is None:  # the whole machine is the edge server
            placement = Placement(placement.mobile_cores, tuple(sorted(os.sched_getaffinity(0))), threads, threads)
        serve(host, port, placement, progress=lambda msg: typer.echo(msg, err=True))
        return
    if args and args[0] == "run":
        if len(args) != 2 or not edge:
            raise EdgesimError("usage: edgesim testbed run SCENARIO --edge HOST:PORT --out DIR")
        args = args[1:]
        if m is None:  # the whole machine is the mobile device
            placement = Placement(tuple(sorted(os.sched_getaffinity(0))), placement.edge_cores, threads, threads)
    if len(args) != 1:
        raise EdgesimError("usage: edgesim testbed SCENARIO --out DIR | serve | run SCENARIO --edge HOST:PORT --out DIR")
    if out is None:
        raise EdgesimError("edgesim testbed: --out DIR is required")
    known = available_congestion_control()
    if congestion_control and known and congestion_control not in known:
        raise EdgesimError(f"--congestion-control '{congestion_control}': not in this kernel; available: {', '.join(known)}")
    sc = apply_overrides(load_scenario(Path(args[0]), names=False), _parse_sets(set_))
    points = expand(sc)
    if edge:
        check_two_machines(points)
    else:
        require()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise EdgesimError(f"{out}: folder exists and is not empty; pass --overwrite to replace it")
    gap_ok = profile_idle_gap is None or (math.isfinite(profile_idle_gap) and 0 <= profile_idle_gap <= MAX_IDLE_GAP_S)
    if not gap_ok:
        raise EdgesimError(f"--profile-idle-gap {profile_idle_gap}: give 0 to {MAX_IDLE_GAP_S:g} seconds")
    gap = session_idle_gap_s(points) if profile_idle_gap is None else profile_idle_gap
    options = TestbedOptions(placement, congestion_control, slow_start_after_idle, profile_repeats,
                             profile_idle_gap_s=gap)
    stage = out.with_name(f".{out.name}.testbed-partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    results = run_session(points, options, stage, progress=lambda msg: typer.echo(msg, err=True), edge_address=edge)
    context = {**session_context(options, link_settings(sc, options)), "edge": edge or "this machine (namespaces)"}
    table = write_outputs(results, stage, sc.workload.warmup_frames, context)
    summary = summary_table(table)
    write_report(table, summary, context, stage)
    if out.exists():
        shutil.rmtree(out)
    stage.rename(out)
    typer.echo(summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    typer.echo(f"wrote {out}/sim_vs_real.csv, {out}/frames.csv and {out}/report.html")
