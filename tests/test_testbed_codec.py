"""Encodings as the testbed sends them, their measured cost in a profile, and the simulator charging it."""

from __future__ import annotations

import pytest
import torch

from profilers.codec import (INPUT_ENCODINGS, TENSOR_ENCODINGS, decode_image, decode_tensor, encode_image,
                             encode_tensor, measure_codec_costs)
from profilers.measure import encoded_sizes, real_image
from profilers.models.registry import build
from profilers.schema import DeviceProfile
from simulator.devices import device_from_profile
from simulator.policies.base import make_route


def test_bytes_sent_are_the_profile_sizes_and_decode_back():
    x = torch.randn(1, 16, 7, 7)
    sizes = encoded_sizes(x)
    for enc in TENSOR_ENCODINGS:
        payload = encode_tensor(x[0], enc)
        assert len(payload) == sizes[enc]
        back = decode_tensor(payload, enc, [16, 7, 7])
        tol = {"float16": 1e-2, "int8": 0.05, "zlib_int8": 0.05}.get(enc, 0.0)
        assert back.shape == x.shape and float((back - x).abs().max()) <= tol * float(x.abs().max()) + 1e-7
    img, jpeg = real_image(32, 32)
    assert len(encode_image(img, "jpeg")) == len(jpeg) and len(encode_image(img, "raw_uint8")) == 3 * 32 * 32
    for enc in INPUT_ENCODINGS:
        assert decode_image(encode_image(img, enc), enc, (3, 32, 32)).shape == (1, 3, 32, 32)


def _device(kind: str, model) -> DeviceProfile:
    from profilers.measure import assumed_host_power, host_hardware, host_provenance

    hw = host_hardware()
    return DeviceProfile(name=f"d-{kind}", kind=kind, hardware=hw, power=assumed_host_power(hw.cores),
                         provenance=host_provenance(1), models={model.model_id: model})


def test_measured_costs_land_in_the_profile_and_the_simulator_charges_them():
    from profilers.measure import MeasureOptions, measure_model

    tiny = build("vgg-s2")
    mp = measure_model(tiny, MeasureOptions(repeats=2, warmup=0, threads=1))
    costs = measure_codec_costs(tiny, [(sp.name, sp.layer_index) for sp in mp.split_points], repeats=1)
    assert set(costs) == {"input", "pool1"}  # nothing is sent at the output
    assert set(costs["input"][0]) == set(INPUT_ENCODINGS) and set(costs["pool1"][1]) == set(TENSOR_ENCODINGS)
    enc, dec = 0.004, 0.007  # stated costs, so the check does not depend on this machine's speed
    pts = []
    for sp in mp.split_points:
        update = {"encode_s": {"int8": enc, "jpeg": enc}, "decode_s": {"int8": dec, "jpeg": dec}}
        pts.append(sp.model_copy(update=update if sp.name in costs else {}))
    mp = mp.model_copy(update={"split_points": pts})
    mobile, server = device_from_profile(_device("mobile", mp)), device_from_profile(_device("edge", mp))
    plain_head = mobile.head_time(mp, mp.split_point("pool1")).median_s
    plain_tail = server.tail_time(mp, mp.split_point("pool1")).median_s
    split = make_route("s", mp, "pool1", "int8", mobile, server)
    assert split.head.median_s == pytest.approx(plain_head + enc) and split.tail.median_s == pytest.approx(plain_tail + dec)
    offload = make_route("o", mp, "input", "jpeg", mobile, server)
    assert offload.head.distribution == "fixed" and offload.head.median_s == pytest.approx(enc)
    local = make_route("l", mp, "output", "float32", mobile, server)  # nothing sent: nothing encoded
    assert local.head.median_s == pytest.approx(mobile.head_time(mp, mp.split_point("output")).median_s)
    unmeasured = make_route("f", mp, "pool1", "float32", mobile, server)  # no cost measured: none charged
    assert unmeasured.head.median_s == pytest.approx(plain_head)
