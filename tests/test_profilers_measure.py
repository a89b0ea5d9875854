"""Measurement core: FLOPs against hand counts, bytes per encoding, latency bookkeeping, energy meters."""

from __future__ import annotations

import zlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from profilers.errors import EdgesimError, MeasurementUnavailable
from profilers.measure import (
    MeasureOptions,
    encoded_sizes,
    host_hardware,
    host_provenance,
    measure_model,
    quantize_int8,
    real_image,
    resolve_split_points,
)
from profilers.models import SplittableModel, build
from profilers.schema import PowerModel

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
    sps = tiny_profile.split_points
    full = sps[-1].head_latency.samples_s
    assert len(full) == 3 == tiny_profile.repeats
    for sp in sps:
        for h, t, f in zip(sp.head_latency.samples_s, sp.tail_latency.samples_s, full):
            assert h + t == pytest.approx(f, rel=1e-9, abs=1e-12)
    heads = [sp.head_latency.median_s for sp in sps]
    assert heads[0] == 0 and all(a <= b + 1e-12 for a, b in zip(heads, heads[1:]))
    assert sum(b.latency.median_s for b in tiny_profile.blocks) > 0
    assert tiny_profile.energy_method == "power-model-estimate"
    assert sps[0].head_energy_j == 0 and sps[-1].tail_energy_j == pytest.approx(0, abs=1e-12)
    assert tiny_profile.threads == 1 and tiny_profile.peak_memory_bytes is not None


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
