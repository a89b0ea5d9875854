"""The real pair's cost per deferred frame as `dmd generate` runs LLaVA-NeXT-Video (issue 29): the closed-form
FLOPs against torch's FLOP counter on the same blocks, and the parts of the cost."""

import json
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

from edgesim.studies.dmd.realcost import (
    LlavaShape,
    decode_step,
    deferred_frame_cost,
    prefill_flops,
    projector_flops,
    vision_flops,
)
from profilers.models import build


def test_closed_forms_match_torchs_flop_counter_on_the_tiny_model():
    """One frame and a 7-token prompt through the registered tiny LLaVA-NeXT-Video, block by block. torch's counter
    does not see the CPU SDPA kernel, so the attention products (QK^T and AV: 4 n^2 d per vision layer, the causal
    half 2 n^2 d per language-model layer) are the closed form's own terms, removed before comparing."""
    from torch.utils.flop_counter import FlopCounterMode

    prompt = 7
    sm = build("llava-next-video-tiny", num_frames=1, prompt_tokens=prompt)
    shape = LlavaShape.from_config(sm.extra["config"])
    x = sm.example_input(1)
    counted = []
    with torch.no_grad():
        for block in sm.blocks:
            with FlopCounterMode(display=False) as fc:
                x = block(x)
            counted.append(fc.get_total_flops())
    n, tokens = shape.patches + 1, prompt + shape.image_tokens
    assert counted[0] == vision_flops(shape) - shape.vision_layers * 4 * n * n * shape.vision_width
    assert counted[1] == projector_flops(shape)
    assert sum(counted[3:]) == prefill_flops(shape, tokens) - shape.lm_layers * 2 * tokens * tokens * shape.lm_width


def test_the_7b_deferred_frame_is_made_of_uplink_vision_prefill_and_decode():
    """Published shape of LLaVA-NeXT-Video-7B: 144 image tokens per 336 px frame, ~6.7 G LM parameters; one frame
    and 4 answer tokens, not the 8-frame prefill the registry profiles; the photo as JPEG at its own size."""
    s = LlavaShape()
    assert s.image_tokens == 144 and 6.4e9 < s.lm_params() < 6.9e9
    cost = deferred_frame_cost(60_000, s, prompt_text_tokens=24, answer_tokens=4, gpu="a100").set_index("part")
    assert list(cost.index) == ["photo uplink", "vision tower", "projector", "prefill", "decode 2", "decode 3",
                                "decode 4", "answer downlink", "total"]
    assert cost.loc["photo uplink", "bytes"] == 60_000 + 42 * 40  # 42 packets of 1460 B, 40 B headers each
    assert cost.loc["answer downlink", "bytes"] == 4 * 4 + 40
    assert cost.loc["photo uplink", "central_s"] == pytest.approx((60_000 + 42 * 40) * 8 / 20e6 + 0.02)
    assert set(cost["label"]) == {"derived", "derived (photo size stated)"} and cost["error"].notna().all()
    assert cost.loc["prefill", "flops"] == pytest.approx(2 * s.lm_params() * 168, rel=0.05)  # ~2 x params x tokens
    flops, read = decode_step(s, 169)
    assert read > 2 * s.lm_params() and cost.loc["decode 2", "central_s"] > read / 1555e9
    assert (cost.low_s <= cost.central_s).all() and (cost.central_s <= cost.high_s).all()
    assert cost.loc["total", "central_s"] == pytest.approx(cost.central_s.iloc[:-1].sum())


def test_the_derivation_holds_nvidias_measured_llama2_7b_latency_in_its_band():
    """Cited check of the GPU derivation (no eager overhead: a TensorRT-LLM stack): Llama-2-7B, batch 1, 128 in / 20
    out tokens on one A100 80GB measured 234.0 ms (NVIDIA NeMo performance guide). Its central value is within 25%."""
    from edgesim.studies.dmd.realcost import check_against_citation

    check = check_against_citation()
    assert check["within_band"], check
    assert abs(check["central_error_pct"]) < 25


def test_replay_costs_each_deferred_frame_as_generate_runs_llava(tmp_path, capsys):
    """`dmd replay --llava-cost` on the tiny local ViLT / LLaVA-NeXT-Video checkpoints: the cloud model's time is the
    derivation for the tiny configuration, the photo goes as JPEG at the trace's median file size, and the simulated
    cloud-only delay equals uplink + GPU time + downlink of the printed breakdown (frames never queue at 1 frame/s)."""
    import pandas as pd

    from edgesim.cli.app import main
    from tests.test_dmd_adapters import tiny_llava, tiny_vilt
    from tests.test_models_dmd_real_path import make_fall_export

    vilt_dir, llava_dir = tmp_path / "vilt", tmp_path / "llava"
    tiny_vilt(vilt_dir)
    tiny_llava(llava_dir)
    export = make_fall_export(tmp_path / "fall")
    trace, sw, profiles = tmp_path / "fall.parquet", tmp_path / "switcher", tmp_path / "profiles"
    assert main(["dmd", "generate", str(export), "--edge", str(vilt_dir), "--cloud", str(llava_dir), "--batch-size", "4",
                 "--out", str(trace), "--accept-degenerate"]) == 0
    assert main(["dmd", "train", str(trace), "--out", str(sw), "--epochs", "2"]) == 0
    for name in ("jetson", "gpu"):  # the cloud device's own profile need not hold LLaVA: --llava-cost adds it
        assert main(["profile", "vilt", "--checkpoint", str(vilt_dir), "--device-name", name, "--out",
                     str(profiles / f"{name}.json"), "--repeats", "1", "--warmup", "0", "--precision", "0",
                     "--threads", "1"]) == 0
    args = ["dmd", "replay", str(trace), "--switcher", str(sw), "--profile", str(profiles / "jetson.json"),
            "--profile", str(profiles / "gpu.json"), "--mobile", "jetson", "--cloud", "gpu", "--edge-model", "vilt",
            "--llava-cost", "--llava", str(llava_dir), "--no-png"]
    capsys.readouterr()
    assert main([*args, "--encoding", "float32", "--out", str(tmp_path / "bad")]) == 2
    assert "--llava-cost sends the photo as JPEG" in capsys.readouterr().err
    out = tmp_path / "replay"
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    cost = pd.read_csv(out / "deferred_frame_cost.csv").set_index("part")
    photos = sorted(pd.read_parquet(trace)["sample_id"])
    median = float(pd.Series([Path(p).stat().st_size for p in photos]).median())
    assert cost.loc["photo uplink", "label"] == "derived (photo size measured)"
    assert f"JPEG {median:,.0f} B" in cost.loc["photo uplink", "what"]
    assert "counted by" in cost.loc["prefill", "what"]  # the tiny tokenizer's prompt
    assert "decode 4" in cost.index and "answer downlink" in cost.index
    gpu_s = cost.loc[["vision tower", "projector", "prefill", "decode 2", "decode 3", "decode 4"], "central_s"].sum()
    table = pd.read_csv(out / "table1.csv").set_index("method")
    expected_ms = 1e3 * (cost.loc["photo uplink", "central_s"] + gpu_s + cost.loc["answer downlink", "central_s"])
    assert table.loc["cloud-only", "sim_delay_mean_ms"] == pytest.approx(expected_ms, rel=1e-6)
    for word in ("photo uplink", "prefill", "decode 2", "answer downlink", "measured", "derived", "where each number"):
        assert word in printed
    models = {f: json.loads(f.read_text())["models"] for f in (profiles / "gpu.json", out / "profiles" / "gpu.json")}
    assert "llava-next-video-as-generated" in models[out / "profiles" / "gpu.json"]
    assert "llava-next-video-as-generated" not in models[profiles / "gpu.json"]  # the given profile is not changed
