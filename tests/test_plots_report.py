"""Figures (simulator/plots.py) and report files (simulator/report.py) on small synthetic tables."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from edgesim.report import framestats
from edgesim.report import html as report
from edgesim.report import plots
from profilers.errors import EdgesimError
from profilers.schema import ModelProfile, SplitPoint

RATES_MBPS = [0.5, 2.0, 10.0, 50.0]
#: (mobile, edge) pairs of 002 Figure 3: every mobile with the laptop, the RPi with every edge server.
COMBOS = [("rpi3b+", "laptop"), ("upboard", "laptop"), ("jetson-tx2", "laptop"),
          ("rpi3b+", "upboard"), ("rpi3b+", "jetson-tx2")]
SPEED = {"rpi3b+": 1.0, "upboard": 3.0, "jetson-tx2": 6.0, "laptop": 20.0}
COMPONENTS = [c for c, _ in plots.COMPONENTS]


def _delays_s(mobile: str, edge: str, rate_mbps: float) -> dict[str, dict[str, float]]:
    """Closed-form component delays per policy: local runs 1 s of work, offload sends 150 kB, mimic 2.5 kB."""
    bps = rate_mbps * 1e6
    return {
        "local": {"head_s": 1.0 / SPEED[mobile]},
        "offload": {"transfer_s": 150e3 * 8 / bps, "tail_s": 1.0 / SPEED[edge], "propagation_s": 0.002},
        "mimic": {"head_s": 0.06 / SPEED[mobile], "transfer_s": 2.5e3 * 8 / bps, "tail_s": 0.9 / SPEED[edge],
                  "propagation_s": 0.002},
    }


def make_tables(combos=COMBOS, rates=RATES_MBPS, frames_per=10, drop_every: int = 0):
    """(summary, frames) shaped like the runner's output, with gains as T_baseline / T_policy."""
    rows, frame_rows = [], []
    point = 0
    for mobile, edge in combos:
        for rate in rates:
            per_policy = _delays_s(mobile, edge, rate)
            for policy, comp in per_policy.items():
                for f in range(frames_per):
                    rec = {c: comp.get(c, 0.0) * (1 + 0.01 * f) for c in COMPONENTS}
                    dropped = drop_every and f % drop_every == drop_every - 1
                    rec.update(point=point, replication=0, policy=policy, frame=f, mobile=mobile, capture_s=f / 10,
                               decision=policy, status="dropped" if dropped else "completed",
                               delay_s=np.nan if dropped else sum(rec.values()),
                               bytes_up=0 if policy == "local" else 1000, energy_mobile_compute_j=0.1,
                               energy_mobile_radio_j=0.0 if policy == "local" else 0.05, energy_server_j=0.2,
                               sample=f, warmup=False)
                    frame_rows.append(rec)
                delay = np.mean([r["delay_s"] for r in frame_rows[-frames_per:] if not math.isnan(r["delay_s"])])
                n_drop = sum(r["status"] == "dropped" for r in frame_rows[-frames_per:])
                rows.append({
                    "point": point, "policy": policy, "mobile": mobile, "edge": edge, "data_rate_mbps": rate,
                    "frames": frames_per, "delay_mean_s": delay, "delay_p50_s": delay, "delay_p95_s": delay,
                    "delay_p99_s": delay, "delay_mean_ci95_s": np.nan, "throughput_fps": 10.0,
                    "deadline_miss_fraction": 0.0, "drop_fraction": n_drop / frames_per,
                    "energy_mobile_j_per_frame": 0.15, "energy_mobile_compute_j_per_frame": 0.1,
                    "energy_mobile_radio_j_per_frame": 0.05, "energy_mobile_total_j": 3.0,
                    "energy_server_j_per_frame": 0.2, "bytes_per_frame": 1000.0,
                    "offload_fraction": 0.0 if policy == "local" else 1.0, "head_s_mean": comp.get("head_s", 0.0),
                    "transfer_s_mean": comp.get("transfer_s", 0.0), "tail_s_mean": comp.get("tail_s", 0.0),
                    "queue_s_mean": 0.0, "engine": "compiled", "sweep.link.data_rate_mbps": rate,
                    "sweep.mobiles.0.device": mobile, "sweep.edge.device": edge,
                })
            point += 1
    summary = pd.DataFrame(rows)
    for col, base in (("gain_vs_local", "local"), ("gain_vs_offload", "offload")):
        t_base = summary[summary["policy"] == base].set_index("point")["delay_mean_s"]
        summary[col] = summary["point"].map(t_base) / summary["delay_mean_s"]
    return summary, pd.DataFrame(frame_rows)


@pytest.fixture(scope="module")
def tables():
    return make_tables()


def _stats(frames: pd.DataFrame):
    """What the figures read of a frame table (framestats, through a Parquet file in memory)."""
    return framestats.frame_stats_of(frames, tuple(c for c, _ in plots.TIER_COMPONENTS))


def tiny_profile() -> ModelProfile:
    """A 3-split-point model on a 1x4x4 input (64 float32 bytes) with 1000 FLOPs in total."""
    def sp(name, idx, shape, raw, zlib, flops):
        numel = int(np.prod(shape))
        return SplitPoint(name=name, layer_index=idx, output_shape=shape, output_numel=numel,
                          output_bytes={"float32": raw, "zlib_float32": zlib}, head_flops=flops, head_params=0)

    return ModelProfile(model_id="tiny/net", input_shape=[1, 4, 4], input_numel=16, input_bytes={"float32": 64},
                        total_flops=1000, total_params=0,
                        split_points=[sp("input", 0, [1, 4, 4], 64, 48, 0), sp("b1", 1, [2, 4, 4], 128, 32, 250),
                                      sp("b2", 2, [1, 2, 2], 16, 8, 900)])


def _has_hline_at_one(fig: go.Figure) -> bool:
    return any(s.type == "line" and s.y0 == 1 and s.y1 == 1 and s.line.dash == "dash" for s in fig.layout.shapes)


def test_gain_figures_log_axis_line_at_one_and_no_baseline_trace(tables):
    summary, _ = tables
    figs = plots.gain_figures(summary)
    assert set(figs) == {"gain_vs_offload", "gain_vs_local", "fig3"}
    for name, baseline in (("gain_vs_offload", "offload"), ("gain_vs_local", "local")):
        fig = figs[name]
        assert fig.layout.xaxis.type == "log"
        assert _has_hline_at_one(fig)
        names = [t.name for t in fig.data]
        assert not any(n.startswith(f"{baseline}:") for n in names)
        # one trace per (non-baseline policy, combination)
        assert len(names) == 2 * len(COMBOS) and "mimic: rpi3b+ → laptop" in names
        assert "T_policy" in fig.layout.title.text and "> 1" in fig.layout.title.text
    # the values are the summary's gains, sorted by data rate
    tr = next(t for t in figs["gain_vs_offload"].data if t.name == "mimic: upboard → laptop")
    want = summary[(summary.policy == "mimic") & (summary.mobile == "upboard") & (summary.edge == "laptop")]
    assert list(tr.x) == RATES_MBPS
    np.testing.assert_allclose(tr.y, want.sort_values("data_rate_mbps")["gain_vs_offload"])


def test_gain_figure_colours_by_combination_and_dashes_by_policy(tables):
    summary, _ = tables
    fig = plots.gain_figures(summary)["gain_vs_local"]
    by_name = {t.name: t for t in fig.data}
    assert by_name["mimic: rpi3b+ → laptop"].line.color == by_name["offload: rpi3b+ → laptop"].line.color
    assert by_name["mimic: rpi3b+ → laptop"].line.dash != by_name["offload: rpi3b+ → laptop"].line.dash
    assert by_name["mimic: rpi3b+ → laptop"].line.color != by_name["mimic: upboard → laptop"].line.color


def test_gain_figures_skip_trace_links_and_missing_baselines(tables):
    summary, _ = tables
    trace_only = summary.assign(data_rate_mbps=np.nan)
    assert plots.gain_figures(trace_only) == {}
    no_local = summary[summary.policy != "local"].assign(gain_vs_local=np.nan)
    figs = plots.gain_figures(no_local)
    assert set(figs) == {"gain_vs_offload"}  # fig3 needs both gains


def test_fig3_panels(tables):
    summary, _ = tables
    fig = plots.gain_figures(summary)["fig3"]
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:4] == ["(a) Gain w.r.t. full offloading, laptop as ES", "(b) Gain w.r.t. local processing, laptop as ES",
                          "(c) Gain w.r.t. full offloading, rpi3b+ as MD", "(d) Gain w.r.t. local processing, rpi3b+ as MD"]
    per_axis: dict[str, set[str]] = {}
    for t in fig.data:
        per_axis.setdefault(t.xaxis, set()).add(t.name)
    assert per_axis["x"] == {"rpi3b+ → laptop", "upboard → laptop", "jetson-tx2 → laptop"}
    assert per_axis["x3"] == {"rpi3b+ → laptop", "rpi3b+ → upboard", "rpi3b+ → jetson-tx2"}
    assert all(fig.layout[f"xaxis{k}"].type == "log" for k in ("", "2", "3", "4"))
    assert sum(_has_hline_at_one(go.Figure(layout={"shapes": [s]})) for s in fig.layout.shapes) == 4
    # 002's trend: with the laptop as ES, the gain w.r.t. offload falls as the data rate grows
    rpi = next(t for t in fig.data if t.xaxis == "x" and t.name == "rpi3b+ → laptop")
    assert rpi.y[0] > rpi.y[-1]
    # only one combination: no Figure 3
    one = summary[(summary.mobile == "rpi3b+") & (summary.edge == "laptop")]
    assert "fig3" not in plots.gain_figures(one) or len(plots.gain_figures(one)["fig3"].data) == 4
    assert plots.fig3_figure(summary, policy="nope") is None


def test_delay_components_sum_to_mean_delay(tables):
    summary, frames = tables
    fig = plots.delay_components_figure(summary, _stats(frames))
    assert fig.layout.barmode == "stack"
    assert {t.name for t in fig.data} == {n for _, n in plots.COMPONENTS}
    # the offload facet on upboard → laptop: bars (ms) add up to delay_mean_s
    row = summary[(summary.policy == "offload") & (summary.mobile == "upboard") & (summary.edge == "laptop")]
    row = row[row.data_rate_mbps == 10.0].iloc[0]
    policies = list(dict.fromkeys(summary.policy))
    combos = list(dict.fromkeys(f"{m} → {e}" for m, e in zip(summary.mobile, summary.edge)))
    facet = combos.index("upboard → laptop") * len(policies) + policies.index("offload") + 1
    xaxis = "x" if facet == 1 else f"x{facet}"
    total_ms = sum(t.y[list(t.x).index("10 Mbit/s")] for t in fig.data if t.xaxis == xaxis)
    assert fig.layout[f"xaxis{len(fig.layout.annotations) - len(policies) + 1}"].title.text in (None, "uplink data rate (Mbit/s)")
    assert total_ms == pytest.approx(row.delay_mean_s * 1e3)


def test_delay_components_exclude_dropped_frames():
    summary, frames = make_tables(combos=[("rpi3b+", "laptop")], rates=[1.0, 10.0], drop_every=3)
    fig = plots.delay_components_figure(summary, _stats(frames))
    head = next(t for t in fig.data if t.name == "head" and t.xaxis == "x")  # policy local
    kept = frames[(frames.point == 0) & (frames.policy == "local") & (frames.status != "dropped")]
    assert head.y[0] == pytest.approx(kept.head_s.mean() * 1e3)


def test_delay_cdf_per_policy_and_tops_out_below_one_with_drops():
    summary, frames = make_tables(combos=[("rpi3b+", "laptop")], rates=[1.0, 10.0], drop_every=5)
    fig = plots.delay_cdf_figure(_stats(frames).sample, summary)
    assert {t.name for t in fig.data} == {"local", "offload", "mimic"}
    assert len(fig.data) == 3 * 2  # two points, both shown
    for t in fig.data:
        assert list(t.x) == sorted(t.x) and t.y[-1] == pytest.approx(0.8)


def test_delay_cdf_picks_median_rate_when_many_points(tables):
    summary, frames = tables
    sample = _stats(frames).sample
    fig = plots.delay_cdf_figure(sample, summary, max_points=4)
    titles = [a.text for a in fig.layout.annotations]
    assert len(titles) <= 4 and all("2 Mbit/s" in t for t in titles)  # median of 0.5, 2, 10, 50 (lower)
    assert len(plots.delay_cdf_figure(sample).data) == 3  # no summary: one point


def test_layer_profile_percentages_hand_computed():
    t = plots.layer_percentages(tiny_profile())
    np.testing.assert_allclose(t["size_float32_percent"], [100.0, 200.0, 25.0])
    np.testing.assert_allclose(t["size_zlib_float32_percent"], [75.0, 50.0, 12.5])
    np.testing.assert_allclose(t["complexity_percent"], [0.0, 25.0, 90.0])
    fig = plots.layer_profile_figure(tiny_profile())
    by_name = {tr.name: tr for tr in fig.data}
    np.testing.assert_allclose(by_name["data size, float32 (%)"].y, [100.0, 200.0, 25.0])
    np.testing.assert_allclose(by_name["cumulative complexity (% FLOPs)"].y, [0.0, 25.0, 90.0])
    assert by_name["cumulative complexity (% FLOPs)"].yaxis == "y2"
    assert list(by_name["data size, zlib float32 (%)"].x) == ["input", "b1", "b2"]  # split points by layer name
    assert list(by_name["data size, zlib float32 (%)"].text) == ["0", "1", "2"]
    assert fig.layout.xaxis.type == "category" and "layer name" in fig.layout.xaxis.title.text


def test_energy_figure_shows_compute_and_radio(tables):
    summary, _ = tables
    fig = plots.energy_figure(summary)
    assert [a.text for a in fig.layout.annotations][:3] == [
        "total (compute + radio)", "compute (head)", "radio (uplink + downlink)"]
    assert fig.layout.xaxis.type == "log"
    assert len(fig.data) == 3 * 3 * len(COMBOS)
    radio_local = [t for t in fig.data if t.name == "local: rpi3b+ → laptop" and t.xaxis == "x3"][0]
    np.testing.assert_allclose(radio_local.y, 50.0)  # mJ
    assert plots.energy_figure(summary.assign(data_rate_mbps=np.nan)) is None


def test_optional_figures_only_with_data(tables):
    summary, frames = tables
    assert plots.throughput_drop_figure(summary) is None
    assert plots.accuracy_figure(summary) is None
    late = summary.assign(deadline_miss_fraction=0.1)
    assert len(plots.throughput_drop_figure(late).data) == 3 * 3 * len(COMBOS)
    acc = plots.accuracy_figure(summary.assign(accuracy=0.9, f1=0.8))
    assert {t.name for t in acc.data} == {"local", "offload", "mimic"}
    all_figs = plots.build_figures(summary.assign(f1=0.8), _stats(frames), [tiny_profile()])
    assert {"gain_vs_offload", "gain_vs_local", "fig3", "delay_components", "delay_cdf", "energy",
            "accuracy", "layers_tiny_net"} <= set(all_figs)
    swept = {n for n in all_figs if "_vs_" in n and n.count("_vs_") + n.startswith("gain_vs_") > 1
             or n.endswith("_vs_link.data_rate_mbps")}
    assert "delay_mean_s_vs_link.data_rate_mbps" in swept and "gain_vs_local_vs_mobiles.0.device" in all_figs
    assert "delay_cdf" not in plots.build_figures(summary, None)


def test_extra_sweep_splits_series():
    a, _ = make_tables(combos=[("rpi3b+", "laptop")], rates=[1.0, 10.0])
    b = a.assign(point=a.point + 10)
    summary = pd.concat([a.assign(**{"sweep.workload.frame_rate_fps": 5}),
                         b.assign(**{"sweep.workload.frame_rate_fps": 30})], ignore_index=True)
    names = {t.name for t in plots.gain_figures(summary)["gain_vs_local"].data}
    assert "mimic: rpi3b+ → laptop (frame rate = 5 frames/s)" in names and len(names) == 4


class _FlatUplink:
    """A traced uplink stand-in: the same rate at every time."""

    def rate_bps_at(self, t: float) -> float:
        return 5e6


def test_delay_over_time_gain_is_the_mean_of_window_ratios():
    """Window 0: local 1 s vs mimic 0.5 s (ratio 2); window 1: 1 s vs 0.25 s (ratio 4), one mimic frame dropped:
    the legend gives (2 + 4) / 2 = 3.00, not the ratio of overall means (1 / 0.375 = 2.67)."""
    w = plots.GAIN_WINDOW_S
    rows = []
    for policy, delays in (("local", [1.0, 1.0, 1.0, 1.0]), ("mimic", [0.5, 0.5, 0.25, np.nan])):
        for i, d in enumerate(delays):
            rows.append({"point": 0, "replication": 0, "policy": policy, "capture_s": (i // 2) * w + 0.1 * i,
                         "delay_s": d, "status": "dropped" if np.isnan(d) else "completed", "warmup": False})
    fig = plots.delay_over_time_figure(pd.DataFrame(rows), {"phone": _FlatUplink()})
    names = [t.name for t in fig.data]
    assert "mimic (time-averaged gain vs local 3.00)" in names and "local" in names
    note = report.FIGURE_NOTES["delay_over_time"]
    assert f"{w:g} s windows" in note and "T_local / T_policy" in note and "unweighted mean" in note


@pytest.fixture(scope="module")
def small_figs(tables):
    summary, frames = tables
    return {"gain_vs_offload": plots.gain_figures(summary)["gain_vs_offload"],
            "layers_tiny": plots.layer_profile_figure(tiny_profile())}


def _no_tmp(out: Path) -> bool:
    return not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_write_report_has_every_figure_summary_and_manifest(tmp_path, tables, small_figs):
    summary, _ = tables
    manifest = {"seed": 7, "git_revision": "abc123", "versions": {"plotly": "7"}, "wall_time_s": 1.5}
    path = report.write_report(tmp_path, small_figs, summary, manifest, "Test <report>")
    text = path.read_text(encoding="utf-8")
    assert path.name == "report.html" and (tmp_path / "plotly.min.js").is_file()
    assert "<script charset='utf-8' src='plotly.min.js'></script>" in text and "cdn.plot.ly" not in text
    assert "Test &lt;report&gt;" in text and "T_baseline / T_policy" in text
    for name in small_figs:
        assert f'id="fig-{name}"' in text
    assert "class=\"dataframe t summary\"" in text and "delay_mean_ms" in text and "gain_vs_offload" in text
    assert "abc123" in text and "wall_time_s" in text
    assert _no_tmp(tmp_path)


def test_format_summary_units_and_digits():
    df = pd.DataFrame({"policy": ["mimic"], "delay_mean_s": [0.0123456], "head_s_mean": [1.23456],
                       "gain_vs_local": [1.23456], "drop_fraction": [np.nan], "bytes_per_frame": [1234.4],
                       "energy_mobile_j_per_frame": [0.000123456], "data_rate_mbps": [2.5]})
    out = report.format_summary(df).iloc[0].to_dict()
    assert out == {"policy": "mimic", "delay_mean_ms": "12.3", "head_ms_mean": "1235", "gain_vs_local": "1.235",
                   "drop_fraction": "–", "bytes_per_frame": "1,234", "energy_mobile_j_per_frame": "0.000123",
                   "data_rate_mbps": "2.5"}


def test_write_figures_png_no_writes_html_only(tmp_path, small_figs):
    written = report.write_figures(small_figs, tmp_path, png="no")
    assert set(written) == set(small_figs)
    assert not list(tmp_path.glob("*.png")) and _no_tmp(tmp_path)
    html = (tmp_path / "layers_tiny.html").read_text(encoding="utf-8")
    assert 'src="plotly.min.js"' in html and (tmp_path / "plotly.min.js").stat().st_size > 1_000_000
    assert written.warnings == []


def test_write_figures_rejects_bad_mode_and_keeps_files_inside(tmp_path, small_figs):
    with pytest.raises(EdgesimError):
        report.write_figures(small_figs, tmp_path, png="maybe")
    out = tmp_path / "out"
    written = report.write_figures({"../evil": small_figs["layers_tiny"], "layers_org/model": small_figs["layers_tiny"]},
                                   out, png="no")
    assert written["../evil"] == [out / "_evil.html"] and written["layers_org/model"] == [out / "layers_org_model.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(EdgesimError):
        report.write_figures({"a/b": small_figs["layers_tiny"], "a_b": small_figs["layers_tiny"]}, out, png="no")


def test_png_auto_never_raises_and_yes_raises_one_line(tmp_path, small_figs, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chromium"))
    with pytest.warns(RuntimeWarning, match="PNG export failed"):
        written = report.write_figures(small_figs, tmp_path / "auto", png="auto")
    assert len(written.warnings) == 1 and "\n" not in written.warnings[0]
    assert all(len(v) == 1 for v in written.values()) and not list((tmp_path / "auto").glob("*.png"))
    with pytest.raises(EdgesimError) as err:
        report.write_figures(small_figs, tmp_path / "yes", png="yes")
    assert "\n" not in str(err.value)
    assert _no_tmp(tmp_path)


@pytest.mark.skipif(not (Path("/usr/bin/chromium").is_file() or shutil.which("chromium")),
                    reason="no Chromium for kaleido")
def test_png_renders_with_local_chromium(tmp_path, small_figs, monkeypatch):
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    written = report.write_figures(small_figs, tmp_path, png="yes")
    for name in small_figs:
        png = tmp_path / f"{name}.png"
        assert png in written[name] and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _no_tmp(tmp_path)


def test_crossovers_give_the_rate_interval_where_each_gain_crosses_one():
    import pandas as pd

    from edgesim.report.plots import crossovers

    rates = [1.0, 2.0, 4.0, 8.0]
    rows = [{"point": k, "policy": "mimic", "mobile": "m", "edge": "e", "data_rate_mbps": r,
             "gain_vs_offload": g, "gain_vs_offload_p5": g - 0.3, "gain_vs_offload_p95": g + 0.3,
             "gain_vs_local": 2.0, "gain_vs_local_p5": 1.5, "gain_vs_local_p95": 2.5}
            for k, (r, g) in enumerate(zip(rates, [1.5, 1.2, 0.9, 0.6]))]
    c = crossovers(pd.DataFrame(rows)).set_index("gain")
    assert c.loc["gain_vs_offload", "crosses 1 (mean)"] == "2-4"
    assert c.loc["gain_vs_offload", "crosses 1 (5 % band)"] == "1-2"
    assert c.loc["gain_vs_offload", "crosses 1 (95 % band)"] == "4-8"
    assert c.loc["gain_vs_local", "crosses 1 (mean)"] == "never"


def test_a_run_s_plots_read_frames_parquet_a_row_group_at_a_time(tmp_path, monkeypatch):
    """Plots of a large run read what they draw (issue 28 point 6): per-row-group sums and a sample of frames, never
    frames.parquet whole (which took a 10-million-frame run to 6.38 GB); the sample is capped at sample_rows."""
    import pyarrow.parquet as pq

    from edgesim.cli.app import main
    from edgesim.report import outputs
    from tests.sim_helpers import scenario_dict, write_scenario, write_toy_profiles

    def whole(*args, **kwargs):
        raise AssertionError("frames.parquet read whole")

    for owner, name in ((pd, "read_parquet"), (pq, "read_table"), (pq.ParquetFile, "read")):
        monkeypatch.setattr(owner, name, whole)
    groups, stats = [], []
    read_group = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group",
                        lambda self, k, **kw: groups.append(k) or read_group(self, k, **kw))
    real = outputs.read_frame_stats
    monkeypatch.setattr(outputs, "read_frame_stats", lambda path, comps: stats.append(real(path, comps, sample_rows=50))
                        or stats[-1])
    data = scenario_dict(write_toy_profiles(tmp_path), workload={"source": "poisson", "frame_rate_fps": 2.0,
                                                                 "frames": 400},
                         outputs={"plots": True, "png": "no"})
    out = tmp_path / "out"
    assert main(["run", str(write_scenario(tmp_path, data)), "--out", str(out), "--jobs", "1"]) == 0
    assert groups and len(stats) == 1 and stats[0].stride > 1 and len(stats[0].sample) <= 50
    assert (out / "plots" / "delay_cdf.html").exists() and (out / "report.html").exists()
