"""Results folders from the command line: printed tables in the unit they say, no silent replacement or
override, nothing half-written, one line for a broken summary.csv, overload warnings."""

from __future__ import annotations

import re

import pandas as pd
import pytest

import simulator.sweep as sweep
from edgesim.cli.app import main
from edgesim.report import html as report
from edgesim.report.stability import unstable_warnings
from tests.sim_helpers import scenario_dict, write_scenario, write_toy_profiles


@pytest.fixture()
def scenario(tmp_path):
    profiles = write_toy_profiles(tmp_path)
    data = scenario_dict(profiles, sweep={"grid": {"link.data_rate_mbps": [0.5, 5.0]}}, outputs={"plots": False})
    data["policies"] = [{"name": "local"}, {"name": "offload"}, {"name": "split", "split_point": "mid",
                                                                  "label": "split [mid]"}]
    return write_scenario(tmp_path, data), data


@pytest.fixture()
def results(tmp_path, scenario, capsys):
    path, _ = scenario
    out = tmp_path / "res"
    assert main(["run", str(path), "--out", str(out)]) == 0
    capsys.readouterr()
    return out


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("edgesim: error: ") and "Traceback" not in err[0]
    return err[0]


def _table_rows(text: str) -> tuple[str, list[list[str]]]:
    """(title, cells of each body row) of a rich table printed with box characters."""
    lines = text.splitlines()
    title = next(line.strip() for line in lines if line.strip())
    rows = [[c.strip() for c in line.strip().strip("│┃").split("│")] for line in lines if line.startswith("│")]
    return title, rows


@pytest.mark.parametrize("metric,scale,unit", [("delay_mean_s", 1e3, "ms"), ("throughput_fps", 1.0, "frames/s")])
def test_compare_prints_the_unit_its_numbers_are_in(results, capsys, metric, scale, unit):
    assert main(["compare", str(results), "--metric", metric]) == 0
    out = capsys.readouterr().out
    assert "split [mid]" in out  # labels are printed as written, not eaten as markup
    title, rows = _table_rows(out)
    assert f"[{unit}]" in title, title
    summary = pd.read_csv(results / "summary.csv")
    assert len(rows) == summary["point"].nunique()
    for point, cells in zip(sorted(summary["point"].unique()), rows):
        values = summary[summary["point"] == point].set_index("policy")[metric]
        for printed, policy in zip(cells[-3:], ["local", "offload", "split [mid]"]):
            assert float(printed) == pytest.approx(values[policy] * scale, rel=1e-3), (policy, printed)


def test_run_prints_the_table_in_ms(tmp_path, scenario, capsys):
    path, _ = scenario
    assert main(["run", str(path), "--out", str(tmp_path / "r")]) == 0
    title, rows = _table_rows(capsys.readouterr().out)
    assert "[ms]" in title and rows


def test_out_with_results_is_refused_unless_overwrite(tmp_path, scenario, results, capsys):
    path, _ = scenario
    before = {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()}
    assert main(["run", str(path), "--out", str(results), "--set", "seed=9"]) == 2
    line = _err_line(capsys)
    assert str(results) in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()} == before
    assert not (tmp_path / "res.partial").exists()
    assert main(["run", str(path), "--out", str(results), "--set", "seed=9", "--overwrite"]) == 0
    assert (results / "summary.csv").read_bytes() != before["summary.csv"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("res")) == ["res"]


def test_out_into_a_folder_that_is_not_results_is_refused_even_with_overwrite(tmp_path, scenario, capsys):
    path, _ = scenario
    other = tmp_path / "papers"
    other.mkdir()
    (other / "draft.tex").write_text("keep me")
    assert main(["run", str(path), "--out", str(other), "--overwrite"]) == 2
    assert "not a results folder" in _err_line(capsys)
    assert (other / "draft.tex").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", str(path), "--out", str(empty)]) == 0


def _interrupted(tmp_path, path, monkeypatch, out_name="part", fail_at=2):
    real = sweep.run_point
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(sweep, "run_point", flaky)
    out = tmp_path / out_name
    assert main(["run", str(path), "--out", str(out), "--jobs", "1"]) == 130
    monkeypatch.setattr(sweep, "run_point", real)
    return out


@pytest.mark.parametrize("extra,needle", [(["--set", "seed=5"], "--set"), (["--engine", "simpy"], "--engine"),
                                          (["SCENARIO"], "scenario"), (["--out", "elsewhere"], "--out")])
def test_resume_refuses_changes_to_the_saved_scenario(tmp_path, scenario, monkeypatch, capsys, extra, needle):
    path, _ = scenario
    out = _interrupted(tmp_path, path, monkeypatch)
    capsys.readouterr()
    extra = [str(path) if e == "SCENARIO" else e for e in extra]
    assert main(["run", "--resume", str(out), *extra]) == 2
    line = _err_line(capsys)
    assert needle in line and "saved scenario" in line, line
    assert (tmp_path / "part.partial").exists() and not out.exists()


def test_failed_run_says_what_it_kept(tmp_path, scenario, capsys):
    path, data = scenario
    ghost = str(tmp_path / "ghost.csv")  # a trace missing at its sweep point (an unknown device is refused at parse)
    bad = write_scenario(tmp_path, {**data, "sweep": {"grid": {"link.trace": [None, ghost]}}}, "bad.yaml")
    out = tmp_path / "res"
    assert main(["run", str(bad), "--out", str(out), "--jobs", "1"]) == 2
    line = _err_line(capsys)
    stage = tmp_path / "res.partial"
    assert "ghost.csv" in line
    assert stage.exists() and str(stage) in line and f"edgesim run --resume {out}" in line and "1 finished" in line


def test_failed_run_with_nothing_finished_leaves_nothing(tmp_path, scenario, capsys):
    path, data = scenario
    bad = write_scenario(tmp_path, {**data, "sweep": {"grid": {"link.trace": [str(tmp_path / "ghost.csv"), None]}}},
                         "bad.yaml")
    assert main(["run", str(bad), "--out", str(tmp_path / "res"), "--jobs", "1"]) == 2
    assert ".partial" not in _err_line(capsys)
    assert not (tmp_path / "res.partial").exists() and not (tmp_path / "res").exists()


def _truncate(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[:keep(len(data))])


@pytest.mark.parametrize("damage,needle", [
    (lambda p: _truncate(p, lambda n: n * 2 // 3), "summary.csv"),
    (lambda p: _truncate(p, lambda n: p.read_text().index("\n") + 1), "no rows"),
    (lambda p: p.write_text(p.read_text().splitlines()[0] + "\n" + "\n".join(p.read_text().splitlines()[1:3]) + "\n"),
     "rows"),
    (lambda p: p.write_bytes(b"\x00\xff\xfe garbage"), "summary.csv"),
    (lambda p: p.write_text("a,b\n1,2\n"), "column"),
])
def test_broken_summary_is_one_line_for_compare_and_plot(results, capsys, damage, needle):
    damage(results / "summary.csv")
    for cmd in ("compare", "plot"):
        assert main([cmd, str(results)]) == 2, cmd
        line = _err_line(capsys)
        assert needle in line and str(results) in line, line


def test_png_warning_is_printed_once_as_one_line(tmp_path, scenario, capsys, monkeypatch, recwarn):
    path, data = scenario
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chromium"))
    with_plots = write_scenario(tmp_path, {**data, "outputs": {"plots": True}}, "plots.yaml")
    assert main(["run", str(with_plots), "--out", str(tmp_path / "p")]) == 0
    err = capsys.readouterr().err
    assert len(re.findall("PNG export failed", err)) == 1, err
    assert [w for w in recwarn if "PNG" in str(w.message)] == []
    assert main(["plot", str(tmp_path / "p"), "--no-png"]) == 0
    assert "PNG" not in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "p"), "--png"]) == 2
    assert "PNG export failed" in _err_line(capsys)


def _summary(**extra) -> pd.DataFrame:
    rows = []
    for point in (0, 1):
        for policy in ("local", "offload"):
            rows.append({"point": point, "policy": policy, "delay_mean_s": 1.0})
    df = pd.DataFrame(rows)
    for k, v in extra.items():
        df[k] = v
    return df


def test_unstable_warnings_from_summary_columns():
    assert unstable_warnings(_summary()) == []  # older results: no columns, no warnings
    df = _summary(utilisation_mobile=[2.1, 0.2, 0.5, 0.2], utilisation_uplink=[0.0, 0.9, 0.0, 1.3],
                  utilisation_server=[0.1, 0.1, 0.1, 0.1], stable=[False, True, True, False])
    lines = unstable_warnings(df)
    assert len(lines) == 2
    assert "station 'mobile' offered load 2.1 >= 1 at point 0 for policy local" in lines[0]
    assert "station 'uplink' offered load 1.3 >= 1 at point 1 for policy offload" in lines[1]
    assert all("queue grows with the run length" in w and "\n" not in w for w in lines)
    csv_read = df.assign(stable=df["stable"].map(str))  # "True"/"False" as a CSV gives them back
    assert unstable_warnings(csv_read) == lines


def test_unstable_runs_warn_on_console_and_in_report(tmp_path, results, capsys, monkeypatch):
    summary = pd.read_csv(results / "summary.csv")
    summary["utilisation_mobile"] = 0.5
    summary.loc[summary["policy"] == "local", "utilisation_mobile"] = 1.5
    summary["utilisation_uplink"] = 0.1
    summary["utilisation_server"] = 0.1
    summary["stable"] = summary["utilisation_mobile"] < 1
    summary.to_csv(results / "summary.csv", index=False)
    assert main(["compare", str(results)]) == 0
    err = [e for e in capsys.readouterr().err.strip().splitlines() if not e.startswith("edgesim: note:")]
    assert len(err) == 2 and all(e.startswith("edgesim: warning: station 'mobile' offered load 1.5") for e in err)
    page = report.report_html({}, summary, {}, "t")
    assert "class='warn'" in page and page.count("offered load 1.5") == 2
    assert "class='warn'" not in report.report_html({}, summary.drop(columns=["stable"]), {}, "t")


# ----------------------------------------------------------------------------- refusals before any work (issue 28)


def test_a_scheduler_without_dask_is_refused_not_ignored(tmp_path, scenario, capsys):
    path, _ = scenario
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert capsys.readouterr().err.strip() == ("edgesim: error: --scheduler tcp://127.0.0.1:1: a scheduler address "
                                               "is for --executor dask; the 'process' executor runs on this machine")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_jobs_beyond_the_cores_are_capped_with_a_note(capsys, monkeypatch):
    from edgesim.cli import simulate

    monkeypatch.setattr(simulate, "available_cores", lambda: 4)
    assert simulate.capped_jobs(0) == 4 and simulate.capped_jobs(3) == 3 and capsys.readouterr().err == ""
    assert simulate.capped_jobs(10_000) == 4
    assert capsys.readouterr().err.strip() == "edgesim: note: --jobs 10000 is more than the 4 cores here; using 4"
    assert simulate.capped_jobs(10_000, remote=True) == 10_000  # a remote cluster's workers are its own
    monkeypatch.setattr(simulate, "available_cores", lambda: 1)
    assert simulate.capped_jobs(2) == 1
    assert capsys.readouterr().err.strip() == "edgesim: note: --jobs 2 is more than the 1 core here; using 1"


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_sweep_above_the_limit_needs_yes(tmp_path, command, capsys):
    from simulator.scenario import CONFIRM_RUNS

    data = scenario_dict(write_toy_profiles(tmp_path), outputs={"plots": False},
                         sweep={"grid": {"link.data_rate_mbps": {"log": [0.1, 10, CONFIRM_RUNS // 3 + 1]}}})
    path = write_scenario(tmp_path, data)
    args = [command, str(path)] + (["--out", str(tmp_path / "o")] if command == "run" else [])
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"edgesim: error: toy: {CONFIRM_RUNS // 3 + 1:,} sweep points x 3 policies x 1 replications = "
                   f"{3 * (CONFIRM_RUNS // 3 + 1):,} runs, more than {CONFIRM_RUNS:,}; add --yes to {command} them all")


def test_plot_of_a_corrupt_frames_file_is_one_line(results, capsys):
    """Used to end in pyarrow's ArrowInvalid traceback ('Parquet magic bytes not found')."""
    path = results / "frames.parquet"
    path.write_bytes(path.read_bytes()[:1000])
    capsys.readouterr()
    assert main(["plot", str(results), "--no-png"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"edgesim: error: {path}: cannot read: ") and "\n" not in err and "rerun into a new folder" in err
