"""Energy meters: a Zeus measurement window (GPU energy counters, RAPL CPU package and DRAM, SoC rails), or a
labelled power-model estimate where no counter exists.

Zeus (`zeus` on PyPI, REFERENCES.md section 3) reads NVML's total-energy counter on NVIDIA Volta and later,
AMD SMI on AMD GPUs, the RAPL powercap files on Intel/AMD CPUs and the power rails of Jetson boards; this
module only chooses which of them a profile needs and names the method in the profile.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Protocol

from profilers.errors import EdgesimError, MeasurementUnavailable, first_line
from profilers.schema import PowerModel

ENERGY_CHOICES = ("auto", "required", "nvml", "rapl", "estimate")
WINDOW = "edgesim-profile"

#: builds a ZeusMonitor-like object: monitor_factory(gpu_indices=[...], cpu_indices=[...])
MonitorFactory = Callable[..., Any]


class EnergyMeter(Protocol):
    """Measures the energy in joules spent between start() and stop()."""

    method: str  # one of schema.EnergyMethod
    detail: str  # how, in words, for the profile's description

    def start(self) -> None: ...

    def stop(self) -> float: ...


def zeus_monitor_factory() -> MonitorFactory:
    """zeus.monitor.ZeusMonitor, or MeasurementUnavailable when the zeus package is missing."""
    try:
        from zeus.monitor import ZeusMonitor
    except ImportError as exc:
        raise MeasurementUnavailable(f"energy counters need the zeus package (pip install zeus): {exc}") from None
    return ZeusMonitor


def _zeus_version() -> str:
    try:
        from importlib.metadata import version

        return version("zeus")
    except Exception:  # not installed (a fake backend in tests)
        return "?"


class ZeusEnergyMeter:
    """Energy of one ZeusMonitor window over the measured runs: the GPU's counter on cuda, CPU packages + DRAM on cpu."""

    def __init__(self, target: str, gpu_index: int = 0, factory: Optional[MonitorFactory] = None) -> None:
        factory = factory or zeus_monitor_factory()
        try:
            if target == "gpu":
                monitor = factory(gpu_indices=[gpu_index], cpu_indices=[])
            else:
                monitor = factory(gpu_indices=[], cpu_indices=None)
        except Exception as exc:  # ZeusMonitor raises RuntimeError without RAPL permission, NVML errors, ...
            raise MeasurementUnavailable(f"Zeus cannot open the {target} energy counters: {first_line(exc)}") from None
        gpus, cpus = list(getattr(monitor, "gpu_indices", [])), list(getattr(monitor, "cpu_indices", []))
        if target == "gpu" and not gpus:
            raise MeasurementUnavailable(f"Zeus finds no GPU energy counter for GPU {gpu_index} on this host")
        if target == "cpu" and not cpus:
            raise MeasurementUnavailable("Zeus finds no RAPL CPU energy counter on this host (or it is not readable)")
        self._monitor = monitor
        self._target = target
        self.method = "nvml-total-energy" if target == "gpu" else "rapl-powercap"
        what = f"GPU {gpus[0]} energy counter" if target == "gpu" else \
            f"RAPL CPU package(s) {', '.join(map(str, cpus))} + DRAM where exposed"
        self.detail = f"Zeus {_zeus_version()} ZeusMonitor window, {what}"

    def start(self) -> None:
        self._monitor.begin_window(WINDOW)

    def stop(self) -> float:
        m = self._monitor.end_window(WINDOW)
        if self._target == "gpu":
            return float(sum((m.gpu_energy or {}).values()))
        return float(sum((m.cpu_energy or {}).values()) + sum((m.dram_energy or {}).values()))


class PowerModelEstimate:
    """No counter: energy = power_w * elapsed wall time (power from the device's power model, not measured)."""

    method = "power-model-estimate"

    def __init__(self, power_w: float, source: str = "") -> None:
        self.power_w = float(power_w)
        self.detail = f"estimate, not measured: active power {self.power_w:g} W x wall time" + \
            (f" (power: {source})" if source else "")
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        return self.power_w * (time.perf_counter() - self._t0)


def check_energy_choice(name: str) -> None:
    """One line unless name is an --energy choice."""
    if name not in ENERGY_CHOICES:
        raise EdgesimError(f"unknown energy method '{name}'; known: {', '.join(ENERGY_CHOICES)}")


def pick_energy_meter(torch_device: str, power_model: PowerModel, require: Optional[str] = None,
                      factory: Optional[MonitorFactory] = None) -> EnergyMeter:
    """Zeus on the device's counter (GPU on cuda, RAPL on cpu), else active_w * time from the power model.

    require: auto (counter, else estimate), required (a counter or MeasurementUnavailable), nvml, rapl, estimate.
    """
    if require is not None:
        check_energy_choice(require)
    if require == "estimate":
        return PowerModelEstimate(power_model.active_w, power_model.source)
    target = {"nvml": "gpu", "rapl": "cpu"}.get(require or "", "gpu" if torch_device.startswith("cuda") else "cpu")
    index = int(torch_device.split(":")[1]) if ":" in torch_device else 0
    try:
        return ZeusEnergyMeter(target, index, factory)
    except MeasurementUnavailable as exc:
        if require in ("required", "nvml", "rapl"):
            raise MeasurementUnavailable(f"--energy {require}: {exc}") from None
        return PowerModelEstimate(power_model.active_w, power_model.source)
