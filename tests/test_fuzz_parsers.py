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
    from edgesim.studies.dmd.yolo import parse_label_file

    _each_file_parses_or_fails_in_one_line(parse_label_file, tmp_path / "img.txt", ("\n".join(lines).encode(), raw))
