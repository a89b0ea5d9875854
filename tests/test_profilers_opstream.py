"""Custom models per operator (issue 24 point 3): the operator stream recorded while a model runs is the list
torch.fx gives for models it can trace, a --model-file or hf: model is derived per operator from it, and a model
whose stream cannot be read falls back to one dense operator per block with that fallback's own error."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn

torch.set_num_threads(1)

from edgesim.cli.app import main
from profilers.calibrate import PARAMS, Params, Roofline, op_times_s
from profilers.catalog import FACTS_PATH
from profilers.derive import derive_device_calibrated, load_facts, recorded_ops
from profilers.measure import MeasureOptions, measure_model
from profilers.models.sources import ModelRequest, build_model
from profilers.opcount import block_ops, build_arch, run_ops, trace_ops
from profilers.schema import load_profile

MODEL_FILE = '''
import torch
from torch import nn


def cnn():
    """Conv-BN-ReLU, depthwise, pointwise, a residual add, pooling and a linear layer."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6(), nn.Conv2d(8, 16, 1), nn.Hardswish(),
                         nn.MaxPool2d(2), nn.Conv2d(16, 16, 5, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 5))


class ThroughNumpy(nn.Module):
    """Leaves torch for numpy and back: neither torch.fx, torch.export nor the operator stream can follow it."""

    def forward(self, x):
        return torch.from_numpy(x.numpy() * 1.0)


def untraceable():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), ThroughNumpy(), nn.Conv2d(8, 4, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())
'''


def _key(op):
    return op.kind, op.flops, op.in_bytes, op.out_bytes, op.weight_bytes


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2", "mobilenet_v3_large", "densenet121", "vgg11_bn"])
def test_stream_gives_the_operators_torch_fx_gives(arch):
    """The operators recorded while a torchvision model runs (on meta tensors) are those torch.fx traces: same
    types, FLOPs, bytes and fusion, so the calibration (fitted on fx's operators) applies to recorded ones."""
    model = build_arch(arch)
    traced = trace_ops(model, (1, 3, 64, 64))
    recorded, why = run_ops([model], torch.empty(1, 3, 64, 64, device="meta"))
    assert recorded is not None, why
    assert Counter(map(_key, recorded)) == Counter(map(_key, traced))
    assert sum(o.kind != "memory" for o in recorded) == sum(isinstance(m, (nn.Conv2d, nn.Linear))
                                                            for m in model.modules())


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "mine.py"
    path.write_text(MODEL_FILE)
    return path


def test_recorded_operators_of_a_model_file_match_its_fx_trace_per_block(model_file):
    model = build_model(ModelRequest(model_file=f"{model_file}:cnn", input_size=(3, 16, 16), split_points="all"))
    mp = measure_model(model, MeasureOptions(repeats=1, warmup=0, threads=1, host_window_s=0))
    ops = recorded_ops(mp)
    assert ops is not None and len(mp.blocks) > 3
    traced = block_ops(model.blocks, (1, 3, 16, 16))
    assert [(o.block, *_key(o)) for o in ops] == [(o.block, *_key(o)) for o in traced]
    kinds = Counter(o.kind for o in ops)
    assert kinds["conv_3x3s1"] == 1 and kinds["conv_dw"] == 1 and kinds["conv_1x1"] == 2 and kinds["conv_dense"] == 1
    assert sum(o.flops for o in ops) == mp.total_flops  # the flop counter's count, operator by operator


def _expected_block_times(host_mp, dev, facts) -> list[float]:
    """Per block: the sum of max(F/(eta_type P'), B/(eta_mem BW')) + tau over its recorded operators, with the
    device's fitted parameters (profilers.calibrate's model, computed here from the provenance)."""
    cal = dev.provenance.calibration
    params = Params(**{k: cal[k] for k in PARAMS}, form="full")
    peak = facts.peak_gflops * (facts.stack.threads / facts.cores if 0 < facts.stack.threads < facts.cores else 1)
    roof = Roofline(peak * 1e9, facts.memory_bandwidth_gbs * 1e9)
    ops = recorded_ops(host_mp)
    times = [0.0] * len(host_mp.blocks)
    for o, t in zip(ops, op_times_s(params, ops, roof)):
        times[o.block] += t / facts.stack.thread_speedup
    return times


def test_derive_of_a_model_file_uses_the_per_operator_method(capsys, tmp_path, model_file):
    measured, derived = tmp_path / "host.json", tmp_path / "rpi4b.json"
    assert main(["profile", "--model-file", f"{model_file}:cnn", "--input-size", "3,16,16", "--split-points", "all",
                 "--device-name", "host", "--out", str(measured), "--precision", "0", "--repeats", "2",
                 "--warmup", "0", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["derive", str(measured), "--device", "rpi4b", "--out", str(derived)]) == 0
    out = capsys.readouterr().out
    assert "mine: derived per operator" in out and "dense operator" not in out
    host_mp, dev = load_profile(measured).model("mine"), load_profile(derived)
    mp = dev.model("mine")
    assert mp.derivation_method.startswith("derived per operator")
    assert mp.derivation_errors == list(dev.provenance.validated_errors)
    assert all(b.operators is None for b in mp.blocks)  # derived profiles do not copy the host's operators
    expected = _expected_block_times(host_mp, dev, load_facts(FACTS_PATH)["rpi4b"])
    assert [b.latency.median_s for b in mp.blocks] == pytest.approx(expected, rel=1e-9)


def test_an_untraceable_model_falls_back_to_dense_operators_with_its_own_error(tmp_path, model_file):
    model = build_model(ModelRequest(model_file=f"{model_file}:untraceable", input_size=(3, 8, 8)), warn=lambda m: None)
    mp = measure_model(model, MeasureOptions(repeats=1, warmup=0, threads=1, host_window_s=0))
    assert recorded_ops(mp) is None and all(b.operators is None for b in mp.blocks)
    host = _host({"untraceable": mp})
    facts = load_facts(FACTS_PATH)["rpi4b"]
    dev = derive_device_calibrated(host, "rpi4b", facts)
    fallback = dev.model("untraceable")
    assert "dense operator" in fallback.derivation_method
    assert fallback.derivation_errors and fallback.derivation_errors != list(dev.provenance.validated_errors)


def _host(models):
    from profilers.measure import assumed_host_power, host_hardware, host_provenance
    from profilers.schema import DeviceProfile

    hw = host_hardware("cpu")
    return DeviceProfile(name="host", kind="edge", hardware=hw, power=assumed_host_power(hw.cores),
                         provenance=host_provenance(1), models=models)


def test_an_hf_vit_from_a_local_config_is_derived_per_operator(tmp_path):
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
              patch_size=8, num_labels=3).save_pretrained(tmp_path / "vit")
    model = build_model(ModelRequest(spec=f"hf:{tmp_path / 'vit'}"))
    mp = measure_model(model, MeasureOptions(repeats=1, warmup=0, threads=1, host_window_s=0))
    ops = recorded_ops(mp)
    assert ops is not None
    kinds = Counter(o.kind for o in ops)
    # the 8x8 stride-8 patch embedding; per layer q, k, v, output and two MLP matrix products, and the classifier
    assert kinds["conv_dense"] == 1 and kinds["conv_1x1"] >= 2 * 6 + 1
    assert sum(o.flops for o in ops) >= mp.total_flops > 0
    if model.extra.get("tracer") == "torch.export" or any(
            n.op == "call_function" for b in model.blocks for n in getattr(b, "graph", torch.fx.Graph()).nodes
            if isinstance(n.target, torch._ops.OpOverload)):
        assert block_ops(model.blocks, (1, *model.input_shape)) is None  # fx would misread aten calls as memory
    dev = derive_device_calibrated(_host({mp.model_id: mp}), "rpi4b", load_facts(FACTS_PATH)["rpi4b"])
    derived = dev.model(mp.model_id)
    assert derived.derivation_method.startswith("derived per operator")
    assert derived.derivation_errors == list(dev.provenance.validated_errors)


def test_a_block_may_output_a_constant_beside_its_activation():
    """ViLT's embedding block outputs the hidden states and a token mask made by torch.ones: the mask is a constant
    of the model's (made by aten operators), not a tensor from outside torch, so the stream stays usable."""
    from profilers.measure import _model_input
    from profilers.models import build

    model = build("vilt-tiny")
    x, _, _ = _model_input(model, "cpu")
    ops, why = run_ops(model.blocks, x)
    assert ops is not None, why
    assert {o.block for o in ops} >= {0, 1, 2} and sum(o.kind == "conv_1x1" for o in ops) >= 2 * 6
