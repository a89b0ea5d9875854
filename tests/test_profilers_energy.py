"""Energy through Zeus, every path driven by a fake ZeusMonitor: GPU counter, RAPL CPU + DRAM, none, required."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from profilers.energy import PowerModelEstimate, ZeusEnergyMeter, pick_energy_meter
from profilers.errors import EdgesimError, MeasurementUnavailable
from profilers.schema import PowerModel

POWER = PowerModel(idle_w=1.0, active_w=5.0, source="test")


@dataclass
class FakeMeasurement:
    time: float
    gpu_energy: dict
    cpu_energy: dict | None = None
    dram_energy: dict | None = None


@dataclass
class FakeMonitor:
    """ZeusMonitor's surface: indices resolved at construction, windows returning energy in joules."""

    gpus: int = 0
    cpus: int = 0
    gpu_indices: list = field(default_factory=list)
    cpu_indices: list = field(default_factory=list)
    opened: list = field(default_factory=list)

    def begin_window(self, key):
        self.opened.append(key)

    def end_window(self, key):
        assert key in self.opened
        return FakeMeasurement(time=1.0, gpu_energy={i: 10.0 for i in self.gpu_indices},
                               cpu_energy={i: 2.0 for i in self.cpu_indices},
                               dram_energy={i: 0.5 for i in self.cpu_indices})


def factory_for(gpus: int = 0, cpus: int = 0, fail: Exception | None = None):
    def factory(gpu_indices=None, cpu_indices=None):
        if fail is not None:
            raise fail
        g = [i for i in (gpu_indices if gpu_indices is not None else range(gpus)) if i < gpus]
        c = [i for i in (cpu_indices if cpu_indices is not None else range(cpus)) if i < cpus]
        return FakeMonitor(gpus, cpus, g, c)
    return factory


def test_gpu_counter_through_zeus():
    meter = pick_energy_meter("cuda", POWER, "auto", factory=factory_for(gpus=1))
    assert isinstance(meter, ZeusEnergyMeter) and meter.method == "nvml-total-energy" and "Zeus" in meter.detail
    meter.start()
    assert meter.stop() == pytest.approx(10.0)


def test_rapl_cpu_and_dram_through_zeus():
    meter = pick_energy_meter("cpu", POWER, "rapl", factory=factory_for(cpus=2))
    assert meter.method == "rapl-powercap" and "0, 1" in meter.detail
    meter.start()
    assert meter.stop() == pytest.approx(2 * (2.0 + 0.5))


@pytest.mark.parametrize("factory", [factory_for(), factory_for(fail=RuntimeError("Root privilege is required"))])
def test_no_counter_falls_back_to_the_labelled_estimate(factory):
    meter = pick_energy_meter("cpu", POWER, "auto", factory=factory)
    assert isinstance(meter, PowerModelEstimate) and meter.method == "power-model-estimate"
    assert "estimate, not measured" in meter.detail and meter.power_w == 5.0


@pytest.mark.parametrize("require, device", [("required", "cpu"), ("required", "cuda"), ("nvml", "cuda"),
                                             ("rapl", "cpu")])
def test_required_counter_absent_is_one_line(require, device):
    with pytest.raises(MeasurementUnavailable, match=f"--energy {require}") as info:
        pick_energy_meter(device, POWER, require, factory=factory_for())
    assert "\n" not in str(info.value)


def test_estimate_and_unknown_method():
    assert isinstance(pick_energy_meter("cpu", POWER, "estimate", factory=factory_for(cpus=1)), PowerModelEstimate)
    with pytest.raises(EdgesimError, match="known: auto, required, nvml, rapl, estimate"):
        pick_energy_meter("cpu", POWER, "joulemeter")


def test_measure_model_records_the_zeus_method(monkeypatch):
    import torch.nn as nn

    import profilers.measure as measure
    from profilers.measure import MeasureOptions, measure_model
    from profilers.models import SplittableModel

    references = []  # the host reference runs in the same rounds, so the meter's energy covers it too
    made = measure._reference_part
    monkeypatch.setattr(measure, "_reference_part", lambda device: references.append(made(device)) or references[-1])

    model = SplittableModel("lin", [nn.Linear(4, 4), nn.ReLU()], [("input", 0), ("mid", 1), ("output", 2)], (4,))
    meter = pick_energy_meter("cpu", POWER, "rapl", factory=factory_for(cpus=1))
    mp = measure_model(model, MeasureOptions(repeats=2, warmup=0), POWER, meter=meter)
    assert mp.energy_method == "rapl-powercap" and "Zeus" in mp.description
    total = mp.split_points[1].head_energy_j + mp.split_points[1].tail_energy_j
    whole = mp.split_points[2].head_latency  # the meter's 2.5 J over every timed part: average power x whole run
    timed_s = sum(whole.samples_s) + sum(mp.split_points[1].head_latency.samples_s) + sum(
        mp.split_points[1].tail_latency.samples_s) + sum(references[0].samples)
    assert len(references[0].samples) == mp.measurement_check.host_reference.n == 2
    assert total == pytest.approx(2.5 * whole.median_s / timed_s)


def test_cli_energy_required_without_counters_exits_2(capsys, tmp_path, monkeypatch):
    import profilers.energy as energy
    from edgesim.cli.app import main

    monkeypatch.setattr(energy, "zeus_monitor_factory", lambda: factory_for())
    out = tmp_path / "p.json"
    code = main(["profile", "--precision", "0", "resnet18", "--device-name", "d", "--energy", "required", "--input-size", "32,32",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--energy required" in err and not out.exists()
