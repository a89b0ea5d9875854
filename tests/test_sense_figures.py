"""Issue 27: sense checks (warnings naming the likely unit slip), warnings that reach the Python API, a figure for
every sweep with intervals over replications, what the figures read of frames.parquet, and the small things."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import t as student_t

import simulator
from edgesim.cli.app import main
from edgesim.report import framestats, sweepfigs
from edgesim.report import html as report
from edgesim.report.outputs import trace_labels
from profilers.errors import EdgesimError, did_you_mean, unknown_name
from simulator import sense
from simulator.devices import profile_command
from simulator.scenario import as_scenario, load_scenario, sweep_points
from tests.sim_helpers import scenario_dict, write_scenario, write_toy_profiles


@pytest.fixture()
def profiles(tmp_path):
    return write_toy_profiles(tmp_path)


# ----------------------------------------------------------------------------- sense checks


def test_rate_and_delay_slips_name_the_likely_unit():
    assert sense.rate_slip(10_000_000) == ("10000000 Mbit/s (10 Tbit/s) is above 100 Gbit/s; if it is in kbit/s, "
                                           "write 10000; if it is in bit/s, write 10")
    assert sense.rate_slip(0.0002) == ("0.0002 Mbit/s (200 bit/s) is below 1 kbit/s; the field is in Mbit/s "
                                       "(1 kbit/s is 0.001)")
    assert sense.rate_slip(100_000) is None and sense.rate_slip(0.001) is None and sense.rate_slip(20) is None
    assert sense.delay_slip(20) == "20 s one way is above 1 s; 20 ms is 0.02"
    assert sense.delay_slip(5000) == "5000 s one way is above 1 s; 5000 us is 0.005"
    assert sense.delay_slip(1.0) is None and sense.delay_slip(0.27) is None


def test_scenario_slips_warn_with_file_line_and_field(tmp_path, profiles):
    data = scenario_dict(profiles, link={"data_rate_mbps": 10_000_000, "propagation_delay_s": 20},
                         sweep={"grid": {"link.propagation_delay_s": [0.01, 30]}})
    path = write_scenario(tmp_path, data)
    with pytest.warns(sense.ImplausibleValue) as got:
        load_scenario(path)
    lines = [str(w.message) for w in got]
    assert any(f"{path}:" in m and "field 'link.data_rate_mbps': 10000000 Mbit/s" in m for m in lines)
    assert any("field 'link.propagation_delay_s': 20 s one way is above 1 s; 20 ms is 0.02" in m for m in lines)
    assert any("field 'sweep.grid.link.propagation_delay_s': link.propagation_delay_s = 30 s" in m for m in lines)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plausible scenario warns about nothing
        load_scenario(write_scenario(tmp_path, scenario_dict(profiles), "fine.yaml"))


def test_too_many_frames_and_implausible_traces_warn(tmp_path, profiles):
    trace = tmp_path / "kbps.csv"
    trace.write_text("time_s,data_rate_mbps\n0,12000\n100000,15000\n")  # kbit/s and ms read as Mbit/s and s
    data = scenario_dict(profiles, link={"trace": str(trace)},
                         workload={"source": "periodic", "frames": 100_000_000, "frame_rate_fps": 1},
                         mobiles=[{"device": "toy-mobile", "count": 20}])
    sc = as_scenario_quiet(data)
    msgs = [m for _, m in sense.implausible_values(sc, sweep_points(sc))]
    assert any("mean rate 12,000 Mbit/s (12 Gbit/s) is above 10 Gbit/s: kbit/s read as Mbit/s? (in kbit/s the mean "
               "is 12 Mbit/s)" in m for m in msgs)
    assert any("it lasts 100000 s (27.8 h), more than a day: milliseconds read as seconds? (in ms it lasts 100 s)" in m
               for m in msgs)
    assert sense.trace_slips(7000, 60, 12_000) == [
        "highest rate 12,000 Mbit/s (12 Gbit/s) is above 10 Gbit/s: kbit/s read as Mbit/s? (in kbit/s the mean is 7 "
        "Mbit/s)"]
    assert any(m.startswith("6e+09 frames in the run") and "above 1e9" in m for m in msgs)


def as_scenario_quiet(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return as_scenario(data)


def test_python_api_dict_scenarios_warn_too(profiles):
    with pytest.warns(sense.ImplausibleValue, match="propagation_delay_s': 20 s one way"):
        as_scenario(scenario_dict(profiles, link={"data_rate_mbps": 1.0, "propagation_delay_s": 20}))


def test_validate_set_applies_and_checks_overrides(tmp_path, profiles, capsys):
    path = write_scenario(tmp_path, scenario_dict(profiles))
    assert main(["validate", str(path), "--set", "link.data_rate_mbps=1e7", "--set", "replications=3"]) == 0
    out, err = capsys.readouterr()
    assert "x 3 replications" in out
    assert "edgesim: warning: --set: field 'link.data_rate_mbps': 10000000 Mbit/s (10 Tbit/s) is above 100 Gbit/s" in err
    assert main(["validate", str(path), "--set", "link.data_rate_mbps=-1"]) == 2
    assert "link.data_rate_mbps" in capsys.readouterr().err


def test_one_replication_says_why(profiles):
    random = as_scenario_quiet(scenario_dict(profiles))
    assert sense.replication_note(random) == (
        "one replication of a scenario that draws Poisson captures and sampled service times at random: no 95 % "
        "intervals; `replications: 5` (or --set replications=5) gives them")
    fixed = as_scenario_quiet(scenario_dict(profiles, workload={"source": "periodic", "service_time": "median"}))
    assert sense.replication_note(fixed).startswith("one replication: nothing in this scenario is drawn at random")
    assert sense.replication_note(as_scenario_quiet(scenario_dict(profiles, replications=5))) is None


# ----------------------------------------------------------------------------- warnings that reach everyone


def test_every_overloaded_station_is_named_wan_and_cloud_included():
    summary = pd.DataFrame({"point": [0, 0, 0], "policy": ["cloud", "cloud", "local"], "scope": ["all", "edge", "all"],
                            "utilisation_mobile": [0.1, 0.1, 0.2], "utilisation_uplink": [1.45, 1.45, 0.0],
                            "utilisation_server": [0.2, 0.2, 0.0], "utilisation_wan": [43.35, 43.35, 0.0],
                            "utilisation_cloud": [0.4, 0.4, 0.0], "stable": [False, False, True]})
    lines = sense.unstable_warnings(summary)
    assert lines == ["stations 'uplink' offered load 1.45, 'wan' offered load 43.4 >= 1 at point 0 for policy cloud: "
                     "its queue grows with the run length; delays depend on the number of frames"]


def test_python_api_raises_the_cli_notes_and_warnings(profiles):
    data = scenario_dict(profiles, workload={"source": "periodic", "frame_rate_fps": 20.0, "frames": 40,
                                             "service_time": "median"}, policies=[{"name": "local"}])
    with pytest.warns(sense.RunWarning) as got:
        simulator.run(data)
    text = [str(w.message) for w in got if issubclass(w.category, sense.RunWarning)]
    assert any(m.startswith("station 'mobile' offered load") for m in text)
    assert any(m.startswith("one replication: nothing in this scenario is drawn at random") for m in text)


# ----------------------------------------------------------------------------- the small things


def test_close_and_case_insensitive_suggestions():
    assert "(did you mean 'rpi4b'?)" in str(unknown_name("device", "RPi4B", ["rpi3b+", "rpi4b", "laptop"]))
    assert did_you_mean("mobilenet_v3_larg", ["mobilenet_v3_large", "resnet18"]) == " (did you mean 'mobilenet_v3_large'?)"
    assert did_you_mean("zzz", ["rpi4b"]) == ""
    assert profile_command("mynet.py") == "edgesim profile --model-file mynet.py:FACTORY --device-name NAME --out P.json"
    assert profile_command("resnet18") == "edgesim profile resnet18 --device-name NAME --out P.json"


def test_unknown_catalog_device_in_a_scenario_suggests_its_spelling(tmp_path, profiles, capsys):
    data = scenario_dict(profiles, mobiles=[{"device": "RPi4B"}])
    assert main(["validate", str(write_scenario(tmp_path, data))]) == 2
    assert "unknown device 'RPi4B' (did you mean 'rpi4b'?)" in capsys.readouterr().err


def test_local_once_and_best_placement_names_local(profiles):
    data = scenario_dict(profiles, mobiles=[{"device": "toy-mobile", "count": 2}], edge=None,
                         edges=[{"name": "e1", "device": "toy-edge"}, {"name": "e2", "device": "toy-edge"}],
                         assignment="round-robin",
                         cloud={"device": "toy-edge", "wan": {"data_rate_mbps": 5, "propagation_delay_s": 0.01}},
                         link={"data_rate_mbps": 0.001, "propagation_delay_s": 0.001},
                         policies=[{"name": "local"}, {"name": "offload"}, {"name": "best-placement"}],
                         workload={"source": "periodic", "frame_rate_fps": 0.2, "frames": 6, "service_time": "median"})
    data.pop("edge")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames, summary = simulator.run(data)
    assert (summary["policy"] == "local").sum() == 1  # no row per edge server for frames that never reach one
    assert (summary["policy"] == "offload").sum() == 3
    assert frames.loc[frames["policy"] == "local", "edge"].isna().all()
    placed = frames[frames["policy"] == "best-placement"]
    assert (placed["decision"] == "local").all()  # 1 kbit/s: everything stays on the mobile device, named so


def test_trace_shown_where_a_rate_would_be(tmp_path, profiles):
    trace = tmp_path / "walk.csv"
    trace.write_text("time_s,data_rate_mbps\n0,10\n5,30\n10,30\n")
    sc = as_scenario_quiet(scenario_dict(profiles, link={"trace": str(trace)}))
    assert trace_labels(sc) == {"trace": "trace walk, mean 20 Mbit/s"}
    from edgesim.report.plots import rate_label
    assert rate_label(float("nan"), trace_labels(sc)) == "trace walk, mean 20 Mbit/s"
    assert rate_label(20.0) == "20 Mbit/s"


# ----------------------------------------------------------------------------- figures for every sweep


def _sweep_summary(reps: int = 3):
    """A WAN-delay sweep (3 points) x 3 policies with per-replication delays; cloud gets slower with the delay."""
    rows, per_rep = [], []
    rng = np.random.default_rng(0)
    for point, wan_s in enumerate([0.005, 0.02, 0.08]):
        base = {"local": 0.045, "offload": 0.019, "cloud": 0.02 + 2 * wan_s}
        for pol, mean in base.items():
            vals = mean * (1 + 0.02 * rng.standard_normal(reps))
            per_rep += [{"point": point, "policy": pol, "replication": r, "value": v} for r, v in enumerate(vals)]
            rows.append({"point": point, "policy": pol, "mobile": "rpi4bx3", "edge": "e1+e2", "data_rate_mbps": 20.0,
                         "delay_mean_s": vals.mean(), "delay_p95_s": vals.mean() * 1.2,
                         "utilisation_wan": 0.1 + 10 * wan_s, "stable": True,
                         "sweep.cloud.wan.propagation_delay_s": wan_s})
    summary = pd.DataFrame(rows)
    local = summary[summary.policy == "local"].set_index("point")["delay_mean_s"]
    summary["gain_vs_local"] = summary["point"].map(local) / summary["delay_mean_s"]
    return summary, pd.DataFrame(per_rep)


def test_field_titles_in_words_with_units():
    assert sweepfigs.field_axis("sweep.cloud.wan.propagation_delay_s").title == "WAN one-way delay (ms)"
    assert sweepfigs.field_axis("sweep.link.data_rate_mbps").title == "uplink data rate (Mbit/s)"
    assert sweepfigs.field_axis("sweep.workload.frame_rate_fps").title == "frame rate (frames/s)"
    assert sweepfigs.field_axis("sweep.edges.1.link.data_rate_mbps").title == "uplink to edge server 1: data rate (Mbit/s)"
    assert sweepfigs.field_axis("sweep.cloud.wan.propagation_delay_s").value_text(0.02) == "20 ms"


def test_metric_against_any_swept_field_with_student_t_intervals():
    summary, per_rep = _sweep_summary(reps=3)
    fig = sweepfigs.metric_figure(summary, "delay_mean_s", "sweep.cloud.wan.propagation_delay_s", per_rep)
    assert fig.layout.xaxis.title.text == "WAN one-way delay (ms)"
    cloud = next(t for t in fig.data if t.name == "cloud")
    np.testing.assert_allclose(cloud.x, [5, 20, 80])
    vals = per_rep[(per_rep.policy == "cloud") & (per_rep.point == 1)]["value"].to_numpy()
    half_ms = student_t.ppf(0.975, 2) * vals.std(ddof=1) / np.sqrt(3) * 1e3
    assert cloud.error_y.array[1] == pytest.approx(half_ms) and cloud.error_y.visible
    assert "95 % Student-t interval over 3 replications" in fig.layout.title.text


def test_gain_crossing_along_a_non_rate_field_and_shared_y_over_cases():
    summary, per_rep = _sweep_summary()
    fig = sweepfigs.metric_figure(summary, "gain_vs_local", "sweep.cloud.wan.propagation_delay_s",
                                  sweepfigs.gain_replications(per_rep, "local"))
    assert {t.name for t in fig.data if t.showlegend} == {"offload", "cloud"}  # no baseline line
    # cloud: gain 0.045/0.03 = 1.5 at 5 ms, 0.045/0.06 = 0.75 at 20 ms: crosses 1 between them
    assert fig.layout.meta["crossings"] == ["cloud: 5-20"]
    table = sweepfigs.crossing_table(summary)
    assert table.iloc[0]["crosses 1 between"] == "5 and 20" and table.iloc[0]["along"] == "WAN one-way delay (ms)"
    two = pd.concat([summary.assign(**{"sweep.link.data_rate_mbps": r}, point=summary.point + 10 * k)
                     for k, r in enumerate([5.0, 50.0])], ignore_index=True)
    fig2 = sweepfigs.metric_figure(two, "delay_mean_s", "sweep.cloud.wan.propagation_delay_s")
    assert [a.text for a in fig2.layout.annotations][:2] == ["uplink data rate = 5 Mbit/s", "uplink data rate = 50 Mbit/s"]
    assert fig2.layout.yaxis2.matches == "y"  # panels that compare share a y-range


def test_identical_policies_are_named_not_hidden():
    summary, _ = _sweep_summary()
    twin = summary[summary.policy == "offload"].assign(policy="best-placement")
    fig = sweepfigs.metric_figure(pd.concat([summary, twin]), "delay_mean_s", "sweep.cloud.wan.propagation_delay_s")
    assert "best-placement (same as offload)" in {t.name for t in fig.data}


def test_sweep_figures_cover_every_metric_and_the_offered_load():
    summary, per_rep = _sweep_summary()
    figs = sweepfigs.sweep_figures(summary, {"delay_mean_s": per_rep})
    assert {"delay_mean_s_vs_cloud.wan.propagation_delay_s", "delay_p95_s_vs_cloud.wan.propagation_delay_s",
            "gain_vs_local_vs_cloud.wan.propagation_delay_s", "utilisation_vs_cloud.wan.propagation_delay_s"} <= set(figs)
    paper = sweepfigs.paper_style(figs["delay_mean_s_vs_cloud.wan.propagation_delay_s"])
    assert paper.layout.width == 504 and paper.layout.legend.orientation == "h"
    assert {t.line.color for t in paper.data} <= set(sweepfigs.PAPER_COLORS)


# ----------------------------------------------------------------------------- what the figures read of the frames


def _frames(n_rep=3, n=1000):
    rng = np.random.default_rng(1)
    rows = []
    for rep in range(n_rep):
        for pol in ("local", "offload"):
            delay = rng.exponential(0.05 if pol == "local" else 0.02, n)
            status = np.where(rng.random(n) < 0.1, "dropped", "completed")
            rows.append(pd.DataFrame({"point": 0, "replication": rep, "policy": pol, "capture_s": np.arange(n) / 10,
                                      "status": status, "delay_s": np.where(status == "dropped", np.nan, delay),
                                      "head_s": delay / 2, "tail_s": delay / 2, "warmup": np.arange(n) < 10,
                                      "energy_mobile_compute_j": 0.1, "energy_mobile_radio_j": 0.05}))
    return pd.concat(rows, ignore_index=True)


def test_frame_stats_row_group_by_row_group_equal_the_whole_table(tmp_path):
    frames = _frames()
    path = tmp_path / "frames.parquet"
    pq.write_table(pa.Table.from_pandas(frames, preserve_index=False), path, row_group_size=700)  # groups cut runs
    stats = framestats.read_frame_stats(path, ("head_s", "tail_s"), sample_rows=2000)
    kept = frames[~frames.warmup]
    done = kept[kept.status != "dropped"]
    want = done.groupby(["point", "policy", "replication"])["delay_s"].mean()
    got = stats.replication_values("delay_mean_s").set_index(["point", "policy", "replication"])["value"]
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index(), check_names=False)
    comp = stats.components.set_index(["point", "policy"])["head_s"]
    assert comp[(0, "local")] == pytest.approx(done[done.policy == "local"]["head_s"].mean())
    assert stats.stride == 3 and len(stats.sample) == pytest.approx(len(kept) / 3, abs=3)  # 6000 rows, 2000 kept
    energy = stats.replication_values("energy_mobile_j_per_frame")["value"]
    np.testing.assert_allclose(energy, 0.15)


def test_images_without_chromium_give_the_debian_command(tmp_path, monkeypatch):
    import plotly.graph_objects as go

    monkeypatch.setattr(report, "browser_path", lambda: None)
    fig = {"f": go.Figure(go.Scatter(x=[1], y=[1]))}
    with pytest.raises(EdgesimError, match=r"apt-get install -y chromium"):
        report.write_figures(fig, tmp_path, formats=("html", "pdf"))
    written = report.write_figures(fig, tmp_path, png="auto")
    assert "apt-get install -y chromium" in written.warnings[0] and "kaleido_get_chrome" not in written.warnings[0]
    assert report.parse_formats("svg, HTML,pdf") == ("html", "pdf", "svg")
    with pytest.raises(EdgesimError, match="unknown format 'jpg'; known: html, png, pdf, svg"):
        report.parse_formats("png,jpg")


def test_compare_table_shows_the_trace_where_the_rate_is_blank():
    from rich.console import Console

    from edgesim.cli.simulate import compare_table

    summary = pd.DataFrame({"point": [0, 0], "policy": ["local", "offload"], "mobile": "m", "edge": "e",
                            "data_rate_mbps": [np.nan, np.nan], "delay_mean_s": [0.1, 0.05]})
    console = Console(width=200, record=True)
    console.print(compare_table(summary, "delay_mean_s", "trace walk, mean 20 Mbit/s"))
    assert "trace walk, mean 20 Mbit/s" in console.export_text()


def test_one_csv_reader_names_file_and_line_for_capture_traces(tmp_path, profiles):
    from simulator.workload import trace_captures

    bad = tmp_path / "captures.csv"
    bad.write_text("# captures\ncapture_time_s\n0.0\n0.5\nsoon\n")
    sc = as_scenario_quiet(scenario_dict(profiles, workload={"source": "trace", "trace": str(bad)}))
    with pytest.raises(EdgesimError, match=rf"^{bad}:5: capture_time_s must be a number, found 'soon' \(workload\.trace\)$"):
        trace_captures(sc, None)
    bad.write_text("t\n0\n")
    with pytest.raises(EdgesimError, match=rf"^{bad}:1: frame trace needs a capture_time_s column \(found: t\) \(workload\.trace\)$"):
        trace_captures(sc, None)
    bad.write_text("capture_time_s\n0\n1.5\n")
    np.testing.assert_allclose(trace_captures(sc, None), [0.0, 1.5])
