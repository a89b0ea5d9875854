"""`edgesim distill ...` end to end at --quick size, and one-line errors with exit 2."""

import pandas as pd
import pytest

from edgesim.cli.app import main
from profilers.schema import load_profile


def run_cli(args):
    return main(list(args))


def test_quick_size_sweep_table_has_columns_and_params_grow(tmp_path):
    assert run_cli(["distill", "sweep", "--study", "size", "--quick", "--no-png", "--out", str(tmp_path)]) == 0
    runs = pd.read_csv(tmp_path / "size_runs.csv")
    assert {"student", "side_px", "student_params", "student_macs", "kd_accuracy", "scratch_accuracy",
            "kd_time_s", "teacher_accuracy"} <= set(runs.columns)
    params = runs.sort_values("student").student_params.tolist()  # vgg-s2 < vgg-s3 < vgg-s4
    assert params == sorted(params) and len(set(params)) == len(params)
    table = pd.read_csv(tmp_path / "size_table.csv")
    assert table.row.tolist()[0] == "Params (M)" and any("Ops (M MACs)" in r for r in table.row)
    assert (tmp_path / "size.html").is_file()


def test_quick_head_writes_profile_with_accuracy(tmp_path):
    prof = tmp_path / "dev.json"
    assert run_cli(["distill", "head", "--quick", "--no-png", "--out", str(tmp_path / "run"), "--repeats", "2",
                    "--profile-device", "dev", "--profile-out", str(prof)]) == 0
    device = load_profile(prof)
    mimic = device.model("resnet18-mimic-digits")
    assert mimic.accuracy is not None and "test split" in mimic.accuracy_source
    assert device.model("resnet18-digits").accuracy is not None
    bottleneck = mimic.split_point("bottleneck")
    assert bottleneck.output_numel == 48 and bottleneck.output_bytes["float32"] == 192
    assert bottleneck.head_flops < device.model("resnet18-digits").split_point("layer2").head_flops


@pytest.mark.parametrize("args, words", [
    (["distill", "kd", "--data", "/nonexistent/folder"], "not 'digits' or 'mnist' and not a folder"),
    (["distill", "kd", "--student", "vgg-s99"], "unknown distillation net 'vgg-s99'"),
    (["distill", "sweep", "--study", "nope"], "unknown study 'nope'"),
    (["distill", "head", "--teacher", "alexnet"], "unknown head-distillation teacher"),
])
def test_bad_inputs_exit_2_with_one_line(args, words, capsys, tmp_path):
    assert run_cli([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgesim: error:") and words in err and "\n" not in err


def test_bad_image_folder_exits_2(tmp_path, capsys):
    bad = tmp_path / "imgs"
    (bad / "only_one_class").mkdir(parents=True)
    assert run_cli(["distill", "kd", "--data", str(bad), "--quick", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "class folder" in err and "\n" not in err
