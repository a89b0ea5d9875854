"""One way into a device profile (profilers.profiling.measure_into), codec costs in `edgesim profile`, each
derived model's own error where it is printed, and the per-process cache of device profiles (issue 24)."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest
import torch

torch.set_num_threads(1)

from edgesim.cli.app import main
from profilers.errors import EdgesimError
from profilers.measure import MeasureOptions
from profilers.models import build
from profilers.profiling import codec_rows, measure_into
from profilers.schema import DerivedProvenance, load_profile, save_profile
from simulator.devices import device_from_profile, fidelity_notes, read_device

try:
    from tests.test_profilers_schema import make_device, make_model
except ModuleNotFoundError:  # tests/ collected without its __init__.py
    from test_profilers_schema import make_device, make_model

FAST = MeasureOptions(repeats=1, warmup=0, threads=1)


def _tiny():
    return build("resnet18", input_size=(32, 32))


def test_measure_into_merges_atomically_and_keeps_other_models(tmp_path):
    path = save_profile(make_device("dev", {"toy": make_model()}), tmp_path / "dev.json")
    dev = measure_into([_tiny()], "dev", FAST, out=path, kind="mobile", codec_repeats=0,
                       finish=lambda mp: mp.model_copy(update={"accuracy": 0.5, "accuracy_source": "test"}))
    assert set(dev.models) == {"resnet18"} and dev.kind == "mobile"
    saved = load_profile(path)
    assert set(saved.models) == {"toy", "resnet18"} and saved.model("resnet18").accuracy == 0.5
    assert not [p for p in tmp_path.iterdir() if p.name != "dev.json"]  # no temporary file left


def test_measure_into_refuses_another_devices_file_before_measuring(tmp_path):
    path = save_profile(make_device("other", {"toy": make_model()}), tmp_path / "dev.json")
    before = path.read_bytes()
    built = []

    def models():
        built.append(1)
        yield _tiny()

    with pytest.raises(EdgesimError, match="profile of device 'other'"):
        measure_into(models(), "dev", FAST, out=path)
    assert not built and path.read_bytes() == before
    with pytest.raises(EdgesimError, match="unknown device kind 'phone'"):
        measure_into(models(), "dev", FAST, kind="phone")


def test_measure_into_measures_codec_costs_per_split_point(tmp_path):
    dev = measure_into([_tiny()], "dev", FAST, codec_repeats=1)
    mp = dev.model("resnet18")
    inner = [sp for sp in mp.split_points if 0 < sp.layer_index < len(mp.blocks)]
    assert inner and all(set(sp.encode_s) == set(sp.decode_s) == {"float32", "float16", "int8", "zlib_float32",
                                                                    "zlib_int8"} for sp in inner)
    assert set(mp.split_point("input").encode_s) >= {"raw_uint8", "jpeg"}
    assert not mp.split_point("output").encode_s  # the result is not encoded as a tensor
    assert all(v > 0 for sp in inner for v in (*sp.encode_s.values(), *sp.decode_s.values()))
    rows = codec_rows(mp)
    assert [r["split_point"] for r in rows] == [sp.name for sp in mp.split_points if sp.encode_s]
    off = measure_into([_tiny()], "dev", FAST, codec_repeats=0).model("resnet18")
    assert not any(sp.encode_s for sp in off.split_points) and codec_rows(off) == []


def test_profile_command_measures_and_shows_codec_costs(capsys, tmp_path):
    path = tmp_path / "host.json"
    assert main(["profile", "resnet18", "--input-size", "32,32", "--device-name", "host", "--out", str(path),
                 "--precision", "0", "--repeats", "1", "--warmup", "0", "--threads", "1", "--codec-repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "encode / decode ms per encoding" in out and "zlib_float32" in out
    layer1 = load_profile(path).model("resnet18").split_point("layer1")
    assert layer1.encode_s["zlib_float32"] > 0 and layer1.decode_s["int8"] > 0
    assert main(["profile", "show", str(path)]) == 0
    assert "encode / decode ms per encoding" in capsys.readouterr().out
    derived = tmp_path / "rpi4b.json"
    assert main(["derive", str(path), "--device", "rpi4b", "--out", str(derived)]) == 0
    assert not any(sp.encode_s for sp in load_profile(derived).model("resnet18").split_points)  # host's, not rpi4b's


def _derived(models, errors=(0.1, -0.2, 0.3, 0.05, -0.1)):
    dev = make_device("rpi", models)
    return dev.model_copy(update={"provenance": DerivedProvenance(
        from_profile="test", method="test", date=datetime(2024, 1, 1, tzinfo=timezone.utc), sources={},
        stack="board | ncnn fp32 cpu 4 1", validated_errors=list(errors))})


def _with_method(model_id, method, errors):
    return make_model(model_id).model_copy(update={"derivation_method": method, "derivation_errors": list(errors)})


def test_fidelity_notes_print_a_fallback_models_own_error():
    per_op = (0.1, -0.2, 0.3, 0.05, -0.1)
    dense = (0.5, -0.4, 0.6, 0.3, 0.2, 0.1)
    both = _derived({"traced": _with_method("traced", "derived per operator (profilers.calibrate)", per_op),
                     "mine": _with_method("mine", "derived per block as one dense operator", dense)}, per_op)
    lines = fidelity_notes({"rpi": device_from_profile(both)})
    assert len(lines) == 2
    assert "median 10 %" in lines[0] and "mine" not in lines[0]
    assert "model mine derived per block as one dense operator" in lines[1]
    assert "leave-one-out error of that method on 6 published latencies: median 35 %, 33 % within +/-25 %" in lines[1]
    alone = _derived({"mine": _with_method("mine", "derived per block as one dense operator", dense)}, per_op)
    [line] = fidelity_notes({"rpi": device_from_profile(alone)})
    assert "mine" in line and "median 35 %" in line and "median 10 %" not in line
    old = _derived({"toy": make_model("toy")}, per_op)  # derived before models carried their own error
    [line] = fidelity_notes({"rpi": device_from_profile(old)})
    assert "leave-one-out error of the method on 5 published latencies: median 10 %" in line


def test_device_profiles_are_read_once_per_file_version(tmp_path, monkeypatch):
    import simulator.devices as devices

    path = save_profile(make_device("dev", {"toy": make_model()}), tmp_path / "dev.json")
    reads = []
    real = devices.load_device
    monkeypatch.setattr(devices, "load_device", lambda p: reads.append(p) or real(p))
    devices._read_version.cache_clear()
    first = read_device(str(path))
    first.models.clear()  # a caller's edit does not reach the cache
    second = read_device(str(path))
    assert len(reads) == 1 and set(second.models) == {"toy"}
    save_profile(make_device("dev", {"toy": make_model(), "other": make_model("other")}), path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # however coarse the file system's clock
    assert set(read_device(str(path)).models) == {"toy", "other"} and len(reads) == 2
    assert read_device("rpi4b").name == "rpi4b" and len(reads) == 3  # catalog names go through the same cache
    read_device("rpi4b")
    assert len(reads) == 3


def test_run_compare_and_report_print_a_fallback_models_own_error(tmp_path, capsys):
    """The device line and the fallback model's own line reach `edgesim run`, `edgesim compare` and report.html."""
    from tests.sim_helpers import scenario_dict, toy_device, write_scenario

    mobile = toy_device("toy-mobile", "mobile", 4.0)
    fallback = _with_method("toy", "derived per block as one dense operator", (0.5, -0.4, 0.6, 0.3, 0.2, 0.1))
    mobile = _derived({}, (0.1, -0.2, 0.3, 0.05, -0.1)).model_copy(update={
        "name": "toy-mobile", "power": mobile.power,
        "models": {"toy": mobile.models["toy"].model_copy(update={
            "derivation_method": fallback.derivation_method, "derivation_errors": fallback.derivation_errors})}})
    paths = [str(save_profile(mobile, tmp_path / "toy-mobile.json")),
             str(save_profile(toy_device("toy-edge", "edge", 0.5), tmp_path / "toy-edge.json"))]
    scenario = write_scenario(tmp_path, scenario_dict(paths, workload={"source": "poisson", "frame_rate_fps": 2.0,
                                                                       "frames": 50, "service_time": "median"}))
    line = "model toy derived per block as one dense operator: leave-one-out error of that method on 6"
    assert main(["run", str(scenario), "--out", str(tmp_path / "res")]) == 0
    assert line in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "res")]) == 0
    err = capsys.readouterr().err
    assert line in err and "median 10 %" not in err  # the device's per-operator error is for no model here
    assert line in (tmp_path / "res" / "report.html").read_text()
