"""`edgesim profile`: one-line errors with exit 2 that leave existing profiles unchanged; a run merges models."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgesim.cli.app import main
from edgesim.cli.profile import device_rows, model_rows
from profilers.schema import load_profile

try:
    from tests.test_profilers_schema import make_device, make_model
except ModuleNotFoundError:  # tests/ collected without its __init__.py
    from test_profilers_schema import make_device, make_model


@pytest.fixture
def existing(tmp_path):
    """A saved profile with one model, and its bytes."""
    from profilers.schema import save_profile

    path = save_profile(make_device("dev", {"toy": make_model()}), tmp_path / "dev.json")
    return path, path.read_bytes()


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args, expect", [
    (["profile", "no-such-model", "--device-name", "dev"], "unknown model 'no-such-model'"),
    (["profile", "resnet18", "--device-name", "dev", "--split-points", "layer1,layer9"], "no split point 'layer9'"),
    (["profile", "resnet18", "--device-name", "dev", "--input-size", "a,b"], "--input-size"),
    (["profile", "resnet18", "--device-name", "dev", "--energy", "magic"], "unknown energy method"),
])
def test_user_errors_exit_2_and_leave_profile(capsys, existing, args, expect):
    path, before = existing
    code, out, err = run(capsys, *args, "--out", str(path))
    assert code == 2
    assert err.count("\n") == 1 and expect in err and "Traceback" not in err
    assert path.read_bytes() == before


def test_cuda_without_cuda(capsys, existing):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    path, before = existing
    code, _, err = run(capsys, "profile", "resnet18", "--device-name", "dev", "--device", "cuda", "--out", str(path))
    assert code == 2 and "CUDA is not available" in err and err.count("\n") == 1
    assert path.read_bytes() == before


def test_corrupt_existing_profile_is_left_alone(capsys, tmp_path):
    path = tmp_path / "dev.json"
    path.write_text('{"name": "dev", "kind": ')
    code, _, err = run(capsys, "profile", "resnet18", "--device-name", "dev", "--out", str(path), "--repeats", "1")
    assert code == 2 and "not valid JSON" in err and err.count("\n") == 1
    assert path.read_text() == '{"name": "dev", "kind": '


def test_unwritable_out(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "profile", "resnet18", "--device-name", "dev", "--out", str(blocker / "p.json"))
    assert code == 2 and "cannot write" in err and err.count("\n") == 1


def test_profile_merges_and_prints_table(capsys, existing):
    path, _ = existing
    code, out, err = run(capsys, "profile", "--precision", "0", "resnet18", "--device-name", "dev", "--out", str(path),
                         "--repeats", "2", "--warmup", "0", "--input-size", "32,32", "--threads", "1")
    assert code == 0, err
    assert "layer4" in out and "size % in" in out
    profile = load_profile(path)
    assert set(profile.models) == {"toy", "resnet18"}
    mp = profile.model("resnet18")
    assert mp.input_shape == [3, 32, 32] and mp.repeats == 2 and mp.threads == 1
    assert profile.provenance.kind == "measured"


def test_profile_schema_and_rows(capsys, tmp_path):
    code, out, _ = run(capsys, "schema", "profile", "--out", str(tmp_path / "schema" / "s.json"))
    assert code == 0 and "models" in json.loads((tmp_path / "schema" / "s.json").read_text())["properties"]
    ids = [r["model_id"] for r in model_rows()]
    assert {"densenet169", "densenet201", "resnet152", "inception_v3", "mobilenet_v2", "resnet18"} <= set(ids)
    from profilers.schema import save_profile

    save_profile(make_device("rpi", {"toy": make_model()}), tmp_path / "rpi.json")
    assert device_rows(tmp_path) == [{"name": "rpi", "kind": "mobile", "processor": "toy cpu", "cores": 4,
                                      "memory_gb": 1.0, "provenance": "measured", "models": "toy"}]


def test_console_script_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgesim.cli.app", "profile", "resnet18", "--device-name", "d",
                           "--split-points", "nope", "--out", str(tmp_path / "p.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("edgesim: error:") and "Traceback" not in proc.stderr
    assert not (tmp_path / "p.json").exists()
