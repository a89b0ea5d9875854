"""Profile format: round trip, one-line errors on bad files, merge keeps other models, catalog look-up."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from profilers.catalog import list_devices, load_device
from profilers.errors import EdgesimError, ProfileError
from profilers.schema import (
    BlockRecord,
    DeviceProfile,
    HardwareFacts,
    LatencyStats,
    MeasuredProvenance,
    ModelProfile,
    PowerModel,
    SplitPoint,
    dump_profile,
    load_profile,
    merge_model,
    profile_json_schema,
    save_profile,
)


def make_model(model_id: str = "toy", head_s: float = 0.01) -> ModelProfile:
    """A two-block model profile built by hand."""
    return ModelProfile(
        model_id=model_id,
        input_shape=[3, 4, 4],
        input_numel=48,
        input_bytes={"raw_uint8": 48, "float32": 192, "jpeg": 120},
        total_flops=1000,
        total_params=10,
        split_points=[
            SplitPoint(name="input", layer_index=0, output_shape=[3, 4, 4], output_numel=48,
                       output_bytes={"float32": 192}, head_flops=0, head_params=0,
                       head_latency=LatencyStats.constant(0.0), tail_latency=LatencyStats.from_samples([0.02, 0.03])),
            SplitPoint(name="output", layer_index=2, output_shape=[10], output_numel=10,
                       output_bytes={"float32": 40, "zlib_float32": 38}, head_flops=1000, head_params=10,
                       head_latency=LatencyStats.from_samples([head_s, 2 * head_s]), tail_latency=LatencyStats.constant(0)),
        ],
        blocks=[BlockRecord(name="a", flops=600, params=4, input_bytes=192, output_bytes=64),
                BlockRecord(name="b", flops=400, params=6, input_bytes=64, output_bytes=40)],
    )


def make_device(name: str = "dev", models: dict | None = None) -> DeviceProfile:
    return DeviceProfile(
        name=name,
        kind="mobile",
        hardware=HardwareFacts(cpu_model="toy cpu", cores=4, memory_gb=1.0, peak_gflops=10.0),
        power=PowerModel(idle_w=1.0, active_w=3.0, source="test"),
        provenance=MeasuredProvenance(host_fingerprint="h", date=datetime(2024, 1, 1, tzinfo=timezone.utc),
                                      torch_version="t", python_version="p", platform="x", threads=2),
        models=models or {},
    )


def test_round_trip_is_equal(tmp_path):
    dev = make_device(models={"toy": make_model()})
    path = save_profile(dev, tmp_path / "dev.json")
    assert load_profile(path) == dev
    assert dump_profile(load_profile(path)) == path.read_text()


def test_latency_stats_percentiles():
    stats = LatencyStats.from_samples([float(i) for i in range(101)])
    assert (stats.median_s, stats.p5_s, stats.p95_s) == (50.0, 5.0, 95.0)


@pytest.mark.parametrize("mutate, expect", [
    (lambda text: text[: len(text) // 2], "not valid JSON"),
    (lambda text: "{not json", "not valid JSON"),
    (lambda text: text.replace('"kind": "mobile"', '"kind": "phone"'), "field 'kind'"),
    (lambda text: text.replace('"output_numel": 10', '"output_numel": 11'), "output_numel"),
    (lambda text: text.replace('"cores": 4', '"cores": 4, "colour": 1'), "colour"),
])
def test_bad_files_give_one_line(tmp_path, mutate, expect):
    path = save_profile(make_device(models={"toy": make_model()}), tmp_path / "dev.json")
    path.write_text(mutate(path.read_text()))
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and expect in message


def test_missing_file(tmp_path):
    with pytest.raises(ProfileError, match="not found"):
        load_profile(tmp_path / "nope.json")


def test_merge_keeps_other_models(tmp_path):
    path = tmp_path / "dev.json"
    merge_model(path, make_device(), make_model("a"))
    merge_model(path, make_device(), make_model("b"))
    merged = merge_model(path, make_device(), make_model("a", head_s=0.5))
    assert set(load_profile(path).models) == {"a", "b"} == set(merged.models)
    assert load_profile(path).model("a").split_point("output").head_latency.median_s == pytest.approx(0.75)


def test_unknown_model_and_split_point_list_known():
    dev = make_device(models={"toy": make_model()})
    with pytest.raises(ProfileError, match="profiled: toy"):
        dev.model("other")
    with pytest.raises(ProfileError, match="known: input, output"):
        dev.model("toy").split_point("middle")


def test_json_schema_names_the_fields():
    schema = profile_json_schema()
    assert "models" in schema["properties"] and "SplitPoint" in json.dumps(schema)


def test_catalog_by_name_and_path(tmp_path):
    save_profile(make_device("rpi"), tmp_path / "rpi.json")
    save_profile(make_device("laptop"), tmp_path / "laptop.json")
    assert list_devices(tmp_path) == ["laptop", "rpi"]
    assert load_device("rpi", tmp_path).name == "rpi"
    assert load_device(str(tmp_path / "laptop.json")).name == "laptop"
    with pytest.raises(EdgesimError) as info:
        load_device("jetson", tmp_path)
    assert str(info.value) == "unknown device 'jetson'; known: laptop, rpi"


def test_statistics_that_contradict_their_samples_are_refused_on_load(tmp_path):
    """A hand-edited median of 50 s over samples near 0.04 s is an error naming the field, not 5e6 ms later."""
    import json

    from profilers.errors import ProfileError
    from profilers.schema import load_profile, save_profile
    from tests.sim_helpers import toy_device

    path = tmp_path / "d.json"
    save_profile(toy_device("d"), path)
    data = json.loads(path.read_text())
    data["models"]["toy"]["split_points"][1]["head_latency"]["median_s"] = 50
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=r"median_s = 50 s contradicts samples_s \(whose median is 0\.02 s\)"):
        load_profile(path)
    data["models"]["toy"]["split_points"][1]["head_latency"] = {"samples_s": [], "median_s": 0, "p5_s": 0, "p95_s": 0}
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="samples_s"):
        load_profile(path)
