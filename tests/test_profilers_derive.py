"""Roofline derivation: calibration hits the published latency, the dispersion model, fallback and validation."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profilers.bundle import measure_host
from profilers.derive import (
    DERIVED_QUANTILES,
    SIGMA_CAP,
    _scaled,
    calibrate_eta,
    derive_device,
    host_efficiency,
    load_facts,
    robust_log_sigma,
    roofline_times,
    validate_against_measurement,
)
from profilers.errors import ProfileError
from profilers.schema import BlockRecord, LatencyStats

SMALL = (("resnet18", 64),)


@pytest.fixture(scope="module")
def hosts():
    """resnet18 at 64x64 measured at 2 and 1 threads, repeats 2."""
    return (measure_host("h2", "edge", 2, 2, 1, models=SMALL), measure_host("h1", "mobile", 1, 2, 1, models=SMALL))


def write_facts(path, calibration_model="resnet18", latency_s=0.25, bandwidth=4.0):
    facts = {"devices": {"toy-pi": {
        "kind": "mobile", "cpu_model": "ARM Cortex-A53", "cores": 4, "memory_gb": 1.0, "compute": "cpu",
        "peak_gflops": 19.2, "memory_bandwidth_gbs": bandwidth,
        "power": {"idle_w": 1.9, "active_w": 5.1, "source": "test figure",
                  "radio": {"tx_w": 1.0, "rx_w": 0.8, "idle_w": 0.1, "source": "test figure"}},
        "sources": {"peak_gflops": "test: 4 cores x 1.2 GHz x 4 FLOPs/cycle"},
        "calibration": {"model_id": calibration_model, "input_size": 64, "latency_s": latency_s, "source": "test"},
    }}}
    path.write_text(json.dumps(facts))
    return load_facts(path)


def test_calibrated_full_latency_equals_published(tmp_path, hosts):
    host, _ = hosts
    facts = write_facts(tmp_path / "facts.json")
    dev = derive_device(host, "toy-pi", facts["toy-pi"])
    mp = dev.model("resnet18")
    assert mp.split_point("output").head_latency.median_s == pytest.approx(0.25, rel=1e-6)
    assert mp.split_point("input").tail_latency.median_s == pytest.approx(0.25, rel=1e-6)
    assert dev.provenance.kind == "derived" and "bisection" in dev.provenance.sources["eta_c"]
    assert dev.provenance.calibration["eta_c"] == dev.provenance.calibration["eta_m"]
    for sp, host_sp in zip(mp.split_points, host.model("resnet18").split_points):
        assert sp.head_latency.median_s + sp.tail_latency.median_s == pytest.approx(0.25, rel=1e-6)
        if host_sp.head_latency.median_s > 0:  # the dispersion model: log-normal quantiles, sigma capped
            sigma = min(robust_log_sigma(host_sp.head_latency), SIGMA_CAP)
            ratios = [d / sp.head_latency.median_s for d in sp.head_latency.samples_s]
            assert len(ratios) == DERIVED_QUANTILES and max(ratios) <= math.exp(2.0 * sigma) + 1e-12
            assert min(ratios) >= math.exp(-2.0 * sigma) - 1e-12
        assert sp.head_energy_j == pytest.approx(5.1 * sp.head_latency.median_s)
    assert [sp.output_bytes for sp in mp.split_points] == [sp.output_bytes for sp in host.model("resnet18").split_points]


def test_no_host_outlier_becomes_a_derived_sample():
    """The derived-rpi4b case of issue 24: one host sample 179 times its median must not reach the device."""
    host = LatencyStats.from_samples([0.01] * 19 + [0.0105, 1.79])
    derived = _scaled(host, 0.0216)
    assert derived.median_s == pytest.approx(0.0216)
    assert max(derived.samples_s) < 0.0216 * math.exp(2 * SIGMA_CAP)
    assert sum(derived.samples_s) / len(derived.samples_s) < 0.0216 * 1.01
    assert _scaled(LatencyStats.constant(0.01), 0.02).samples_s == [0.02]  # no spread measured, none invented


def test_fallback_to_host_efficiency(tmp_path, hosts):
    host, _ = hosts
    facts = write_facts(tmp_path / "facts.json", calibration_model="densenet201")
    dev = derive_device(host, "toy-pi", facts["toy-pi"])
    assert "fallback" in dev.provenance.sources["eta_c"]
    assert dev.provenance.calibration["eta_c"] == pytest.approx(host_efficiency(host))


def test_closed_form_when_eta_m_equals_eta_c(hosts):
    blocks = hosts[0].model("resnet18").blocks
    unit = sum(roofline_times(blocks, 19.2, 4.0, 1.0, 1.0))  # total time scales as 1/eta
    assert calibrate_eta(blocks, 19.2, 4.0, 0.25) == pytest.approx(unit / 0.25, rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**6), st.integers(1, 10**7)), min_size=1,
                max_size=8),
       st.floats(0.01, 1.0), st.floats(0.05, 2.0))
def test_bisection_hits_target_with_separate_eta_m(spec, latency_s, eta_m):
    blocks = [BlockRecord(name=str(i), flops=f, params=p, input_bytes=a, output_bytes=a) for i, (f, p, a) in
              enumerate(spec)]
    peak, bw = 10.0, 2.0
    if sum(roofline_times(blocks, peak, bw, 10.0, eta_m)) > latency_s:
        return  # memory-bound floor above the target: not reachable
    if sum(roofline_times(blocks, peak, bw, 1e-6, eta_m)) < latency_s:
        return
    eta = calibrate_eta(blocks, peak, bw, latency_s, eta_m)
    assert sum(roofline_times(blocks, peak, bw, eta, eta_m)) == pytest.approx(latency_s, rel=1e-6)


def test_validation_against_one_thread_measurement(hosts):
    """Against a real 1-thread measurement: a finite error over every split point with a head (no timing bound)."""
    import math

    mdape, n = validate_against_measurement(*hosts)
    assert n == 5 and math.isfinite(mdape) and mdape >= 0


def test_validation_error_is_zero_against_its_own_derivation_and_grows_with_a_bias(hosts):
    from profilers.derive import DeviceFacts, derive_model

    h2, _ = hosts
    eta = host_efficiency(h2)
    facts = DeviceFacts(kind=h2.kind, cpu_model=h2.hardware.cpu_model, cores=1, memory_gb=h2.hardware.memory_gb,
                        peak_gflops=h2.hardware.peak_gflops * 0.5, memory_bandwidth_gbs=h2.hardware.memory_bandwidth_gbs,
                        power=h2.power)
    truth = h2.model_copy(update={"models": {m: derive_model(mp, facts, eta, eta) for m, mp in h2.models.items()}})
    mdape, n = validate_against_measurement(h2, truth)
    assert n == 5 and mdape == pytest.approx(0.0, abs=1e-9)
    slower = truth.model_copy(update={"models": {m: mp.model_copy(update={"split_points": [
        sp.model_copy(update={"head_latency": sp.head_latency.scaled(2.0)}) for sp in mp.split_points]})
        for m, mp in truth.models.items()}})
    mdape, _ = validate_against_measurement(h2, slower)
    assert mdape == pytest.approx(50.0, rel=1e-6)  # derived = truth / 2: |d - t| / t = 0.5


def test_bad_facts_file_one_line(tmp_path):
    path = tmp_path / "facts.json"
    path.write_text(json.dumps({"devices": {"x": {"kind": "phone"}}}))
    with pytest.raises(ProfileError) as info:
        load_facts(path)
    assert "\n" not in str(info.value) and "devices.x.kind" in str(info.value)


def test_host_efficiency_is_compute_ratio_without_bandwidth(hosts):
    host = hosts[0]
    host = host.model_copy(update={"hardware": host.hardware.model_copy(update={"memory_bandwidth_gbs": None})})
    blocks = host.model("resnet18").blocks
    expected = sum(b.flops for b in blocks) / (host.hardware.peak_gflops * 1e9 * sum(b.latency.median_s for b in blocks))
    assert host_efficiency(host) == pytest.approx(expected, rel=1e-6)


def test_several_anchors_use_the_geometric_mean_efficiency(tmp_path, hosts):
    import math

    host, _ = hosts
    path = tmp_path / "facts.json"
    write_facts(path)
    data = json.loads(path.read_text())
    data["devices"]["toy-pi"]["calibration"] = [
        {"model_id": "resnet18", "input_size": 64, "latency_s": 0.1, "source": "test a"},
        {"model_id": "resnet18", "input_size": 64, "latency_s": 0.4, "source": "test b"},
    ]
    path.write_text(json.dumps(data))
    dev = derive_device(host, "toy-pi", load_facts(path)["toy-pi"])
    blocks = host.model("resnet18").blocks
    eta_a = calibrate_eta(blocks, 19.2, 4.0, 0.1)
    eta_b = calibrate_eta(blocks, 19.2, 4.0, 0.4)
    assert dev.provenance.calibration["eta_c"] == pytest.approx(math.sqrt(eta_a * eta_b), rel=1e-6)
    assert "geometric mean of 2" in dev.provenance.sources["eta_c"]
    assert "anchor resnet18" in dev.provenance.validation


def facts_with_a_stack_device(path, calibration_model="resnet18"):
    """toy-pi (no stack: single-efficiency roofline) and the catalog's rpi3b+ (a stack: per-operator fit)."""
    from profilers.catalog import FACTS_PATH

    write_facts(path, calibration_model=calibration_model)
    data = json.loads(path.read_text())
    data["devices"]["rpi3b+"] = json.loads(FACTS_PATH.read_text())["devices"]["rpi3b+"]
    path.write_text(json.dumps(data))
    return load_facts(path)


def test_legacy_validation_joins_only_devices_without_a_stack(tmp_path, hosts):
    host, _ = hosts
    facts = facts_with_a_stack_device(tmp_path / "facts.json")
    legacy = {"host-1-thread (single-efficiency roofline)": "test figure"}
    plain = derive_device(host, "toy-pi", facts["toy-pi"], validation=legacy)
    assert plain.provenance.validation["host-1-thread (single-efficiency roofline)"] == "test figure"
    fitted = derive_device(host, "rpi3b+", facts["rpi3b+"], validation=legacy)
    assert not set(legacy) & set(fitted.provenance.validation)
    assert "leave-one-out" in fitted.provenance.validation and fitted.provenance.validated_errors


def test_bundle_labels_its_validation_and_gives_it_only_to_devices_without_a_stack(tmp_path, hosts, capsys):
    from profilers.bundle import HOST_1T_NAME, HOST_NAME, run
    from profilers.schema import save_profile

    facts_with_a_stack_device(tmp_path / "facts.json")
    save_profile(hosts[0], tmp_path / f"{HOST_NAME}.json")
    save_profile(hosts[1], tmp_path / f"{HOST_1T_NAME}.json")
    devices = {d.name: d for d in run(tmp_path, tmp_path / "facts.json", measure=False)}
    err = capsys.readouterr().err
    assert "validation of the single-efficiency roofline, used for devices without a stack:" in err
    keys = [k for k in devices["toy-pi"].provenance.validation if k.startswith("host-1-thread")]
    assert keys == ["host-1-thread (single-efficiency roofline, used for devices without a stack)"]
    assert not any(k.startswith("host-1-thread") for k in devices["rpi3b+"].provenance.validation)


def test_derive_profiles_reads_the_catalog_host_only_for_devices_without_a_stack(tmp_path, hosts):
    from profilers.profiling import CATALOG_HOST, derive_profiles
    from profilers.schema import load_profile, save_profile

    host, _ = hosts
    facts_with_a_stack_device(tmp_path / "facts.json")
    mine = host.model("resnet18").model_copy(update={"model_id": "mine"})
    measured = tmp_path / "mine.json"
    save_profile(host.model_copy(update={"name": "laptop", "models": {"mine": mine}}), measured)
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / f"{CATALOG_HOST}.json").write_text("{ not a profile")  # reading it would fail
    [(path, dev)] = derive_profiles(measured, ["rpi3b+"], tmp_path / "out", tmp_path / "facts.json", catalog)
    assert path == tmp_path / "out" / "rpi3b+.json" and dev == load_profile(path)
    assert set(dev.models) == {"mine"} and "catalog" not in dev.provenance.from_profile
    save_profile(host, catalog / f"{CATALOG_HOST}.json")
    [(path, dev)] = derive_profiles(measured, ["toy-pi"], tmp_path / "toy.json", tmp_path / "facts.json", catalog)
    assert dev == load_profile(path) and set(dev.models) == {"mine"}
    assert f"calibration models resnet18 from the catalog's {CATALOG_HOST}" in dev.provenance.from_profile
    assert "bisection" in dev.provenance.sources["eta_c"]  # calibrated on the borrowed anchor, not the fallback


def test_per_inference_constant_is_paid_by_each_part_and_the_fallback_states_its_own_error(hosts):
    """Per-operator derivation onto a catalog device: c0 once per process that runs a part; a model that cannot
    be traced into operators carries the dense-operator fallback's own leave-one-out error."""
    from profilers.catalog import FACTS_PATH
    from profilers.derive import derive_device_calibrated

    host, _ = hosts
    facts = load_facts(FACTS_PATH)["rpi4b"]
    traced = derive_device_calibrated(host, "rpi4b", facts)
    dense = derive_device_calibrated(host, "rpi4b", facts, ops_for=lambda mp: None)
    for dev in (traced, dense):
        mp = dev.model("resnet18")
        c0 = dev.provenance.calibration["c0_s"]
        assert mp.per_process_overhead_s == pytest.approx(c0) and c0 > 0
        blocks_s = sum(b.latency.median_s for b in mp.blocks)
        sps = {sp.name: sp for sp in mp.split_points}
        assert sps["output"].head_latency.median_s == pytest.approx(blocks_s + c0)
        assert sps["input"].tail_latency.median_s == pytest.approx(blocks_s + c0)
        assert sps["input"].head_latency.median_s == 0 == sps["output"].tail_latency.median_s
        layer2 = sps["layer2"]
        assert layer2.head_latency.median_s + layer2.tail_latency.median_s == pytest.approx(blocks_s + 2 * c0)
    assert traced.model("resnet18").derivation_errors == list(traced.provenance.validated_errors)
    fallback = dense.model("resnet18")
    assert "dense operator" in fallback.derivation_method and len(fallback.derivation_errors) >= 5
    assert fallback.derivation_errors != list(dense.provenance.validated_errors)
    assert "leave-one-out error of that fallback" in dense.provenance.validation["model resnet18"]
