"""The edgesim CLI: run, validate, compare, list, schema; bad input gives one line and exit 2; reproducibility."""

from __future__ import annotations

import json

import pytest

from edgesim.cli.app import main
from tests.sim_helpers import scenario_dict, write_scenario, write_toy_profiles


@pytest.fixture()
def scenario(tmp_path):
    profiles = write_toy_profiles(tmp_path)
    data = scenario_dict(profiles, sweep={"grid": {"link.data_rate_mbps": [0.5, 5.0]}}, outputs={"plots": False})
    return write_scenario(tmp_path, data), data, profiles


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_run_writes_results_folder(tmp_path, scenario, capsys):
    path, _, _ = scenario
    out = tmp_path / "res"
    assert main(["run", str(path), "--out", str(out)]) == 0
    for name in ("summary.csv", "frames.parquet", "scenario.yaml", "manifest.json"):
        assert (out / name).exists(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 5 and "git_revision" in manifest and "numpy" in manifest["versions"]
    assert not (tmp_path / "res.partial").exists()
    import pandas as pd

    summary = pd.read_csv(out / "summary.csv")
    for col in ("policy", "mobile", "edge", "data_rate_mbps", "delay_mean_s", "delay_p50_s", "delay_p95_s",
                "delay_p99_s", "throughput_fps", "deadline_miss_fraction", "drop_fraction",
                "energy_mobile_j_per_frame", "bytes_per_frame", "offload_fraction", "gain_vs_local", "gain_vs_offload"):
        assert col in summary.columns, col
    assert len(summary) == 2 * 3
    assert main(["compare", str(out), "--metric", "gain_vs_local"]) == 0
    assert "gain_vs_local" in capsys.readouterr().out


def test_same_seed_gives_byte_identical_summary_across_runs_and_jobs(tmp_path, scenario):
    path, _, _ = scenario
    assert main(["run", str(path), "--out", str(tmp_path / "a")]) == 0
    assert main(["run", str(path), "--out", str(tmp_path / "b"), "--jobs", "2"]) == 0
    assert main(["run", str(path), "--out", str(tmp_path / "c"), "--engine", "simpy"]) == 0
    a = (tmp_path / "a" / "summary.csv").read_bytes()
    assert a == (tmp_path / "b" / "summary.csv").read_bytes()
    assert (tmp_path / "a" / "frames.parquet").read_bytes() == (tmp_path / "b" / "frames.parquet").read_bytes()
    # the SimPy engine gives the same numbers; only the engine column differs
    c = (tmp_path / "c" / "summary.csv").read_text().replace(",simpy", ",compiled")
    import io

    import pandas as pd

    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(a.decode())), pd.read_csv(io.StringIO(c)), rtol=1e-9)


def test_different_seed_changes_summary(tmp_path, scenario):
    path, _, _ = scenario
    main(["run", str(path), "--out", str(tmp_path / "a")])
    main(["run", str(path), "--out", str(tmp_path / "b"), "--set", "seed=6"])
    assert (tmp_path / "a" / "summary.csv").read_bytes() != (tmp_path / "b" / "summary.csv").read_bytes()


BAD = [
    ({"colour": "red"}, "colour", "unknown field"),
    ({"link": {"data_rate_mbps": "fast"}}, "link.data_rate_mbps", "number"),
    ({"link": {"data_rate_mbps": -1}}, "link.data_rate_mbps", "greater than 0"),
    ({"policies": [{"name": "teleport"}]}, "teleport", "known:"),
    ({"edge": {"device": "no-such-device"}}, "no-such-device", "known"),
    ({"policies": [{"name": "split", "split_point": "nowhere"}]}, "nowhere", "known:"),
    ({"link": {"trace": "missing.csv"}}, "missing.csv", "not found"),
    ({"policies": [{"name": "split", "split_point": "mid", "encoding": "morse"}]}, "morse", "known"),
]


@pytest.mark.parametrize("over,needle,hint", BAD)
def test_bad_scenarios_one_line_exit_2(tmp_path, scenario, capsys, over, needle, hint):
    _, data, _ = scenario
    bad = {**data, **over}
    path = write_scenario(tmp_path, bad, "bad.yaml")
    assert main(["validate", str(path)]) == 2
    line = _err_line(capsys)
    assert needle in line and hint in line, line
    assert main(["run", str(path), "--out", str(tmp_path / "never")]) == 2
    _err_line(capsys)
    assert not (tmp_path / "never").exists()


def test_yaml_line_is_named(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nmodel: toy\nmobiles: [{device: a}]\nedge: {device: b}\npolicies: [{name: local}]\nlink:\n  data_rate_mbps: -3\n")
    assert main(["validate", str(path)]) == 2
    assert f"{path}:7: field 'link.data_rate_mbps'" in _err_line(capsys)


def test_malformed_trace_file(tmp_path, scenario, capsys):
    _, data, _ = scenario
    trace = tmp_path / "t.csv"
    trace.write_text("time_s,data_rate_mbps\n0,10\n1,abc\n")
    path = write_scenario(tmp_path, {**data, "link": {"trace": str(trace)}}, "bad.yaml")
    assert main(["validate", str(path)]) == 2
    assert f"{trace}:3" in _err_line(capsys)


def test_not_yaml_and_missing_file(tmp_path, capsys):
    p = tmp_path / "x.yaml"
    p.write_text("name: [unclosed\n")
    assert main(["validate", str(p)]) == 2
    assert "not valid YAML" in _err_line(capsys)
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in _err_line(capsys)


def test_failed_run_leaves_existing_results_untouched(tmp_path, scenario, capsys):
    path, data, _ = scenario
    out = tmp_path / "res"
    assert main(["run", str(path), "--out", str(out)]) == 0
    capsys.readouterr()  # the first run's notes (one replication) are not the failed run's line
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    bad = write_scenario(tmp_path, {**data, "sweep": {"grid": {"edge.device": ["toy-edge", "ghost"]}}}, "bad.yaml")
    assert main(["run", str(bad), "--out", str(out)]) == 2
    _err_line(capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_list_and_schema(tmp_path, capsys):
    assert main(["list", "policies"]) == 0
    out = capsys.readouterr().out
    for name in ("local", "offload", "split", "mimic", "best-split", "dmd-switcher", "uncertainty", "oracle"):
        assert name in out
    assert main(["schema", "scenario", "--out", str(tmp_path / "s.json")]) == 0
    assert "properties" in json.loads((tmp_path / "s.json").read_text())
    assert main(["list", "gadgets"]) == 2
    assert "known: devices, models, policies" in _err_line(capsys)


def test_dask_local_cluster_gives_identical_results(tmp_path, scenario):
    pytest.importorskip("dask.distributed")
    path, _, _ = scenario
    assert main(["run", str(path), "--out", str(tmp_path / "p")]) == 0
    assert main(["run", str(path), "--out", str(tmp_path / "d"), "--executor", "dask", "--jobs", "2"]) == 0
    assert (tmp_path / "p" / "summary.csv").read_bytes() == (tmp_path / "d" / "summary.csv").read_bytes()
    assert (tmp_path / "p" / "frames.parquet").read_bytes() == (tmp_path / "d" / "frames.parquet").read_bytes()
    assert "dask" in json.loads((tmp_path / "d" / "manifest.json").read_text())["executor"]


def test_dask_scheduler_address_sends_frames_back(tmp_path, scenario):
    """With --scheduler the workers may be on other machines: frames come back and are written here, the same
    bytes as with local processes."""
    distributed = pytest.importorskip("dask.distributed")
    path, _, _ = scenario
    assert main(["run", str(path), "--out", str(tmp_path / "p")]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert main(["run", str(path), "--out", str(tmp_path / "r"), "--executor", "dask",
                     "--scheduler", cluster.scheduler_address]) == 0
    for name in ("summary.csv", "frames.parquet"):
        assert (tmp_path / "p" / name).read_bytes() == (tmp_path / "r" / name).read_bytes(), name
