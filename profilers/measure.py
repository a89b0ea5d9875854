"""Measure a splittable model on this host: per split point head/tail latency, FLOPs, transferred bytes, energy.

002 section 2: the inference time of a split model is tau_head + tau_data + tau_tail; this module measures
tau_head and tau_tail at every block boundary in one pass, and the bytes that set tau_data.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import math
import os
import platform
import socket
import statistics
import threading
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator, Optional, Sequence

from profilers.energy import EnergyMeter, pick_energy_meter
from profilers.errors import EdgesimError, MeasurementUnavailable
from profilers.hostcheck import Watch, busy_reasons, observe, pinned, scaling_note
from profilers.models import SplittableModel
from profilers.progress import Progress
from profilers.schema import (
    BlockRecord,
    HardwareFacts,
    HostState,
    LatencyStats,
    MeasuredProvenance,
    MeasurementCheck,
    ModelProfile,
    OperatorRecord,
    PartDispersion,
    PowerModel,
    SplitPoint,
    timed_part,
)

JPEG_QUALITY = 90
REAL_IMAGE = "sklearn.datasets.load_sample_image('china.jpg') (ships with scikit-learn), resized and centre-cropped"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ZLIB_LEVEL = 6
INT8_HEADER_BYTES = 8  # float32 scale + int32 zero point of per-tensor affine quantisation
MAX_IDLE_GAP_S = 10.0  # longest idle gap before a timed part (a pipeline at 0.1 fps)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
HEAP_TENSOR_BYTES = 32 * 2**20  # glibc's largest mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)


@dataclass(frozen=True)
class MeasureOptions:
    """How to measure: which split points, how many rounds (at least `repeats`; more until target_ci is reached
    within time_budget_s), threads and pinning, the torch device, and how strictly to treat a busy host."""

    split_points: str | Sequence[str] = "auto"
    repeats: int = 10
    warmup: int = 2
    threads: Optional[int] = None
    torch_device: str = "cpu"
    energy: str = "auto"
    target_ci: Optional[float] = None  # e.g. 0.02: repeat until every median's 95 % interval is within +/- 2 %
    time_budget_s: Optional[float] = None  # with target_ci: stop after this many seconds of timed rounds
    max_rounds: int = 5000
    cores: Optional[tuple[int, ...]] = None  # pin to these CPUs (threads default to their number)
    host_window_s: float = 0.0  # observe the host this long before measuring (0: do not)
    strict: bool = False  # a busy host or a target not reached is an error instead of a warning
    clock: str = "wall"  # wall or cpu (CLOCKS)
    idle_gap_s: float = 0.0  # idle this long before each timed part, as a pipeline idles between frames (0: none)


# ----------------------------------------------------------------------------------------------- host facts


def _cpuinfo() -> dict[str, str]:
    """First processor's fields of /proc/cpuinfo (empty off Linux)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    if info:
                        break
                    continue
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def _cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, else platform.processor()."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "unknown"


def _memory_gb() -> float:
    import psutil

    return round(psutil.virtual_memory().total / 1e9, 2)


def _cores() -> int:
    import psutil

    return int(psutil.cpu_count(logical=True) or os.cpu_count() or 1)


def host_fingerprint() -> str:
    """Anonymous host identity: hash of the hostname, CPU model, logical cores and memory."""
    digest = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12]
    return f"host-sha256:{digest}; {_cpu_model()}; {_cores()} logical cores; {_memory_gb()} GB"


def host_provenance(threads: int, torch_device: str = "cpu") -> MeasuredProvenance:
    """Where and when a measurement was taken, with software versions and, on cuda, driver and CUDA versions."""
    import torch

    driver = cuda = None
    if torch_device.startswith("cuda"):
        cuda = torch.version.cuda
        try:
            import pynvml

            pynvml.nvmlInit()
            driver = str(pynvml.nvmlSystemGetDriverVersion())
        except Exception:
            driver = None
    return MeasuredProvenance(
        host_fingerprint=host_fingerprint(),
        date=datetime.now(timezone.utc),
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        platform=platform.platform(),
        threads=threads,
        driver_version=driver,
        cuda_version=cuda,
    )


def host_hardware(torch_device: str = "cpu") -> HardwareFacts:
    """This machine's processor, cores, memory, an estimated FP32 peak (cores * GHz * FLOPs/cycle) and a measured
    copy bandwidth; on cuda the GPU's name and neither CPU figure."""
    info = _cpuinfo()
    cores = _cores()
    flags = set(info.get("flags", "").split())
    if "avx512f" in flags:
        per_cycle, why = 64, "avx512f: 2 FMA units x 16 float32 lanes x 2"
    elif {"avx2", "fma"} <= flags:
        per_cycle, why = 32, "avx2+fma: 2 FMA units x 8 float32 lanes x 2"
    else:
        per_cycle, why = 8, "no avx2/fma flags: 8 FLOPs/cycle assumed"
    ghz = None
    try:
        ghz = float(info.get("cpu MHz", "")) / 1000
    except ValueError:
        pass
    sources = {
        "cpu_model": "/proc/cpuinfo 'model name'",
        "cores": "psutil.cpu_count(logical=True)",
        "memory_gb": "psutil.virtual_memory().total",
    }
    peak = None
    if ghz:
        peak = round(cores * ghz * per_cycle, 1)
        sources["peak_gflops"] = (
            f"estimate: {cores} logical cores x {ghz:.2f} GHz (/proc/cpuinfo 'cpu MHz') x {per_cycle} FLOPs/cycle "
            f"({why}); an upper bound, not measured"
        )
    accelerator, compute, bandwidth = None, "cpu", None
    if torch_device.startswith("cuda"):  # the CPU's peak and bandwidth do not describe the GPU
        import torch

        accelerator, compute = torch.cuda.get_device_name(), "cuda"
        sources["accelerator"] = "torch.cuda.get_device_name()"
        peak = None
        sources.pop("peak_gflops", None)
    else:
        bandwidth = host_memory_bandwidth_gbs()
        sources["memory_bandwidth_gbs"] = ("measured: numpy copy of 64 MiB, best of 5, (read + write) bytes / time, "
                                           "1 thread")
    return HardwareFacts(cpu_model=_cpu_model(), cores=cores, memory_gb=_memory_gb(), accelerator=accelerator,
                         compute=compute, peak_gflops=peak, memory_bandwidth_gbs=bandwidth, sources=sources)


def host_memory_bandwidth_gbs(size_bytes: int = 64 * 2**20, repeats: int = 5) -> float:
    """Copy bandwidth of one thread: best of repeats numpy copies of size_bytes, (read + write) bytes / time."""
    import numpy as np

    src = np.ones(size_bytes // 8)
    dst = np.empty_like(src)
    best_s = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best_s = min(best_s, time.perf_counter() - t0)
    return round(2 * size_bytes / best_s / 1e9, 2)


def steady_allocator() -> bool:
    """Keep tensors up to 32 MiB on glibc's heap, so that every inference reuses the same memory instead of mapping
    and unmapping it (page faults on every run, or not, depending on the allocator's history: MobileNetV3-Large's
    features.2 took 1.6 ms or 10 ms, the whole model 18 or 28 ms, in two processes on this host); False where
    the C library is not glibc. It applies to the whole process, as PyTorch deployments set jemalloc/tcmalloc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, HEAP_TENSOR_BYTES)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**30))
    except (OSError, AttributeError):
        return False


def host_busy(threshold: float = 0.5) -> Optional[str]:
    """A one-line warning when other processes keep the CPUs busy (1-minute load average above threshold)."""
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        return None
    if load1 <= threshold:
        return None
    return (f"host busy: 1-minute load average {load1:.2f} before measuring; latencies include contention with "
            "other processes (measure on an idle host for a clean profile)")


def assumed_host_power(cores: int) -> PowerModel:
    """A stated assumption for a host without a power meter: 1 W idle and 4 W active per logical core."""
    return PowerModel(
        idle_w=1.0 * cores,
        active_w=4.0 * cores,
        source=(f"assumption, not measured: {cores} logical cores x (1 W idle, 4 W active); server CPUs draw "
                "about 3-4.5 W per core at TDP (e.g. AMD EPYC 7763: 280 W / 64 cores)"),
    )


# ------------------------------------------------------------------------------------------- tensors, bytes


def _tensors(out: Any) -> list:
    """The tensors inside a block output (a tensor, tuple/list, dict or HF ModelOutput)."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for item in out for t in _tensors(item)]
    return []


def _shape_and_numel(out: Any) -> tuple[list[int], int]:
    """Shape without the batch dimension; a tuple output is reported as its flat total [numel]."""
    tensors = _tensors(out)
    if len(tensors) == 1:
        shape = list(tensors[0].shape[1:]) or [1]
        return shape, math.prod(shape)
    numel = sum(t[0].numel() if t.dim() > 0 else 1 for t in tensors)
    return [numel], numel


def quantize_int8(values) -> tuple[bytes, float, int]:
    """Per-tensor affine int8 quantisation of a float tensor: (bytes, scale, zero point)."""
    import torch

    flat = values.detach().float().reshape(-1).cpu()
    lo, hi = float(flat.min()), float(flat.max())
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    zero_point = int(round(-lo / scale)) - 128
    q = torch.clamp(torch.round(flat / scale) + zero_point, -128, 127).to(torch.int8)
    return q.numpy().tobytes(), scale, zero_point


def encoded_sizes(out: Any, measure_zlib: bool = True) -> dict[str, int]:
    """Bytes of a head output per encoding (002 section 2: raw and zip-compressed); zlib on the real activations."""
    numel = _shape_and_numel(out)[1]
    sizes = {"float32": 4 * numel, "float16": 2 * numel, "int8": numel + INT8_HEADER_BYTES * len(_tensors(out))}
    if measure_zlib:
        tensors = [t[0] if t.dim() > 0 else t for t in _tensors(out)]
        f32 = b"".join(t.detach().float().contiguous().cpu().numpy().tobytes() for t in tensors)
        i8 = b"".join(quantize_int8(t)[0] for t in tensors)
        sizes["zlib_float32"] = len(zlib.compress(f32, ZLIB_LEVEL))
        sizes["zlib_int8"] = len(zlib.compress(i8, ZLIB_LEVEL)) + INT8_HEADER_BYTES * len(tensors)
    return sizes


def real_image(height: int, width: int):
    """The china.jpg sample image resized to cover (H, W) and centre-cropped: (PIL image, JPEG bytes at q=90)."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    img = Image.fromarray(load_sample_image("china.jpg"))
    scale = max(height / img.height, width / img.width)
    size = (max(width, math.ceil(img.width * scale)), max(height, math.ceil(img.height * scale)))
    img = img.resize(size, Image.BILINEAR)
    left, top = (img.width - width) // 2, (img.height - height) // 2
    img = img.crop((left, top, left + width, top + height))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return img, buf.getvalue()


def image_tensor(img):
    """A PIL RGB image as a 1x3xHxW float32 tensor normalised with the ImageNet mean and std."""
    import numpy as np
    import torch

    arr = np.asarray(img, dtype=np.float32) / 255.0
    t = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((t - mean) / std).contiguous()


# ------------------------------------------------------------------------------------------------ resolving


def resolve_split_points(model: SplittableModel, wanted: str | Sequence[str]) -> list[tuple[str, int]]:
    """The model's natural split points ("auto"), every block boundary ("all") or the named ones, by layer index.

    Models cut from a traced graph (models/graph.py) are built at the selected cuts already: all their points."""
    if isinstance(wanted, str):
        if wanted.strip() == "auto" or (wanted.strip() == "all" and "candidates" in model.extra):
            return list(model.split_points)
        if wanted.strip() == "all":
            named = {k: name for name, k in model.split_points}
            names = _block_names(model)
            return [(named.get(k, names[k - 1] if k else "input"), k) for k in range(len(model.blocks) + 1)]
        wanted = [w.strip() for w in wanted.split(",") if w.strip()]
    known = dict(model.split_points)
    chosen = []
    for name in wanted:
        if name not in known:
            raise EdgesimError(f"model {model.model_id} has no split point '{name}'; known: "
                               + ", ".join(n for n, _ in model.split_points))
        chosen.append((name, known[name]))
    if not chosen:
        raise EdgesimError(f"no split points given for model {model.model_id}; use auto or some of: "
                           + ", ".join(n for n, _ in model.split_points))
    return sorted(dict(chosen).items(), key=lambda item: item[1])


def check_torch_device(torch_device: str) -> None:
    """cpu or an available cuda device; otherwise one line."""
    import torch

    if torch_device == "cpu":
        return
    if not torch_device.startswith("cuda"):
        raise EdgesimError(f"unknown torch device '{torch_device}'; known: cpu, cuda")
    if not torch.cuda.is_available():
        raise MeasurementUnavailable(f"torch device '{torch_device}' requested but CUDA is not available on this host")


# ---------------------------------------------------------------------------------------------- measuring


class _RssSampler(threading.Thread):
    """Samples this process's resident set size periodically and keeps the peak (where VmHWM cannot be reset)."""

    method = "peak RSS delta over warm-up and runs, psutil sampled every 20 ms (weights excluded)"

    def __init__(self, interval_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        import psutil

        self._proc = psutil.Process()
        self.baseline_bytes = self._proc.memory_info().rss
        self.peak_bytes = self.baseline_bytes
        self._interval_s = interval_s
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak_bytes = max(self.peak_bytes, self._proc.memory_info().rss)
            self._halt.wait(self._interval_s)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        self.peak_bytes = max(self.peak_bytes, self._proc.memory_info().rss)
        return self.peak_bytes - self.baseline_bytes


class _HighWaterMark:
    """Linux peak RSS without a sampling thread: reset VmHWM via /proc/self/clear_refs, read it after the runs."""

    method = "peak RSS (VmHWM, reset via /proc/self/clear_refs) minus RSS before the runs (weights excluded)"

    def __init__(self) -> None:
        import psutil

        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        self.baseline_bytes = psutil.Process().memory_info().rss

    @staticmethod
    def _status_kb(field: str) -> int:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise OSError(f"{field} missing from /proc/self/status")

    def start(self) -> None:
        pass

    def stop(self) -> int:
        return self._status_kb("VmHWM") * 1024 - self.baseline_bytes


def _peak_memory_meter():
    """VmHWM reset where Linux allows it (no thread competing with the measured run), else a sampling thread."""
    try:
        meter = _HighWaterMark()
        meter._status_kb("VmHWM")
        return meter
    except OSError:
        return _RssSampler()


def _block_names(model: SplittableModel) -> list[str]:
    """Dotted module names of the blocks where the original torch model is known, else class names."""
    if model.extra.get("block_names"):
        return list(model.extra["block_names"])
    names: dict[int, str] = {}
    torch_model = model.extra.get("torch_model") if model.extra else None
    if torch_model is not None:
        names = {id(m): n for n, m in torch_model.named_modules() if n}
    return [names.get(id(b), f"{i}:{type(b).__name__}") for i, b in enumerate(model.blocks)]


def _param_counts(blocks) -> list[int]:
    """Parameters per block, each shared parameter counted once (in its first block)."""
    seen: set[int] = set()
    counts = []
    for block in blocks:
        n = 0
        for p in block.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        counts.append(n)
    return counts


def image_encodings(height: int, width: int):
    """The real image at (H, W) and its bytes as sent: raw uint8 RGB, JPEG at JPEG_QUALITY and PNG (lossless)."""
    img, jpeg = real_image(height, width)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return img, {"raw_uint8": 3 * height * width, "jpeg": len(jpeg), "png": len(buf.getvalue())}


def _model_input(model: SplittableModel, device: str):
    """(input, input_bytes, image source): the real image for 3-channel image models; for a model whose input is
    prepared from a photo (image_size: ViLT, LLaVA-NeXT-Video), that photo's encodings at the processor size."""
    import torch

    shape = tuple(model.input_shape)
    photo: dict[str, int] = {}
    if model.image_size is not None:
        photo = image_encodings(*model.image_size)[1]
    source = (REAL_IMAGE + f", one photo at the processor size {model.image_size[0]}x{model.image_size[1]}"
              if photo else "")
    if model.shapes_only:
        x = model.example_input(1) if model.example_input else torch.empty((1, *shape), device="meta")
        numel = math.prod(shape)
        return x, {"raw_uint8": numel, "float32": 4 * numel, **photo}, source
    if len(shape) == 3 and shape[0] == 3 and model.example_input is None:
        img, sizes = image_encodings(shape[1], shape[2])
        numel = math.prod(shape)
        return image_tensor(img).to(device), {"float32": 4 * numel, **sizes}, REAL_IMAGE
    x = model.example_input(1) if model.example_input else torch.randn((1, *shape))
    numel = sum(t[0].numel() for t in _tensors(x))
    x = x.to(device) if isinstance(x, torch.Tensor) else x
    return x, {"float32": 4 * numel, **photo}, source


def _structure_pass(model: SplittableModel, x, boundaries: set[int], measure_zlib: bool):
    """One forward with a FLOP counter and the operator stream per block; returns per-block FLOPs, activation
    bytes and operators (None where the stream could not be read), and the encoded sizes, shape and value of the
    output at each wanted boundary (a tail is timed on the real activation)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from profilers.opcount import OperatorStream

    flops, in_bytes, out_bytes = [], [], []
    at: dict[int, tuple[list[int], int, dict[str, int]]] = {}
    acts: dict[int, Any] = {0: x}
    if 0 in boundaries:
        shape, numel = _shape_and_numel(x)
        at[0] = (shape, numel, encoded_sizes(x, measure_zlib))
    stream = OperatorStream(x)
    with torch.inference_mode():
        for i, block in enumerate(model.blocks):
            in_bytes.append(4 * _shape_and_numel(x)[1])
            counter = FlopCounterMode(display=False)
            stream.start(i, block)
            with counter, stream:
                x = block(x)
            stream.block_done(x)
            flops.append(int(counter.get_total_flops()))
            shape, numel = _shape_and_numel(x)
            out_bytes.append(4 * numel)
            if i + 1 in boundaries:
                at[i + 1] = (shape, numel, encoded_sizes(x, measure_zlib))
                acts[i + 1] = x
    operators: list[Optional[list[OperatorRecord]]] = [None] * len(model.blocks)
    if not stream.failed:
        operators = [[] for _ in model.blocks]
        for op in stream.ops():
            operators[op.block].append(OperatorRecord(name=op.name, kind=op.kind, flops=op.flops, in_bytes=op.in_bytes,
                                                      out_bytes=op.out_bytes, weight_bytes=op.weight_bytes))
    return flops, in_bytes, out_bytes, at, acts, operators


#: what each clock of MeasureOptions.clock measures
CLOCKS = {
    "wall": "wall-clock time (time.perf_counter; CUDA events on a GPU)",
    "cpu": ("CPU time of the measuring thread (time.thread_time, one torch thread): excludes the time the scheduler "
            "gave other processes, so a busy host does not lengthen it; what the part costs a core of its own"),
}


def _timed_pass(blocks, x, cuda: bool, clock=time.perf_counter) -> list[float]:
    """Run the block chain once; seconds since the start at every block boundary (len(blocks) + 1 values)."""
    import torch

    if cuda:
        events = [torch.cuda.Event(enable_timing=True) for _ in range(len(blocks) + 1)]
        events[0].record()
        for block, event in zip(blocks, events[1:]):
            x = block(x)
            event.record()
        torch.cuda.synchronize()
        return [0.0] + [events[0].elapsed_time(e) / 1000.0 for e in events[1:]]
    stamps = [clock()]
    for block in blocks:
        x = block(x)
        stamps.append(clock())
    return [s - stamps[0] for s in stamps]


def measure_batch_latency(model: SplittableModel, batch_sizes: Sequence[int], repeats: int, warmup: int,
                          torch_device: str = "cpu", threads: Optional[int] = None) -> dict[int, float]:
    """Median latency of the whole model at each batch size (a per-batch-size table for dynamic batching), on the
    same thread count as measure_model."""
    import torch

    cuda = torch_device.startswith("cuda")
    x1, _, _ = _model_input(model, torch_device)
    out: dict[int, float] = {}
    with _torch_threads(threads), torch.inference_mode():
        for b in sorted(set(int(s) for s in batch_sizes)):
            if b < 1:
                raise EdgesimError(f"--batch-sizes: {b} is not a batch size (1 or more)")
            x = x1.expand(b, *x1.shape[1:]).contiguous() if isinstance(x1, torch.Tensor) else x1
            times = []
            for k in range(warmup + repeats):
                t = _timed_pass(model.blocks, x, cuda)[-1]
                if k >= warmup:
                    times.append(t)
            out[b] = float(statistics.median(times))
    return out


def measure_model(
    model: SplittableModel,
    options: MeasureOptions = MeasureOptions(),
    power_model: Optional[PowerModel] = None,
    progress: Optional[Progress] = None,
    meter: Optional[EnergyMeter] = None,
) -> ModelProfile:
    """Profile model on this host: latency at every split point, FLOPs, bytes per encoding, memory, energy.

    002 section 2 needs tau_head and tau_tail at every split point: each head and each tail is timed on its own,
    warm, as a process of a pipeline runs it, in rounds that interleave them with the whole model so that drift
    hits them alike; the whole model's runs stamp every block boundary for the per-block records."""
    points = resolve_split_points(model, options.split_points)
    if options.repeats < 1 and not model.shapes_only:
        raise EdgesimError(f"repeats must be at least 1, got {options.repeats}")
    if options.warmup < 0:
        raise EdgesimError(f"warmup must be 0 or more, got {options.warmup}")
    if not (math.isfinite(options.idle_gap_s) and 0 <= options.idle_gap_s <= MAX_IDLE_GAP_S):
        raise EdgesimError(f"idle gap must be 0 to {MAX_IDLE_GAP_S:g} seconds, got {options.idle_gap_s}")
    if options.target_ci is not None and not 0 < options.target_ci < 1:
        raise EdgesimError(f"target 95 % interval must be a fraction in (0, 1), got {options.target_ci}")
    if options.time_budget_s is not None and options.time_budget_s <= 0:
        raise EdgesimError(f"time budget must be positive seconds, got {options.time_budget_s}")
    check_torch_device(options.torch_device)
    if options.clock not in CLOCKS:
        raise EdgesimError(f"unknown clock '{options.clock}'; known: {', '.join(CLOCKS)}")
    if options.clock == "cpu" and (options.threads != 1 or options.torch_device != "cpu"):
        raise EdgesimError("--clock cpu times one thread's CPU time: it needs --threads 1 on --device cpu")
    cuda = options.torch_device.startswith("cuda") and not model.shapes_only
    device = options.torch_device if cuda else ("meta" if model.shapes_only else "cpu")
    with pinned(options.cores) as cores, _torch_threads(options.threads or (len(options.cores) if options.cores
                                                                           else None)) as threads:
        return _measure(model, options, points, power_model, progress, device, cuda, threads, meter, cores)


@contextmanager
def _torch_threads(threads: Optional[int]) -> Iterator[int]:
    """torch's intra-op threads set to `threads` (torch's current count when None) inside the block, then restored."""
    import torch

    previous = torch.get_num_threads()
    threads = threads or previous
    if threads < 1:
        raise EdgesimError(f"threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(previous)


# ------------------------------------------------------------------------------------------ stopping rule


def median_ci95(samples: Sequence[float]) -> tuple[float, float]:
    """Distribution-free 95 % interval of the median: order statistics at ranks n/2 -/+ 1.96 sqrt(n)/2
    (Conover, Practical Nonparametric Statistics, section 3.2, normal approximation of the binomial)."""
    xs = sorted(samples)
    n = len(xs)
    half = 1.96 * math.sqrt(n) / 2
    lo = max(int(math.floor(n / 2 - half)), 1)
    hi = min(int(math.ceil(n / 2 + 1 + half)), n)
    return xs[lo - 1], xs[hi - 1]


def dispersion(samples: Sequence[float], reference: Sequence[float] = ()) -> PartDispersion:
    """Median, its 95 % interval's half-width, MAD and the drift between the first and second half, in %; with the
    host reference's times of the same rounds, also the median of the per-round ratio part / reference and its
    interval (the host's speed, which moves every part of a round alike, taken out round by round)."""
    med = statistics.median(samples)
    n = len(samples)
    ci = mad = drift = None
    if med > 0:
        ci = _ci95_half_pct(samples, med)
        mad = 100.0 * statistics.median(abs(s - med) for s in samples) / med
        if n >= 4:
            first, second = statistics.median(samples[:n // 2]), statistics.median(samples[n // 2:])
            drift = 100.0 * (second / first - 1) if first > 0 else None
    per_ref = per_ref_ci = None
    if len(reference) == n and n and all(r > 0 for r in reference):
        ratios = [s / r for s, r in zip(samples, reference)]
        per_ref = statistics.median(ratios)
        per_ref_ci = _ci95_half_pct(ratios, per_ref) if per_ref > 0 else None
    return PartDispersion(n=n, median_s=med, ci95_half_pct=None if ci is None else round(ci, 3),
                          mad_pct=round(mad or 0.0, 3), drift_pct=None if drift is None else round(drift, 3),
                          per_reference=per_ref,
                          per_reference_ci95_half_pct=None if per_ref_ci is None else round(per_ref_ci, 3))


def _ci95_half_pct(values: Sequence[float], median: float) -> Optional[float]:
    """Half-width of the median's distribution-free 95 % interval, % of the (positive) median; None under 6 values."""
    if len(values) < 6:
        return None
    lo, hi = median_ci95(values)
    return 100.0 * (hi - lo) / 2 / median


def _precise(samples: Sequence[float], target: float) -> bool:
    """The median's 95 % interval lies within +/- target of it (at least 6 samples)."""
    med = statistics.median(samples)
    if len(samples) < 6 or med <= 0:
        return len(samples) >= 6
    lo, hi = median_ci95(samples)
    return (hi - lo) / 2 <= target * med


# ---------------------------------------------------------------------------------------------- measuring


@dataclass
class _Part:
    """One thing timed on its own: the whole model (stamping every block boundary), a head or a tail."""

    name: str
    blocks: list
    x: Any
    samples: list[float]


def _timed_parts(blocks, x, acts: dict[int, Any], points, n_blocks: int) -> list[_Part]:
    """The whole model, then head and tail of every split point strictly inside the model (a head up to the
    output and a tail from the input are the whole model; the others are empty)."""
    parts = [_Part("whole", blocks, x, [])]
    for name, k in points:
        if 0 < k < n_blocks:
            parts.append(_Part(timed_part("head", name, k, n_blocks), blocks[:k], x, []))
            parts.append(_Part(timed_part("tail", name, k, n_blocks), blocks[k:], acts[k], []))
    return parts


#: the name of the fixed workload timed beside the model's parts in every round
HOST_REFERENCE = "host-reference"


def _reference_part(device: str) -> _Part:
    """A fixed workload timed in every round beside the model's parts (a 3x3 convolution, 64 to 64 channels at 56 x 56,
    as in ResNet's first stage, seeded weights): when it drifts as the parts do, the host's speed moved (other
    virtual machines on the physical host, frequency), which neither load nor steal shows, not the model."""
    import torch

    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).eval()
    with torch.no_grad():
        conv.weight.copy_(0.05 * torch.randn(conv.weight.shape, generator=g))
    return _Part(HOST_REFERENCE, [conv.to(device)], torch.randn(1, 64, 56, 56, generator=g).to(device), [])


def _run_rounds(parts: list[_Part], options: MeasureOptions, cuda: bool, tick) -> tuple[list[list[float]], bool, float]:
    """Warm-up rounds, then timed rounds (each starts at another part) until every part's median is precise to the
    target or the time budget is spent; (whole-model stamps per round, converged, seconds spent)."""
    stamps: list[list[float]] = []
    order = list(range(len(parts)))
    clock = time.thread_time if options.clock == "cpu" else time.perf_counter
    for _ in range(options.warmup):
        for part in parts:
            _timed_pass(part.blocks, part.x, cuda, clock)
        tick(False)
    t0 = time.perf_counter()
    converged = options.target_ci is None
    rounds = 0
    while True:
        shift = rounds % len(order)
        for i in order[shift:] + order[:shift]:
            part = parts[i]
            if options.idle_gap_s > 0:
                time.sleep(options.idle_gap_s)
            stamp = _timed_pass(part.blocks, part.x, cuda, clock)
            part.samples.append(stamp[-1])
            if i == 0:
                stamps.append(stamp)
        rounds += 1
        tick(True)
        elapsed = time.perf_counter() - t0
        if rounds < options.repeats:
            continue
        if options.target_ci is None:
            break
        if all(_precise(p.samples, options.target_ci) for p in parts):
            converged = True
            break
        if (options.time_budget_s is not None and elapsed >= options.time_budget_s) or rounds >= options.max_rounds:
            break
    return stamps, converged, time.perf_counter() - t0


def _measure(model, options, points, power_model, progress, device, cuda, threads, meter, cores) -> ModelProfile:
    import psutil
    import torch

    blocks = [b.to(device) for b in model.blocks] if cuda else list(model.blocks)
    host_before = None
    warnings: list[str] = []
    if not model.shapes_only and options.host_window_s > 0:
        host_before = observe(options.host_window_s)
        reasons = busy_reasons(host_before, threads)
        if reasons and options.strict:
            raise EdgesimError(f"host too busy to measure (--strict): {'; '.join(reasons)}")
        warnings += [f"before measuring: {r}" for r in reasons]
        note = scaling_note(host_before)
        if note:
            warnings.append(note)
    x, input_bytes, jpeg_source = _model_input(model, device)
    boundaries = {k for _, k in points} | {len(blocks)}
    fixed = options.target_ci is None
    budget = int(math.ceil(options.time_budget_s or 0))
    total_steps = 1 + options.warmup + (options.repeats if fixed or not budget else budget)
    done = 0
    t_start = time.perf_counter()

    def tick(timed: bool = False) -> None:
        nonlocal done
        if fixed or not budget or not timed:
            done += 1
        else:
            done = 1 + options.warmup + min(int(time.perf_counter() - t_start), budget)
        if progress is not None:
            progress(min(done, total_steps), total_steps)

    flops, in_bytes, out_bytes, at, acts, operators = _structure_pass(model, x, boundaries,
                                                                      measure_zlib=not model.shapes_only)
    params = _param_counts(blocks)
    tick()

    n_blocks = len(blocks)
    stamps: list[list[float]] = []
    parts: list[_Part] = []
    reference: Optional[_Part] = None  # the host reference, timed in the same rounds (the meter covers it too)
    peak_memory = None
    memory_method = ""
    cpu_percent = None
    energy_j = None
    energy_method = energy_detail = None
    check = None
    if not model.shapes_only:
        power_model = power_model or assumed_host_power(_cores())
        meter = meter or pick_energy_meter(options.torch_device, power_model, options.energy)
        if cuda:
            acts = {k: _to(v, device) for k, v in acts.items()}
        parts = _timed_parts(blocks, x, acts, points, n_blocks)
        reference = _reference_part(device)
        heap = not cuda and steady_allocator()
        sampler = None
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base_alloc = torch.cuda.memory_allocated()
        else:
            sampler = _peak_memory_meter()
            sampler.start()
        proc = psutil.Process()
        watch = Watch()
        with torch.inference_mode():
            proc.cpu_percent(None)
            watch.start()
            meter.start()
            stamps, converged, wall_s = _run_rounds(parts + [reference], options, cuda, tick)
            energy_j = meter.stop()
            host_during = watch.stop()
            cpu_percent = round(min(100.0, proc.cpu_percent(None) / threads), 1)
        energy_method, energy_detail = meter.method, meter.detail
        if cuda:
            peak_memory = int(torch.cuda.max_memory_allocated() - base_alloc)
            memory_method = "torch.cuda.max_memory_allocated minus allocation before the runs (weights excluded)"
        else:
            peak_memory = int(max(0, sampler.stop()))
            memory_method = sampler.method
        check = _check(parts, points, n_blocks, options, converged, wall_s, host_before, host_during, threads,
                       cores, warnings, heap, reference)
        if options.strict and (check.busy or not check.converged):
            raise EdgesimError("measurement not trustworthy (--strict): " + "; ".join(check.warnings))

    samples = {p.name: p.samples for p in parts}
    full = samples.get("whole", [])
    median_full = statistics.median(full) if full else 0.0
    timed_s = sum(sum(p.samples) for p in parts + ([reference] if reference is not None else []))
    per_run_energy = energy_j * median_full / timed_s if full and energy_j is not None and timed_s > 0 else None
    cum_flops = [0]
    cum_params = [0]
    for f, p in zip(flops, params):
        cum_flops.append(cum_flops[-1] + f)
        cum_params.append(cum_params[-1] + p)

    def part_stats(kind: str, name: str, k: int) -> Optional[LatencyStats]:
        if not full:
            return None
        key = timed_part(kind, name, k, n_blocks)
        return LatencyStats.from_samples([0.0] * len(full) if key is None else samples[key])

    split_points = []
    for name, k in points:
        shape, numel, sizes = at[k]
        head, tail = part_stats("head", name, k), part_stats("tail", name, k)
        head_e = tail_e = None
        if per_run_energy is not None and head is not None and tail is not None:
            both = head.median_s + tail.median_s
            share = head.median_s / both if both > 0 else 0.0
            head_e, tail_e = per_run_energy * share, per_run_energy * (1 - share)
        split_points.append(SplitPoint(
            name=name, layer_index=k, output_shape=shape, output_numel=numel, output_bytes=sizes,
            head_flops=cum_flops[k], head_params=cum_params[k], head_latency=head, tail_latency=tail,
            head_energy_j=head_e, tail_energy_j=tail_e,
        ))

    names = _block_names(model)
    block_records = [
        BlockRecord(name=names[i], flops=flops[i], params=params[i], input_bytes=in_bytes[i], output_bytes=out_bytes[i],
                    latency=LatencyStats.from_samples([s[i + 1] - s[i] for s in stamps]) if stamps else None,
                    operators=operators[i])
        for i in range(n_blocks)
    ]
    out_numel = at[n_blocks][1]
    description = model.description
    if energy_method:
        description += (f"; energy: {energy_method} ({energy_detail}), average power over the timed runs x the whole "
                        "model's median, apportioned to head and tail by their medians")
    description += f"; result_bytes: float32 logits ({out_numel} values)"
    return ModelProfile(
        model_id=model.model_id,
        description=description,
        checkpoint=model.checkpoint,
        input_shape=list(model.input_shape),
        input_numel=math.prod(model.input_shape),
        input_bytes=input_bytes,
        jpeg_quality=JPEG_QUALITY,
        jpeg_source=jpeg_source,
        result_bytes=4 * out_numel,
        total_flops=cum_flops[-1],
        total_params=cum_params[-1],
        measurement="shapes-only" if model.shapes_only else "measured",
        torch_device=options.torch_device if not model.shapes_only else "meta",
        threads=None if model.shapes_only else threads,
        repeats=len(stamps),
        warmup=0 if model.shapes_only else options.warmup,
        peak_memory_bytes=peak_memory,
        memory_method=memory_method,
        cpu_utilisation_percent=cpu_percent,
        energy_method=energy_method,
        split_points=split_points,
        blocks=block_records,
        measurement_check=check,
    )


#: a part whose medians drift more than this between the first and second half of the rounds is unstable
DRIFT_WARN_PCT = 5.0
#: head + tail timed on their own may differ from the whole model by this much before a warning
SPLIT_SUM_WARN = 0.10


def _check(parts: list[_Part], points, n_blocks: int, options: MeasureOptions, converged: bool, wall_s: float,
           host_before: Optional[HostState], host_during: HostState, threads: int, cores: list[int],
           warnings: list[str], heap: bool = False, reference: Optional[_Part] = None) -> MeasurementCheck:
    """The record of how the timing went: dispersion per part, head + tail against the whole, host, warnings."""
    ref_samples = reference.samples if reference is not None else []
    disp = {p.name: dispersion(p.samples, ref_samples) for p in parts}
    host_ref = dispersion(ref_samples) if ref_samples else None
    whole = disp["whole"].median_s
    sums = {}
    for name, k in points:
        if 0 < k < n_blocks and whole > 0:
            sums[name] = round((disp[timed_part("head", name, k, n_blocks)].median_s
                                + disp[timed_part("tail", name, k, n_blocks)].median_s) / whole, 4)
    warnings = list(warnings)
    reasons = busy_reasons(host_during, threads)
    warnings += [f"while measuring: {r}" for r in reasons]
    if not converged:
        worst = max(disp.items(), key=lambda kv: kv[1].ci95_half_pct or 0.0)
        warnings.append(f"not every median reached +/-{100 * options.target_ci:g}% (95% interval) in "
                        f"{len(parts[0].samples)} rounds ({wall_s:.0f} s of a {options.time_budget_s or 0:g} s "
                        f"budget): widest is {worst[0]} +/-{worst[1].ci95_half_pct or 0:.1f}%")
    drifting = {n: d.drift_pct for n, d in disp.items() if d.drift_pct is not None and abs(d.drift_pct) > DRIFT_WARN_PCT}
    if drifting:
        name, drift = max(drifting.items(), key=lambda kv: abs(kv[1]))
        warnings.append(f"unstable: {len(drifting)} part(s) drifted more than {DRIFT_WARN_PCT:g}% between the first "
                        f"and second half of the rounds (largest {name} {drift:+.1f}%)")
    if host_ref is not None and host_ref.drift_pct is not None and abs(host_ref.drift_pct) > DRIFT_WARN_PCT:
        warnings.append(f"the host's own speed moved: a fixed reference workload timed in the same rounds drifted "
                        f"{host_ref.drift_pct:+.1f}% between the halves ("
                        + ("with the other processes said above" if reasons else "neither load nor steal shows "
                           "why: other virtual machines on the physical host, or frequency")
                        + "); a profile taken at another time may differ as much")
    off = {n: r for n, r in sums.items() if abs(r - 1) > SPLIT_SUM_WARN}
    if off:
        name, ratio = max(off.items(), key=lambda kv: abs(kv[1] - 1))
        warnings.append(f"head + tail timed on their own differ from the whole model by more than "
                        f"{100 * SPLIT_SUM_WARN:g}% at {len(off)} split point(s) (largest at {name}: x{ratio:.3f})")
    method = (f"{CLOCKS[options.clock]}; each part (whole model, and every split point's head and tail) timed on its own, warm "
              f"({options.warmup} warm-up rounds), on {threads} torch thread(s)"
              + (f" pinned to CPUs {','.join(map(str, cores))}" if options.cores else "")
              + (f", each after {1e3 * options.idle_gap_s:g} ms idle (as a pipeline idles between frames)"
                 if options.idle_gap_s > 0 else ", back to back")
              + ("; tensors up to 32 MiB kept on the heap (glibc mallopt), not mapped anew each run" if heap else "")
              + "; rounds interleave the parts, each round starting at the next part, and time a fixed reference "
                "workload beside them (host_reference: the host's own speed); "
              + (f"repeated until every median's distribution-free 95% interval is within +/-"
                 f"{100 * options.target_ci:g}% or {options.time_budget_s or 0:g} s are spent (at least "
                 f"{options.repeats} rounds)" if options.target_ci is not None else f"{options.repeats} rounds"))
    return MeasurementCheck(method=method, rounds=len(parts[0].samples), wall_s=round(wall_s, 3),
                            target_ci95_pct=None if options.target_ci is None else 100 * options.target_ci,
                            time_budget_s=options.time_budget_s, converged=converged, parts=disp,
                            head_plus_tail_over_whole=sums, host_reference=host_ref,
                            host_reference_samples_s=list(ref_samples),
                            host_before=host_before, host_during=host_during,
                            busy=bool(reasons) or any(w.startswith("before measuring") for w in warnings),
                            warnings=warnings)


def _to(value, device: str):
    """A block input (tensor, tuple, dict) moved to device."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    return value
