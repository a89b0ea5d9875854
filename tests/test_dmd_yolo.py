"""Fall Detection YOLO v7 export loader (000 A.1) on a small generated folder."""

import pytest
import torch
from PIL import Image

from edgesim.studies.dmd.adapters import TorchClassifierAdapter
from edgesim.studies.dmd.generate import generate
from edgesim.studies.yolo import iter_fall_images, load_fall_samples
from profilers.errors import EdgesimError


def make_export(root, with_yaml=True, split_dirs=True):
    layout = {"train": {"a": "1 0.5 0.5 0.2 0.3\n", "b": "0 0.1 0.2 0.3 0.4\n0 0.5 0.5 0.1 0.1\n", "c": None},
              "valid": {"d": "0 0.5 0.5 0.5 0.5\n1 0.2 0.2 0.1 0.1\n"}, "test": {"e": ""}}
    if not split_dirs:
        layout = {"": layout["train"]}
    for split, files in layout.items():
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for stem, text in files.items():
            Image.new("RGB", (16, 12), (stem.encode()[0], 0, 0)).save(root / split / "images" / f"{stem}.jpg")
            if text is not None:
                (root / split / "labels" / f"{stem}.txt").write_text(text)
    if with_yaml:
        (root / "data.yaml").write_text("nc: 2\nnames: ['not-fallen', 'fall']\n")
    return root


def test_fall_label_from_any_box_with_fall_class(tmp_path):
    make_export(tmp_path)
    got = {im.path.stem: (im.label, im.split) for im in iter_fall_images(tmp_path)}
    assert got == {"a": (1, "train"), "b": (0, "train"), "c": (0, "train"), "d": (1, "valid"), "e": (0, "test")}


def test_missing_label_skip_and_explicit_class(tmp_path):
    make_export(tmp_path, with_yaml=False, split_dirs=False)
    got = {im.path.stem: im.label for im in iter_fall_images(tmp_path, fall_class=0, missing_label="skip")}
    assert got == {"a": 0, "b": 1}
    samples = load_fall_samples(tmp_path, fall_class="1")
    assert [s.label for s in samples] == [1, 0, 0]
    assert samples[0].image.convert("RGB").size == (16, 12)


def test_fall_class_by_name_from_data_yaml(tmp_path):
    make_export(tmp_path)
    assert {im.path.stem: im.label for im in iter_fall_images(tmp_path, fall_class="not-fallen")}["b"] == 1
    with pytest.raises(EdgesimError, match="fall class 'sitting' not in"):
        list(iter_fall_images(tmp_path, fall_class="sitting"))


@pytest.mark.parametrize("line,match", [("1 0.5 0.5 0.2\n", "expected 'class cx cy w h'"), ("x 0.5 0.5 0.2 0.1\n", "integer class"),
                                        ("1 0.5 1.5 0.2 0.1\n", "normalised")])
def test_malformed_label_line_names_file_and_line(tmp_path, line, match):
    make_export(tmp_path)
    (tmp_path / "train" / "labels" / "b.txt").write_text("0 0.1 0.2 0.3 0.4\n" + line)
    with pytest.raises(EdgesimError, match=match) as err:
        list(iter_fall_images(tmp_path))
    assert "b.txt:2:" in str(err.value)


def test_not_a_yolo_folder(tmp_path):
    with pytest.raises(EdgesimError, match="no images/ folder"):
        list(iter_fall_images(tmp_path))
    with pytest.raises(EdgesimError, match="folder not found"):
        list(iter_fall_images(tmp_path / "missing"))


# ---------------------------------------------------------------- issue 11 point 14: the readers, each failed before


def test_class_id_not_in_data_yaml_names_is_file_and_line(tmp_path):
    make_export(tmp_path)  # data.yaml names 2 classes: ids 0 and 1
    (tmp_path / "train" / "labels" / "b.txt").write_text("0 0.1 0.2 0.3 0.4\n7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(EdgesimError, match=r"b\.txt:2: class 7 is not in data\.yaml's 2 names") as err:
        list(iter_fall_images(tmp_path))
    assert "\n" not in str(err.value)


def test_non_utf8_label_is_reported_as_file_and_line(tmp_path):
    make_export(tmp_path)
    (tmp_path / "train" / "labels" / "b.txt").write_bytes(b"0 0.1 0.2 0.3 0.4\n0 0.5 0.5 0.1 0.1 \xff\n")
    with pytest.raises(EdgesimError, match=r"b\.txt:2: not UTF-8") as err:
        list(iter_fall_images(tmp_path))
    assert "position" not in str(err.value)


def test_utf8_byte_order_mark_does_not_break_the_first_line(tmp_path):
    make_export(tmp_path)
    (tmp_path / "train" / "labels" / "a.txt").write_bytes("\ufeff1 0.5 0.5 0.2 0.3\n".encode("utf-8"))
    (tmp_path / "data.yaml").write_bytes("\ufeffnc: 2\nnames: ['not-fallen', 'fall']\n".encode("utf-8"))
    got = {im.path.stem: im.label for im in iter_fall_images(tmp_path)}
    assert got["a"] == 1


def test_the_exports_own_split_is_kept_through_generate(tmp_path):
    """000 A.1 keeps the export's train / valid / test (742 / 212 / 106): no re-split of the samples."""

    make_export(tmp_path)
    samples = load_fall_samples(tmp_path)
    assert [s.split for s in samples] == ["train", "train", "train", "valid", "test"]
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, 4), torch.nn.ReLU(),
                              torch.nn.Linear(4, 2))
    trace = generate(samples, TorchClassifierAdapter(net, "4"), TorchClassifierAdapter(net), test_fraction=0.5, seed=3)
    assert dict(zip(trace.sample_id.map(lambda p: p.split("/")[-1]), trace.split)) == {
        "a.jpg": "train", "b.jpg": "train", "c.jpg": "train", "d.jpg": "valid", "e.jpg": "test"}
