"""Measure a splittable model on this host: per split point head/tail latency, FLOPs, transferred bytes, energy.

002 section 2: the inference time of a split model is tau_head + tau_data + tau_tail; this module measures
tau_head and tau_tail at every block boundary in one pass, and the bytes that set tau_data.
"""

from __future__ import annotations

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
from profilers.models import SplittableModel
from profilers.progress import Progress
from profilers.schema import (
    BlockRecord,
    HardwareFacts,
    LatencyStats,
    MeasuredProvenance,
    ModelProfile,
    PowerModel,
    SplitPoint,
)

JPEG_QUALITY = 90
REAL_IMAGE = "sklearn.datasets.load_sample_image('china.jpg') (ships with scikit-learn), resized and centre-cropped"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ZLIB_LEVEL = 6
INT8_HEADER_BYTES = 8  # float32 scale + int32 zero point of per-tensor affine quantisation


@dataclass(frozen=True)
class MeasureOptions:
    """How to measure: which split points, how many runs, threads and the torch device."""

    split_points: str | Sequence[str] = "auto"
    repeats: int = 10
    warmup: int = 2
    threads: Optional[int] = None
    torch_device: str = "cpu"
    energy: str = "auto"


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


def _model_input(model: SplittableModel, device: str):
    """(input tensor, input_bytes, jpeg source) — the real image for 3-channel image models."""
    import torch

    shape = tuple(model.input_shape)
    if model.shapes_only:
        x = model.example_input(1) if model.example_input else torch.empty((1, *shape), device="meta")
        numel = math.prod(shape)
        return x, {"raw_uint8": numel, "float32": 4 * numel}, ""
    if len(shape) == 3 and shape[0] == 3 and model.example_input is None:
        img, jpeg = real_image(shape[1], shape[2])
        numel = math.prod(shape)
        return image_tensor(img).to(device), {"raw_uint8": numel, "float32": 4 * numel, "jpeg": len(jpeg)}, REAL_IMAGE
    x = model.example_input(1) if model.example_input else torch.randn((1, *shape))
    numel = sum(t[0].numel() for t in _tensors(x))
    x = x.to(device) if isinstance(x, torch.Tensor) else x
    return x, {"float32": 4 * numel}, ""


def _structure_pass(model: SplittableModel, x, boundaries: set[int], measure_zlib: bool):
    """One forward with a FLOP counter per block; returns per-block FLOPs and activation bytes, and
    the encoded sizes and shape of the output at each wanted boundary."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    flops, in_bytes, out_bytes = [], [], []
    at: dict[int, tuple[list[int], int, dict[str, int]]] = {}
    if 0 in boundaries:
        shape, numel = _shape_and_numel(x)
        at[0] = (shape, numel, encoded_sizes(x, measure_zlib))
    with torch.inference_mode():
        for i, block in enumerate(model.blocks):
            in_bytes.append(4 * _shape_and_numel(x)[1])
            counter = FlopCounterMode(display=False)
            with counter:
                x = block(x)
            flops.append(int(counter.get_total_flops()))
            shape, numel = _shape_and_numel(x)
            out_bytes.append(4 * numel)
            if i + 1 in boundaries:
                at[i + 1] = (shape, numel, encoded_sizes(x, measure_zlib))
    return flops, in_bytes, out_bytes, at


def _timed_pass(blocks, x, cuda: bool) -> list[float]:
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
    stamps = [time.perf_counter()]
    for block in blocks:
        x = block(x)
        stamps.append(time.perf_counter())
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
    """Profile model on this host: latency at every block boundary, FLOPs, bytes per encoding, memory, energy.

    002 section 2 needs tau_head and tau_tail at every split point; one timed pass per repeat stamps every block
    boundary, so a head is the sum of its blocks' times."""
    points = resolve_split_points(model, options.split_points)
    if options.repeats < 1 and not model.shapes_only:
        raise EdgesimError(f"repeats must be at least 1, got {options.repeats}")
    if options.warmup < 0:
        raise EdgesimError(f"warmup must be 0 or more, got {options.warmup}")
    check_torch_device(options.torch_device)
    cuda = options.torch_device.startswith("cuda") and not model.shapes_only
    device = options.torch_device if cuda else ("meta" if model.shapes_only else "cpu")
    with _torch_threads(options.threads) as threads:
        return _measure(model, options, points, power_model, progress, device, cuda, threads, meter)


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


def _measure(model, options, points, power_model, progress, device, cuda, threads, meter) -> ModelProfile:
    import psutil
    import torch

    blocks = [b.to(device) for b in model.blocks] if cuda else list(model.blocks)
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    x, input_bytes, jpeg_source = _model_input(model, device)
    boundaries = {k for _, k in points} | {len(blocks)}
    timed = 0 if model.shapes_only else options.warmup + options.repeats
    total_steps = 1 + timed
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total_steps)

    flops, in_bytes, out_bytes, at = _structure_pass(model, x, boundaries, measure_zlib=not model.shapes_only)
    params = _param_counts(blocks)
    tick()

    stamps: list[list[float]] = []
    peak_memory = None
    memory_method = ""
    cpu_percent = None
    energy_j = None
    energy_method = energy_detail = None
    if not model.shapes_only:
        power_model = power_model or assumed_host_power(_cores())
        meter = meter or pick_energy_meter(options.torch_device, power_model, options.energy)
        sampler = None
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base_alloc = torch.cuda.memory_allocated()
        else:
            sampler = _peak_memory_meter()
            sampler.start()
        proc = psutil.Process()
        with torch.inference_mode():
            for _ in range(options.warmup):
                _timed_pass(blocks, x, cuda)
                tick()
            proc.cpu_percent(None)
            meter.start()
            for _ in range(options.repeats):
                stamps.append(_timed_pass(blocks, x, cuda))
                tick()
            energy_j = meter.stop()
            cpu_percent = round(min(100.0, proc.cpu_percent(None) / threads), 1)
        energy_method, energy_detail = meter.method, meter.detail
        if cuda:
            peak_memory = int(torch.cuda.max_memory_allocated() - base_alloc)
            memory_method = "torch.cuda.max_memory_allocated minus allocation before the runs (weights excluded)"
        else:
            peak_memory = int(max(0, sampler.stop()))
            memory_method = sampler.method

    n_blocks = len(blocks)
    full = [s[-1] for s in stamps]
    mean_full = sum(full) / len(full) if full else 0.0
    per_run_energy = energy_j / len(stamps) if stamps and energy_j is not None else None
    cum_flops = [0]
    cum_params = [0]
    for f, p in zip(flops, params):
        cum_flops.append(cum_flops[-1] + f)
        cum_params.append(cum_params[-1] + p)

    split_points = []
    for name, k in points:
        shape, numel, sizes = at[k]
        head = tail = None
        head_e = tail_e = None
        if stamps:
            head_samples = [s[k] - s[0] for s in stamps]
            tail_samples = [s[n_blocks] - s[k] for s in stamps]
            head, tail = LatencyStats.from_samples(head_samples), LatencyStats.from_samples(tail_samples)
            if per_run_energy is not None and mean_full > 0:
                share = (sum(head_samples) / len(head_samples)) / mean_full
                head_e, tail_e = per_run_energy * share, per_run_energy * (1 - share)
        split_points.append(SplitPoint(
            name=name, layer_index=k, output_shape=shape, output_numel=numel, output_bytes=sizes,
            head_flops=cum_flops[k], head_params=cum_params[k], head_latency=head, tail_latency=tail,
            head_energy_j=head_e, tail_energy_j=tail_e,
        ))

    names = _block_names(model)
    block_records = [
        BlockRecord(name=names[i], flops=flops[i], params=params[i], input_bytes=in_bytes[i], output_bytes=out_bytes[i],
                    latency=LatencyStats.from_samples([s[i + 1] - s[i] for s in stamps]) if stamps else None)
        for i in range(n_blocks)
    ]
    out_numel = at[n_blocks][1]
    description = model.description
    if energy_method:
        description += (f"; energy: {energy_method} ({energy_detail}) over {len(stamps)} runs, per run apportioned to head and tail "
                        "by their share of the mean run time")
    description += f"; result_bytes: float32 logits ({out_numel} values)"
    if stamps and load1 is not None:
        description += f"; 1-minute load average before the runs: {load1:.2f}"
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
    )

