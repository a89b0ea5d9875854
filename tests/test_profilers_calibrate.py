"""Per-operator calibration: fit recovers known parameters, operator types, the fused-operator rule, the fallback."""

from __future__ import annotations

import json

import numpy as np
import pytest
from torch import nn

from profilers.calibrate import (
    Params,
    Prior,
    Roofline,
    Stack,
    calibrate_stack,
    fit,
    leave_one_out,
    op_arrays,
    predict_s,
)
from profilers.calibration_data import CALIBRATION_PATH, PublishedLatency, load_points, parse_benchncnn
from profilers.opcount import arch_ops, conv_type, trace_ops
from profilers.schema import DeviceProfile, load_profile

ROOF = Roofline(50e9, 5e9)
ARCHS = ("mobilenet_v1", "alexnet_caffe", "squeezenet1_1", "resnet18", "mobilenet_v2", "vgg16",
         "shufflenet_v2_x1_0", "mnasnet1_0", "googlenet", "resnet50")
TRUE = Params(eta_dense=0.5, eta_1x1=0.35, eta_dw=0.06, eta_mem=0.4, tau_s=3e-5, c0_s=2e-3, eta_3x3=0.5)


@pytest.fixture(scope="module")
def arrays():
    return [op_arrays(arch_ops(a, 227 if a in ("alexnet_caffe", "squeezenet1_1") else 224)) for a in ARCHS]


def test_fit_recovers_known_parameters(arrays):
    latencies = [predict_s(TRUE, a, ROOF) for a in arrays]
    got = fit(arrays, latencies, ROOF, "full", Prior(), sigma_data=0.01)  # noise-free data outweigh the priors
    for name, rel in (("eta_dense", 0.1), ("eta_dw", 0.1), ("eta_1x1", 0.1)):
        assert getattr(got, name) == pytest.approx(getattr(TRUE, name), rel=rel), name
    pred = np.array([predict_s(got, a, ROOF) for a in arrays])
    assert np.max(np.abs(pred / np.array(latencies) - 1)) < 0.03


def test_single_efficiency_cannot_fit_depthwise_and_dense(arrays):
    latencies = [predict_s(TRUE, a, ROOF) for a in arrays]
    single = fit(arrays, latencies, ROOF, "single")
    errors = [predict_s(single, a, ROOF) / t - 1 for a, t in zip(arrays, latencies)]
    assert max(abs(e) for e in errors) > 0.3  # the extra parameters earn their place on such data


def test_leave_one_out_is_small_on_noise_free_data(arrays):
    latencies = [predict_s(TRUE, a, ROOF) * 1e3 for a in arrays]
    points = [PublishedLatency("toy", "x", "fp32", 4, "cpu", 1, a, a, 224, t, "", "", "") for a, t in zip(ARCHS, latencies)]
    res = leave_one_out(Stack("toy", points, ROOF, "cpu", arrays=list(arrays)), "full")
    assert res.median_abs_error < 0.1 and res.spearman > 0.95


@pytest.mark.parametrize("conv, kind", [
    (nn.Conv2d(64, 64, 3, padding=1), "conv_3x3s1"),
    (nn.Conv2d(3, 64, 7, stride=2, padding=3), "conv_dense"),
    (nn.Conv2d(64, 64, 3, stride=2, padding=1), "conv_dense"),
    (nn.Conv2d(64, 128, 1), "conv_1x1"),
    (nn.Conv2d(64, 64, 3, padding=1, groups=64), "conv_dw"),
    (nn.Conv2d(64, 64, 3, padding=1, groups=8), "conv_dw"),
])
def test_conv_type(conv, kind):
    assert conv_type(conv) == kind


def test_operator_types_on_known_layers():
    ops = arch_ops("mobilenet_v2")
    kinds = [o.kind for o in ops]
    assert kinds[0] == "conv_dense"  # stem: 3x3 stride 2
    assert kinds.count("conv_dw") == 17 and ops[-1].kind == "conv_1x1"  # classifier Linear
    assert sum(k == "memory" for k in kinds) == 11  # 10 residual adds + global pooling
    resnet = arch_ops("resnet18")
    assert resnet[0].flops == 2 * 64 * 112 * 112 * 3 * 7 * 7 and resnet[1].kind == "memory"  # maxpool


def test_conv_bn_relu_is_one_operator():
    ops = trace_ops(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()), (1, 3, 16, 16))
    assert len(ops) == 1 and len(ops[0].fused) == 2


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        y = self.conv(x)
        return self.relu(y) + y, self.bn(x)


def test_no_fusion_when_the_conv_output_has_other_users_or_no_conv_precedes():
    ops = trace_ops(_Residual(), (1, 8, 8, 8))
    assert [o.kind for o in ops] == ["conv_3x3s1", "memory", "memory", "memory"]  # relu, add, bn
    assert ops[0].fused == ()


def test_too_few_points_uses_the_stated_fallback(arrays):
    latencies = [predict_s(TRUE, a, ROOF) * 1e3 for a in arrays]
    pts = [PublishedLatency("big", "x", "fp32", 4, "cpu", 1, a, a, 224, t, "", "", "") for a, t in zip(ARCHS, latencies)]
    big = Stack("big", pts, ROOF, "cpu", arrays=list(arrays))
    few = Stack("few", pts[:2], ROOF, "cpu", arrays=list(arrays[:2]))
    cal = calibrate_stack("few", ROOF, {"big": big, "few": few})
    assert cal.method.startswith("fallback: only 2 published point(s)") and cal.loo_errors == ()
    assert cal.median_abs_error is None
    # shape from the other stack, one speed factor from the two points: close on the data it was scaled to
    for a, t in zip(arrays[:2], latencies[:2]):
        assert predict_s(cal.params, a, ROOF) * 1e3 == pytest.approx(t, rel=0.3)
    none = calibrate_stack("none", ROOF, {"big": big})
    assert none.n_points == 0 and "fallback" in none.method


def test_benchncnn_parser_keeps_board_and_stack():
    lines = ["### Toy Board (1.0GHz x 4)", "```", "loop_count = 4", "num_threads = 4", "powersave = 0",
             "gpu_device = -1", "          resnet18  min =  270.86  max =  272.66  avg =  271.93",
             "       resnet18_int8  min =  159.57  max =  160.39  avg =  160.07", "### Other"]
    rows = parse_benchncnn(lines, ["2024-01-01"] * len(lines), {"Toy Board (1.0GHz x 4)"}, "url")
    assert [(r.model, r.precision, r.arch, r.latency_ms, r.threads) for r in rows] == [
        ("resnet18", "fp32", "resnet18", 271.93, 4), ("resnet18_int8", "int8", "", 160.07, 4)]


def test_calibration_file_has_the_published_numbers_with_sources():
    pts = {(p.board, p.threads, p.model): p for p in load_points(CALIBRATION_PATH) if p.framework == "ncnn"}
    rpi = pts[("Raspberry Pi 3 Model B+ Broadcom BCM2837B0, Cortex-A53 (ARMv8) (1.4GHz x 4)", 4, "mobilenet_v2")]
    atom = pts[("Intel Atom x5-Z8350", 4, "vgg16")]
    assert (rpi.latency_ms, atom.latency_ms) == (111.68, 655.44)
    assert all(p.source.startswith("https://") and p.date for p in (rpi, atom))


def test_existing_profiles_still_load_with_the_new_provenance_fields(tmp_path):
    data = json.loads(load_profile("profilers/data/devices/rpi3b+.json").model_dump_json())
    for field in ("stack", "validated_errors"):  # a derived profile written before these fields existed
        data["provenance"].pop(field)
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    prof = load_profile(old)
    assert prof.provenance.stack == "" and prof.provenance.validated_errors == []
    data["provenance"].update(stack="s", validated_errors=[0.1, -0.2])
    assert DeviceProfile.model_validate(data).provenance.validated_errors == [0.1, -0.2]


def test_save_points_round_trips_and_leaves_no_temporary_file(tmp_path):
    from profilers.calibration_data import save_points

    points = load_points(CALIBRATION_PATH)[:5]
    path = tmp_path / "calibration.csv"
    path.write_text("old contents\n")
    save_points(points, path)
    assert sorted(load_points(path), key=lambda p: (p.stack, p.model)) == sorted(points, key=lambda p: (p.stack, p.model))
    assert [p.name for p in tmp_path.iterdir()] == ["calibration.csv"]


@pytest.mark.parametrize("text, message", [("{ not json", "not valid JSON"), ('{"boards": []}', "field 'boards'")])
def test_bad_boards_file_is_one_line(tmp_path, text, message):
    from profilers.calibrate import load_boards
    from profilers.errors import ProfileError

    path = tmp_path / "boards.json"
    path.write_text(text)
    with pytest.raises(ProfileError, match=message) as info:
        load_boards(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    with pytest.raises(ProfileError, match="file not found"):
        load_boards(tmp_path / "missing.json")
