"""A link per mobile device (own rate or trace, offsets into it, hold or wrap), and delay that varies over time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulator import run
from simulator.link import RateTrace, load_rate_trace
from simulator.scenario import ScenarioError, load_scenario
from tests.sim_helpers import scenario_dict, write_scenario, write_toy_profiles


@pytest.fixture()
def profiles(tmp_path):
    return write_toy_profiles(tmp_path)


def _trace(tmp_path, rows, name="link.csv", rtt=None) -> str:
    path = tmp_path / name
    head = "time_s,data_rate_mbps" + (",rtt_ms" if rtt is not None else "")
    lines = [f"{t},{r}" + (f",{d}" if rtt is not None else "") for (t, r), d in zip(rows, rtt or [None] * len(rows))]
    path.write_text("# source: test\n" + head + "\n" + "\n".join(lines) + "\n")
    return str(path)


def _offload(profiles, **over):
    base = scenario_dict(profiles, policies=[{"name": "offload"}],
                         workload={"source": "periodic", "frame_rate_fps": 0.5, "frames": 10, "service_time": "median"})
    base.update(over)
    return base


def test_each_group_has_its_own_uplink_rate(profiles):
    data = _offload(profiles, mobiles=[{"device": "toy-mobile", "link": {"data_rate_mbps": 0.5}},
                                       {"device": "toy-mobile", "count": 2}])
    frames, summary = run(data)
    wire_bits = (192 + 40) * 8
    by = frames.groupby("mobile")["transfer_s"].agg(["min", "max"])
    assert by.loc["toy-mobile", "min"] == pytest.approx(wire_bits / 0.5e6)
    for k in (0, 1):
        assert by.loc[f"toy-mobile#{k}", "max"] == pytest.approx(wire_bits / 1e6)  # the scenario's 1 Mbit/s
    assert np.isnan(summary.loc[0, "data_rate_mbps"])  # no single rate describes the run


@pytest.mark.parametrize("engine", ["compiled", "simpy"])
def test_offsets_and_wrap_follow_the_trace(tmp_path, profiles, engine):
    # 1 Mbit/s for 1 s, then 0.1 Mbit/s for 1 s, trace ends at 2 s; cameras 0.5 s apart in the trace
    path = _trace(tmp_path, [(0, 1.0), (1, 0.1), (2, 0.1)])
    for end in ("hold", "wrap"):
        data = _offload(profiles, engine=engine, mobiles=[{"device": "toy-mobile", "count": 3, "link": {
            "trace": path, "trace_offset_s": 0.25, "offset_step_s": 0.5, "trace_end": end}}])
        frames, _ = run(data)
        base = load_rate_trace(path, end=end)
        for k in range(3):
            rows = frames[frames.mobile == f"toy-mobile#{k}"]
            link = base.shifted(0.25 + 0.5 * k)
            start = rows["capture_s"].to_numpy() + rows["head_s"].to_numpy() + rows["uplink_queue_s"].to_numpy()
            expected = np.asarray(link.finish_time(start, rows["wire_bytes_up"].to_numpy() * 8)) - start
            np.testing.assert_allclose(rows["transfer_s"], expected, rtol=0, atol=1e-9)
        late = frames[frames.capture_s > 4]  # past the trace's end: held at 0.1 Mbit/s, or the trace again
        rate = (late["wire_bytes_up"] * 8 / late["transfer_s"]).to_numpy()
        if end == "hold":
            assert rate == pytest.approx(0.1e6)
        else:
            assert rate.max() > 0.2e6


def test_a_wrapped_trace_repeats_exactly():
    tr = RateTrace(np.array([0.0, 1.0, 2.0]), np.array([1e6, 0.0, 2e6]), period_s=3.0)
    assert tr.bits_until(7.0) == pytest.approx(2 * 3e6 + 1e6)
    assert tr.finish_time(2.9, 0.5e6) == pytest.approx(3.3)  # 0.2 Mbit before the period ends, 0.3 after
    assert tr.finish_time(0.9, 0.1e6) == pytest.approx(1.0)  # ends as the outage starts, not after it
    rot = tr.shifted(1.5)
    t = np.linspace(0, 9, 37)
    np.testing.assert_allclose([rot.rate_bps_at(x) for x in t], [tr.rate_bps_at(x + 1.5) for x in t])


def test_an_offset_beyond_a_held_trace_is_one_line_with_the_yaml_line(tmp_path, profiles):
    path = _trace(tmp_path, [(0, 1.0), (1, 0.1), (2, 0.1)])
    data = _offload(profiles, mobiles=[{"device": "toy-mobile", "count": 3,
                                        "link": {"trace": path, "offset_step_s": 1.5}}])
    yaml_path = write_scenario(tmp_path, data)
    line = next(i for i, text in enumerate(yaml_path.read_text().splitlines(), start=1) if "offset_step_s" in text)
    with pytest.raises(ScenarioError, match=rf"scenario.yaml:{line}: field 'mobiles.0.link.offset_step_s': the last "
                                            r"mobile device would start 3 s into .* which ends at 2 s"):
        load_scenario(yaml_path)
    data["mobiles"][0]["link"]["trace_end"] = "wrap"
    load_scenario(write_scenario(tmp_path, data))  # wrapping around has no end to run past


def test_a_wan_offset_beyond_a_held_trace_is_one_line_with_the_field(tmp_path, profiles):
    path = _trace(tmp_path, [(0, 1.0), (1, 0.1), (2, 0.1)], name="wan.csv")
    data = _offload(profiles, edge=None, assignment="round-robin",
                    edges=[{"name": "e1", "device": "toy-edge"}, {"name": "e2", "device": "toy-edge"}],
                    cloud={"device": "toy-edge", "wan": {"trace": path, "offset_step_s": 2.5}})
    data.pop("edge")
    with pytest.raises(ScenarioError, match=r"field 'cloud.wan.offset_step_s': the last edge server would start "
                                            r"2.5 s into .* which ends at 2 s"):
        load_scenario(write_scenario(tmp_path, data))


@pytest.mark.parametrize("distribution", ["uniform", "normal", "lognormal", "exponential"])
def test_jittered_delay_engines_agree_and_fifo_keeps_order(profiles, distribution):
    link = {"data_rate_mbps": 2.0, "propagation_delay_s": 0.05, "packet_overhead_bytes": 40,
            "delay": {"distribution": distribution, "std_s": 0.04}}
    data = scenario_dict(profiles, mobiles=[{"device": "toy-mobile", "count": 2}], link=link,
                         policies=[{"name": "offload"}, {"name": "split", "split_point": "mid"}],
                         workload={"source": "poisson", "frame_rate_fps": 8.0, "frames": 300, "service_time": "sampled"})
    comp, _ = run({**data, "engine": "compiled"})
    simpy, _ = run({**data, "engine": "simpy"})
    for col in ("propagation_s", "server_queue_s", "return_s", "delay_s", "done_s"):
        np.testing.assert_allclose(comp[col], simpy[col], rtol=0, atol=1e-9, err_msg=col)
    up = comp["capture_s"] + comp["mobile_queue_s"] + comp["head_s"] + comp["uplink_queue_s"] + comp["transfer_s"]
    mean_prop = comp["propagation_s"].mean() / 2
    assert mean_prop == pytest.approx(0.05, rel=0.25)  # the stated mean (FIFO holds add a little)
    for _, g in comp.assign(up_end=up).groupby(["policy", "mobile"]):
        g = g.sort_values("up_end", kind="stable")
        server_arrive = (g["up_end"] + g["propagation_up_s"]).to_numpy()
        assert np.all(np.diff(server_arrive) >= -1e-12)  # FIFO: no frame reaches the server before an earlier one
    reordered, _ = run({**data, "engine": "compiled", "link": {**link, "allow_reordering": True}})
    assert (reordered["propagation_up_s"] <= comp["propagation_up_s"] + 1e-12).all()  # no FIFO hold
    arrive = reordered["capture_s"] + reordered["mobile_queue_s"] + reordered["head_s"] + reordered["uplink_queue_s"] \
        + reordered["transfer_s"] + reordered["propagation_up_s"]
    order = reordered.assign(a=arrive, s=up).sort_values(["policy", "mobile", "s"])
    assert (order.groupby(["policy", "mobile"])["a"].diff() < 0).any()  # jitter now overtakes


@pytest.mark.parametrize("engine", ["compiled", "simpy"])
def test_delay_follows_the_traces_rtt(tmp_path, profiles, engine):
    path = _trace(tmp_path, [(0, 1.0), (5, 1.0), (10, 1.0)], rtt=[40, 400, 40])
    data = _offload(profiles, engine=engine, link={"trace": path, "delay": {"from_trace": True},
                                                   "packet_overhead_bytes": 40, "trace_end": "wrap"},
                    workload={"source": "periodic", "frame_rate_fps": 1.0, "frames": 20, "service_time": "median"})
    frames, _ = run(data)
    up_end = frames["capture_s"] + frames["transfer_s"]
    rtt_half = np.where((up_end % 10) < 5, 0.02, 0.2)
    server_arrive = up_end + frames["propagation_up_s"]
    held = np.maximum.accumulate((up_end + rtt_half).to_numpy())  # FIFO: a short delay waits behind a long one
    np.testing.assert_allclose(server_arrive, held, rtol=0, atol=1e-9)
    assert pd.Series(frames["propagation_s"]).max() == pytest.approx(0.4, abs=1e-9)


@pytest.mark.parametrize("estimate", ["oracle", "ewma"])
def test_best_split_plans_through_an_outage_and_engines_agree(tmp_path, profiles, estimate):
    # 2 Mbit/s, an outage from 2 to 4 s, then 2 Mbit/s again: during the outage sending looks ~forever away
    path = _trace(tmp_path, [(0, 2.0), (2, 0.0), (4, 2.0), (6, 2.0)])
    data = scenario_dict(profiles, link={"trace": path, "packet_overhead_bytes": 40},
                         policies=[{"name": "best-split", "bandwidth_estimate": estimate}],
                         workload={"source": "periodic", "frame_rate_fps": 4.0, "frames": 24, "service_time": "median"})
    simpy, _ = run({**data, "engine": "simpy"})
    compiled, _ = run({**data, "engine": "compiled"})
    np.testing.assert_allclose(simpy["done_s"], compiled["done_s"], rtol=0, atol=1e-9)
    if estimate == "oracle":  # nothing is sent during the outage: those frames run locally
        during = simpy[(simpy.capture_s >= 2.0) & (simpy.capture_s < 4.0)]
        assert (during["decision"] == "local").all()  # best-split names its all-local route 'local'
        assert (simpy["decision"] != "local").any()


def test_offsets_on_the_scenario_link_step_through_every_mobile_device_it_carries(tmp_path, profiles):
    # two groups share the scenario's traced link: the four cameras start 0, 0.5, 1.0 and 1.5 s into it
    path = _trace(tmp_path, [(0, 1.0), (1, 0.1), (2, 0.1)])
    data = _offload(profiles, engine="compiled", mobiles=[{"device": "toy-mobile", "count": 2},
                                                      {"device": "toy-edge", "count": 2}],
                    link={"trace": path, "offset_step_s": 0.5, "trace_end": "wrap", "packet_overhead_bytes": 40})
    frames, _ = run(data)
    base = load_rate_trace(path, end="wrap")
    for k, name in enumerate(["toy-mobile#0", "toy-mobile#1", "toy-edge#0", "toy-edge#1"]):
        rows = frames[frames.mobile == name]
        start = (rows["capture_s"] + rows["head_s"] + rows["uplink_queue_s"]).to_numpy()
        expected = np.asarray(base.shifted(0.5 * k).finish_time(start, rows["wire_bytes_up"].to_numpy() * 8)) - start
        np.testing.assert_allclose(rows["transfer_s"], expected, rtol=0, atol=1e-9)


def test_packed_traces_hold_their_integrals_and_a_shared_trace_packs_as_its_copies():
    """pack_steps by hand: rates 2, 4, 1 bit/s from 0, 1 and 3 s carry 0, 2 and 10 bits by each step; repeating every
    5 s, 12 bits a period. A trace at offset 0 is the trace itself, and packing it for many devices repeats its rows."""
    from simulator.link import PackedSteps, SlowStart, pack_steps

    t = RateTrace(np.array([0.0, 1.0, 3.0]), np.array([2.0, 4.0, 1.0]), period_s=5.0)
    c = RateTrace.constant(8.0)
    slow = RateTrace(np.array([0.0]), np.array([1e6]), slow_start=SlowStart(rtt_s=0.01, segment_bytes=1500))
    assert t.shifted(0.0) is t and c.shifted(0) is c
    packed: PackedSteps = pack_steps([t, c, t, slow])
    assert packed.offsets.tolist() == [0, 3, 4, 7, 8]
    assert packed.steps["integral"].tolist() == [0.0, 2.0, 10.0, 0.0, 0.0, 2.0, 10.0, 0.0]
    assert packed.steps["value"].tolist() == [2.0, 4.0, 1.0, 8e6, 2.0, 4.0, 1.0, 1e6]
    assert packed.periods["period_s"].tolist() == [5.0, 0.0, 5.0, 0.0]
    assert packed.periods["integral"].tolist() == [12.0, 0.0, 12.0, 0.0]
    assert packed.periods["restart_idle_s"].tolist()[:3] == [np.inf] * 3
    assert packed.periods["restart_idle_s"][3] == pytest.approx(0.21) and packed.periods["window_bits"][3] == 120_000
    assert t.finish_time(0.5, 3.0) == pytest.approx(1.5)  # 1 bit by 1 s, then 2 more at 4 bit/s
    empty = pack_steps([])
    assert empty.offsets.tolist() == [0] and empty.periods["restart_idle_s"].tolist() == [np.inf]
