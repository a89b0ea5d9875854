"""Energy meters: NVML total-energy counter, Intel RAPL powercap counters, or a power-model estimate."""

from __future__ import annotations

import glob
import time
from pathlib import Path
from typing import Optional, Protocol

from profilers.errors import EdgesimError, MeasurementUnavailable
from profilers.schema import PowerModel

ENERGY_CHOICES = ("auto", "nvml", "rapl", "estimate")


class EnergyMeter(Protocol):
    """Measures the energy in joules spent between start() and stop()."""

    method: str  # one of schema.EnergyMethod

    def start(self) -> None: ...

    def stop(self) -> float: ...


class NvmlEnergyMeter:
    """GPU energy from nvmlDeviceGetTotalEnergyConsumption (millijoules since driver load)."""

    method = "nvml-total-energy"

    def __init__(self, index: int = 0) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except Exception as exc:
            raise MeasurementUnavailable(f"NVML energy counter unavailable: {type(exc).__name__}: {exc}") from None
        self._pynvml = pynvml
        self._start_mj = 0

    def _read_mj(self) -> int:
        return int(self._pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    def start(self) -> None:
        self._start_mj = self._read_mj()

    def stop(self) -> float:
        return (self._read_mj() - self._start_mj) / 1000.0


class RaplEnergyMeter:
    """CPU package energy from /sys/class/powercap/intel-rapl:*/energy_uj, handling counter wrap-around."""

    method = "rapl-powercap"

    def __init__(self, root: str = "/sys/class/powercap") -> None:
        zones = sorted(p for p in glob.glob(f"{root}/intel-rapl:*") if p.count(":") == 1)  # packages, not subzones
        readable = []
        for zone in zones:
            try:
                int(Path(zone, "energy_uj").read_text())
                readable.append((zone, int(Path(zone, "max_energy_range_uj").read_text())))
            except (OSError, ValueError):
                continue
        if not readable:
            raise MeasurementUnavailable(f"RAPL energy counters unavailable or unreadable under {root}/intel-rapl:*")
        self._zones = readable
        self._start_uj: list[int] = []

    def _read(self) -> list[int]:
        return [int(Path(zone, "energy_uj").read_text()) for zone, _ in self._zones]

    def start(self) -> None:
        self._start_uj = self._read()

    def stop(self) -> float:
        total_uj = 0
        for (_, max_uj), before, after in zip(self._zones, self._start_uj, self._read()):
            total_uj += after - before if after >= before else after + max_uj - before
        return total_uj / 1e6


class PowerModelEstimate:
    """No counter: energy = power_w * elapsed wall time (power from the device's power model, not measured)."""

    method = "power-model-estimate"

    def __init__(self, power_w: float) -> None:
        self.power_w = float(power_w)
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        return self.power_w * (time.perf_counter() - self._t0)


def pick_energy_meter(torch_device: str, power_model: PowerModel, require: Optional[str] = None) -> EnergyMeter:
    """NVML on cuda, RAPL on cpu, else active_w * time from the power model; a required absent counter is an error."""
    power_w = power_model.active_w
    if require not in (None, "auto", "nvml", "rapl", "estimate"):
        raise EdgesimError(f"unknown energy method '{require}'; known: {', '.join(ENERGY_CHOICES)}")
    if require == "nvml":
        return NvmlEnergyMeter()
    if require == "rapl":
        return RaplEnergyMeter()
    if require == "estimate":
        return PowerModelEstimate(power_w)
    try:
        return NvmlEnergyMeter() if torch_device.startswith("cuda") else RaplEnergyMeter()
    except MeasurementUnavailable:
        return PowerModelEstimate(power_w)
