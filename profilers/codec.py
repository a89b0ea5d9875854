"""How a tensor or image crosses a link: encode on the sending side, decode on the receiving side, and their cost.

The encodings are those of a profile's bytes tables (profilers/schema.py: InputEncoding, TensorEncoding): the
input image as raw 8-bit RGB or JPEG (quality 90), the head's output as float32, float16, per-tensor affine int8
(profilers.measure.quantize_int8), or either zlib-compressed. The testbed sends exactly these bytes, and
`measure_codec_costs` times each encoding's encode and decode on this host (point 4 of issue 23: measured by
the profiler, not guessed).
"""

from __future__ import annotations

import io
import statistics
import struct
import time
import zlib
from typing import Callable

from profilers.measure import (IMAGENET_MEAN, IMAGENET_STD, JPEG_QUALITY, ZLIB_LEVEL, _model_input, image_tensor,
                               quantize_int8, real_image)

INPUT_ENCODINGS = ("raw_uint8", "float32", "jpeg")
TENSOR_ENCODINGS = ("float32", "float16", "int8", "zlib_float32", "zlib_int8")
_INT8_HEADER = struct.Struct("<fi")  # scale and zero point: profilers.measure.INT8_HEADER_BYTES


def encode_image(image, encoding: str) -> bytes:
    """A captured RGB image (PIL) as sent for full offloading: raw 8-bit RGB, JPEG at quality 90, or the
    normalised float32 tensor."""
    import numpy as np

    if encoding == "raw_uint8":
        return np.asarray(image, dtype=np.uint8).tobytes()
    if encoding == "jpeg":
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=JPEG_QUALITY)
        return buf.getvalue()
    if encoding == "float32":
        return image_tensor(image).numpy().tobytes()
    raise ValueError(f"unknown input encoding '{encoding}'; known: {', '.join(INPUT_ENCODINGS)}")


def decode_image(payload: bytes, encoding: str, shape: tuple[int, int, int]):
    """The 1x3xHxW normalised float32 tensor a model takes, from an encoded image of shape (C, H, W)."""
    import numpy as np
    import torch

    c, h, w = shape
    if encoding == "float32":
        return torch.frombuffer(bytearray(payload), dtype=torch.float32).reshape(1, c, h, w)
    if encoding == "jpeg":
        from PIL import Image

        arr = np.asarray(Image.open(io.BytesIO(payload)).convert("RGB"), dtype=np.uint8)
    elif encoding == "raw_uint8":
        arr = np.frombuffer(payload, dtype=np.uint8).reshape(h, w, c)
    else:
        raise ValueError(f"unknown input encoding '{encoding}'; known: {', '.join(INPUT_ENCODINGS)}")
    t = torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((t - mean) / std).contiguous()


def encode_tensor(tensor, encoding: str) -> bytes:
    """A head's output tensor as sent at a split point (002 section 2: raw or zip-compressed)."""
    if encoding in ("float32", "zlib_float32"):
        raw = tensor.detach().float().contiguous().numpy().tobytes()
        return zlib.compress(raw, ZLIB_LEVEL) if encoding == "zlib_float32" else raw
    if encoding == "float16":
        return tensor.detach().half().contiguous().numpy().tobytes()
    if encoding in ("int8", "zlib_int8"):  # the header stays uncompressed, as profilers.measure counts it
        q, scale, zero_point = quantize_int8(tensor)
        return _INT8_HEADER.pack(scale, zero_point) + (zlib.compress(q, ZLIB_LEVEL) if encoding == "zlib_int8" else q)
    raise ValueError(f"unknown tensor encoding '{encoding}'; known: {', '.join(TENSOR_ENCODINGS)}")


def decode_tensor(payload: bytes, encoding: str, shape: list[int]):
    """The float32 tensor (batch 1, shape without the batch) a tail takes, from its encoded bytes."""
    import torch

    if encoding in ("float32", "zlib_float32"):
        raw = zlib.decompress(payload) if encoding == "zlib_float32" else payload
        return torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(1, *shape)
    if encoding == "float16":
        return torch.frombuffer(bytearray(payload), dtype=torch.float16).float().reshape(1, *shape)
    if encoding in ("int8", "zlib_int8"):
        scale, zero_point = _INT8_HEADER.unpack_from(payload)
        body = payload[_INT8_HEADER.size:]
        q = torch.frombuffer(bytearray(zlib.decompress(body) if encoding == "zlib_int8" else body), dtype=torch.int8)
        return ((q.float() - zero_point) * scale).reshape(1, *shape)
    raise ValueError(f"unknown tensor encoding '{encoding}'; known: {', '.join(TENSOR_ENCODINGS)}")


def median_time_s(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of fn() over `repeats` runs after `warmup` (perf_counter)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(statistics.median(times))


def measure_codec_costs(model, points: list[tuple[str, int]], repeats: int = 5) -> dict[str, tuple[dict, dict]]:
    """Median encode and decode time per encoding at each split point on this host: {point: (encode_s, decode_s)}.

    At layer index 0 the input image's encodings (from the real image the profiler uses), elsewhere the head's
    output tensor's; the output of the whole model is not sent. Encodings this machine cannot produce are left out.
    """
    import torch

    shape = tuple(model.input_shape)
    image = real_image(shape[1], shape[2])[0] if len(shape) == 3 and shape[0] == 3 else None
    x, _, _ = _model_input(model, "cpu")
    wanted = dict((k, name) for name, k in points)
    out: dict[str, tuple[dict, dict]] = {}
    with torch.inference_mode():
        for k in range(len(model.blocks) + 1):
            if k > 0:
                x = model.blocks[k - 1](x)
            if k not in wanted or k == len(model.blocks) or not isinstance(x, torch.Tensor):
                continue
            enc, dec = {}, {}
            if k == 0:
                if image is None:
                    continue
                for e in INPUT_ENCODINGS:
                    payload = encode_image(image, e)
                    enc[e] = median_time_s(lambda: encode_image(image, e), repeats)
                    dec[e] = median_time_s(lambda: decode_image(payload, e, shape), repeats)
            else:
                t, tshape = x[0], list(x.shape[1:])
                for e in TENSOR_ENCODINGS:
                    payload = encode_tensor(t, e)
                    enc[e] = median_time_s(lambda: encode_tensor(t, e), repeats)
                    dec[e] = median_time_s(lambda: decode_tensor(payload, e, tshape), repeats)
            out[wanted[k]] = (enc, dec)
    return out
