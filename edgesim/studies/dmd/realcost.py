"""What one deferred frame costs with 000's real large model, as `dmd generate` runs it (issue 29).

`LlavaNextVideoYesNoAdapter` sends one frame (a 1-frame video) and a short yes/no prompt, and generates at most
`max_new_tokens` (4) answer tokens; 000's system sends the mobile device's photo. The cost per deferred frame is:
the photo (JPEG, its own size) over the uplink, the CLIP vision tower on one frame, the projector, the language
model's prefill over prompt + image tokens (the first answer token), then one decode step per further answer token.

FLOPs are counted from the model's configuration (closed forms below, checked against torch's FLOP counter on
the same blocks in the tests). No GPU was lent to this work, so GPU latency is a derivation, stated with its
error band: prefill is compute-bound, t = FLOPs / (MFU x peak); each decode step is memory-bound, t = bytes read
(all LM weights + the KV cache) / (eta x bandwidth) + a per-step overhead of eager `generate`. The bands come from
the ranges of MFU, eta and overhead given in GPU_ASSUMPTIONS, not from a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd

#: GPU peak dense bf16/fp16 tensor throughput and memory bandwidth (cited: NVIDIA data sheets: A100 SXM4 40 GB
#: 312 TFLOPS bf16, 1,555 GB/s; H100 SXM5 989 TFLOPS bf16 dense, 3,350 GB/s; V100 SXM2 125 TFLOPS fp16, 900 GB/s)
GPUS = {"a100": (312e12, 1555e9), "h100": (989e12, 3350e9), "v100": (125e12, 900e9)}
#: (low, central, high) ranges of the derivation (assumed, stated): prefill model-FLOPs utilisation of a 7B model at
#: batch 1 and a few hundred tokens; decode's share of peak bandwidth; eager HF `generate` overhead per step (s)
GPU_ASSUMPTIONS = {"mfu": (0.25, 0.4, 0.6), "eta": (0.5, 0.7, 0.85), "step_overhead_s": (0.005, 0.012, 0.025)}
#: the adapter's prompt ("USER: <video>\n{question} Answer yes or no. ASSISTANT:") with 000's question: 24 Llama
#: tokens with BOS (estimated by hand from the SentencePiece vocabulary; the local tokenizer's count when given)
PROMPT_TEXT_TOKENS = 24
BYTES_PER_PARAM = 2  # bf16 / fp16 weights and KV cache on the GPU


@dataclass(frozen=True)
class LlavaShape:
    """The parts of a LLaVA-NeXT-Video configuration the cost depends on."""

    vision_layers: int = 24
    vision_width: int = 1024
    vision_ff: int = 4096
    image_px: int = 336
    patch_px: int = 14
    pool_stride: int = 2
    lm_layers: int = 32
    lm_width: int = 4096
    lm_ff: int = 11008
    kv_heads_ratio: float = 1.0  # key/value heads over attention heads (grouped-query attention < 1)
    vocab: int = 32064

    @classmethod
    def from_config(cls, cfg) -> "LlavaShape":
        """From a transformers LlavaNextVideoConfig."""
        v, t = cfg.vision_config, cfg.text_config
        return cls(v.num_hidden_layers, v.hidden_size, v.intermediate_size, v.image_size, v.patch_size,
                   int(getattr(cfg, "spatial_pool_stride", 2)), t.num_hidden_layers, t.hidden_size, t.intermediate_size,
                   t.num_key_value_heads / t.num_attention_heads, t.vocab_size)

    @property
    def patches(self) -> int:
        return (self.image_px // self.patch_px) ** 2

    @property
    def image_tokens(self) -> int:
        """Video tokens per frame after the 2x2 pooling of the patch grid (LLaVA-NeXT-Video's resampler)."""
        return (self.image_px // self.patch_px // self.pool_stride) ** 2

    def lm_layer_params(self) -> int:
        d = self.lm_width
        return int(d * d * (2 + 2 * self.kv_heads_ratio) + 3 * d * self.lm_ff)

    def lm_params(self) -> int:
        return self.lm_layers * self.lm_layer_params() + 2 * self.vocab * self.lm_width


def vision_flops(s: LlavaShape, frames: int = 1) -> int:
    """CLIP tower per frame: patch embedding, then per layer QKV/O and MLP matmuls plus QK^T and AV (2 FLOPs/MAC)."""
    n, d = s.patches + 1, s.vision_width
    embed = 2 * s.patches * 3 * s.patch_px ** 2 * d
    layer = 2 * n * (4 * d * d + 2 * d * s.vision_ff) + 2 * 2 * n * n * d
    return frames * (embed + s.vision_layers * layer)


def projector_flops(s: LlavaShape, frames: int = 1) -> int:
    """The 2-layer MLP projector on the pooled image tokens."""
    return frames * 2 * s.image_tokens * (s.vision_width * s.lm_width + s.lm_width * s.lm_width)


def prefill_flops(s: LlavaShape, tokens: int) -> int:
    """Language-model prefill over `tokens` (causal attention: n^2 d per matmul of scores and values) and the LM head
    on the last position (the first answer token)."""
    d = s.lm_width
    return s.lm_layers * (2 * tokens * s.lm_layer_params() + 2 * tokens * tokens * d) + 2 * d * s.vocab


def decode_step(s: LlavaShape, context: int) -> tuple[int, int]:
    """(FLOPs, bytes read) of one decode step with `context` tokens cached: every weight once, the KV cache once."""
    d = s.lm_width
    flops = s.lm_layers * (2 * s.lm_layer_params() + 4 * context * d) + 2 * d * s.vocab
    kv = 2 * s.lm_layers * context * int(d * s.kv_heads_ratio) * BYTES_PER_PARAM
    return flops, s.lm_params() * BYTES_PER_PARAM + kv


def deferred_frame_cost(photo_bytes: float, shape: LlavaShape = LlavaShape(), prompt_text_tokens: int = PROMPT_TEXT_TOKENS,
                        answer_tokens: int = 4, gpu: str = "a100", uplink_mbps: float = 20.0,
                        rtt_s: float = 0.04, packet_payload_bytes: int = 1460,
                        packet_overhead_bytes: int = 40) -> pd.DataFrame:
    """One row per part of a deferred frame's cost: what it is, its FLOPs / bytes, and its time (low, central, high)."""
    peak, bandwidth = GPUS[gpu]
    mfu, eta, overhead = GPU_ASSUMPTIONS["mfu"], GPU_ASSUMPTIONS["eta"], GPU_ASSUMPTIONS["step_overhead_s"]
    tokens = prompt_text_tokens + shape.image_tokens
    wire = photo_bytes * (1 + packet_overhead_bytes / packet_payload_bytes)
    up = wire * 8 / (uplink_mbps * 1e6) + rtt_s / 2
    rows = [{"part": "photo uplink", "what": f"JPEG {photo_bytes:,.0f} B (+{packet_overhead_bytes} B headers per "
             f"{packet_payload_bytes} B) at {uplink_mbps:g} Mbit/s + {1e3 * rtt_s / 2:g} ms one way (assumed WAN)",
             "flops": 0, "bytes": int(wire), "low_s": up, "central_s": up, "high_s": up}]
    compute = [("vision tower", f"CLIP ViT, 1 frame {shape.image_px} px, {shape.patches + 1} tokens",
                vision_flops(shape)),
               ("projector", f"{shape.image_tokens} pooled image tokens", projector_flops(shape)),
               ("prefill", f"{prompt_text_tokens} prompt + {shape.image_tokens} image tokens = {tokens}; LM head on the "
                           "last (answer token 1)", prefill_flops(shape, tokens))]
    for part, what, flops in compute:
        rows.append({"part": part, "what": what, "flops": int(flops), "bytes": 0,
                     "low_s": flops / (mfu[2] * peak), "central_s": flops / (mfu[1] * peak), "high_s": flops / (mfu[0] * peak)})
    weights = shape.lm_params() * BYTES_PER_PARAM
    vision_weights = shape.vision_layers * (4 * shape.vision_width ** 2 + 2 * shape.vision_width * shape.vision_ff) * BYTES_PER_PARAM
    rows[-1]["bytes"] = weights + vision_weights  # the prefill also reads every weight once (compute-bound still)
    rows[-1]["low_s"] += overhead[0]
    rows[-1]["central_s"] += overhead[1]
    rows[-1]["high_s"] += overhead[2]
    for step in range(1, answer_tokens):
        flops, read = decode_step(shape, tokens + step)
        rows.append({"part": f"decode {step + 1}", "what": f"answer token {step + 1}: all LM weights + KV cache of "
                     f"{tokens + step} tokens", "flops": int(flops), "bytes": int(read),
                     "low_s": read / (eta[2] * bandwidth) + overhead[0], "central_s": read / (eta[1] * bandwidth) + overhead[1],
                     "high_s": read / (eta[0] * bandwidth) + overhead[2]})
    out = pd.DataFrame(rows)
    total = out[["flops", "bytes", "low_s", "central_s", "high_s"]].sum()
    out = pd.concat([out, pd.DataFrame([{"part": "total", "what": f"{answer_tokens} answer tokens on {gpu}", **total}])],
                    ignore_index=True)
    return out


def photo_sizes(sample_ids) -> Optional[pd.Series]:
    """Bytes of each sample's image file (the photo the mobile device sends), None when the ids are not files."""
    from pathlib import Path

    sizes = [Path(s).stat().st_size for s in sample_ids if Path(str(s)).is_file()]
    return pd.Series(sizes, dtype=float) if sizes else None
