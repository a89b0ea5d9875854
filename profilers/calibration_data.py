"""Published full-model latencies, one row per (board, stack, model), read from profilers/data/calibration.csv.

Every row keeps the board name as its source writes it, the software stack (framework, precision, threads,
compute, batch), the model name as published and the architecture it maps to here (blank when none), the
latency in milliseconds, the source and the date the number was published. The parsers below rebuild the
ncnn and torch2trt rows from those repositories' text (`python -m profilers.calibration_data --help`).
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable, Optional

from profilers.io import atomic_write_text

CALIBRATION_PATH = Path(__file__).resolve().parent / "data" / "calibration.csv"

#: ncnn benchmark model name -> (architecture id of profilers.opcount, input side of benchncnn.cpp)
NCNN_ARCH = {
    "squeezenet": ("squeezenet1_1", 227), "mobilenet": ("mobilenet_v1", 224), "mobilenet_v2": ("mobilenet_v2", 224),
    "mobilenet_v3": ("mobilenet_v3_large", 224), "shufflenet_v2": ("shufflenet_v2_x1_0", 224),
    "mnasnet": ("mnasnet1_0", 224), "efficientnet_b0": ("efficientnet_b0", 224),
    "regnety_400m": ("regnet_y_400mf", 224), "googlenet": ("googlenet", 224), "resnet18": ("resnet18", 224),
    "alexnet": ("alexnet_caffe", 227), "vgg16": ("vgg16", 224), "resnet50": ("resnet50", 224),
}
NCNN_INPUT = {"blazeface": 128, "squeezenet_ssd": 300, "mobilenet_ssd": 300, "mobilenet_yolo": 416,
              "mobilenetv2_yolov3": 352, "yolov4-tiny": 416, "nanodet_m": 320, "yolo-fastest-1.1": 320,
              "yolo-fastestv2": 352, "vision_transformer": 384, "FastestDet": 352, "alexnet": 227, "squeezenet": 227}
#: torchvision names measured by torch2trt; every one is an architecture profilers.opcount can build
TORCH2TRT_ARCH = {"alexnet", "squeezenet1_0", "squeezenet1_1", "resnet18", "resnet34", "resnet50", "resnet101",
                  "resnet152", "densenet121", "densenet169", "densenet201", "densenet161", "vgg11", "vgg13",
                  "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"}


@dataclass(frozen=True)
class PublishedLatency:
    """One published batch latency of a named model on a named board with a stated software stack."""

    board: str  # as the source names it
    framework: str
    precision: str  # fp32, fp16, int8, tf32
    threads: int  # CPU threads; 0 when not stated or not relevant (GPU)
    compute: str  # cpu, gpu-vulkan:<device index>, gpu-cuda, gpu-tensorrt
    batch: int
    model: str  # as the source names it
    arch: str  # architecture id of profilers.opcount, blank when none maps
    input_size: int
    latency_ms: float
    statistic: str  # what the number is (avg of N loops, median, ...)
    source: str
    date: str  # YYYY-MM-DD the number was published (commit date of the line for git sources)

    @property
    def stack(self) -> str:
        """The device-stack key: board | framework precision threads compute batch."""
        return stack_key(self.board, self.framework, self.precision, self.threads, self.compute, self.batch)


def stack_key(board: str, framework: str, precision: str, threads: int, compute: str, batch: int) -> str:
    """One string naming a device and software stack."""
    return f"{board} | {framework} {precision} {compute} threads={threads} batch={batch}"


def load_points(path: Path = CALIBRATION_PATH) -> list[PublishedLatency]:
    """All rows of the calibration CSV."""
    names = [f.name for f in fields(PublishedLatency)]
    out = []
    with Path(path).open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            values = {k: row[k] for k in names}
            for k in ("threads", "batch", "input_size"):
                values[k] = int(values[k])
            values["latency_ms"] = float(values["latency_ms"])
            out.append(PublishedLatency(**values))
    return out


def save_points(points: Iterable[PublishedLatency], path: Path = CALIBRATION_PATH) -> None:
    """Write rows to the CSV (sorted by stack, then model), atomically: an interrupted write leaves the old file."""
    rows = sorted(points, key=lambda p: (p.stack, p.model))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(PublishedLatency)], lineterminator="\n")
    writer.writeheader()
    for p in rows:
        writer.writerow(asdict(p))
    atomic_write_text(path, buffer.getvalue())


# ---------------------------------------------------------------------------------------------------- parsers

_ROW = re.compile(r"^\s*(\S+)\s+min\s*=\s*([\d.]+)\s+max\s*=\s*([\d.]+)\s+avg\s*=\s*([\d.]+)")


def parse_benchncnn(lines: list[str], dates: list[str], boards: set[str], url: str) -> list[PublishedLatency]:
    """Rows of benchncnn runs in the sections of ncnn's benchmark/README.md whose '### ' title is in boards.

    lines are the README's lines, dates the commit date of each line (git blame); a run starts at
    'loop_count = N' and its 'num_threads' and 'gpu_device' lines set the stack of the rows after them.
    """
    out: list[PublishedLatency] = []
    board = None
    loops = threads = gpu = None
    for line, date in zip(lines, dates):
        if line.startswith("### "):
            board = line[4:].strip() if line[4:].strip() in boards else None
            loops = threads = gpu = None
            continue
        if board is None:
            continue
        if m := re.match(r"loop_count = (\d+)", line):
            loops, threads, gpu = int(m.group(1)), None, None
        elif m := re.match(r"num_threads = (\d+)", line):
            threads = int(m.group(1))
        elif m := re.match(r"gpu_device = (-?\d+)", line):
            gpu = int(m.group(1))
        elif (m := _ROW.match(line)) and threads is not None and gpu is not None:
            name = m.group(1)
            precision = "int8" if name.endswith("_int8") else "fp32"
            base = name[:-5] if precision == "int8" else name
            arch, side = NCNN_ARCH.get(base, ("", NCNN_INPUT.get(base, 224)))
            on_gpu = gpu >= 0
            out.append(PublishedLatency(
                board=board, framework="ncnn", precision="fp16-storage" if on_gpu else precision,
                threads=threads, compute=f"gpu-vulkan:{gpu}" if on_gpu else "cpu", batch=1, model=name,
                arch=arch if precision == "fp32" else "", input_size=side, latency_ms=float(m.group(4)),
                statistic=f"avg of {loops} loops (benchncnn)", source=url, date=date))
    return out


def parse_torch2trt(text: str, board: str, url: str, date: str) -> list[PublishedLatency]:
    """Rows of a torch2trt benchmarks/JETSON_*.md table: PyTorch and TensorRT fp16 latency, batch 1, 224x224."""
    out = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 9 or not cells[0].startswith(("torchvision.", "torch2trt.")):
            continue
        name = cells[0].rsplit(".", 1)[-1]
        for framework, value in (("pytorch", cells[7]), ("tensorrt", cells[8])):
            out.append(PublishedLatency(
                board=board, framework=framework, precision="fp16", threads=0,
                compute="gpu-cuda" if framework == "pytorch" else "gpu-tensorrt", batch=1, model=name,
                arch=name if name in TORCH2TRT_ARCH else "", input_size=224, latency_ms=float(value),
                statistic="mean latency (torch2trt benchmark script)", source=url, date=date))
    return out


def _git(git_dir: str, *args: str) -> str:
    import subprocess

    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True, text=True).stdout


def _blame_dates(git_dir: str, path: str) -> tuple[list[str], list[str]]:
    """Lines of HEAD:path and the author date (YYYY-MM-DD) of each, from git blame --line-porcelain."""
    from datetime import datetime, timezone

    lines, dates, when = [], [], ""
    for raw in _git(git_dir, "blame", "--line-porcelain", "HEAD", "--", path).splitlines():
        if raw.startswith("author-time "):
            when = datetime.fromtimestamp(int(raw.split()[1]), tz=timezone.utc).strftime("%Y-%m-%d")
        elif raw.startswith("\t"):
            lines.append(raw[1:])
            dates.append(when)
    return lines, dates


NCNN_BOARDS = {
    "Raspberry Pi 3 Model B+ Broadcom BCM2837B0, Cortex-A53 (ARMv8) (1.4GHz x 4)",
    "Raspberry Pi 4 Model B Broadcom BCM2711B0, Cortex-A72 (ARMv8) (1.8GHz x 4)",
    "Intel Atom x5-Z8350",
    "NVIDIA Jetson Nano",
    "NVIDIA Jetson TX2 NX(NV-Denver2 2.0Ghz x 2 +  Cortex-A57 2.0Ghz x 4 + 256-core NVIDIA Pascal iGPU)",
    "NVIDIA Jetson AGX Xavier (Carmel 2.2 GHz x 8 + Volta Tensor Cores 64)",
    "NVIDIA Tesla V100-PCIE-32GB  (GV100 SM x 80 + Tensor Core x 640)",
    "MacBook Pro (15-inch, 2019) - 2.6GHz six cores Intel Core i7 && Radeon Pro 555X 4GB && Intel UHD Graphics 630 1536MB",
    # a Skylake-class 4-core desktop CPU (Kaby Lake keeps the Skylake core): validates the laptop's stack
    "Hyper-V Linux Guest with GPU-PV enabled (Intel Core i7-7700K, NVIDIA GeForce GTX 1050 Ti)",
}


def rebuild(ncnn_git: Optional[str], torch2trt_git: Optional[str], path: Path = CALIBRATION_PATH) -> int:
    """Regenerate the ncnn and/or torch2trt rows of the CSV from local git mirrors (those given); other rows are kept."""
    rebuilt = tuple(url for url, given in (("https://github.com/Tencent/ncnn", ncnn_git),
                                           ("https://github.com/NVIDIA-AI-IOT/torch2trt", torch2trt_git)) if given)
    keep = [p for p in load_points(path) if not (rebuilt and p.source.startswith(rebuilt))] if path.exists() else []
    rows = list(keep)
    if ncnn_git:
        sha = _git(ncnn_git, "rev-parse", "HEAD").strip()
        lines, dates = _blame_dates(ncnn_git, "benchmark/README.md")
        rows += parse_benchncnn(lines, dates, NCNN_BOARDS,
                                f"https://github.com/Tencent/ncnn/blob/{sha}/benchmark/README.md")
    if torch2trt_git:
        sha = _git(torch2trt_git, "rev-parse", "HEAD").strip()
        for fname, board in (("JETSON_NANO.md", "NVIDIA Jetson Nano"), ("JETSON_XAVIER.md", "NVIDIA Jetson AGX Xavier")):
            text = _git(torch2trt_git, "show", f"HEAD:benchmarks/{fname}")
            date = _git(torch2trt_git, "log", "-1", "--format=%ad", "--date=short", "--", f"benchmarks/{fname}").strip()
            rows += parse_torch2trt(text, board, f"https://github.com/NVIDIA-AI-IOT/torch2trt/blob/{sha}/benchmarks/{fname}",
                                    date)
    save_points(rows, path)
    return len(rows)


def main(argv: Optional[list[str]] = None) -> int:
    """Rebuild the git-sourced rows of calibration.csv from local mirrors of Tencent/ncnn and NVIDIA-AI-IOT/torch2trt."""
    parser = argparse.ArgumentParser(prog="python -m profilers.calibration_data", description=main.__doc__)
    parser.add_argument("--ncnn-git", help="git directory of a Tencent/ncnn clone")
    parser.add_argument("--torch2trt-git", help="git directory of an NVIDIA-AI-IOT/torch2trt clone")
    parser.add_argument("--out", type=Path, default=CALIBRATION_PATH)
    args = parser.parse_args(argv)
    n = rebuild(args.ncnn_git, args.torch2trt_git, args.out)
    print(f"{args.out}: {n} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
