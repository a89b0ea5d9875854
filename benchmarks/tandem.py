"""The benchmark tandem (mobile device -> link -> server, Poisson frames) in each engine under test."""

from __future__ import annotations

import numpy as np
import simpy

from simulator.engine import simulate
from simulator.link import RateTrace
from simulator.plan import FramePlan, Topology

ARRIVAL_RATE_FPS = 1.0
HEAD_MEAN_S = 0.5  # exponential service at the mobile device
TRANSFER_S = 0.2  # deterministic: 200 kbit at 1 Mbit/s
TAIL_MEAN_S = 0.6  # exponential service at the edge server
LINK_BPS = 1e6


def tandem_plan(n: int, seed: int = 1) -> tuple[FramePlan, Topology]:
    """n Poisson frames through the three-stage tandem; the downlink is left out (zero-length)."""
    rng = np.random.default_rng(seed)
    capture = np.cumsum(rng.exponential(1 / ARRIVAL_RATE_FPS, n))
    head = rng.exponential(HEAD_MEAN_S, (1, n))
    tail = rng.exponential(TAIL_MEAN_S, (1, n))
    wire = np.full((1, n), TRANSFER_S * LINK_BPS)
    plan = FramePlan(capture, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int16), head, wire, tail,
                     np.zeros((1, n)), 1)
    topo = Topology(servers=1, uplink=[RateTrace.constant(LINK_BPS / 1e6)], shared_medium=False,
                    propagation_s=0.0, downlink_bps=LINK_BPS)
    return plan, topo


def run_simpy_engine(n: int) -> np.ndarray:
    plan, topo = tandem_plan(n)
    return simulate(plan, topo)["done"]


def run_plain_simpy(n: int) -> np.ndarray:
    """The textbook SimPy tandem: one process per frame, a Resource per stage."""
    plan, _ = tandem_plan(n)
    env = simpy.Environment()
    stages = [simpy.Resource(env, 1) for _ in range(3)]
    done = np.empty(n)
    head, tail = plan.head_s[0], plan.tail_s[0]

    def frame(i):
        for stage, service in zip(stages, (head[i], TRANSFER_S, tail[i])):
            with stage.request() as req:
                yield req
                yield env.timeout(service)
        done[i] = env.now

    def source():
        last = 0.0
        for i in range(n):
            yield env.timeout(plan.capture_s[i] - last)
            last = plan.capture_s[i]
            env.process(frame(i))

    env.process(source())
    env.run()
    return done


def run_ciw(n: int) -> int:
    """The same tandem in Ciw (its own random streams): frames completed."""
    import ciw

    ciw.seed(1)
    network = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(rate=ARRIVAL_RATE_FPS), None, None],
        service_distributions=[ciw.dists.Exponential(rate=1 / HEAD_MEAN_S), ciw.dists.Deterministic(value=TRANSFER_S),
                               ciw.dists.Exponential(rate=1 / TAIL_MEAN_S)],
        routing=[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]],
        number_of_servers=[1, 1, 1],
    )
    sim = ciw.Simulation(network)
    sim.simulate_until_max_customers(n, method="Finish")
    return len(sim.get_all_records())
