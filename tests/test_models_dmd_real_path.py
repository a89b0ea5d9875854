"""The real-data path of 000 (README, 'Dual-Model Distillation'), end to end on tiny local ViLT and
LLaVA-NeXT-Video checkpoints: generate, train, evaluate, profile both models, replay with the photo sent as JPEG
(issue 28 point 5: a Hugging Face model's input split point carries the photo's encodings)."""

import json

import pandas as pd
import torch
from PIL import Image

torch.set_num_threads(1)

from edgesim.cli.app import main
from tests.test_dmd_adapters import tiny_llava, tiny_vilt


def make_fall_export(root):
    """A YOLO export with train/valid/test splits; 'fall' (class 1) in every other image."""
    counts = {"train": 12, "valid": 4, "test": 4}
    for split, n in counts.items():
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (40, 30), (20 * i % 255, 7 * i % 255, 90)).save(root / split / "images" / f"{split}{i}.jpg")
            (root / split / "labels" / f"{split}{i}.txt").write_text(f"{i % 2} 0.5 0.5 0.2 0.3\n")
    (root / "data.yaml").write_text("nc: 2\nnames: ['not-fallen', 'fall']\n")
    return root


def test_readme_real_data_commands_on_tiny_checkpoints(tmp_path):
    vilt_dir, llava_dir = tmp_path / "vilt", tmp_path / "llava"
    tiny_vilt(vilt_dir)
    tiny_llava(llava_dir)
    export = make_fall_export(tmp_path / "fall")
    trace, sw = tmp_path / "fall.parquet", tmp_path / "switcher"
    assert main(["dmd", "generate", str(export), "--edge", str(vilt_dir), "--cloud", str(llava_dir), "--batch-size", "4",
                 "--out", str(trace), "--json", str(tmp_path / "fall.json"),
                 "--accept-degenerate"]) == 0  # random tiny models answer 'yes' to everything
    assert pd.read_parquet(trace).split.value_counts().to_dict() == {"train": 12, "valid": 4, "test": 4}
    assert main(["dmd", "train", str(trace), "--out", str(sw), "--epochs", "2"]) == 0
    assert main(["dmd", "evaluate", str(trace), "--switcher", str(sw), "--out", str(tmp_path / "eval"), "--no-png"]) == 0
    profiles = tmp_path / "profiles"
    for model, ckpt, name in (("vilt", vilt_dir, "jetson"), ("llava-next-video", llava_dir, "gpu")):
        assert main(["profile", model, "--checkpoint", str(ckpt), "--device-name", name, "--out",
                     str(profiles / f"{name}.json"), "--repeats", "1", "--warmup", "0", "--precision", "0",
                     "--threads", "1"]) == 0
    gpu = json.loads((profiles / "gpu.json").read_text())["models"]["llava-next-video"]
    assert {"jpeg", "png", "raw_uint8"} <= set(gpu["input_bytes"])
    assert main(["dmd", "replay", str(trace), "--switcher", str(sw), "--profile", str(profiles / "jetson.json"),
                 "--profile", str(profiles / "gpu.json"), "--mobile", "jetson", "--cloud", "gpu", "--edge-model", "vilt",
                 "--cloud-model", "llava-next-video", "--encoding", "jpeg", "--out", str(tmp_path / "replay"),
                 "--no-png"]) == 0
    table = pd.read_csv(tmp_path / "replay" / "table1.csv").set_index("method")
    assert table.loc["cloud-only", "large_model_pct"] == 100 and table.loc["edge-only", "large_model_pct"] == 0
