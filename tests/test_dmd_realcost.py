"""The real pair's cost per deferred frame as `dmd generate` runs LLaVA-NeXT-Video (issue 29): the closed-form
FLOPs against torch's FLOP counter on the same blocks, and the parts of the cost."""

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
                                "decode 4", "total"]
    assert cost.loc["photo uplink", "bytes"] == pytest.approx(60_000 * 1500 / 1460, rel=1e-3)
    assert cost.loc["prefill", "flops"] == pytest.approx(2 * s.lm_params() * 168, rel=0.05)  # ~2 x params x tokens
    flops, read = decode_step(s, 169)
    assert read > 2 * s.lm_params() and cost.loc["decode 2", "central_s"] > read / 1555e9
    assert (cost.low_s <= cost.central_s).all() and (cost.central_s <= cost.high_s).all()
    assert cost.loc["total", "central_s"] == pytest.approx(cost.central_s.iloc[:-1].sum())
