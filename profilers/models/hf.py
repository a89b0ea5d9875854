"""Transformers models of DMD (000): ViLT VQA (the small model) and LLaVA-NeXT-Video-7B (the large model).

Built from their config classes with random weights; nothing is downloaded. A `checkpoint` may name a
local directory written by save_pretrained (or a hub id already in the local cache): it is loaded with
from_pretrained(..., local_files_only=True). LLaVA-NeXT-Video-7B is built on the meta device (7B fp32
parameters, 28 GB, exceed this machine's memory): shapes and FLOPs only.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional

from profilers.errors import EdgesimError
from profilers.models.registry import SplittableModel, register

#: "Is the person falling?" as ViLT/BERT tokens, padded to a fixed length; random ids of this length stand in
VILT_TEXT_TOKENS = 11
#: VQAv2 answer vocabulary of the fine-tuned ViLT VQA model (dandelin/vilt-b32-finetuned-vqa)
VILT_VQA_LABELS = 3129
LLAVA_FRAMES = 8
LLAVA_PROMPT_TOKENS = 32


def _from_pretrained(cls, model_id: str, checkpoint: str, **kw):
    """from_pretrained on a local directory or cached hub id, never the network; one-line error otherwise."""
    path = Path(checkpoint)
    looks_local = path.is_absolute() or checkpoint.startswith((".", "~")) or path.exists()
    if looks_local and not path.is_dir():
        raise EdgesimError(f"model {model_id}: checkpoint directory {checkpoint} not found "
                           "(give a directory written by save_pretrained, or a hub id in the local cache)")
    try:
        return cls.from_pretrained(str(path.expanduser()) if looks_local else checkpoint, local_files_only=True, **kw)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgesimError(f"model {model_id}: cannot load checkpoint {checkpoint} without the network: {first}") from None


def _freeze(blocks) -> None:
    for block in blocks:
        block.eval()
        for p in block.parameters():
            p.requires_grad_(False)


# ----------------------------------------------------------------------------------------------- ViLT


@lru_cache(maxsize=None)
def _vilt_blocks_classes():
    """Block wrappers for ViLT (defined lazily: torch is imported only when a model is built)."""
    import torch
    import torch.nn as nn

    class ViltEmbed(nn.Module):
        """Text + patch embeddings: {input_ids, pixel_values} -> (hidden states, token mask)."""

        def __init__(self, vilt_model):
            super().__init__()
            self.embeddings = vilt_model.embeddings
            self.image_size = vilt_model.config.image_size

        def forward(self, inputs: dict):
            input_ids, pixel_values = inputs["input_ids"], inputs["pixel_values"]
            mask = inputs.get("attention_mask")
            if mask is None:
                mask = torch.ones(input_ids.shape, device=input_ids.device)
            b, _, h, w = pixel_values.shape
            pixel_mask = inputs.get("pixel_mask")
            if pixel_mask is None:
                pixel_mask = torch.ones((b, h, w), dtype=torch.long, device=pixel_values.device)
            hidden, token_mask = self.embeddings(input_ids, mask, None, pixel_values, pixel_mask, None, None,
                                                 image_token_type_idx=1)
            return hidden, token_mask.to(hidden.dtype)

    class ViltLayerBlock(nn.Module):
        """One ViLT encoder layer on (hidden states, token mask); the mask travels along (it is tiny)."""

        def __init__(self, layer):
            super().__init__()
            self.layer = layer

        def forward(self, state):
            hidden, mask = state
            additive = (1.0 - mask[:, None, None, :]) * torch.finfo(hidden.dtype).min
            return self.layer(hidden, additive)[0], mask

    class ViltPool(nn.Module):
        """Final layernorm and the [CLS] pooler: (hidden states, mask) -> pooled (batch, hidden)."""

        def __init__(self, vilt_model):
            super().__init__()
            self.layernorm = vilt_model.layernorm
            self.pooler = vilt_model.pooler

        def forward(self, state):
            return self.pooler(self.layernorm(state[0]))

    return ViltEmbed, ViltLayerBlock, ViltPool


def _vilt_config(tiny: bool, num_labels: int):
    from transformers import ViltConfig

    if tiny:
        return ViltConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          image_size=64, patch_size=32, num_labels=num_labels)
    return ViltConfig(num_labels=num_labels)  # base: hidden 768, 12 layers, 384x384, patch 32


def _build_vilt(model_id: str, tiny: bool, input_size=None, checkpoint: Optional[str] = None,
                num_labels: Optional[int] = None, text_tokens: int = VILT_TEXT_TOKENS,
                shapes_only: bool = False, config=None) -> SplittableModel:
    """ViLT VQA cut into embeddings, encoder layers, pooler, the 1536-wide classifier hidden layer and the logits."""
    import torch
    import torch.nn as nn
    from transformers import ViltForQuestionAnswering


    if shapes_only:  # visual_embed selects patches from the pixel mask's values: meta tensors have none
        raise EdgesimError(f"model {model_id}: ViLT's patch selection needs real tensors; build it without "
                           "shapes_only (it fits in memory)")
    labels = num_labels or (5 if tiny else VILT_VQA_LABELS)
    if checkpoint is not None:
        model = _from_pretrained(ViltForQuestionAnswering, model_id, checkpoint)
    else:
        model = ViltForQuestionAnswering(config if config is not None else _vilt_config(tiny, labels))
    model.eval()
    cfg = model.config
    side = cfg.image_size if input_size is None else int(input_size if not isinstance(input_size, (list, tuple)) else input_size[0])
    if text_tokens > cfg.max_position_embeddings:
        raise EdgesimError(f"model {model_id}: text_tokens {text_tokens} exceeds max_position_embeddings {cfg.max_position_embeddings}")
    embed_cls, layer_cls, pool_cls = _vilt_blocks_classes()
    layers = [layer_cls(layer) for layer in model.vilt.encoder.layer]
    head = model.classifier  # Linear(h, 2h), LayerNorm(2h), GELU, Linear(2h, labels)
    blocks = [embed_cls(model.vilt), *layers, pool_cls(model.vilt), nn.Sequential(*head[:3]), head[3]]
    _freeze(blocks)
    n = len(layers)
    points = [("input", 0), ("embeddings", 1), *[(f"layer{i}", 1 + i) for i in range(1, n + 1)],
              ("pooler", n + 2), ("classifier_hidden", n + 3), ("output", n + 4)]
    vocab = cfg.vocab_size

    def example_input(batch: int) -> dict:
        g = torch.Generator().manual_seed(0)
        return {"input_ids": torch.randint(1, vocab, (batch, text_tokens), generator=g),
                "pixel_values": torch.randn((batch, 3, side, side), generator=g)}

    return SplittableModel(
        model_id=model_id, blocks=blocks, split_points=points, input_shape=(3, side, side),
        description=f"ViLT VQA (000 small model), hidden {cfg.hidden_size}, {n} layers, {side}x{side} image, "
                    f"{text_tokens} text tokens, classifier hidden {2 * cfg.hidden_size}",
        example_input=example_input, checkpoint=checkpoint or "random-init",
        extra={"torch_model": model, "config": cfg}, image_size=(side, side),
    )


@register("vilt", "ViLT VQA base (000 small model): 384x384 image + 11-token prompt, random init unless checkpoint", "hf")
def vilt(input_size=None, checkpoint=None, **kw) -> SplittableModel:
    """ViLT-B/32 VQA from ViltConfig(); split points per encoder layer and at the 1536-wide classifier hidden layer."""
    return _build_vilt("vilt", False, input_size, checkpoint, **kw)


@register("vilt-tiny", "ViLT VQA, tiny config (hidden 32, 2 layers, 64x64 image) for tests", "hf")
def vilt_tiny(input_size=None, checkpoint=None, **kw) -> SplittableModel:
    """A tiny ViLT with the same block structure as 'vilt'."""
    return _build_vilt("vilt-tiny", True, input_size, checkpoint, **kw)


# ------------------------------------------------------------------------------------ LLaVA-NeXT-Video


@lru_cache(maxsize=None)
def _llava_blocks_classes():
    """Block wrappers for LLaVA-NeXT-Video (defined lazily)."""
    import torch
    import torch.nn as nn

    class VisionTower(nn.Module):
        """CLIP vision tower on every frame: {pixel_values_videos, input_ids} -> (features of layer -2 without CLS, ids)."""

        def __init__(self, model):
            super().__init__()
            self.vision_tower = model.model.vision_tower
            self.feature_layer = model.config.vision_feature_layer
            self.strategy = model.config.vision_feature_select_strategy

        def forward(self, inputs: dict):
            video = inputs["pixel_values_videos"]
            b, f = video.shape[:2]
            out = self.vision_tower(video.flatten(0, 1), output_hidden_states=True, return_dict=True)
            feats = out.hidden_states[self.feature_layer]
            if self.strategy == "default":
                feats = feats[:, 1:]
            return feats.unflatten(0, (b, f)), inputs["input_ids"]

    class Projector(nn.Module):
        """2x2 spatial average pooling (vision resampler) and the 2-layer MLP projector into the LM width."""

        def __init__(self, model):
            super().__init__()
            self.vision_resampler = model.model.vision_resampler
            self.multi_modal_projector = model.model.multi_modal_projector

        def forward(self, state):
            feats, input_ids = state
            b, f = feats.shape[:2]
            pooled = self.vision_resampler(feats.flatten(0, 1))
            return self.multi_modal_projector(pooled).unflatten(0, (b, f)).flatten(1, 2), input_ids

    class MergeEmbeddings(nn.Module):
        """Token embeddings of the prompt after the video tokens: the language model's input sequence."""

        def __init__(self, model):
            super().__init__()
            self.embed_tokens = model.model.language_model.get_input_embeddings()

        def forward(self, state):
            video_embeds, input_ids = state
            text = self.embed_tokens(input_ids)
            return torch.cat([video_embeds.to(text.dtype), text], dim=1)

    class DecoderLayer(nn.Module):
        """One Llama decoder layer, causal over the whole sequence (SDPA with is_causal), no KV cache."""

        def __init__(self, layer, rotary_emb):
            super().__init__()
            self.layer = layer
            self.rotary_emb = rotary_emb

        def forward(self, hidden):
            position_ids = torch.arange(hidden.shape[1], device=hidden.device)[None]
            rope = self.rotary_emb(hidden, position_ids=position_ids)
            out = self.layer(hidden, attention_mask=None, position_embeddings=rope, position_ids=position_ids)
            return out[0] if isinstance(out, tuple) else out

    class LogitsHead(nn.Module):
        """Final RMSNorm and the LM head on the last position (the first generated token of the prefill)."""

        def __init__(self, model):
            super().__init__()
            self.norm = model.model.language_model.norm
            self.lm_head = model.lm_head

        def forward(self, hidden):
            return self.lm_head(self.norm(hidden[:, -1]))

    return VisionTower, Projector, MergeEmbeddings, DecoderLayer, LogitsHead


def _llava_config(tiny: bool):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextVideoConfig

    if tiny:
        vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                  image_size=56, patch_size=14, projection_dim=32, hidden_act="quick_gelu")
        text = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=4, vocab_size=128, max_position_embeddings=512)
        return LlavaNextVideoConfig(vision_config=vision, text_config=text, video_token_index=127,
                                    image_token_index=126, image_seq_length=16, video_seq_length=4)
    # CLIP ViT-L/14-336 and a Vicuna-7B-like Llama, as in llava-hf/LLaVA-NeXT-Video-7B-hf
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
    text = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096, rms_norm_eps=1e-5)
    return LlavaNextVideoConfig(vision_config=vision, text_config=text, video_token_index=32000,
                                image_token_index=32001)


def _build_llava(model_id: str, tiny: bool, input_size=None, checkpoint: Optional[str] = None,
                 num_frames: int = LLAVA_FRAMES, prompt_tokens: int = LLAVA_PROMPT_TOKENS,
                 shapes_only: Optional[bool] = None, config=None) -> SplittableModel:
    """LLaVA-NeXT-Video as [vision tower, pooling + projector, embeddings, decoder layers, logits]; 7B on meta."""
    import contextlib

    import torch
    from transformers import LlavaNextVideoForConditionalGeneration

    meta = (not tiny and checkpoint is None) if shapes_only is None else bool(shapes_only)
    if checkpoint is not None:
        if meta:
            raise EdgesimError(f"model {model_id}: a checkpoint cannot be loaded into a shapes-only (meta) model")
        model = _from_pretrained(LlavaNextVideoForConditionalGeneration, model_id, checkpoint)
    else:
        with torch.device("meta") if meta else contextlib.nullcontext():
            model = LlavaNextVideoForConditionalGeneration(config if config is not None else _llava_config(tiny))
    model.eval()
    cfg = model.config
    side = cfg.vision_config.image_size
    if input_size is not None and int(input_size if not isinstance(input_size, (list, tuple)) else input_size[0]) != side:
        raise EdgesimError(f"model {model_id}: input size {input_size} not supported; the vision tower takes {side}x{side}")
    model.config.text_config._attn_implementation = "sdpa"  # DecoderLayer relies on SDPA's is_causal
    vision_cls, proj_cls, merge_cls, layer_cls, logits_cls = _llava_blocks_classes()
    lm = model.model.language_model
    layers = [layer_cls(layer, lm.rotary_emb) for layer in lm.layers]
    blocks = [vision_cls(model), proj_cls(model), merge_cls(model), *layers, logits_cls(model)]
    _freeze(blocks)
    vocab = cfg.text_config.vocab_size
    device = "meta" if meta else "cpu"

    def example_input(batch: int) -> dict:
        if meta:
            return {"pixel_values_videos": torch.empty((batch, num_frames, 3, side, side), device=device),
                    "input_ids": torch.zeros((batch, prompt_tokens), dtype=torch.long, device=device)}
        g = torch.Generator().manual_seed(0)
        return {"pixel_values_videos": torch.randn((batch, num_frames, 3, side, side), generator=g),
                "input_ids": torch.randint(0, min(vocab, 32000) - 2, (batch, prompt_tokens), generator=g)}

    pooled_tokens = (side // cfg.vision_config.patch_size // cfg.spatial_pool_stride) ** 2
    return SplittableModel(
        model_id=model_id, blocks=blocks,
        split_points=[("input", 0), ("vision_tower", 1), ("projector", 2), ("embeddings", 3),
                      *[(f"layer{i}", 3 + i) for i in range(1, len(layers) + 1)], ("output", len(blocks))],
        input_shape=(num_frames, 3, side, side),
        description=f"LLaVA-NeXT-Video (000 large model), {num_frames} frames {side}x{side} "
                    f"({num_frames * pooled_tokens} video tokens) + {prompt_tokens} prompt tokens, prefill only",
        example_input=example_input, shapes_only=meta, checkpoint=checkpoint or "random-init",
        extra={"torch_model": model, "config": cfg}, image_size=(side, side),
    )


@register("llava-next-video", "LLaVA-NeXT-Video-7B (000 large model), meta device: FLOPs and shapes of one "
                              "8-frame 336x336 + 32-token prefill", "hf")
def llava_next_video(input_size=None, checkpoint=None, **kw) -> SplittableModel:
    """LLaVA-NeXT-Video-7B (CLIP ViT-L/14-336 + Vicuna-7B-like Llama) on the meta device unless a checkpoint is given."""
    return _build_llava("llava-next-video", False, input_size, checkpoint, **kw)


@register("llava-next-video-tiny", "LLaVA-NeXT-Video, tiny config (hidden 32, 2 layers, 56x56 frames) for tests", "hf")
def llava_next_video_tiny(input_size=None, checkpoint=None, **kw) -> SplittableModel:
    """A tiny LLaVA-NeXT-Video with real weights and the same blocks as 'llava-next-video'."""
    return _build_llava("llava-next-video-tiny", True, input_size, checkpoint, **kw)


#: a LLaVA-NeXT-Video config with more parameters than this is built on the meta device (shapes and FLOPs only)
LLAVA_REAL_MAX_PARAMS = 1_000_000_000


def multimodal_from_config(model_id: str, config, checkpoint: Optional[str], input_size=None) -> Optional[SplittableModel]:
    """ViLT or LLaVA-NeXT-Video from a local config (`edgesim profile hf:DIR`), cut into the same blocks as the
    registered models; None for any other config. A LLaVA config above LLAVA_REAL_MAX_PARAMS parameters without
    weights is built on the meta device."""
    import torch
    from transformers import LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration, ViltConfig

    if isinstance(config, ViltConfig):
        return _build_vilt(model_id, False, input_size, checkpoint, num_labels=config.num_labels, config=config)
    if isinstance(config, LlavaNextVideoConfig):
        meta = False
        if checkpoint is None:
            with torch.device("meta"):
                n = sum(p.numel() for p in LlavaNextVideoForConditionalGeneration(config).parameters())
            meta = n > LLAVA_REAL_MAX_PARAMS
        return _build_llava(model_id, False, input_size, checkpoint, shapes_only=meta, config=config)
    return None
