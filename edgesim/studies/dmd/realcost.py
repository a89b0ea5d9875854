"""What one deferred frame costs with 000's real large model, as `dmd generate` runs it (issue 29).

`LlavaNextVideoYesNoAdapter` sends one frame (a 1-frame video) and a short yes/no prompt, and generates at most
`max_new_tokens` (4) answer tokens; 000's system sends the mobile device's photo. The cost per deferred frame is:
the photo (JPEG, its own size) over the uplink, the CLIP vision tower on one frame, the projector, the language
model's prefill over prompt + image tokens (the first answer token), then one decode step per further answer token.

FLOPs are counted from the model's configuration (closed forms below, checked against torch's FLOP counter on
the same blocks in the tests). No GPU was lent to this work, so GPU latency is a derivation, stated with its
error band: prefill is compute-bound, t = FLOPs / (MFU x peak); each decode step is memory-bound, t = bytes read
(all LM weights + the KV cache) / (eta x bandwidth) + a per-step overhead of eager `generate`. The bands come from
the ranges of MFU, eta and overhead given in GPU_ASSUMPTIONS, not from a measurement; the same derivation without
the eager overhead is checked against NVIDIA's published Llama-2-7B latency on an A100 (NEMO_LLAMA2_7B_A100). The
answer text returns on the downlink. `dmd replay --llava-cost` replays with this cost (derived_cloud_model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from profilers.errors import EdgesimError
from profilers.schema import LatencyStats, ModelProfile, SplitPoint

#: GPU peak dense bf16/fp16 tensor throughput and memory bandwidth (cited: NVIDIA data sheets: A100 SXM4 40 GB
#: 312 TFLOPS bf16, 1,555 GB/s; A100 SXM4 80 GB 2,039 GB/s; H100 SXM5 989 TFLOPS bf16 dense, 3,350 GB/s; V100 SXM2 125 TFLOPS fp16, 900 GB/s)
GPUS = {"a100": (312e12, 1555e9), "a100-80gb": (312e12, 2039e9), "h100": (989e12, 3350e9), "v100": (125e12, 900e9)}
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


def llava_from_folder(folder: str | Path, question: str) -> tuple[LlavaShape, int]:
    """A local LLaVA-NeXT-Video folder's shape (its config) and the prompt's text tokens counted by its tokenizer, as
    the adapter builds the prompt (without the one <video> placeholder); the weights are not loaded."""
    from transformers import AutoConfig, AutoTokenizer

    from edgesim.studies.dmd.adapters import LLAVA_PROMPT, llava_prompt_ids, llava_video_token_id

    try:
        cfg = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise EdgesimError(f"LLaVA-NeXT-Video folder {folder}: {str(exc).splitlines()[0]}") from None
    if getattr(cfg, "model_type", "") != "llava_next_video":
        raise EdgesimError(f"{folder}: model_type '{getattr(cfg, 'model_type', '')}', not a LLaVA-NeXT-Video checkpoint folder")
    ids = llava_prompt_ids(tokenizer, LLAVA_PROMPT, question, llava_video_token_id(cfg), 1)
    return LlavaShape.from_config(cfg), len(ids) - 1


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


ANSWER_BYTES_PER_TOKEN = 4
"""Bytes of answer text per generated token sent back on the downlink (assumed: Llama's SentencePiece tokens
average about 4 characters of English text; the answer is 'yes'/'no' and a few more tokens at most)."""

NEMO_LLAMA2_7B_A100 = {"input_tokens": 128, "output_tokens": 20, "latency_s": 0.2340, "gpu": "a100-80gb"}
"""Cited measurement the derivation is checked against: Llama-2-7B (the language model of LLaVA-NeXT-Video-7B's
shape), batch 1, 128 input and 20 output tokens, 1 x A100 80GB SXM4, TensorRT-LLM: 234.0 ms average latency
(NVIDIA NeMo Framework user guide, 'Performance: Llama-2 results, inference', docs.nvidia.com/nemo-framework/
user-guide/latest/performance/llama.html). A compiled stack: no eager per-step overhead."""


@dataclass(frozen=True)
class WanLink:
    """The uplink/downlink of a deferred frame: rate, one-way propagation delay and TCP/IP framing (the replay's WAN)."""

    data_rate_mbps: float = 20.0
    propagation_delay_s: float = 0.02
    packet_payload_bytes: int = 1460
    packet_overhead_bytes: int = 40

    def transfer_s(self, payload_bytes: float) -> tuple[int, float]:
        """(bytes on the wire, seconds) of one payload on an idle link: the simulator's framing
        (simulator.link.Packetiser) at the link rate, plus the propagation delay."""
        from simulator.link import Packetiser

        wire = int(Packetiser(self.packet_payload_bytes, self.packet_overhead_bytes).wire_bytes(int(round(payload_bytes))))
        return wire, wire * 8 / (self.data_rate_mbps * 1e6) + self.propagation_delay_s


def _band_text(low: float, central: float, high: float) -> str:
    """The derivation's band as an error relative to its central value, e.g. '-38% / +60%'."""
    if central <= 0:
        return "0"
    return f"{100 * (low / central - 1):+.0f}% / {100 * (high / central - 1):+.0f}%"


def llm_latency_s(shape: LlavaShape, input_tokens: int, output_tokens: int, gpu: str,
                  with_overhead: bool = True) -> tuple[float, float, float]:
    """(low, central, high) seconds of a language-model request by the derivation: the prefill (first output token)
    compute-bound, every further token one memory-bound decode step; without the eager per-step overhead for a
    compiled stack (the cited NeMo check)."""
    peak, bandwidth = GPUS[gpu]
    mfu, eta = GPU_ASSUMPTIONS["mfu"], GPU_ASSUMPTIONS["eta"]
    overhead = GPU_ASSUMPTIONS["step_overhead_s"] if with_overhead else (0.0, 0.0, 0.0)
    prefill = prefill_flops(shape, input_tokens)
    out = []
    for k in range(3):  # low uses the best efficiency (index 2 of mfu/eta) and the smallest overhead
        t = prefill / (mfu[2 - k] * peak) + overhead[k]
        for step in range(1, output_tokens):
            t += decode_step(shape, input_tokens + step)[1] / (eta[2 - k] * bandwidth) + overhead[k]
        out.append(t)
    return out[0], out[1], out[2]


def check_against_citation(shape: LlavaShape = LlavaShape(vocab=32000)) -> dict:
    """The derivation (no eager overhead) against NVIDIA's measured Llama-2-7B latency on an A100: its error."""
    c = NEMO_LLAMA2_7B_A100
    low, central, high = llm_latency_s(shape, c["input_tokens"], c["output_tokens"], c["gpu"], with_overhead=False)
    return {"cited_s": c["latency_s"], "low_s": low, "central_s": central, "high_s": high,
            "central_error_pct": 100 * (central / c["latency_s"] - 1), "within_band": low <= c["latency_s"] <= high}


def deferred_frame_cost(photo_bytes: float, shape: LlavaShape = LlavaShape(), prompt_text_tokens: int = PROMPT_TEXT_TOKENS,
                        answer_tokens: int = 4, gpu: str = "a100", link: WanLink = WanLink(),
                        photo_source: str = "stated", photo_measured: bool = False,
                        prompt_source: str = "estimated by hand") -> pd.DataFrame:
    """One row per part of a deferred frame's cost: what it is, its FLOPs / bytes, its time (low, central, high),
    whether it is measured, derived or cited (`label`), its error and where each number comes from (`source`)."""
    peak, bandwidth = GPUS[gpu]
    mfu, eta, overhead = GPU_ASSUMPTIONS["mfu"], GPU_ASSUMPTIONS["eta"], GPU_ASSUMPTIONS["step_overhead_s"]
    tokens = prompt_text_tokens + shape.image_tokens
    wan = (f"{link.data_rate_mbps:g} Mbit/s, {1e3 * link.propagation_delay_s:g} ms one way, {link.packet_overhead_bytes} B "
           f"headers per {link.packet_payload_bytes} B (assumed WAN, the replay's)")
    wire, up = link.transfer_s(photo_bytes)
    photo_label = "measured" if photo_measured else "stated"
    rows = [{"part": "photo uplink", "what": f"JPEG {photo_bytes:,.0f} B, {wire:,} B on the wire",
             "flops": 0, "bytes": wire, "low_s": up, "central_s": up, "high_s": up,
             "label": f"derived (photo size {photo_label})", "error": "none beyond the WAN assumption",
             "source": f"photo bytes: {photo_source}; time = wire bytes x 8 / rate + propagation: {wan}"}]
    flops_source = (f"FLOPs counted from the configuration (closed form, equal to torch's FLOP counter on the tiny "
                    f"model); time = FLOPs / (MFU x {peak / 1e12:g} TFLOPS, {gpu} data sheet, cited), MFU "
                    f"{mfu[0]}-{mfu[2]} assumed")
    compute = [("vision tower", f"CLIP ViT, 1 frame {shape.image_px} px, {shape.patches + 1} tokens", vision_flops(shape)),
               ("projector", f"{shape.image_tokens} pooled image tokens", projector_flops(shape)),
               ("prefill", f"{prompt_text_tokens} prompt ({prompt_source}) + {shape.image_tokens} image tokens = "
                           f"{tokens}; LM head on the last (answer token 1)", prefill_flops(shape, tokens))]
    for part, what, flops in compute:
        rows.append({"part": part, "what": what, "flops": int(flops), "bytes": 0,
                     "low_s": flops / (mfu[2] * peak), "central_s": flops / (mfu[1] * peak),
                     "high_s": flops / (mfu[0] * peak), "label": "derived", "source": flops_source})
    weights = shape.lm_params() * BYTES_PER_PARAM
    vision_weights = shape.vision_layers * (4 * shape.vision_width ** 2 + 2 * shape.vision_width * shape.vision_ff) * BYTES_PER_PARAM
    prefill = rows[-1]
    prefill["bytes"] = weights + vision_weights  # the prefill also reads every weight once (compute-bound still)
    for key, extra in zip(("low_s", "central_s", "high_s"), overhead):
        prefill[key] += extra
    prefill["source"] += f"; + eager generate step overhead {1e3 * overhead[0]:g}-{1e3 * overhead[2]:g} ms assumed"
    for step in range(1, answer_tokens):
        flops, read = decode_step(shape, tokens + step)
        rows.append({"part": f"decode {step + 1}", "what": f"answer token {step + 1}: all LM weights + KV cache of "
                     f"{tokens + step} tokens", "flops": int(flops), "bytes": int(read),
                     "low_s": read / (eta[2] * bandwidth) + overhead[0], "central_s": read / (eta[1] * bandwidth) + overhead[1],
                     "high_s": read / (eta[0] * bandwidth) + overhead[2], "label": "derived",
                     "source": f"bytes read counted from the configuration (bf16); time = bytes / (eta x "
                               f"{bandwidth / 1e9:g} GB/s, {gpu} data sheet, cited), eta {eta[0]}-{eta[2]} assumed, + "
                               f"step overhead {1e3 * overhead[0]:g}-{1e3 * overhead[2]:g} ms assumed"})
    answer = answer_tokens * ANSWER_BYTES_PER_TOKEN
    wire, down = link.transfer_s(answer)
    rows.append({"part": "answer downlink", "what": f"answer text {answer} B ({answer_tokens} tokens x "
                 f"{ANSWER_BYTES_PER_TOKEN} B), {wire} B on the wire", "flops": 0, "bytes": wire,
                 "low_s": down, "central_s": down, "high_s": down, "label": "derived",
                 "error": "none beyond the WAN assumption",
                 "source": f"{ANSWER_BYTES_PER_TOKEN} B per answer token assumed; {wan}"})
    out = pd.DataFrame(rows)
    out["error"] = [e if isinstance(e, str) else _band_text(lo, c, hi)
                    for e, lo, c, hi in zip(out["error"], out["low_s"], out["central_s"], out["high_s"])]
    total = out[["flops", "bytes", "low_s", "central_s", "high_s"]].sum()
    check = check_against_citation()
    out = pd.concat([out, pd.DataFrame([{
        "part": "total", "what": f"one deferred frame, {answer_tokens} answer tokens on {gpu}", **total,
        "label": "derived", "error": _band_text(total["low_s"], total["central_s"], total["high_s"]),
        "source": (f"sum of the parts; the GPU derivation without eager overhead is {check['central_error_pct']:+.0f}% "
                   f"off NVIDIA's measured Llama-2-7B on an A100 (234.0 ms for 128 in / 20 out tokens, cited, "
                   f"{'inside' if check['within_band'] else 'outside'} its band); not validated on a GPU here")}])],
        ignore_index=True)
    return out


COMPUTE_PARTS = ("vision tower", "projector", "prefill")
"""Parts that run on the cloud GPU (with the decode steps): the cloud model's service time in a replay."""


def compute_rows(cost: pd.DataFrame) -> pd.DataFrame:
    """The rows of a deferred frame's cost that run on the cloud GPU (vision, projector, prefill, decode steps)."""
    return cost[cost["part"].isin(COMPUTE_PARTS) | cost["part"].str.startswith("decode")]


def derived_cloud_model(cost: pd.DataFrame, model_id: str, shape: LlavaShape, photo_bytes: float,
                        answer_tokens: int, gpu: str) -> ModelProfile:
    """The cloud model as `dmd generate` runs it, for a replay: input = the photo as JPEG at its size, result = the
    answer text, whole-model time = the derivation's central GPU time (its band stated in derivation_method)."""
    gpu_rows = compute_rows(cost)
    low, central, high = (float(gpu_rows[k].sum()) for k in ("low_s", "central_s", "high_s"))
    flops = int(gpu_rows["flops"].sum())
    pixels = [3, shape.image_px, shape.image_px]
    numel = 3 * shape.image_px ** 2
    answer = answer_tokens * ANSWER_BYTES_PER_TOKEN
    points = [SplitPoint(name="input", layer_index=0, output_shape=pixels, output_numel=numel, output_bytes={},
                         head_flops=0, head_params=0, head_latency=LatencyStats.constant(0.0),
                         tail_latency=LatencyStats.constant(central)),
              SplitPoint(name="output", layer_index=1, output_shape=[answer_tokens], output_numel=answer_tokens,
                         output_bytes={}, head_flops=flops, head_params=shape.lm_params(),
                         head_latency=LatencyStats.constant(central))]
    return ModelProfile(
        model_id=model_id, description=(f"LLaVA-NeXT-Video as `dmd generate` runs it: 1 frame, {answer_tokens} answer "
                                        f"tokens, the photo sent as JPEG ({photo_bytes:,.0f} B)"),
        checkpoint="configuration only (no weights)", input_shape=pixels, input_numel=numel,
        input_bytes={"jpeg": int(round(photo_bytes))}, jpeg_source="the deferred photo's own file size",
        result_bytes=answer, total_flops=flops, total_params=shape.lm_params(), measurement="derived",
        split_points=points, derivation_method=(
            f"edgesim dmd realcost on {gpu}: prefill compute-bound, decode memory-bound, eager step overhead; central "
            f"{1e3 * central:.1f} ms, band {1e3 * low:.1f}-{1e3 * high:.1f} ms ({_band_text(low, central, high)}); "
            "not validated on a GPU here"))


def photo_sizes(sample_ids) -> Optional[pd.Series]:
    """Bytes of each sample's image file (the photo the mobile device sends), None when the ids are not files."""
    sizes = [Path(s).stat().st_size for s in sample_ids if Path(str(s)).is_file()]
    return pd.Series(sizes, dtype=float) if sizes else None
