"""`edgesim profile`, `edgesim profile show` and `edgesim derive`: parse options, call profilers.profiling, print."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import typer

from edgesim.cli.console import console, progress_steps
from profilers.errors import EdgesimError
from profilers.hostcheck import parse_cores

__all__ = ["derive", "device_rows", "model_rows", "profile", "show"]


def __getattr__(name: str):
    """device_rows and model_rows, re-exported from profilers.profiling on first use (PEP 562): profilers.profiling
    (torch, through profilers.derive) is imported by the commands that use it, so that other commands start without it."""
    if name in ("device_rows", "model_rows"):
        from profilers import profiling

        return getattr(profiling, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _warn(message: str) -> None:
    print(f"edgesim: warning: {' '.join(message.split())}", file=sys.stderr)


def split_table(mp, title: str = ""):
    """A rich table of split_rows(mp)."""
    from profilers.profiling import split_rows

    from rich.table import Table

    def ms(row, part):
        if row[f"{part}_median_ms"] is None:
            return "-"
        return f"{row[f'{part}_median_ms']:.2f} ({row[f'{part}_p5_ms']:.2f}-{row[f'{part}_p95_ms']:.2f})"

    table = Table(title=title or f"{mp.model_id}: split points ({mp.measurement}, {mp.torch_device}, "
                  f"threads={mp.threads}, repeats={mp.repeats})")
    for col in ("split point", "layer", "output shape", "size % in", "zlib % in", "head GFLOPs", "FLOPs %",
                "head ms (p5-p95)", "tail ms (p5-p95)"):
        table.add_column(col, justify="left" if col in ("split point", "output shape") else "right")
    for row in split_rows(mp):
        table.add_row(row["split_point"], str(row["layer_index"]), row["output_shape"], f"{row['size_pct']:.1f}",
                      "-" if row["zlib_pct"] is None else f"{row['zlib_pct']:.1f}", f"{row['head_gflops']:.3f}",
                      f"{row['head_flops_pct']:.1f}", ms(row, "head"), ms(row, "tail"))
    return table


def codec_table(mp):
    """A rich table of codec_rows(mp): encode / decode ms per encoding at each split point; None when not measured."""
    from profilers.profiling import codec_rows

    from rich.table import Table

    rows = codec_rows(mp)
    if not rows:
        return None
    encodings = list(dict.fromkeys(e for row in rows for e in row if e != "split_point"))
    table = Table(title=f"{mp.model_id}: encode / decode ms per encoding (measured on this host, median; "
                  "profilers.codec)")
    table.add_column("split point")
    for e in encodings:
        table.add_column(e, justify="right")
    for row in rows:
        table.add_row(row["split_point"], *[f"{row[e][0]:.3g} / {row[e][1]:.3g}" if e in row else "-"
                                            for e in encodings])
    return table


def check_line(check) -> str:
    """How the timing went, in one line: rounds, precision reached, stability, head + tail check, host."""
    widest = max(check.parts.items(), key=lambda kv: kv[1].ci95_half_pct or 0.0)
    drift = max((abs(d.drift_pct) for d in check.parts.values() if d.drift_pct is not None), default=None)
    sums = list(check.head_plus_tail_over_whole.values())
    host = check.host_during
    text = (f"timing (measured): {check.rounds} rounds in {check.wall_s:.1f} s; widest 95% interval of a median "
            f"+/-{widest[1].ci95_half_pct or 0:.1f}% ({widest[0]})"
            + (f", target +/-{check.target_ci95_pct:g}% {'reached' if check.converged else 'NOT reached'}"
               if check.target_ci95_pct else "")
            + (f"; largest drift between halves {drift:.1f}%" if drift is not None else "")
            + (f"; head+tail / whole {min(sums):.3f}-{max(sums):.3f}" if sums else ""))
    ref = check.host_reference
    if ref is not None:
        text += (f"; host reference {1e3 * ref.median_s:.2f} ms"
                 + (f" (drift {ref.drift_pct:+.1f}%)" if ref.drift_pct is not None else ""))
        per_ref = [(name, d.per_reference_ci95_half_pct) for name, d in check.parts.items()
                   if d.per_reference_ci95_half_pct is not None]
        if per_ref:
            name, half = max(per_ref, key=lambda kv: kv[1])
            text += f", widest 95% interval with the host's speed taken out +/-{half:.1f}% ({name})"
    if host is not None:
        text += (f"; host while measuring: other processes {host.other_cpu_cores:.2f} of {host.logical_cpus} CPUs, "
                 f"load {host.load_avg_1min}" + (f", steal {host.steal_percent:.1f}%" if host.steal_percent else "")
                 + (" (BUSY)" if check.busy else ""))
    return text


def derivation_line(mp) -> str:
    """How a derived model's times were made and that method's own validated error (per operator, or the
    dense-operator fallback's), and the per-inference constant each part pays."""
    import statistics

    errors = [abs(e) for e in mp.derivation_errors]
    error = (f"leave-one-out error of this method on {len(errors)} published latencies: median "
             f"{100 * statistics.median(errors):.0f}%, {100 * sum(e <= 0.25 for e in errors) / len(errors):.0f}% within "
             "+/-25%" if errors else "not validated (too few published latencies)")
    overhead = (f"; per-inference constant {1e3 * mp.per_process_overhead_s:.2f} ms paid by the head and by the tail"
                if mp.per_process_overhead_s else "")
    return f"{mp.model_id}: {mp.derivation_method}; {error}{overhead}"


def _candidates_table(model_label: str, rows: list[dict]):
    from rich.table import Table

    table = Table(title=f"{model_label}: split point candidates (single-tensor cuts; * = the model's own stages, "
                        "kept by --split-points auto)")
    for col in ("split point", "stage", "output shape", "float32 KiB"):
        table.add_column(col, justify="left" if col != "float32 KiB" else "right")
    for row in rows:
        size = row["float32_bytes"]
        table.add_row(row["split_point"], "*" if row["stage"] else "", row["output_shape"],
                      "-" if size is None else f"{size / 1024:.1f}")
    return table


def show(path: Path) -> None:
    """Print what a profile holds: the device, and per model how it was measured and its split points."""
    from profilers.profiling import device_row, profile_model_rows
    from profilers.schema import load_profile

    from rich.table import Table

    dev = load_profile(path)
    screen = console()
    row = device_row(dev)
    screen.print(f"{path}: device '{row['name']}' ({row['kind']}, {row['provenance']}): {row['processor']}, "
              f"{row['cores']} cores, {row['memory_gb']} GB; power {dev.power.idle_w:g}-{dev.power.active_w:g} W "
              f"(idle-active; {dev.power.source or 'source not stated'})")
    if dev.provenance.kind == "derived":
        screen.print(f"latencies derived, not measured: {dev.provenance.method}")
    table = Table(title="models")
    cols = ("model_id", "measurement", "input", "weights", "gflops", "split_points", "full_ms", "energy_method")
    for col in cols:
        table.add_column(col.replace("_", " "))
    for r in profile_model_rows(dev):
        table.add_row(*[("-" if r[c] is None else f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]))
                        for c in cols])
    screen.print(table)
    for mp in dev.models.values():
        screen.print(split_table(mp))
        codec = codec_table(mp)
        if codec is not None:
            screen.print(codec)
        if mp.measurement_check is not None:
            screen.print(check_line(mp.measurement_check))
        if mp.measurement == "derived" and mp.derivation_method:
            screen.print(derivation_line(mp))


def compare(first: Path, second: Path) -> None:
    """Print, for every model the two profiles share, each split point's head and tail median in both, the change
    as measured and with the host's speed taken out (measurement_check.host_reference), and a summary line."""
    from profilers.agreement import WITHIN, compare_profiles, setting_differences
    from profilers.schema import load_profile

    from rich.table import Table

    a, b = load_profile(first), load_profile(second)
    shared = [m for m in a.models if m in b.models]
    if not shared:
        raise EdgesimError(f"{first} and {second} share no model (first: {', '.join(a.models) or 'none'}; "
                           f"second: {', '.join(b.models) or 'none'})")
    screen = console()
    differ = setting_differences(a.provenance, b.provenance)
    if differ:  # still compared: a user may mean to compare two machines or versions
        screen.print(f"note: the two profiles were not measured alike ({'; '.join(differ)}): their changes are "
                     "between those settings, not one host's drift", markup=False)
    for model_id in shared:
        agree = compare_profiles(a.models[model_id], b.models[model_id])
        table = Table(title=f"{model_id}: {first} -> {second} (measured medians)")
        for col in ("split point", "part", "first ms", "second ms", "change", "host speed removed"):
            table.add_column(col, justify="left" if col in ("split point", "part") else "right")
        for r in agree.parts:
            table.add_row(r.split_point, r.part, f"{1e3 * r.first_s:.3f}", f"{1e3 * r.second_s:.3f}",
                          f"{100 * r.change:+.1f}%",
                          "-" if r.change_host_removed is None
                          else f"{100 * r.change_host_removed:+.1f}% ({r.removed_by})")
        screen.print(table)
        worst, median, within, n = agree.summary(host_removed=False)
        limit = f"{100 * WITHIN:g}%"
        line = (f"{model_id}: as measured, largest change {100 * worst:.1f}%, median {100 * median:.1f}%, "
                f"{within}/{n} within {limit}")
        if agree.reference_change is not None:
            worst, median, within, n = agree.summary(host_removed=True)
            line += (f"; host reference {1e3 * agree.reference_first_s:.2f} -> {1e3 * agree.reference_second_s:.2f} ms"
                     f" ({100 * agree.reference_change:+.1f}%); with the host's speed removed, largest "
                     f"{100 * worst:.1f}%, median {100 * median:.1f}%, {within}/{n} within {limit}")
        else:
            line += "; no host reference in both profiles: the host's speed cannot be taken out"
        screen.print(line)
    screen.print("host speed removed: per round = each round's part over its reference; medians = the parts' ratio "
                 "over the references'", markup=False)


def profile(
    model: Optional[str] = typer.Argument(None, help="registered id, torchvision:NAME (or a bare torchvision name), "
                                          "timm:NAME, hf:PATH; or 'show FILE' to print a profile, or 'compare A B' "
                                          "to compare two profiles of one host"),
    files: Optional[list[Path]] = typer.Argument(None, hidden=True),
    device_name: Optional[str] = typer.Option(None, "--device-name", help="name of the device profile to write"),
    model_file: Optional[str] = typer.Option(None, "--model-file", help="FILE.py:FACTORY returning an nn.Module"),
    split_points: str = typer.Option("auto", "--split-points", help="auto, all or comma-separated names"),
    list_points: bool = typer.Option(False, "--list-split-points", help="print the candidates; time nothing"),
    repeats: int = typer.Option(10, "--repeats", min=1),
    warmup: int = typer.Option(2, "--warmup", min=0),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch threads (default: torch's)"),
    device: str = typer.Option("cpu", "--device", help="torch device: cpu or cuda"),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="H,W (C,H,W with --model-file)"),
    out: Optional[Path] = typer.Option(None, "--out", help="profile JSON (default profiles/<device-name>.json)"),
    energy: str = typer.Option("auto", "--energy", help="auto, required, nvml, rapl or estimate (Zeus counters)"),
    kind: Optional[str] = typer.Option(None, "--kind", help="mobile, edge or cloud (default edge)"),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="local state_dict or .safetensors"),
    shapes_only: bool = typer.Option(False, "--shapes-only", help="meta tensors: FLOPs and sizes, no timing"),
    json_out: bool = typer.Option(False, "--json", help="print the split-point rows as JSON"),
    batch_sizes: Optional[str] = typer.Option(None, "--batch-sizes", metavar="B,B,...",
                                              help="also time the whole model at these batch sizes (dynamic batching)"),
    precision: float = typer.Option(0.02, "--precision", help="repeat until every median's 95% interval is within "
                                    "+/- this fraction (0 = exactly --repeats rounds)"),
    time_budget: float = typer.Option(120.0, "--time-budget", help="seconds of timed rounds per model before "
                                      "giving up on --precision (a warning, an error with --strict)"),
    cores: Optional[str] = typer.Option(None, "--cores", help="pin to these CPUs, e.g. 0,1 or 0-3 (threads default "
                                        "to their number)"),
    strict: bool = typer.Option(False, "--strict", help="a busy host or an unreached --precision is an error"),
    clock: str = typer.Option("wall", "--clock", help="wall, or cpu: the thread's CPU time (--threads 1), which "
                              "other processes on a busy host do not lengthen"),
    codec_repeats: int = typer.Option(5, "--codec-repeats", min=0, help="time each encoding's encode and decode at "
                                      "every split point this many times (median; 0 = do not measure)"),
    idle_gap: float = typer.Option(0.0, "--idle-gap", metavar="SECONDS", help="idle this long before each timed part, "
                                   "as a pipeline below its capacity idles between frames (0: back to back); a CPU "
                                   "that idled runs the next inference slower (docs/sim_vs_real.md)"),
) -> None:
    """Measure MODEL on this host and add it to a device profile (002 section 2, Table 2); `profile show FILE`."""
    from profilers.models.sources import ModelRequest
    from profilers.profiling import list_split_points, parse_input_size, split_rows

    files = list(files or [])
    if model == "show":
        if len(files) != 1:
            raise EdgesimError("edgesim profile show FILE: give the one profile file to print")
        show(files[0])
        return
    if model == "compare":
        if len(files) != 2:
            raise EdgesimError("edgesim profile compare A B: give the two profile files to compare")
        compare(files[0], files[1])
        return
    if files:
        raise EdgesimError(f"unexpected argument '{files[0]}' after MODEL '{model}'")
    request = ModelRequest(spec=model, model_file=model_file, input_size=parse_input_size(input_size),
                           checkpoint=checkpoint, split_points=split_points, shapes_only=shapes_only)
    if list_points:
        rows = list_split_points(request, _warn)
        if json_out:
            typer.echo(json.dumps(rows, indent=1))
        else:
            console().print(_candidates_table(model or model_file or "", rows))
        return
    if not device_name:
        raise EdgesimError("give --device-name NAME (the device profile to write), or --list-split-points")
    if not 0 <= precision < 1:
        raise EdgesimError(f"--precision {precision}: give a fraction in [0, 1), e.g. 0.02 for +/-2%")
    if time_budget <= 0:
        raise EdgesimError(f"--time-budget {time_budget}: give a positive number of seconds")
    timing = {"target_ci": precision or None, "time_budget_s": time_budget, "cores": parse_cores(cores),
              "strict": strict, "clock": clock, "codec_repeats": codec_repeats, "idle_gap_s": idle_gap}
    mp, path = _run_with_progress(request, device_name, repeats, warmup, threads, device, out, energy, kind,
                                  batch_sizes, timing)
    if json_out:
        typer.echo(json.dumps(split_rows(mp), indent=1))
        return
    screen = console()
    screen.print(split_table(mp))
    codec = codec_table(mp)
    if codec is not None:
        screen.print(codec)
    extra = [f"weights: {mp.checkpoint}"]
    if mp.peak_memory_bytes is not None:
        extra.append(f"peak memory {mp.peak_memory_bytes / 2**20:.1f} MiB (measured: {mp.memory_method})")
    if mp.cpu_utilisation_percent is not None:
        extra.append(f"CPU {mp.cpu_utilisation_percent:.0f}% of {mp.threads} threads (measured: psutil, process CPU "
                     "time / wall time over the timed runs)")
    if mp.energy_method:
        extra.append(f"energy: {mp.energy_method}")
    if mp.batch_latency_s:
        extra.append("batch latency, measured median (ms): " + ", ".join(f"b={b} {t * 1e3:.3g}" for b, t in mp.batch_latency_s.items()))
    jpeg = mp.input_bytes.get("jpeg")
    if jpeg:
        extra.append(f"input JPEG q{mp.jpeg_quality}: {jpeg} B ({100 * jpeg / mp.input_bytes['float32']:.1f}% of float32)")
    screen.print("; ".join(extra))
    if mp.measurement_check is not None:
        screen.print(check_line(mp.measurement_check))
    screen.print(f"wrote {path}")


def _run_with_progress(request, device_name, repeats, warmup, threads, device, out, energy, kind, batch_sizes=None,
                       timing=None):
    """run_profile with the command line's progress bar on stderr, started at the first step so that errors
    before it stay one line."""
    from profilers.profiling import run_profile

    label = f"profiling {request.spec or request.model_file}"
    with ExitStack() as started:
        bar = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = started.enter_context(progress_steps())(label)
            bar(done, total)

        return run_profile(request, device_name, repeats, warmup, threads, device, out, energy, kind,
                           progress=progress, warn=_warn, batch_sizes=batch_sizes or (), **(timing or {}))


def derive(
    profile_path: Path = typer.Argument(..., help="a measured profile (edgesim profile ... --out FILE)"),
    devices: list[str] = typer.Option(..., "--device", metavar="DEVICE", help="catalog device (device_facts.json); repeatable"),
    out: Optional[Path] = typer.Option(None, "--out", help="FILE.json for one device, a folder for several "
                                       "(default profiles/<device>.json)"),
) -> None:
    """Derive the models of a measured profile onto catalog devices with the catalog's method (profilers.derive)."""
    from profilers.profiling import derive_profiles

    for path, dev in derive_profiles(profile_path, devices, out):
        typer.echo(f"wrote {path}: {dev.name} ({dev.kind}, derived) with {', '.join(sorted(dev.models))}")
        for mid in sorted(dev.models):
            if dev.models[mid].derivation_method:
                typer.echo("  " + derivation_line(dev.models[mid]))
