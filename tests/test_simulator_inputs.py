"""What the simulator answers to what users write: parse-time errors, the Python API, F1, load, radios."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score as sk_f1

from edgesim.cli.app import main
from profilers.errors import EdgesimError
from profilers.schema import load_profile, save_profile
from simulator import run
from simulator.metrics import f1_score, positive_class
from simulator.scenario import Scenario, ScenarioError, load_scenario
from tests.sim_helpers import scenario_dict, write_scenario, write_toy_profiles


@pytest.fixture()
def profiles(tmp_path):
    return write_toy_profiles(tmp_path)


def _yaml_error(tmp_path, data) -> str:
    path = write_scenario(tmp_path, data)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    return str(err.value)


def test_split_without_split_point_is_a_parse_error_with_file_and_line(tmp_path, profiles, capsys):
    data = scenario_dict(profiles, policies=[{"name": "local"}, {"name": "split", "encoding": "int8"}])
    path = write_scenario(tmp_path, data)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), start=1) if "name: split" in text)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"edgesim: error: {path}:{line}: field 'policies.1.split_point': Field required"
    assert not out.exists() and not (tmp_path / "out.partial").exists()  # before any simulation


@pytest.mark.parametrize("policy,field,words", [
    ({"name": "locale"}, "policies.0", "unknown policy 'locale'; known: local, offload"),
    ({"name": "local", "split_point": "mid"}, "policies.0.split_point", "unknown field"),
    ({"name": "random", "edge_model": "a", "cloud_model": "b", "threshold": 0.5}, "policies.0.threshold", "unknown field"),
    ({"name": "uncertainty", "edge_model": "a", "cloud_model": "b"}, "policies.0",
     "needs exactly one of 'offload_fraction' or 'threshold'"),
    ({"name": "offload", "switcher_s": 0.1}, "policies.0.switcher_s", "unknown field"),
])
def test_each_policy_has_its_own_fields(tmp_path, profiles, policy, field, words):
    msg = _yaml_error(tmp_path, scenario_dict(profiles, policies=[policy]))
    assert f"field '{field}'" in msg and words in msg and "scenario.yaml:" in msg


def test_a_top_level_typo_names_both_keys(tmp_path, profiles):
    data = scenario_dict(profiles)
    data["polices"] = data.pop("policies")
    msg = _yaml_error(tmp_path, data)
    assert "field 'polices': unknown field (did you mean 'policies'?)" in msg


def test_python_api_takes_dicts_paths_and_validates_assignment(tmp_path, profiles):
    data = scenario_dict(profiles, workload={"frames": 20, "frame_rate_fps": 1.0})
    _, from_dict = run(data)
    _, from_path = run(write_scenario(tmp_path, data))
    pd.testing.assert_frame_equal(from_dict, from_path)
    sc = Scenario.model_validate(data)
    with pytest.raises(ValueError, match="greater than 0"):
        sc.link.data_rate_mbps = -5
    with pytest.raises(ScenarioError, match="a scenario is a Scenario, a dict or a YAML path"):
        run(42)


def test_f1_rule_is_the_same_whatever_the_labels():
    y = np.array([1, 2, 2, 1, 2, 2, 1, 1, 2, 2])
    p = np.array([1, 2, 1, 1, 2, 2, 2, 1, 2, 1])
    assert positive_class(y) == 2
    assert f1_score(y, p, positive_class(y)) == pytest.approx(sk_f1(y, p, pos_label=2))
    assert f1_score(y + 2, p + 2, positive_class(y + 2)) == pytest.approx(sk_f1(y, p, pos_label=2))
    assert f1_score(np.where(y == 1, 3, 7), np.where(p == 1, 3, 7), 7) == pytest.approx(sk_f1(y, p, pos_label=2))
    three = np.array([0, 1, 2, 2, 1, 0])
    assert positive_class(three) is None
    assert f1_score(three, three[::-1], None) == pytest.approx(sk_f1(three, three[::-1], average="macro"))


@pytest.mark.parametrize("labels", [(0, 1), (1, 2), (3, 7)])
def test_simulator_f1_takes_the_positive_class_from_the_dataset(tmp_path, profiles, labels):
    rng = np.random.default_rng(3)
    n = 120
    y = rng.integers(0, 2, n)
    edge = np.where(rng.random(n) < 0.7, y, 1 - y)
    lo, hi = labels
    trace = pd.DataFrame({"label": np.where(y == 1, hi, lo), "edge_pred": np.where(edge == 1, hi, lo),
                          "cloud_pred": np.where(y == 1, hi, lo)})
    path = tmp_path / "trace.parquet"
    trace.to_parquet(path)
    for p in profiles:
        prof = load_profile(p)
        prof.models["toy-cloud"] = prof.models["toy"].model_copy(update={"model_id": "toy-cloud"})
        save_profile(prof, p)
    data = scenario_dict(profiles, workload={"frames": n, "frame_rate_fps": 0.5, "dataset": str(path)},
                         policies=[{"name": "edge-only", "edge_model": "toy", "cloud_model": "toy-cloud"}])
    _, summary = run(data)
    assert summary.loc[0, "f1"] == pytest.approx(sk_f1(y, edge))  # the larger label is positive, as 1 of {0, 1}
    assert summary.loc[0, "f1_positive"] == str(hi)


def test_offered_load_is_arrival_rate_times_service_demand(profiles):
    # toy-mobile runs the whole toy model in 0.2 s (median); 3 cameras at 4.5 fps each: rho = 0.9 per camera
    stable = scenario_dict(profiles, mobiles=[{"device": "toy-mobile", "count": 3}], policies=[{"name": "local"}],
                           workload={"source": "periodic", "frame_rate_fps": 4.5, "frames": 300, "service_time": "median"})
    _, s = run(stable)
    assert s.loc[0, "utilisation_mobile"] == pytest.approx(0.9, rel=1e-9)
    assert s.loc[0, "utilisation_uplink"] == 0 and s.loc[0, "utilisation_server"] == 0 and bool(s.loc[0, "stable"])
    # offload everything to 1 server: server rho = 3 x 4.5 fps x 0.025 s; uplink rho = 4.5 fps x transfer time
    _, s = run({**stable, "policies": [{"name": "offload"}]})
    assert s.loc[0, "utilisation_server"] == pytest.approx(3 * 4.5 * 0.025, rel=1e-9)
    assert s.loc[0, "utilisation_uplink"] == pytest.approx(4.5 * (192 + 40) * 8 / 1e6, rel=1e-9)
    over = {**stable, "workload": {**stable["workload"], "frame_rate_fps": 6.0}}
    _, s = run(over)
    assert s.loc[0, "utilisation_mobile"] == pytest.approx(1.2, rel=1e-9) and not bool(s.loc[0, "stable"])


def test_a_mobile_without_radio_gets_the_catalog_wifi_model_with_a_note(tmp_path, profiles):
    prof = load_profile(profiles[0])
    save_profile(prof.model_copy(update={"kind": "edge", "power": prof.power.model_copy(update={"radio": None})}),
                 profiles[0])
    data = scenario_dict(profiles, policies=[{"name": "offload"}], workload={"frames": 20, "frame_rate_fps": 1.0})
    from simulator.runner import run_point

    res = run_point(Scenario.model_validate(data), 0, {})
    assert res.summary.loc[0, "energy_mobile_radio_j_per_frame"] > 0
    assert any("no radio model" in n and "Wi-Fi" in n for n in res.notes)
    assert any("of kind 'edge' and is used as a mobile device" in n for n in res.notes)


def test_a_model_missing_on_a_derived_device_says_how_to_derive_it(profiles):
    data = scenario_dict(profiles, mobiles=[{"device": "rpi3b+"}], policies=[{"name": "local"}])  # no toy on rpi3b+
    with pytest.raises(EdgesimError, match="edgesim derive") as err:
        run(data)
    assert "run `edgesim profile" not in str(err.value)


def test_the_radio_note_reaches_the_console_and_the_manifest(tmp_path, profiles, capsys):
    import json

    prof = load_profile(profiles[0])
    save_profile(prof.model_copy(update={"power": prof.power.model_copy(update={"radio": None})}), profiles[0])
    data = scenario_dict(profiles, policies=[{"name": "offload"}], workload={"frames": 5, "frame_rate_fps": 1.0},
                         outputs={"plots": False})
    out = tmp_path / "res"
    assert main(["run", str(write_scenario(tmp_path, data)), "--out", str(out)]) == 0
    assert "edgesim: note: mobile device 'toy-mobile' has no radio model" in capsys.readouterr().err
    assert any("no radio model" in n for n in json.loads((out / "manifest.json").read_text())["notes"])
    with pytest.warns(UserWarning, match="no radio model"):
        run(data)


def test_relative_paths_resolve_from_the_scenario_folder(tmp_path, monkeypatch):
    """Every file a scenario names (profiles, traces, devices, a speed factor's `over`) is read relative to the
    YAML file, whatever the working directory."""
    from edgesim.cli.app import main
    from tests.sim_helpers import scenario_dict, write_scenario, write_toy_profiles

    (tmp_path / "study" / "profiles").mkdir(parents=True)
    write_toy_profiles(tmp_path / "study" / "profiles")
    (tmp_path / "study" / "traces").mkdir()
    (tmp_path / "study" / "traces" / "up.csv").write_text("time_s,data_rate_mbps\n0,1.0\n5,2.0\n")
    data = scenario_dict(["profiles/toy-mobile.json"], edge={"device": "fast-edge"},
                         devices=[{"name": "fast-edge", "kind": "edge", "speed_factor": 2.0,
                                   "over": "profiles/toy-edge.json"}],
                         link={"trace": "traces/up.csv"}, workload={"source": "poisson", "frame_rate_fps": 2.0,
                                                                     "frames": 50})
    path = write_scenario(tmp_path / "study", data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--jobs", "1", "--no-png"]) == 0
    assert (tmp_path / "out" / "summary.csv").exists()


# ----------------------------------------------------------------------------- dataset and capture traces (issue 28)


def _dataset(tmp_path, suffix=".parquet", **columns):
    base = {"label": [0, 1, 1, 0], "edge_pred": [0, 1, 0, 0], "cloud_pred": [0, 1, 1, 0],
            "edge_max_prob": [0.9, 0.8, 0.55, 0.99], "switcher_score": [0.7, 0.2, 0.4, 0.9],
            "edge_entropy": [0.1, 0.3, 0.6, 0.0]}
    base.update(columns)
    path = tmp_path / f"trace{suffix}"
    df = pd.DataFrame(base)
    df.to_parquet(path) if suffix == ".parquet" else df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("columns,words", [
    ({"label": [0, 1, -7, 0]}, "row 2: column 'label': -7 is not a class index (a whole number >= 0)"),
    ({"edge_pred": [0, 1.5, 0, 0]}, "row 1: column 'edge_pred': 1.5 is not a class index"),
    ({"label": ["cat", "dog", "dog", "cat"]}, "mix class indices and class names"),
    ({"edge_max_prob": [0.9, 1.7, 0.5, 0.5]}, "row 1: column 'edge_max_prob': 1.7 is not a probability in [0, 1]"),
    ({"switcher_score": [0.9, 0.1, float("nan"), 0.5]}, "row 2: column 'switcher_score': nan is not a probability"),
    ({"edge_entropy": [0.1, float("inf"), 0.1, 0.1]}, "row 1: column 'edge_entropy': inf is not a finite entropy"),
    ({"cloud_pred": [0, None, 1, 0]}, "row 1: column 'cloud_pred': missing class"),
])
def test_dataset_contents_are_checked_with_their_row(tmp_path, columns, words):
    from simulator.workload import load_dataset

    path = _dataset(tmp_path, **columns)
    with pytest.raises(EdgesimError) as err:
        load_dataset(str(path), None)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and words in msg and msg.endswith("(workload.dataset)")


def test_a_csv_dataset_names_the_file_line(tmp_path):
    from simulator.workload import load_dataset

    path = _dataset(tmp_path, ".csv", edge_max_prob=[0.9, 0.8, -0.1, 0.5])
    with pytest.raises(EdgesimError, match=rf"^{path}:4: column 'edge_max_prob': -0.1 is not a probability"):
        load_dataset(str(path), None)


def test_class_names_run_end_to_end(tmp_path, profiles):
    """String labels and predictions used to crash the summary (AttributeError: 'str' object has no attribute 'item')."""
    names = {0: "cat", 1: "dog"}
    path = _dataset(tmp_path, **{c: [names[v] for v in vals] for c, vals in
                                 (("label", [0, 1, 1, 0]), ("edge_pred", [0, 1, 0, 0]), ("cloud_pred", [0, 1, 1, 0]))})
    data = scenario_dict(profiles, workload={"frames": 8, "frame_rate_fps": 0.5, "dataset": str(path)},
                         policies=[{"name": "edge-only", "edge_model": "toy", "cloud_model": "toy"}])
    _, summary = run(data)
    assert summary.loc[0, "f1_positive"] == "dog" and summary.loc[0, "f1"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("times,words", [
    ([0.0, 0.5, 0.5, 1.0], ":4: column 'capture_time_s': 0.5 s does not come after the row before (0.5 s)"),
    ([0.0], ": column 'capture_time_s': 1 row(s); a frame trace needs at least two"),
    ([0.0, float("inf")], ":3: column 'capture_time_s': inf is not a finite time >= 0"),
    ([0.0, "x"], ":3: capture_time_s must be a number, found 'x'"),
])
def test_capture_traces_name_file_line_and_field(tmp_path, profiles, times, words):
    path = tmp_path / "captures.csv"
    path.write_text("capture_time_s\n" + "\n".join(str(t) for t in times) + "\n")
    data = scenario_dict(profiles, workload={"source": "trace", "trace": str(path), "frames": 4})
    with pytest.raises(EdgesimError) as err:
        run(data)
    assert str(err.value).startswith(f"{path}{words}") and str(err.value).endswith("(workload.trace)")
