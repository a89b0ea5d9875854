"""Hugging Face image models from a local config (issue 24 point 4): they build, and split at layer boundaries."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

from profilers.errors import EdgesimError
from profilers.measure import MeasureOptions, measure_model
from profilers.models.sources import ModelRequest, build_model

#: transformers 4.x names an encoder's layers encoder.layer.N, 5.x layers.N
LAYERS = r"(encoder\.layer|layers)"
ENCODER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
               patch_size=8, num_labels=3)


def _configs():
    from transformers import BeitConfig, ConvNextConfig, DeiTConfig, MobileViTConfig, SwinConfig, ViTConfig

    return {
        "vit": (ViTConfig(**ENCODER), ["vit.embeddings", *(f"vit.{LAYERS}.{i}" for i in range(2))]),
        "deit": (DeiTConfig(**ENCODER), ["deit.embeddings", *(f"deit.{LAYERS}.{i}" for i in range(2))]),
        "beit": (BeitConfig(**ENCODER), ["beit.embeddings", *(f"beit.{LAYERS}.{i}" for i in range(2))]),
        "swin": (SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4,
                            num_labels=3), ["swin.embeddings", "swin.encoder.layers.0", "swin.encoder.layers.1"]),
        "convnext": (ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3, image_size=32),
                     ["convnext.embeddings", "convnext.encoder.stages.0", "convnext.encoder.stages.1"]),
        "mobilevit": (MobileViTConfig(image_size=32, hidden_sizes=[16, 24, 32],
                                      neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 48], num_labels=3),
                      ["mobilevit.conv_stem", *[f"mobilevit.encoder.layer.{i}" for i in range(5)]]),
    }


@pytest.mark.parametrize("name", ["vit", "deit", "beit", "swin", "convnext", "mobilevit"])
def test_image_model_from_a_local_config_splits_at_its_layers(tmp_path, name):
    config, layers = _configs()[name]
    config.save_pretrained(tmp_path / name)
    model = build_model(ModelRequest(spec=f"hf:{tmp_path / name}"))
    names = [n for n, _ in model.split_points]
    assert names[0] == "input" and names[-1] == "output"
    import re

    found = [next((k for k, n in enumerate(names) if re.fullmatch(pattern, n)), None) for pattern in layers]
    assert None not in found and found == sorted(found), (names, layers)  # every layer boundary, in order
    candidates = [c.name for c in model.extra["candidates"]]
    assert not any(c.startswith("_guards") for c in candidates)
    with torch.inference_mode():
        x = torch.randn(1, *model.input_shape)
        for block in model.blocks:
            x = block(x)
    assert x.shape == (1, 3)


def test_a_config_transformers_cannot_build_is_one_line(tmp_path):
    from transformers import ConvNextConfig

    ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1]).save_pretrained(tmp_path)  # four stages, two sizes
    with pytest.raises(EdgesimError, match=r"^hf:.*: no image-classification model for .*IndexError"):
        build_model(ModelRequest(spec=f"hf:{tmp_path}"))


def test_vilt_and_llava_from_a_local_config_carry_the_photo_encodings(tmp_path):
    """issue 28 point 5: the input split point of a model prepared from a photo has raw uint8, JPEG and PNG sizes
    of that photo at the processor size, so a mobile device can send it as 000's system does."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextVideoConfig, ViltConfig

    ViltConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=64,
               patch_size=32, num_labels=5).save_pretrained(tmp_path / "vilt")
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=56, patch_size=14, projection_dim=32, hidden_act="quick_gelu")
    text = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=4, vocab_size=128, max_position_embeddings=512)
    LlavaNextVideoConfig(vision_config=vision, text_config=text, video_token_index=127, image_token_index=126,
                         image_seq_length=16, video_seq_length=4).save_pretrained(tmp_path / "llava")
    for name, side, layers in (("vilt", 64, ["embeddings", "layer1", "layer2", "pooler"]),
                               ("llava", 56, ["vision_tower", "projector", "embeddings", "layer1", "layer2"])):
        model = build_model(ModelRequest(spec=f"hf:{tmp_path / name}"))
        assert [n for n, _ in model.split_points] == ["input", *layers, *(["classifier_hidden"] if name == "vilt" else []),
                                                      "output"]
        mp = measure_model(model, MeasureOptions(repeats=1, warmup=0, threads=1))
        sizes = mp.input_bytes
        assert sizes["raw_uint8"] == 3 * side * side
        assert 0 < sizes["jpeg"] < sizes["png"] < sizes["raw_uint8"] < sizes["float32"]
        assert "processor size" in mp.jpeg_source
