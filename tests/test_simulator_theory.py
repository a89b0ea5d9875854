"""The engines against closed forms: M/M/1, M/D/1 (Pollaczek-Khinchine), M/M/c (Erlang C), Jackson tandem, links."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.link import Packetiser, RateTrace
from simulator.sweep import run
from simulator.scenario import Scenario
from tests.sim_helpers import scenario_dict, write_toy_profiles

ENGINES = ["simpy", "compiled"]


def _inline_scenario(tmp_path, *, mobile_latency, edge_latency, servers=1, lam=0.5, policy="local", frames=20000,
                     reps=4, engine="simpy", split_point=None):
    profiles = write_toy_profiles(tmp_path)
    pol = {"name": policy}
    if split_point:
        pol["split_point"] = split_point
    data = scenario_dict(
        profiles,
        devices=[{"name": "m", "kind": "mobile", "latency": mobile_latency},
                 {"name": "e", "kind": "edge", "latency": edge_latency}],
        mobiles=[{"device": "m"}],
        edge={"device": "e", "servers": servers},
        link={"data_rate_mbps": 1e9},
        workload={"source": "poisson", "frame_rate_fps": lam, "frames": frames, "warmup_frames": 1000},
        policies=[pol],
        replications=reps,
        engine=engine,
    )
    return Scenario.model_validate(data)


def _check(sim_mean, ci, theory, rel=0.05):
    """Within the replications' 95% interval widened a little, and within rel of theory."""
    assert abs(sim_mean - theory) <= max(2 * ci, rel * theory), (sim_mean, ci, theory)


@pytest.mark.parametrize("engine", ENGINES)
def test_mm1_sojourn(tmp_path, engine):
    lam, mu = 0.5, 1.0
    sc = _inline_scenario(tmp_path, mobile_latency={"distribution": "exponential", "mean_s": 1 / mu},
                          edge_latency={"mean_s": 0.1}, lam=lam, engine=engine)
    _, summary = run(sc)
    row = summary.iloc[0]
    _check(row["delay_mean_s"], row["delay_mean_ci95_s"], 1 / (mu - lam))


@pytest.mark.parametrize("engine", ENGINES)
def test_md1_pollaczek_khinchine(tmp_path, engine):
    lam, s = 0.6, 1.0
    rho = lam * s
    sc = _inline_scenario(tmp_path, mobile_latency={"distribution": "fixed", "mean_s": s},
                          edge_latency={"mean_s": 0.1}, lam=lam, engine=engine)
    frames, summary = run(sc)
    wq = rho * s / (2 * (1 - rho))
    done = frames[~frames["warmup"]]
    assert done["mobile_queue_s"].mean() == pytest.approx(wq, rel=0.06)
    _check(summary.iloc[0]["delay_mean_s"], summary.iloc[0]["delay_mean_ci95_s"], wq + s)


def erlang_c_wait(lam, mu, c):
    a = lam / mu
    rho = a / c
    top = a**c / math.factorial(c) / (1 - rho)
    p_wait = top / (sum(a**k / math.factorial(k) for k in range(c)) + top)
    return p_wait / (c * mu - lam)


@pytest.mark.parametrize("engine", ENGINES)
def test_mmc_erlang_c(tmp_path, engine):
    lam, mu, c = 2.4, 1.0, 3
    sc = _inline_scenario(tmp_path, mobile_latency={"mean_s": 0.001},
                          edge_latency={"distribution": "exponential", "mean_s": 1 / mu}, servers=c, lam=lam,
                          policy="offload", engine=engine)
    frames, _ = run(sc)
    done = frames[~frames["warmup"]]
    assert done["server_queue_s"].mean() == pytest.approx(erlang_c_wait(lam, mu, c), rel=0.1)


@pytest.mark.parametrize("engine", ENGINES)
def test_jackson_tandem(tmp_path, engine):
    # split at 'mid' (half the FLOPs): head exponential with mean 0.5*m on the mobile device, tail 0.5*e on the server
    lam = 0.5
    sc = _inline_scenario(tmp_path, mobile_latency={"distribution": "exponential", "mean_s": 2.0 * 0.6},
                          edge_latency={"distribution": "exponential", "mean_s": 2.0 * 0.8}, lam=lam,
                          policy="split", split_point="mid", engine=engine)
    _, summary = run(sc)
    mu1, mu2 = 1 / 0.6, 1 / 0.8
    theory = 1 / (mu1 - lam) + 1 / (mu2 - lam)
    _check(summary.iloc[0]["delay_mean_s"], summary.iloc[0]["delay_mean_ci95_s"], theory)


def test_transfer_time_constant_rate_with_overhead():
    pk = Packetiser(payload_bytes=1000, overhead_bytes=50)
    wire = pk.wire_bytes(np.array([2500]))[0]
    assert wire == 2500 + 3 * 50
    link = RateTrace.constant(2.0)
    assert link.finish_time(1.0, wire * 8) == pytest.approx(1.0 + 2650 * 8 / 2e6)


def test_transfer_time_piecewise_trace():
    # 1 Mbit/s for 2 s, outage for 1 s, then 4 Mbit/s
    trace = RateTrace(np.array([0.0, 2.0, 3.0]), np.array([1e6, 0.0, 4e6]))
    assert trace.finish_time(0.5, 1e6) == pytest.approx(1.5)
    assert trace.finish_time(1.5, 1e6) == pytest.approx(3.0 + 0.5e6 / 4e6)
    assert trace.finish_time(2.5, 4e6) == pytest.approx(4.0)


def test_loss_resends_are_negative_binomial():
    pk = Packetiser(payload_bytes=100, overhead_bytes=0, loss_probability=0.2)
    resent = pk.draw_resent_bytes(np.random.default_rng(1), np.full(20000, 1000))
    # 10 full packets each: resends ~ NB(10, 0.8): mean 10 * 0.2 / 0.8 = 2.5 packets of 100 bytes
    assert resent.mean() == pytest.approx(250, rel=0.03)


@pytest.mark.parametrize("size,payload,overhead", [(500, 1460, 40), (2500, 1000, 50), (1, 1460, 0), (3000, 1000, 40)])
def test_a_resend_repeats_the_lost_packet_at_its_own_size(size, payload, overhead):
    # expected resent bytes = p / (1 - p) x (payload + every packet's overhead): a small or partial last packet
    # is resent at its own size, not at the full configured packet size
    p = 0.2
    pk = Packetiser(payload_bytes=payload, overhead_bytes=overhead, loss_probability=p)
    resent = pk.draw_resent_bytes(np.random.default_rng(7), np.full(200_000, size))
    packets = -(-size // payload)
    expected = p / (1 - p) * (size + packets * overhead)
    assert resent.mean() == pytest.approx(expected, rel=0.02)
    # a 500-byte tensor at 20 % loss: the transfer is 25 % longer on average, not a third more
    wire = pk.wire_bytes(np.full(200_000, size), resent).mean()
    assert wire / (size + packets * overhead) == pytest.approx(1 / (1 - p), rel=0.02)


@pytest.mark.parametrize("engine", ENGINES)
def test_energy_accounting(tmp_path, engine):
    profiles = write_toy_profiles(tmp_path)
    sc = Scenario.model_validate(scenario_dict(profiles, engine=engine))
    frames, summary = run(sc)
    for policy, grp in frames.groupby("policy"):
        # compute energy = active power x head time (power-model estimate), radio = linear Wi-Fi model
        np.testing.assert_allclose(grp["energy_mobile_compute_j"], 4.0 * grp["head_s"].fillna(0), rtol=1e-12)
        off = grp[grp["bytes_up"] > 0]
        expected_radio = 0.5 * off["transfer_s"] + 0.01 * off["wire_bytes_up"] * 8 / 1e6
        assert (off["energy_mobile_radio_j"] >= expected_radio - 1e-12).all()
        np.testing.assert_allclose(grp["energy_server_j"], 50.0 * grp["tail_s"].fillna(0), rtol=1e-12)
        row = summary[summary["policy"] == policy].iloc[0]
        span = grp["done_s"].max() - grp["capture_s"].min()
        busy = grp["head_s"].fillna(0).sum() + grp["transfer_s"].fillna(0).sum()
        total = grp["energy_mobile_compute_j"].sum() + grp["energy_mobile_radio_j"].sum() + 1.0 * (span - busy)
        assert row["energy_mobile_total_j"] == pytest.approx(total, rel=1e-9)
