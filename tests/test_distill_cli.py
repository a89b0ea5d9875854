"""`edgesim distill ...` end to end at --quick size, and one-line errors with exit 2."""

import json

import pandas as pd
import pytest

from edgesim.cli.app import main
from edgesim.studies.distill import studies as st
from profilers.schema import load_profile


def run_cli(args):
    return main(list(args))


def test_quick_size_sweep_distils_from_a_larger_teacher_over_seeds(tmp_path):
    """Catches a teacher no larger than a student, a KD loss that ignores the teacher (KD = scratch), and seeds
    that do not reach the runs (no interval)."""
    assert run_cli(["distill", "sweep", "--study", "size", "--quick", "--no-png", "--seeds", "2", "--out", str(tmp_path)]) == 0
    runs = pd.read_csv(tmp_path / "size_runs.csv")
    assert sorted(set(runs.seed)) == [0, 1] and len(runs) == 2 * 3
    assert (runs.teacher_params > runs.student_params).all()
    assert (runs.kd_accuracy != runs.scratch_accuracy).any()  # same init, data and budget: only the teacher differs
    assert runs.kd_minus_scratch.to_numpy() == pytest.approx((runs.kd_accuracy - runs.scratch_accuracy).to_numpy())
    params = runs.drop_duplicates("student").sort_values("student").student_params.tolist()
    assert params == sorted(params) and len(set(params)) == len(params)
    seeds = pd.read_csv(tmp_path / "size_seeds.csv")
    assert (seeds.n_seeds == 2).all() and seeds.kd_minus_scratch_ci.notna().all()
    first = runs[runs.seed == 0].set_index("student").kd_accuracy
    second = runs[runs.seed == 1].set_index("student").kd_accuracy
    assert seeds.set_index("student").kd_accuracy.to_numpy() == pytest.approx(((first + second) / 2).to_numpy())
    table = pd.read_csv(tmp_path / "size_table.csv")
    assert table.row.tolist()[0] == "Params (M)" and any("Ops (M MACs)" in r for r in table.row)


def test_size_study_refuses_a_teacher_not_larger_than_every_student(tmp_path, capsys):
    assert run_cli(["distill", "sweep", "--study", "size", "--quick", "--students", "vgg-s2,vgg-s3", "--teacher", "vgg-s3",
                    "--no-png", "--out", str(tmp_path)]) == 2
    assert "not larger than student vgg-s3" in capsys.readouterr().err


def test_quick_pairs_and_finetune_studies_run(tmp_path):
    """The pairs study (003 Table I) and the fine-tune study (Table III) with BatchNorm statistics kept frozen."""
    assert run_cli(["distill", "sweep", "--study", "pairs", "--quick", "--no-png", "--out", str(tmp_path / "p")]) == 0
    pairs = pd.read_csv(tmp_path / "p" / "pairs_runs.csv")
    assert len(pairs) == 4 and set(pairs.teacher_kind) == {"CNN", "Transformer"} == set(pairs.student_kind)
    assert (pairs.teacher_params > pairs.student_params).all() and pairs.kd_minus_scratch.notna().all()
    assert run_cli(["distill", "sweep", "--study", "finetune", "--quick", "--no-png", "--out", str(tmp_path / "f")]) == 0
    ft = pd.read_csv(tmp_path / "f" / "finetune_runs.csv")
    assert set(ft.student) == {"vgg-s5", "vit-micro"} and ft.features_unchanged.all()
    assert (ft.post_finetune_accuracy != ft.prior_finetune_accuracy).any()
    # finetune's table is its seed means: one file, not two identical ones; pairs adds the model kinds
    assert (tmp_path / "f" / "finetune_seeds.csv").is_file() and not (tmp_path / "f" / "finetune_table.csv").exists()
    assert {"teacher_kind", "student_kind"} <= set(pd.read_csv(tmp_path / "p" / "pairs_table.csv").columns)


def test_study_figures_name_dataset_and_seeds_with_interval_bars():
    mean = pd.DataFrame({"student": ["vgg-s5", "vit-micro"], "prior_finetune_accuracy": [0.8, 0.7],
                         "prior_finetune_accuracy_ci": [0.02, 0.03], "post_finetune_accuracy": [0.85, 0.75],
                         "post_finetune_accuracy_ci": [0.01, 0.04], "n_seeds": [3, 3]})
    fig = st.finetune_figure(mean, "/data/cifar10/")
    assert fig.layout.title.text.startswith("003 Table III on cifar10, mean over 3 seed(s) (bars: 95% t-interval)")
    assert list(fig.data[0].error_y.array) == pytest.approx([2.0, 3.0])
    assert list(fig.data[1].error_y.array) == pytest.approx([1.0, 4.0])
    one = st.finetune_figure(mean.assign(n_seeds=1, prior_finetune_accuracy_ci=float("nan")), "mnist")
    assert one.layout.title.text.startswith("003 Table III on mnist, mean over 1 seed(s):")
    assert one.data[0].error_y.array is None


def test_profile_refuses_a_corrupt_or_foreign_head_json(tmp_path, capsys):
    """`distill profile` on a broken head.json: one line naming the file, exit 2, no traceback."""
    for text, words in (("{not json", "not valid JSON"), ("[1, 2]", "not a `distill head` run record")):
        (tmp_path / "head.json").write_text(text)
        assert run_cli(["distill", "profile", "--run", str(tmp_path), "--profile-device", "d",
                        "--profile-out", str(tmp_path / "d.json")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("edgesim: error:") and words in err and "head.json" in err and "\n" not in err
    assert not (tmp_path / "d.json").exists()


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
    rec = json.loads((tmp_path / "run" / "head.json").read_text())
    assert rec["val_sse_per_image"][-1] < rec["initial_val_sse_per_image"]  # the head was trained toward the teacher
    assert mimic.accuracy == pytest.approx(rec["mimic_accuracy"])
    assert device.model("resnet18-digits").accuracy == pytest.approx(rec["teacher_accuracy"])


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


@pytest.mark.parametrize("args, words", [
    (["distill", "kd", "--lr", "nan"], "--lr nan: expected a finite positive learning rate"),
    (["distill", "kd", "--lr", "0"], "--lr 0.0: expected a finite positive learning rate"),
    (["distill", "kd", "--temperature", "inf"], "--temperature inf"),
    (["distill", "kd", "--alpha", "1.5"], "--alpha 1.5"),
    (["distill", "sweep", "--lr", "nan"], "--lr nan"),
    (["distill", "head", "--lr", "-1"], "--lr -1.0"),
    (["distill", "kd", "--teacher", "vgg-s2", "--student", "vgg11"], "teacher vgg-s2 (4,"),
])
def test_untrainable_settings_refused_before_training(args, words, capsys, tmp_path):
    """issue 28: NaN learning rate was a traceback; a smaller teacher was trained into a larger student."""
    out = tmp_path / "o"
    assert run_cli([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgesim: error:") and words in err and "\n" not in err
    assert not out.exists()


def test_quick_tune_searches_both_arms_alike_and_says_where_kd_helps(tmp_path, capsys):
    """KD and scratch each get the same number of trials; the chosen settings come from their grids, the epoch from
    validation; the table says KD better / scratch better / no difference from the interval."""
    for seed in (0, 1):  # two runs side by side, one seed each, pooled by tune-report
        assert run_cli(["distill", "tune", "--quick", "--seed", str(seed), "--seeds", "1", "--out",
                        str(tmp_path / f"seed{seed}")]) == 0
    data_line = next(ln for ln in (tmp_path / "seed1" / "tune.md").read_text().splitlines() if "; data: " in ln)
    assert "sklearn digits" in data_line and "seed" not in data_line  # the table's seeds are listed on their own line
    assert run_cli(["distill", "tune-report", str(tmp_path / "seed0"), str(tmp_path / "seed0"), "--out",
                    str(tmp_path / "bad")]) == 2  # a seed twice
    assert run_cli(["distill", "tune-report", str(tmp_path / "seed0"), str(tmp_path / "seed1"), "--out",
                    str(tmp_path)]) == 0
    runs = pd.read_csv(tmp_path / "tune_runs.csv")
    assert len(runs) == 2 and set(runs.seed) == {0, 1}
    assert set(runs.kd_alpha) <= {0.5, 0.9} and set(runs.kd_temperature) == {4.0}
    assert set(runs.scratch_lr) <= {1e-3, 3e-3} and runs.kd_epochs.between(1, 2).all()
    assert runs.kd_minus_scratch.to_numpy() == pytest.approx((runs.kd_accuracy - runs.scratch_accuracy).to_numpy())
    seeds = pd.read_csv(tmp_path / "tune_seeds.csv")
    assert seeds.verdict.iloc[0].split(" (")[0] in ("KD better", "scratch better", "no difference")
    meta = json.loads((tmp_path / "tune.json").read_text())
    assert "KD 2 trials" in meta["budget"] and "scratch 2 trials" in meta["budget"] and "host_busy" in meta
    md = (tmp_path / "tune.md").read_text()  # the table docs/distill_003.md holds, with 003's sizes cited beside ours
    assert "| vgg-s2 | 32 | 4,183 | 4,178 / 0.164 M |" in md and seeds.verdict.iloc[0] in md
    assert md.count("ep;") == 2 and "KD chose" in md  # each arm's choice on validation, per seed
    assert [len(c.split()) for c in runs.scratch_val_curve] == [2, 2]  # the chosen trial's validation curve
    # a lower resolution than vgg-s8 can run at: its seed-0 teacher (32 px) teaches 16 px students (antialiased digits)
    assert run_cli(["distill", "tune", "--quick", "--resolutions", "16", "--teacher-px", "32", "--seed", "0",
                    "--seeds", "1", "--out", str(tmp_path / "seed0-16px")]) == 0
    assert run_cli(["distill", "tune-report", *(str(tmp_path / f) for f in ("seed0", "seed1", "seed0-16px")),
                    "--out", str(tmp_path / "both")]) == 0
    both = pd.read_csv(tmp_path / "both" / "tune_runs.csv")
    low = both[both.side_px == 16]
    assert len(both) == 3 and len(low) == 1 and low.teacher_side_px.iloc[0] == 32
    assert low.student_macs.iloc[0] * 4 == pytest.approx(runs.student_macs.iloc[0], rel=0.05)


def test_lower_resolution_digits_are_filtered_before_sampling():
    """28 px MNIST to 16 px is a real downsampling: antialiased (each digit keeps its ink, where sampling without a
    filter loses or gains up to ~4 % on a stroke), and said so; the 32 px set of the same seed holds the same digits."""
    from edgesim.studies.distill.data import NORM_MEAN, NORM_STD, load_data

    low, high = load_data("mnist", 16, 1, 0, limit=300), load_data("mnist", 32, 1, 0, limit=300)
    assert "antialiased bilinear to 16x16" in low.describe() and "antialiased" not in high.describe()
    assert bool((low.train.y == high.train.y).all())
    ink_low = (low.train.x * NORM_STD + NORM_MEAN).mean((1, 2, 3))
    ink_high = (high.train.x * NORM_STD + NORM_MEAN).mean((1, 2, 3))
    assert float(((ink_low - ink_high).abs() / ink_high).max()) < 0.02


def test_tune_grid_refuses_unequal_search_and_verdict_reads_the_interval():
    from edgesim.studies.distill.tune import TuneGrid, verdict
    from profilers.errors import EdgesimError

    with pytest.raises(EdgesimError, match="KD has 6 trials, scratch 2"):
        TuneGrid(scratch_lrs=(1e-3, 3e-3), scratch_weight_decays=(0.0,))
    half = TuneGrid((2.0, 4.0), (0.5, 0.9), (1e-3, 3e-3), (1e-3, 3e-3), (0.0, 1e-4), kd_half_fraction=True)
    trials = half.kd_trials()
    assert len(trials) == 4 and len({tuple(t.values()) for t in trials}) == 4
    for a, b in (("temperature", "alpha"), ("temperature", "lr"), ("alpha", "lr")):  # every pair of levels once
        assert len({(t[a], t[b]) for t in trials}) == 4
    with pytest.raises(EdgesimError, match="half fraction needs exactly 2"):
        TuneGrid((2.0, 4.0, 8.0), (0.5, 0.9), (1e-3, 3e-3), kd_half_fraction=True)
    assert verdict({"kd_minus_scratch": 0.05, "kd_minus_scratch_ci": 0.02}).startswith("KD better")
    assert verdict({"kd_minus_scratch": -0.05, "kd_minus_scratch_ci": 0.02}).startswith("scratch better")
    assert verdict({"kd_minus_scratch": 0.01, "kd_minus_scratch_ci": 0.02}).startswith("no difference")


def test_pairs_teachers_are_larger_than_every_student():
    """The ViT teacher was smaller (558 k) than the CNN teacher, confounding 003 Table I."""
    from edgesim.studies.distill.kd import count_params
    from profilers.models.nets import make_net

    for teacher, _ in st.PAIRS:
        st.check_teacher_larger(teacher, [s for _, s in st.PAIRS])
    assert count_params(make_net("vit-medium")) > count_params(make_net("vgg-s8"))


def test_head_over_seeds_gives_an_interval(tmp_path):
    assert run_cli(["distill", "head", "--quick", "--seeds", "2", "--out", str(tmp_path), "--no-png"]) == 0
    runs = pd.read_csv(tmp_path / "head_runs.csv")
    assert sorted(runs.seed) == [0, 1] and (tmp_path / "seed-1" / "head.json").is_file()
    mean = pd.read_csv(tmp_path / "head_seeds.csv")
    assert mean.n_seeds.iloc[0] == 2 and mean.mimic_accuracy.iloc[0] == pytest.approx(runs.mimic_accuracy.mean())
    assert run_cli(["distill", "head", "--quick", "--seeds", "2", "--export", str(tmp_path / "x"), "--out",
                    str(tmp_path / "y")]) == 2


def _shapes_folder(root, side_px=32, per_class=8):
    """An ImageFolder of three real-looking classes at side_px (a bright square top-left, bottom-right, or a bar)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    h = side_px // 2
    for name, box in (("top_left", (slice(0, h), slice(0, h))), ("bottom_right", (slice(h, None), slice(h, None))),
                      ("bar", (slice(h - 2, h + 2), slice(None)))):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (side_px, side_px, 3), dtype=np.uint8)
            img[box] = 200
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def test_tune_takes_a_users_image_folder_at_its_own_resolution(tmp_path):
    """A folder the user brings (not upsampled 8x8 digits): read at its own 32x32, its three classes, said so."""
    data = _shapes_folder(tmp_path / "shapes")
    out = tmp_path / "o"
    assert run_cli(["distill", "tune", "--quick", "--seeds", "1", "--data", str(data), "--out", str(out)]) == 0
    meta = json.loads((out / "tune.json").read_text())
    assert meta["dataset"].startswith(f"ImageFolder {data} (24 images of 32x32 px, 3 classes bar, bottom_right, top_left; "
                                      "at their own size)")
    assert "3x32x32" in meta["dataset"]


def test_kd_takes_a_yolo_export_as_fall_or_no_fall(tmp_path):
    """000's layout (YOLO export with train/valid/test) as a distillation set: fall / no fall per image, resized."""
    from tests.test_models_dmd_real_path import make_fall_export

    export = make_fall_export(tmp_path / "fall")
    out = tmp_path / "o"
    assert run_cli(["distill", "kd", "--quick", "--data", str(export), "--out", str(out)]) == 0
    row = json.loads((out / "kd.json").read_text())
    assert row["dataset"].startswith(f"YOLO export {export} (20 images of 40x30 px, 2 classes no fall, fall; resized to 32x32)")
