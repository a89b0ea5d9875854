"""`python -m benchmarks.validation`: the engines against closed forms, written to docs/validation.md.

Each check simulates with both engines (20 replications of 40,000 Poisson frames, 2,000 warm-up frames
left out) and compares the mean with queueing theory; the interval is a 95 % Student-t interval over
the replications' means.
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from profilers.io import atomic_write_text
from simulator.link import Packetiser, RateTrace
from simulator.metrics import ci95_half_width
from simulator.scenario import Scenario
from simulator.sweep import run
from tests.sim_helpers import scenario_dict, write_toy_profiles


def erlang_c_wait(lam: float, mu: float, c: int) -> float:
    """Mean wait in queue of M/M/c (Erlang C)."""
    a, rho = lam / mu, lam / (c * mu)
    top = a**c / math.factorial(c) / (1 - rho)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top) / (c * mu - lam)


REPLICATIONS = 20


def _scenario(profiles, mobile, edge, lam, policy, engine, servers=1, split=None, frames=40000, reps=REPLICATIONS):
    pol = {"name": policy, **({"split_point": split} if split else {})}
    return Scenario.model_validate(scenario_dict(
        profiles, devices=[{"name": "m", "kind": "mobile", "latency": mobile}, {"name": "e", "kind": "edge", "latency": edge}],
        mobiles=[{"device": "m"}], edge={"device": "e", "servers": servers}, link={"data_rate_mbps": 1e9},
        workload={"source": "poisson", "frame_rate_fps": lam, "frames": frames, "warmup_frames": 2000},
        policies=[pol], replications=reps, engine=engine))


def _mean_ci(frames, column):
    done = frames[~frames["warmup"]]
    means = done.groupby("replication")[column].mean().to_numpy()
    return float(means.mean()), ci95_half_width(means)


def checks(profiles) -> list[dict]:
    out = []
    exp = lambda m: {"distribution": "exponential", "mean_s": m}  # noqa: E731
    fixed = lambda m: {"distribution": "fixed", "mean_s": m}  # noqa: E731
    cases = [
        ("M/M/1 sojourn time, lambda=0.5, mu=1", dict(mobile=exp(1.0), edge=fixed(0.1), lam=0.5, policy="local"),
         "delay_s", 1 / (1 - 0.5), "W = 1/(mu - lambda)"),
        ("M/D/1 waiting time, lambda=0.6, S=1 s", dict(mobile=fixed(1.0), edge=fixed(0.1), lam=0.6, policy="local"),
         "mobile_queue_s", 0.6 * 1.0 / (2 * (1 - 0.6)), "Pollaczek-Khinchine: Wq = rho S / (2 (1 - rho))"),
        ("M/M/3 waiting time, lambda=2.4, mu=1", dict(mobile=fixed(0.001), edge=exp(1.0), lam=2.4, policy="offload", servers=3),
         "server_queue_s", erlang_c_wait(2.4, 1.0, 3), "Erlang C: Wq = C(c, a) / (c mu - lambda)"),
        ("Tandem M/M/1 -> M/M/1 (split), lambda=0.5, mu1=1/0.6, mu2=1/0.8",
         dict(mobile=exp(1.2), edge=exp(1.6), lam=0.5, policy="split", split="mid"),
         "delay_s", 1 / (1 / 0.6 - 0.5) + 1 / (1 / 0.8 - 0.5), "Jackson: sum of 1/(mu_k - lambda)"),
    ]
    for title, kw, column, theory, formula in cases:
        for engine in ("simpy", "compiled"):
            frames, _ = run(_scenario(profiles, engine=engine, **kw))
            mean, half = _mean_ci(frames, column)
            out.append({"check": title, "engine": engine, "formula": formula, "theory": theory, "simulated": mean,
                        "ci95": half, "rel_error": abs(mean - theory) / theory,
                        "within_ci": abs(mean - theory) <= half})
    pk = Packetiser(payload_bytes=1460, overhead_bytes=40)
    wire = int(pk.wire_bytes(np.array([150528]))[0])
    t_const = RateTrace.constant(10.0).finish_time(0.0, wire * 8)
    out.append({"check": "transfer of 150,528 B at 10 Mbit/s, 1460 B payload + 40 B per packet", "engine": "link",
                "formula": "(B + ceil(B/P) O) 8 / R", "theory": (150528 + 104 * 40) * 8 / 10e6, "simulated": t_const,
                "ci95": 0.0, "rel_error": abs(t_const - (150528 + 104 * 40) * 8 / 10e6) / t_const, "within_ci": True})
    trace = RateTrace(np.array([0.0, 2.0, 3.0]), np.array([1e6, 0.0, 4e6]))
    t_trace = trace.finish_time(1.5, 1e6)
    out.append({"check": "1 Mbit from t=1.5 s over 1 Mbit/s until 2 s, outage until 3 s, then 4 Mbit/s",
                "engine": "link", "formula": "0.5 Mbit by 2 s, 0.5 Mbit/4 Mbit/s after 3 s", "theory": 3.125,
                "simulated": t_trace, "ci95": 0.0, "rel_error": abs(t_trace - 3.125) / 3.125, "within_ci": True})
    # energy: every device's energy equals power x busy time + idle power x idle time
    sc = Scenario.model_validate(scenario_dict(profiles))
    frames, summary = run(sc)
    g = frames[frames["policy"] == "split"]
    span = g["done_s"].max() - g["capture_s"].min()
    busy = g["head_s"].fillna(0).sum() + g["transfer_s"].fillna(0).sum()
    expected = 4.0 * g["head_s"].fillna(0).sum() + g["energy_mobile_radio_j"].sum() + 1.0 * (span - busy)
    got = float(summary[summary["policy"] == "split"]["energy_mobile_total_j"].iloc[0])
    out.append({"check": "mobile energy = P_active x busy + P_idle x idle + radio (split policy)", "engine": "both",
                "formula": "LEAF-style linear power model", "theory": expected, "simulated": got, "ci95": 0.0,
                "rel_error": abs(got - expected) / expected, "within_ci": True})
    return out


def to_markdown(rows: list[dict]) -> str:
    lines = ["# Validation against closed forms", "",
             "Generated by `python -m benchmarks.validation` (the same checks run, smaller, in "
             "`tests/test_simulator_theory.py`). Queueing checks: 20 replications x 40,000 Poisson frames, "
             "2,000 warm-up frames left out; 95 % Student-t interval over replication means.", "",
             "| check | engine | theory | simulated | 95 % CI half-width | rel. error | theory in CI | formula |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['check']} | {r['engine']} | {r['theory']:.6g} | {r['simulated']:.6g} | {r['ci95']:.3g} | "
                     f"{100 * r['rel_error']:.2f} % | {'yes' if r['within_ci'] else 'no'} | {r['formula']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        rows = checks(write_toy_profiles(Path(tmp)))
    text = to_markdown(rows)
    atomic_write_text(Path(__file__).resolve().parent.parent / "docs" / "validation.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
