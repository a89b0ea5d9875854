"""Fuzzing every parser (hypothesis): any input gives a parsed object or one EdgesimError line, never a traceback.

Counts: each test draws FUZZ_EXAMPLES inputs (EDGESIM_FUZZ_EXAMPLES overrides it for long runs).
"""

from __future__ import annotations

import json
import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profilers.errors import EdgesimError

FUZZ_EXAMPLES = int(os.environ.get("EDGESIM_FUZZ_EXAMPLES", "150"))
SETTINGS = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)

SCENARIO_KEYS = ["name", "model", "mobiles", "edge", "link", "queue", "workload", "policies", "sweep", "seed",
                 "replications", "engine", "outputs", "devices", "profiles"]


def _one_line(exc: EdgesimError) -> None:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text


def _each_file_parses_or_fails_in_one_line(parse, path, contents) -> None:
    """Write each content (str or bytes) to path and parse it: a result or one EdgesimError line, nothing else."""
    for content in contents:
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        try:
            parse(path)
        except EdgesimError as exc:
            _one_line(exc)


def _mutated_scenario(draw_value, key):
    base = {"name": "f", "model": "toy", "mobiles": [{"device": "rpi3b+"}], "edge": {"device": "laptop"},
            "policies": [{"name": "local"}]}
    base[key] = draw_value
    return base


@SETTINGS
@given(text=st.text(max_size=300))
def test_scenario_yaml_random_text(text):
    _scenario_or_one_line(text)


def _scenario_or_one_line(text: str) -> None:
    """Parse a scenario YAML text: a scenario or one EdgesimError line, nothing else."""
    from simulator.scenario import parse_scenario

    try:
        parse_scenario(text, "fuzz.yaml")
    except EdgesimError as exc:
        _one_line(exc)


@SETTINGS
@given(key=st.sampled_from(SCENARIO_KEYS), value=json_values)
def test_scenario_yaml_mutated_fields(key, value):
    from simulator.scenario import parse_scenario

    try:
        text = yaml.safe_dump(_mutated_scenario(value, key))
    except yaml.YAMLError:
        return
    try:
        parse_scenario(text, "fuzz.yaml")
    except EdgesimError as exc:
        _one_line(exc)


@SETTINGS
@given(value=json_values, text=st.text(max_size=200))
def test_profile_json(tmp_path, value, text):
    from profilers.schema import load_profile

    _each_file_parses_or_fails_in_one_line(load_profile, tmp_path / "p.json", (json.dumps(value), text))


rows = st.lists(st.tuples(st.one_of(st.floats(allow_nan=True), st.text(max_size=5)),
                          st.one_of(st.floats(allow_nan=True), st.text(max_size=5))), max_size=8)


@SETTINGS
@given(rows=rows, header=st.sampled_from(["time_s,data_rate_mbps", "t,rate", "", "time_s"]), raw=st.binary(max_size=60))
def test_link_trace_csv(tmp_path, rows, header, raw):
    from simulator.link import load_rate_trace

    table = header + "\n" + "".join(f"{a},{b}\n" for a, b in rows)
    _each_file_parses_or_fails_in_one_line(load_rate_trace, tmp_path / "trace.csv", (table, raw))


@SETTINGS
@given(value=json_values, records=st.lists(st.fixed_dictionaries({
    "image_path": st.one_of(st.text(max_size=8), st.integers()),
    "last_hidden_layer": st.one_of(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), max_size=4), st.text(max_size=3)),
    "label": st.one_of(st.integers(-1, 2), st.text(max_size=2))}), max_size=5))
def test_dmd_json(tmp_path, value, records):
    from edgesim.studies.dmd.records import read_dmd_json

    _each_file_parses_or_fails_in_one_line(read_dmd_json, tmp_path / "d.json", (json.dumps(value), json.dumps(records)))


@SETTINGS
@given(lines=st.lists(st.text(alphabet="0123456789.- abc\t", max_size=30), max_size=6), raw=st.binary(max_size=40))
def test_yolo_labels(tmp_path, lines, raw):
    from edgesim.studies.yolo import parse_label_file

    _each_file_parses_or_fails_in_one_line(parse_label_file, tmp_path / "img.txt", ("\n".join(lines).encode(), raw))


# ----------------------------------------------------------------------------- the shapes of issue 28's attack

EXTREMES = st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, -1e308, 5e-324, 0.0, 1e6, 1e6 + 1])
SCENARIO_NUMBERS = ["link.data_rate_mbps", "link.propagation_delay_s", "link.downlink_data_rate_mbps",
                    "workload.frame_rate_fps", "queue.deadline_s", "link.trace_offset_s", "link.loss_probability"]


def _yaml_node(draw, depth: int, anchors: list[str]) -> str:
    """A flow-style YAML value: scalars (extremes included), lists, mappings with possibly repeated keys, anchors
    and aliases to earlier anchors (so alias bombs and duplicate keys are in reach)."""
    kind = draw(st.sampled_from(["scalar", "alias", "list", "map"] if depth < 6 else ["scalar", "alias"]))
    if kind == "alias" and anchors:
        return f"*{draw(st.sampled_from(anchors))}"
    if kind in ("scalar", "alias"):
        return draw(st.sampled_from([".inf", "-.inf", ".nan", "1e308", "0", "-1", "3", "x", "''", "null", "true",
                                     "[]", "{}", "rpi3b+", "1e-400"]))
    items = [_yaml_node(draw, depth + 1, anchors) for _ in range(draw(st.integers(0, 9)))]
    if kind == "list":
        text = f"[{', '.join(items)}]"
    else:
        keys = draw(st.lists(st.sampled_from(["a", "b", "name", "seed", "<<", "grid", "cases"]),
                             min_size=len(items), max_size=len(items)))
        text = "{" + ", ".join(f"{k}: {v}" for k, v in zip(keys, items)) + "}"
    if draw(st.booleans()):
        anchors.append(f"a{len(anchors)}")
        return f"&{anchors[-1]} {text}"
    return text


@st.composite
def yaml_documents(draw):
    anchors: list[str] = []
    body = {key: _yaml_node(draw, 0, anchors) for key in draw(st.lists(st.sampled_from(SCENARIO_KEYS), max_size=5))}
    base = "name: f\nmodel: toy\nmobiles: [{device: rpi3b+}]\nedge: {device: laptop}\npolicies: [{name: local}]\n"
    return base + "".join(f"{k}: {v}\n" for k, v in body.items())


@SETTINGS
@given(text=yaml_documents())
def test_scenario_yaml_structure_anchors_aliases_duplicates(text):
    """Any structure (anchors, aliases, repeated keys, extreme numbers): a scenario or one line, within the limits."""
    _scenario_or_one_line(text)


@SETTINGS
@given(field=st.sampled_from(SCENARIO_NUMBERS), value=EXTREMES, text=st.booleans())
def test_no_infinite_or_absurd_number_is_accepted(field, value, text):
    """inf, nan and 1e308 never pass: a number a scenario accepts is finite and within its field's bound."""
    import math

    from simulator.scenario import MAX_RATE_MBPS, MAX_TIME_S, Scenario, ScenarioError, apply_overrides

    sc = Scenario.model_validate({"name": "f", "model": "toy", "mobiles": [{"device": "a"}], "edge": {"device": "b"},
                                  "policies": [{"name": "local"}]})
    raw = repr(value).replace("inf", ".inf").replace("nan", ".nan") if text else value
    try:
        out = apply_overrides(sc, {field: raw if not text else yaml.safe_load(str(raw))})
    except ScenarioError as exc:
        _one_line(exc)
        return
    section, name = field.split(".")
    got = getattr(getattr(out, section), name)
    assert math.isfinite(got) and abs(got) <= max(MAX_RATE_MBPS, MAX_TIME_S)


labels = st.one_of(st.integers(-3, 5), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3),
                   st.none(), st.booleans())


@SETTINGS
@given(label=st.lists(labels, min_size=1, max_size=6), pred=st.lists(labels, min_size=1, max_size=6),
       prob=st.lists(st.one_of(EXTREMES, st.floats(0, 1)), min_size=1, max_size=6), csv=st.booleans())
def test_dataset_labels_and_scores(tmp_path, label, pred, prob, csv):
    """A dataset trace loads with whole-number or named classes of one kind and probabilities in [0, 1], or is one line."""
    import numpy as np
    import pandas as pd

    from simulator.workload import load_dataset

    n = min(len(label), len(pred), len(prob))
    df = pd.DataFrame({"label": pd.Series(label[:n], dtype=object), "edge_pred": pd.Series(pred[:n], dtype=object),
                       "edge_max_prob": prob[:n]})
    path = tmp_path / ("d.csv" if csv else "d.parquet")
    try:
        df.to_csv(path, index=False) if csv else df.astype({"label": str, "edge_pred": str}).to_parquet(path)
    except Exception:  # pyarrow cannot store every mixture; those files are not what this test is about
        return
    try:
        out = load_dataset(str(path), None)
    except EdgesimError as exc:
        _one_line(exc)
        return
    probs = out["edge_max_prob"].to_numpy(float)
    assert np.all(np.isfinite(probs)) and np.all((probs >= 0) & (probs <= 1))
    assert out["label"].notna().all() and out["edge_pred"].notna().all()


@SETTINGS
@given(times=st.lists(st.one_of(EXTREMES, st.floats(-1, 100), st.text(max_size=3)), max_size=8), raw=st.binary(max_size=40))
def test_capture_traces(tmp_path, times, raw):
    """A capture trace gives strictly increasing finite times >= 0 (two or more) or one line naming the file."""
    from types import SimpleNamespace

    import numpy as np

    from simulator.workload import trace_captures

    path = tmp_path / "captures.csv"
    for content in ("capture_time_s\n" + "".join(f"{t}\n" for t in times)).encode(), raw:
        path.write_bytes(content)
        scenario = SimpleNamespace(workload=SimpleNamespace(trace=str(path), dataset=None))
        try:
            col = trace_captures(scenario, None)
        except EdgesimError as exc:
            _one_line(exc)
            assert str(path) in str(exc)
            continue
        assert col.size >= 2 and np.all(np.isfinite(col)) and col[0] >= 0 and np.all(np.diff(col) > 0)
