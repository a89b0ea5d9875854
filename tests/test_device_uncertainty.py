"""`uncertainty: device` draws each derived device's speed from its method's validated errors, and a model derived by
another method (the dense-operator fallback) from that method's own errors, or leaves it as it is where it has none."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from simulator.assemble import assemble, with_device_errors
from simulator.scenario import Scenario

MODEL = "densenet201"


def _point():
    return assemble(Scenario.model_validate({
        "name": "u", "model": MODEL, "mobiles": [{"device": "rpi3b+"}], "edge": {"device": "laptop"},
        "link": {"data_rate_mbps": 10}, "workload": {"frames": 2}, "policies": [{"name": "local"}],
        "uncertainty": "device"}))


def _with_model_errors(pt, device, method, errors):
    dev = pt.devices[device]
    mp = dev.profile.models[MODEL].model_copy(update={"derivation_method": method, "derivation_errors": errors})
    prof = dev.profile.model_copy(update={"models": {**dev.profile.models, MODEL: mp}})
    return replace(pt, devices={**pt.devices, device: replace(dev, profile=prof)})


def test_catalog_devices_draw_from_their_methods_errors():
    pt = _point()
    errors = pt.devices["rpi3b+"].profile.provenance.validated_errors
    assert errors, "rpi3b+ is derived with validated errors in the catalog"
    draws = {with_device_errors(pt, 7, rep).devices["rpi3b+"].speed_of(MODEL) for rep in range(20)}
    assert all(min(abs(d - 1.0 - e) for e in errors) < 1e-12 for d in draws)
    assert len(draws) > 1


@pytest.mark.parametrize("own", [[0.5], [-0.3, 0.6]])
def test_a_fallback_model_draws_its_own_methods_error(own):
    pt = _point()
    fallback = _with_model_errors(pt, "rpi3b+", "derived per block as one dense operator", own)
    model = pt.devices["rpi3b+"].profile.models[MODEL]
    sp = model.split_points[-1]
    seen = set()
    for rep in range(12):
        plain = with_device_errors(pt, 3, rep).devices["rpi3b+"]
        drawn = with_device_errors(fallback, 3, rep).devices["rpi3b+"]
        factor = drawn.speed_of(MODEL)
        assert min(abs(factor - 1.0 - e) for e in own) < 1e-12, factor
        seen.add(round(factor, 9))
        # the device's own draw (for its other models) is the one it had without the fallback model
        assert drawn.speed_factor == plain.speed_factor
        base = pt.devices["rpi3b+"].head_time(model, sp).median_s
        assert drawn.head_time(model, sp).median_s == pytest.approx(base / factor, rel=1e-12)
    assert len(seen) == len(own)


def test_a_fallback_model_without_validated_errors_stays_as_it_is():
    pt = _point()
    fallback = _with_model_errors(pt, "rpi3b+", "derived per block as one dense operator", [])
    model = pt.devices["rpi3b+"].profile.models[MODEL]
    sp = model.split_points[-1]
    for rep in range(4):
        drawn = with_device_errors(fallback, 3, rep).devices["rpi3b+"]
        assert drawn.speed_factor != 1.0
        assert drawn.speed_of(MODEL) == pytest.approx(1.0, rel=1e-12)
        assert drawn.head_time(model, sp).median_s == pytest.approx(
            pt.devices["rpi3b+"].head_time(model, sp).median_s, rel=1e-12)
    assert np.isfinite(drawn.speed_factor)
