"""`edgesim profile`: measure a model on this host and print a Table-2-like summary."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from profilers.catalog import CATALOG_DIR, FACTS_PATH, list_devices, load_device
from profilers.derive import load_facts
from profilers.energy import ENERGY_CHOICES
from profilers.errors import EdgesimError
from profilers.measure import (
    MeasureOptions,
    assumed_host_power,
    check_torch_device,
    host_busy,
    host_hardware,
    host_provenance,
    measure_model,
    resolve_split_points,
)
from profilers.models import build, entries
from profilers.schema import DeviceProfile, load_profile, merge_model

KINDS = ("mobile", "edge", "cloud")


def parse_input_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    """'H,W' or 'S' -> (H, W); one line on anything else."""
    if text is None:
        return None
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes *= 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise EdgesimError(f"--input-size '{text}': expected H,W (e.g. 224,224)")
    return sizes[0], sizes[1]


def check_writable(path: Path) -> None:
    """One line if path cannot be written (its nearest existing folder is not writable or it is a folder)."""
    if path.is_dir():
        raise EdgesimError(f"cannot write {path}: it is a folder")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise EdgesimError(f"cannot write {path}: folder {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise EdgesimError(f"cannot write {path}: file is not writable")


def split_rows(mp) -> list[dict]:
    """Per split point: the columns of 002 Table 2 / Fig. 1 (size % of the float32 input, cumulative FLOPs %)."""
    in_bytes = mp.input_bytes.get("float32") or 4 * mp.input_numel
    rows = []
    for sp in mp.split_points:
        row = {
            "split_point": sp.name,
            "layer_index": sp.layer_index,
            "output_shape": "x".join(str(s) for s in sp.output_shape),
            "size_pct": 100.0 * sp.output_bytes["float32"] / in_bytes,
            "zlib_pct": (100.0 * sp.output_bytes["zlib_float32"] / in_bytes) if "zlib_float32" in sp.output_bytes else None,
            "head_gflops": sp.head_flops / 1e9,
            "head_flops_pct": 100.0 * sp.head_flops / mp.total_flops if mp.total_flops else 0.0,
        }
        for part, stats in (("head", sp.head_latency), ("tail", sp.tail_latency)):
            row[f"{part}_median_ms"] = stats.median_s * 1e3 if stats else None
            row[f"{part}_p5_ms"] = stats.p5_s * 1e3 if stats else None
            row[f"{part}_p95_ms"] = stats.p95_s * 1e3 if stats else None
        rows.append(row)
    return rows


def split_table(mp, title: str = ""):
    """A rich table of split_rows(mp)."""
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


def device_rows(catalog_dir: Optional[Path] = None) -> list[dict]:
    """One row per catalog device: name, kind, processor, provenance and the models profiled."""

    folder = catalog_dir or CATALOG_DIR
    rows = []
    for name in list_devices(folder):
        dev = load_device(Path(folder) / f"{name}.json")
        hw = dev.hardware
        rows.append({
            "name": dev.name,
            "kind": dev.kind,
            "processor": hw.cpu_model + (f" + {hw.accelerator}" if hw.accelerator else ""),
            "cores": hw.cores,
            "memory_gb": hw.memory_gb,
            "provenance": dev.provenance.kind,
            "models": ", ".join(sorted(dev.models)),
        })
    return rows


def model_rows() -> list[dict]:
    """One row per registered model: id, family, description."""

    return [{"model_id": e.model_id, "family": e.family, "description": e.description}
            for e in sorted(entries().values(), key=lambda e: e.model_id)]


def _power_and_kind(device_name: str, kind: Optional[str], cores: int):
    """Power model and kind from device_facts.json when it names this device, else a stated assumption."""

    if FACTS_PATH.is_file():

        facts = load_facts(FACTS_PATH)
        if device_name in facts:
            return facts[device_name].power, kind or facts[device_name].kind
    return assumed_host_power(cores), kind or "edge"


def run_profile(model_id: str, device_name: str, split_points: str = "auto", repeats: int = 10, warmup: int = 2,
                threads: Optional[int] = None, torch_device: str = "cpu", input_size: Optional[str] = None,
                out: Optional[Path] = None, energy: str = "auto", kind: Optional[str] = None,
                checkpoint: Optional[str] = None, shapes_only: bool = False, show_progress: bool = True):
    """Build, measure and merge one model into a device profile; returns (ModelProfile, path)."""

    if kind is not None and kind not in KINDS:
        raise EdgesimError(f"unknown device kind '{kind}'; known: {', '.join(KINDS)}")
    if energy not in ENERGY_CHOICES:
        raise EdgesimError(f"unknown energy method '{energy}'; known: {', '.join(ENERGY_CHOICES)}")
    out = Path(out) if out else Path("profiles") / f"{device_name}.json"
    check_writable(out)
    if out.exists():
        load_profile(out)  # a corrupt existing profile fails before any measuring and stays unchanged
    check_torch_device(torch_device)
    size = parse_input_size(input_size)
    kwargs = {"input_size": size} if size else {}
    if checkpoint:
        kwargs["checkpoint"] = checkpoint
    if shapes_only:
        kwargs["shapes_only"] = True
    model = build(model_id, **kwargs)
    resolve_split_points(model, split_points)
    hardware = host_hardware(torch_device)
    if torch_device.startswith("cuda"):
        hardware = hardware.model_copy(update={"memory_bandwidth_gbs": None})
        hardware.sources.pop("memory_bandwidth_gbs", None)
    power, kind = _power_and_kind(device_name, kind, hardware.cores)

    busy = host_busy() if not shapes_only else None
    if busy:
        import sys

        print(f"edgesim: warning: {busy}", file=sys.stderr)
    options = MeasureOptions(split_points=split_points, repeats=repeats, warmup=warmup, threads=threads,
                             torch_device=torch_device, energy=energy)
    if show_progress:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn(f"profiling {model_id}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("runs", total=None)
            mp = measure_model(model, options, power,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    else:
        mp = measure_model(model, options, power)
    import torch

    provenance = host_provenance(mp.threads or torch.get_num_threads(), torch_device)
    device = DeviceProfile(name=device_name, kind=kind, hardware=hardware, power=power, provenance=provenance)
    merge_model(out, device, mp)
    return mp, out


def profile(
    model: str = typer.Argument(..., help="registered model id (edgesim list models)"),
    device_name: str = typer.Option(..., "--device-name", help="name of the device profile to write"),
    split_points: str = typer.Option("auto", "--split-points", help="auto or comma-separated split point names"),
    repeats: int = typer.Option(10, "--repeats", min=1),
    warmup: int = typer.Option(2, "--warmup", min=0),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch threads (default: torch's)"),
    device: str = typer.Option("cpu", "--device", help="torch device: cpu or cuda"),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="H,W of the input image"),
    out: Optional[Path] = typer.Option(None, "--out", help="profile JSON (default profiles/<device-name>.json)"),
    energy: str = typer.Option("auto", "--energy", help="auto, nvml, rapl or estimate"),
    kind: Optional[str] = typer.Option(None, "--kind", help="mobile, edge or cloud (default edge)"),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="local state_dict or .safetensors"),
    shapes_only: bool = typer.Option(False, "--shapes-only", help="meta tensors: FLOPs and sizes, no timing"),
    json_out: bool = typer.Option(False, "--json", help="print the split-point rows as JSON"),
) -> None:
    """Measure MODEL on this host and add it to a device profile (002 section 2, Table 2)."""
    from rich.console import Console

    mp, path = run_profile(model, device_name, split_points, repeats, warmup, threads, device, input_size, out,
                           energy, kind, checkpoint, shapes_only)
    if json_out:
        typer.echo(json.dumps(split_rows(mp), indent=1))
        return
    import sys

    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(split_table(mp))
    extra = []
    if mp.peak_memory_bytes is not None:
        extra.append(f"peak memory {mp.peak_memory_bytes / 2**20:.1f} MiB")
    if mp.cpu_utilisation_percent is not None:
        extra.append(f"CPU {mp.cpu_utilisation_percent:.0f}% of {mp.threads} threads")
    if mp.energy_method:
        extra.append(f"energy: {mp.energy_method}")
    jpeg = mp.input_bytes.get("jpeg")
    if jpeg:
        extra.append(f"input JPEG q{mp.jpeg_quality}: {jpeg} B ({100 * jpeg / mp.input_bytes['float32']:.1f}% of float32)")
    console.print("; ".join(extra))
    console.print(f"wrote {path}")
