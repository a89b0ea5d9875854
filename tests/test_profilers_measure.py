"""Measurement core: FLOPs against hand counts, bytes per encoding, latency bookkeeping, energy meters."""

from __future__ import annotations

import zlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from profilers.errors import EdgesimError, MeasurementUnavailable
from profilers.hostcheck import busy_reasons, parse_cores, pinned
from profilers.measure import (
    HOST_REFERENCE,
    MeasureOptions,
    dispersion,
    encoded_sizes,
    host_hardware,
    host_provenance,
    measure_model,
    median_ci95,
    quantize_int8,
    real_image,
    resolve_split_points,
)
from profilers.models import SplittableModel, build
from profilers.schema import HostState, PowerModel

POWER = PowerModel(idle_w=1.0, active_w=5.0, source="test")


def tiny_model() -> SplittableModel:
    """Conv2d 3->8 k3 on 8x8, ReLU, Flatten, Linear 288->10."""
    torch.manual_seed(0)
    blocks = [torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(1), torch.nn.Linear(8 * 6 * 6, 10)]
    return SplittableModel(model_id="tiny", blocks=blocks, input_shape=(3, 8, 8),
                           split_points=[("input", 0), ("conv", 1), ("flat", 3), ("output", 4)])


@pytest.fixture(scope="module")
def tiny_profile():
    return measure_model(tiny_model(), MeasureOptions(repeats=3, warmup=1, threads=1), POWER)


def test_flops_match_hand_count(tiny_profile):
    conv_flops = 2 * (8 * 6 * 6) * (3 * 3 * 3)  # 2 x MACs: every output element sums 3x3x3 products
    linear_flops = 2 * 288 * 10
    sp = {s.name: s for s in tiny_profile.split_points}
    assert sp["conv"].head_flops == conv_flops
    assert sp["flat"].head_flops == conv_flops
    assert tiny_profile.total_flops == sp["output"].head_flops == conv_flops + linear_flops
    assert sp["conv"].head_params == 8 * 3 * 3 * 3 + 8
    assert tiny_profile.total_params == 8 * 27 + 8 + 288 * 10 + 10


def test_sizes_and_shapes(tiny_profile):
    sp = {s.name: s for s in tiny_profile.split_points}
    assert sp["input"].output_shape == [3, 8, 8] and sp["conv"].output_shape == [8, 6, 6]
    assert sp["flat"].output_bytes["float32"] == 4 * 288
    assert sp["flat"].output_bytes["float16"] == 2 * 288
    assert sp["flat"].output_bytes["int8"] == 288 + 8
    assert tiny_profile.input_bytes["raw_uint8"] == 192 and tiny_profile.input_bytes["float32"] == 768
    assert tiny_profile.input_bytes["jpeg"] == len(real_image(8, 8)[1])
    assert tiny_profile.result_bytes == 40


def test_latency_bookkeeping(tiny_profile):
    sps = {sp.name: sp for sp in tiny_profile.split_points}
    check = tiny_profile.measurement_check
    full = sps["output"].head_latency.samples_s
    assert len(full) == 3 == tiny_profile.repeats == check.rounds
    # a head up to the output and a tail from the input are the whole model; the empty parts are zero
    assert sps["input"].tail_latency.samples_s == full
    assert set(sps["input"].head_latency.samples_s) == {0.0} == set(sps["output"].tail_latency.samples_s)
    # interior heads and tails are timed on their own, each as many times as the whole model
    assert set(check.parts) == {"whole", "head@conv", "tail@conv", "head@flat", "tail@flat"}
    for name in ("conv", "flat"):
        assert len(sps[name].head_latency.samples_s) == len(sps[name].tail_latency.samples_s) == 3
        ratio = (sps[name].head_latency.median_s + sps[name].tail_latency.median_s) / check.parts["whole"].median_s
        assert check.head_plus_tail_over_whole[name] == pytest.approx(ratio, rel=1e-3)
    assert sum(b.latency.median_s for b in tiny_profile.blocks) > 0
    assert tiny_profile.energy_method == "power-model-estimate"
    assert sps["input"].head_energy_j == 0 and sps["output"].tail_energy_j == pytest.approx(0, abs=1e-12)
    assert tiny_profile.threads == 1 and tiny_profile.peak_memory_bytes is not None
    assert check.converged and check.target_ci95_pct is None and check.host_during.logical_cpus >= 1


def test_median_interval_is_the_order_statistic_interval():
    # Conover 3.2: n = 100 gives ranks 40 and 61 for the 95 % interval of the median
    xs = [float(i) for i in range(1, 101)]
    assert median_ci95(xs) == (40.0, 61.0)
    d = dispersion([1.0] * 10)
    assert d.ci95_half_pct == 0 and d.mad_pct == 0 and d.drift_pct == 0


def _fake_timer(monkeypatch, values):
    """_timed_pass returning the given durations in turn (no real timing: the stopping rule is what is tested)."""
    import itertools

    import profilers.measure as measure

    stream = itertools.cycle(values)
    monkeypatch.setattr(measure, "_timed_pass", lambda blocks, x, cuda, clock=None: [0.0] * len(blocks) + [next(stream)])


def test_rounds_stop_when_every_median_is_precise(monkeypatch):
    _fake_timer(monkeypatch, [1.0])
    mp = measure_model(tiny_model(), MeasureOptions(repeats=2, warmup=0, threads=1, target_ci=0.02,
                                                    time_budget_s=60), POWER)
    assert mp.measurement_check.converged and mp.measurement_check.rounds == 6  # the interval needs 6 samples


def test_rounds_stop_at_the_cap_when_the_target_is_out_of_reach(monkeypatch):
    _fake_timer(monkeypatch, [1.0, 2.0, 1.0, 3.0, 2.0])
    mp = measure_model(tiny_model(), MeasureOptions(repeats=2, warmup=0, threads=1, target_ci=0.02,
                                                    time_budget_s=60, max_rounds=12), POWER)
    check = mp.measurement_check
    assert not check.converged and check.rounds == 12
    assert any("not every median reached +/-2%" in w for w in check.warnings)
    with pytest.raises(EdgesimError, match="not trustworthy"):
        measure_model(tiny_model(), MeasureOptions(repeats=2, warmup=0, threads=1, target_ci=0.02, time_budget_s=60,
                                                   max_rounds=12, strict=True), POWER)



@pytest.mark.parametrize("later", [1.0, 1.3])
def test_host_reference_is_timed_beside_the_parts_and_its_drift_said(monkeypatch, later):
    import profilers.measure as measure

    runs = []

    def fake(blocks, x, cuda, clock=None):
        if len(blocks) == 1 and getattr(blocks[0], "out_channels", None) == 64 and tuple(x.shape) == (1, 64, 56, 56):
            runs.append(1)
            return [0.0, 0.01 if len(runs) <= 5 else 0.01 * later]
        return [0.0] * len(blocks) + [1.0]

    monkeypatch.setattr(measure, "_timed_pass", fake)
    check = measure_model(tiny_model(), MeasureOptions(repeats=10, warmup=0, threads=1), POWER).measurement_check
    assert len(runs) == 10 and check.host_reference.n == 10 and HOST_REFERENCE not in check.parts
    assert check.host_reference.drift_pct == pytest.approx(100 * (later - 1))
    moved = [w for w in check.warnings if "host's own speed moved" in w]
    assert (moved == []) == (later == 1.0), check.warnings
    assert "+30.0%" in moved[0] if moved else True


def test_idle_gap_sleeps_before_every_timed_part_and_is_stated(monkeypatch):
    import profilers.measure as measure

    _fake_timer(monkeypatch, [1.0])
    slept: list[float] = []
    monkeypatch.setattr(measure.time, "sleep", slept.append)
    mp = measure_model(tiny_model(), MeasureOptions(repeats=3, warmup=1, threads=1, idle_gap_s=0.05), POWER)
    parts = len(mp.measurement_check.parts) + 1  # and the host reference
    assert slept == [0.05] * (3 * parts)  # timed rounds only, one gap before each part
    assert "each after 50 ms idle" in mp.measurement_check.method
    back_to_back = measure_model(tiny_model(), MeasureOptions(repeats=2, warmup=0, threads=1), POWER)
    assert "back to back" in back_to_back.measurement_check.method
    for bad in (-0.1, float("nan"), 11.0):
        with pytest.raises(EdgesimError, match="idle gap"):
            measure_model(tiny_model(), MeasureOptions(repeats=2, threads=1, idle_gap_s=bad), POWER)


def test_steady_allocator_stops_page_faults_on_every_tensor():
    """A 3.2 MB activation is mapped anew (page faults) on each run with glibc's initial 128 KiB mmap threshold (it
    moves with the allocator's history, so the test fixes it there first); not once the allocator is steady."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import ctypes, resource, sys, torch
        from profilers.measure import M_MMAP_THRESHOLD, steady_allocator
        assert ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 128 * 1024)
        if sys.argv[1] == "steady":
            assert steady_allocator()
        x = torch.randn(1, 64, 112, 112)
        for _ in range(3):
            y = x * 2; del y
        per_run = []
        for _ in range(5):  # the least of 5 batches: a page the kernel reclaimed (DAMON, memory pressure) faults once
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(10):
                y = x * 2; del y
            per_run.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 10)
        print(min(per_run))
    """)
    faults = {mode: float(subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True,
                                         check=True).stdout) for mode in ("default", "steady")}
    assert faults["steady"] < 1 <= faults["default"], faults

def _state(other: float, steal=None) -> HostState:
    return HostState(window_s=1.0, logical_cpus=2, affinity=[0, 1], load_avg_1min=3.0, other_cpu_cores=other,
                     steal_percent=steal)


def test_busy_host_is_said_with_numbers_and_refused_when_strict(monkeypatch):
    assert busy_reasons(_state(1.2), threads=1) == []  # one spare core plus a quarter
    reasons = busy_reasons(_state(1.9, steal=8.0), threads=1)
    assert "other processes used 1.90 of 2 CPUs" in reasons[0] and "steal time 8.0%" in reasons[1]
    import profilers.measure as measure

    monkeypatch.setattr(measure, "observe", lambda window_s: _state(1.9))
    with pytest.raises(EdgesimError, match="host too busy to measure .*1.90 of 2 CPUs"):
        measure_model(tiny_model(), MeasureOptions(repeats=2, threads=1, host_window_s=0.1, strict=True), POWER)
    mp = measure_model(tiny_model(), MeasureOptions(repeats=2, warmup=0, threads=1, host_window_s=0.1), POWER)
    assert mp.measurement_check.busy and mp.measurement_check.host_before.other_cpu_cores == 1.9


def test_pinning_restricts_and_restores_the_cpus():
    import os

    before = os.sched_getaffinity(0)
    with pinned((min(before),)) as cores:
        assert os.sched_getaffinity(0) == {min(before)} and cores == [min(before)]
    assert os.sched_getaffinity(0) == before
    assert parse_cores("0-2,5") == (0, 1, 2, 5)
    with pytest.raises(EdgesimError, match="--cores 'x'"):
        parse_cores("x")


def test_zlib_sizes_are_real_compression():
    x = torch.zeros(1, 16, 8, 8)
    sizes = encoded_sizes(x)
    assert sizes["zlib_float32"] == len(zlib.compress(bytes(4 * 1024), 6))
    assert sizes["float32"] == 4096 and sizes["zlib_float32"] < 100


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=64))
def test_int8_quantisation_error_is_at_most_half_a_step(values):
    t = torch.tensor(values, dtype=torch.float32)
    data, scale, zero_point = quantize_int8(t)
    q = torch.frombuffer(bytearray(data), dtype=torch.int8).float()
    restored = (q - zero_point) * scale
    assert len(data) == len(values)
    assert torch.all((restored - t).abs() <= scale * 0.5 + 1e-3 * max(1.0, float(t.abs().max())))


def test_split_point_selection():
    model = build("resnet18", input_size=(32, 32))
    assert resolve_split_points(model, "layer3,layer1") == [("layer1", 5), ("layer3", 7)]
    with pytest.raises(EdgesimError) as info:
        resolve_split_points(model, "layer9")
    assert "known: input, layer1, layer2, layer3, layer4, output" in str(info.value)


def test_shapes_only_densenet201_table2_sizes():
    profile = measure_model(build("densenet201", shapes_only=True))
    assert profile.measurement == "shapes-only"
    pct = {sp.name: round(100 * sp.output_numel / profile.input_numel, 1) for sp in profile.split_points}
    assert (pct["transition1"], pct["transition2"], pct["transition3"]) == (66.7, 33.3, 29.2)
    sp = profile.split_point("transition1")
    assert sp.head_latency is None and set(sp.output_bytes) == {"float32", "float16", "int8"}
    flops = [sp.head_flops for sp in profile.split_points]
    assert flops == sorted(flops) and 7e9 < profile.total_flops < 1e10  # about 4.3 GMACs


def test_cuda_absent_is_one_line():
    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    with pytest.raises(MeasurementUnavailable, match="CUDA is not available"):
        measure_model(tiny_model(), MeasureOptions(torch_device="cuda"))


def test_host_facts_and_provenance():
    hw = host_hardware()
    assert hw.cores >= 1 and hw.memory_gb > 0
    if hw.peak_gflops:
        assert "FLOPs/cycle" in hw.sources["peak_gflops"]
    prov = host_provenance(2)
    assert prov.threads == 2 and prov.host_fingerprint and prov.torch_version == torch.__version__


def _host_at_speed(monkeypatch, slow_from_round: int, factor: float, part_s: float = 1.0) -> list:
    """_timed_pass faked: the reference takes 10 ms and every part part_s per block, both `factor` times longer from
    round `slow_from_round` on (a host that slowed down as a whole; tiny_model's rounds time 6 things: the whole model,
    head and tail at conv and flat, the reference)."""
    import profilers.measure as measure

    calls = []

    def fake(blocks, x, cuda, clock=None):
        reference = len(blocks) == 1 and getattr(blocks[0], "out_channels", None) == 64
        slow = factor if len(calls) // 6 >= slow_from_round else 1.0
        calls.append(1)
        return [0.0] * len(blocks) + [(0.01 if reference else part_s * len(blocks)) * slow]

    monkeypatch.setattr(measure, "_timed_pass", fake)
    return calls


def test_per_round_ratio_to_the_reference_takes_a_host_step_out(monkeypatch):
    _host_at_speed(monkeypatch, slow_from_round=4, factor=1.5)
    check = measure_model(tiny_model(), MeasureOptions(repeats=10, warmup=0, threads=1), POWER).measurement_check
    assert len(check.host_reference_samples_s) == check.rounds == 10
    for name, disp in check.parts.items():
        # the raw median sits in the slow half; the per-round ratio is the same in every round
        assert disp.median_s == pytest.approx(1.5 * disp.per_reference * 0.01), name
        assert disp.per_reference_ci95_half_pct == pytest.approx(0.0, abs=1e-9)
    from edgesim.cli.profile import check_line

    assert "widest 95% interval with the host's speed taken out +/-0.0%" in check_line(check)
    assert dispersion([1.0, 2.0, 4.0], [1.0, 2.0, 2.0]).per_reference == pytest.approx(1.0)
    assert dispersion([1.0, 2.0], []).per_reference is None  # no reference: nothing to divide by


def test_profile_compare_takes_the_host_speed_out(monkeypatch, tmp_path, capsys):
    from profilers.agreement import compare_profiles

    _host_at_speed(monkeypatch, slow_from_round=10**6, factor=1.0)
    first = measure_model(tiny_model(), MeasureOptions(repeats=8, warmup=0, threads=1), POWER)
    _host_at_speed(monkeypatch, slow_from_round=0, factor=1.25)  # the same model on a host 25 % slower throughout
    second = measure_model(tiny_model(), MeasureOptions(repeats=8, warmup=0, threads=1), POWER)
    agree = compare_profiles(first, second)
    assert {(r.split_point, r.part) for r in agree.parts} == {("input", "tail"), ("conv", "head"), ("conv", "tail"),
                                                              ("flat", "head"), ("flat", "tail"), ("output", "head")}
    assert all(r.change == pytest.approx(0.25) and r.change_host_removed == pytest.approx(0.0) for r in agree.parts)
    assert agree.summary(host_removed=False)[2:] == (0, 6) and agree.summary(host_removed=True)[2:] == (6, 6)

    # the command: a table per shared model and the summary line; two profiles without a shared model: one line
    from edgesim.cli.app import main
    from profilers.schema import DeviceProfile, save_profile

    paths = []
    for name, mp in (("a", first), ("b", second)):
        dev = DeviceProfile(name=name, kind="edge", hardware=host_hardware(), power=POWER,
                            provenance=host_provenance(1), models={mp.model_id: mp})
        paths.append(save_profile(dev, tmp_path / f"{name}.json"))
    assert main(["profile", "compare", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    assert "with the host's speed removed, largest 0.0%, median 0.0%, 6/6 within 5%" in " ".join(out.split())
    assert "+25.0%" in out
    assert "not measured alike" not in out  # one host, one setting
    other = host_provenance(2).model_copy(update={"host_fingerprint": "another-host"})
    dev = DeviceProfile(name="c", kind="edge", hardware=host_hardware(), power=POWER, provenance=other,
                        models={second.model_id: second})
    assert main(["profile", "compare", str(paths[0]), str(save_profile(dev, tmp_path / "c.json"))]) == 0
    note = " ".join(capsys.readouterr().out.split())
    assert f"not measured alike (host {host_provenance(1).host_fingerprint} vs another-host; threads 1 vs 2)" in note
