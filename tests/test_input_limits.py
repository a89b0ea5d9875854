"""Inputs that ran away or were silently accepted (issue 28): each is now one line naming file, field and line."""

from __future__ import annotations

import re

import pytest
import yaml

from simulator.safe_yaml import MAX_YAML_BYTES, MAX_YAML_DEPTH
from simulator.scenario import MAX_SWEEP_POINTS, ScenarioError, load_scenario, parse_value
from tests.sim_helpers import scenario_dict, write_scenario


def _error(path) -> str:
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    text = str(err.value)
    assert "\n" not in text
    return text


def _line_of(path, needle: str) -> int:
    return next(i for i, t in enumerate(path.read_text().splitlines(), start=1) if needle in t)


@pytest.mark.parametrize("section,field,value,words", [
    ("link", "data_rate_mbps", float("inf"), "finite number"),
    ("link", "propagation_delay_s", float("inf"), "finite number"),
    ("link", "propagation_delay_s", 1e308, "less than or equal to 1000000"),
    ("link", "data_rate_mbps", float("nan"), "finite number"),
    ("workload", "frame_rate_fps", float("inf"), "finite number"),
    ("queue", "deadline_s", 1e300, "less than or equal to 1000000"),
])
def test_infinite_and_absurd_numbers_are_refused_with_their_line(tmp_path, section, field, value, words):
    data = scenario_dict(["a.json"])
    data.setdefault(section, {})[field] = value
    path = write_scenario(tmp_path, data)
    msg = _error(path)
    assert msg.startswith(f"{path}:") and f"field '{section}.{field}'" in msg and words in msg


def test_duplicate_keys_name_both_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    text = yaml.safe_dump(scenario_dict(["a.json"]), sort_keys=False)
    path.write_text(text.replace("link:\n", "link:\n  data_rate_mbps: 99\n", 1))
    first, second = _line_of(path, "data_rate_mbps: 99"), _line_of(path, "data_rate_mbps: 1.0")
    assert _error(path) == (f"{path}:{second}: field 'link.data_rate_mbps': given twice, at lines {first} and "
                            f"{second}; keep one")


def test_merge_keys_are_not_duplicates(tmp_path):
    data = scenario_dict(["a.json"])
    text = yaml.safe_dump(data, sort_keys=False).replace("link:\n", "base: &b {frames: 10}\nlink:\n", 1)
    path = tmp_path / "merge.yaml"
    path.write_text(text)
    assert "field 'base': unknown field" in _error(path)  # got past the YAML checks to the fields


def test_deep_nesting_is_refused_without_recursion(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("name: x\ndescription: " + "[" * 20_000 + "]" * 20_000 + "\n")
    assert _error(path) == f"{path}:2: nested more than {MAX_YAML_DEPTH} levels deep (the limit for a scenario)"


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    path = tmp_path / "bomb.yaml"
    levels = "".join(f"  - &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))
    path.write_text("name: x\nsweep:\n  cases:\n  - &a0 [1]\n" + levels)
    msg = _error(path)
    assert "expands to more than" in msg and "field 'sweep.cases." in msg


def test_a_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("name: x\ndevices: &d [*d]\n")
    assert "refers to a node that contains it" in _error(path) or "not valid YAML" in _error(path)


def test_a_huge_file_is_refused_unread(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("description: '" + "x" * MAX_YAML_BYTES + "'\n")
    assert _error(path).startswith(f"{path}: {MAX_YAML_BYTES + 16:,} bytes; a scenario is at most")


def test_sweep_ranges_need_finite_bounded_counts(tmp_path):
    for spec, words in (([1, 2, float("inf")], "finite numbers"), ([1, 2, 2.5], "n a positive integer"),
                        ([1, 2, MAX_SWEEP_POINTS + 1], f"at most {MAX_SWEEP_POINTS:,}")):
        path = write_scenario(tmp_path, scenario_dict(["a.json"], sweep={"grid": {"link.data_rate_mbps": {"linear": spec}}}))
        msg = _error(path)
        assert "field 'sweep.grid'" in msg and words in msg, msg


def test_sweep_size_is_counted_without_expanding(tmp_path):
    grid = {"link.data_rate_mbps": {"log": [1, 100, 1000]}, "link.propagation_delay_s": {"linear": [0, 1, 1000]}}
    path = write_scenario(tmp_path, scenario_dict(["a.json"], sweep={"grid": grid}))
    assert f"1,000,000 sweep points (grid x cases); at most {MAX_SWEEP_POINTS:,}" in _error(path)


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/abs", "a/b", "..", ".hidden", "a\\b", ""])
def test_a_scenario_name_stays_a_name(tmp_path, name):
    path = write_scenario(tmp_path, scenario_dict(["a.json"], name=name))
    assert "field 'name'" in _error(path) and "is not a scenario name" in _error(path)


def test_warmup_beyond_the_frames_is_refused(tmp_path):
    data = scenario_dict(["a.json"])
    data["workload"].update(frames=50, warmup_frames=50)
    assert "warmup_frames (50) must be below frames (50)" in _error(write_scenario(tmp_path, data))


def test_set_values_obey_the_same_limits():
    assert parse_value("[1, 2]") == [1, 2] and parse_value("rpi3b+") == "rpi3b+" and parse_value("a: [") == "a: ["
    with pytest.raises(ScenarioError, match="nested more than"):
        parse_value("[" * 100 + "]" * 100)


def test_profiles_hold_finite_latencies_below_the_bound(tmp_path):
    from profilers.errors import ProfileError
    from profilers.schema import MAX_LATENCY_S, load_profile
    from tests.sim_helpers import write_toy_profiles

    path = write_toy_profiles(tmp_path)[0]
    text = open(path).read()
    for bad, words in (("Infinity", "finite number"), ("1e300", f"less than or equal to {MAX_LATENCY_S:g}")):
        lat = '"samples_s": [\n'
        with open(path, "w") as f:
            f.write(text.replace(lat, lat + f"{bad},", 1))
        with pytest.raises(ProfileError) as err:
            load_profile(path)
        assert "head_latency.samples_s.0'" in str(err.value) and words in str(err.value), str(err.value)


@pytest.mark.parametrize("change,field,words", [
    (lambda d: d["policies"][2].update(split_point="mid9"), "policies.2.split_point",
     "model 'toy' has no split point 'mid9'; known: input, mid, output"),
    (lambda d: d["mobiles"][0].update(device="nosuchdevice"), "mobiles.0.device", "unknown device 'nosuchdevice'"),
    (lambda d: d["edge"].update(device="nosuchdevice"), "edge.device", "unknown device 'nosuchdevice'"),
    (lambda d: d.update(model="nosuchnet"), "model", "no profile of model 'nosuchnet'"),
    (lambda d: d.update(sweep={"grid": {"mobiles.0.device": ["toy-mobile", "ghost"]}}), "sweep.grid.mobiles.0.device",
     "unknown device 'ghost'"),
    (lambda d: d.update(sweep={"cases": [{"edge.device": "ghost"}]}), "sweep.cases.0.edge.device",
     "unknown device 'ghost'"),
])
def test_unknown_names_say_where(tmp_path, change, field, words):
    """These were one line without file, field or line (found only while assembling the first point)."""
    from tests.sim_helpers import write_toy_profiles

    data = scenario_dict(write_toy_profiles(tmp_path))
    change(data)
    path = write_scenario(tmp_path, data)
    msg = _error(path)
    assert re.match(rf"{re.escape(str(path))}:\d+: field '{re.escape(field)}': {re.escape(words)}", msg), msg


def test_an_infinite_rate_writes_nothing(tmp_path, capsys):
    """`run` used to write a results folder whose scenario.yaml held null, then exit 2 blaming its own output."""
    from edgesim.cli.app import main
    from tests.sim_helpers import write_toy_profiles

    data = scenario_dict(write_toy_profiles(tmp_path))
    data["link"]["data_rate_mbps"] = float("inf")
    path = write_scenario(tmp_path, data)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"edgesim: error: {path}:") and "field 'link.data_rate_mbps': Input should be a finite" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


@pytest.mark.parametrize("labels,positive,words", [
    ([0, 1, 1, 0], 7, "7 never occurs in the dataset's 'label' column (0, 1)"),
    ([0, 1, 1, 0], "1", "'1' is a class name but the dataset's labels are class indices (0, 1); write it unquoted: "
                        "positive_label: 1"),
    ([0, 1, 1, 0], "dog", "'dog' is a class name but the dataset's labels are class indices (0, 1)"),
    (["cat", "dog", "dog", "cat"], 1, "1 is a class index but the dataset's labels are class names ('cat', 'dog')"),
    (["cat", "dog", "dog", "cat"], "cow", "'cow' never occurs in the dataset's 'label' column ('cat', 'dog')"),
])
def test_positive_label_must_be_one_of_the_dataset_labels(tmp_path, capsys, labels, positive, words):
    """A positive_label that never occurs (or of the other kind) made every F1 0 without a word; now one line naming
    the field and the dataset, exit 2, before the first frame (nothing written)."""
    import pandas as pd

    from edgesim.cli.app import main
    from tests.sim_helpers import write_toy_profiles

    trace = tmp_path / "trace.parquet"
    pd.DataFrame({"label": labels, "edge_pred": labels, "cloud_pred": labels}).to_parquet(trace)
    data = scenario_dict(write_toy_profiles(tmp_path), workload={"frames": 4, "dataset": str(trace),
                                                                 "positive_label": positive},
                         policies=[{"name": "edge-only", "edge_model": "toy", "cloud_model": "toy"}])
    path = write_scenario(tmp_path, data)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"edgesim: error: {trace}: field 'workload.positive_label': {words}"
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    data["workload"]["positive_label"] = labels[1]  # one that occurs runs, and F1 is taken for it
    path = write_scenario(tmp_path, data)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    assert str(pd.read_csv(tmp_path / "out" / "summary.csv")["f1_positive"].iloc[0]) == str(labels[1])


def test_positive_label_needs_a_dataset_with_labels(tmp_path):
    import pandas as pd

    from profilers.errors import EdgesimError
    from simulator.workload import load_dataset

    with pytest.raises(EdgesimError, match=r"^field 'workload.positive_label': 1 is set but there is no "
                                           r"workload.dataset"):
        load_dataset(None, None, 1)
    trace = tmp_path / "trace.parquet"
    pd.DataFrame({"edge_pred": [0, 1]}).to_parquet(trace)
    with pytest.raises(EdgesimError, match=rf"^{re.escape(str(trace))}: field 'workload.positive_label': 1 is set "
                                           r"but the dataset trace has no 'label' column"):
        load_dataset(str(trace), None, 1)
    assert load_dataset(str(trace), None) is not None  # without positive_label, no label column is needed
