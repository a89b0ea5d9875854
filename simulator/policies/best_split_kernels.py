"""Best-split's and best-placement's kernels, which both engines run (numba: this module is imported by the first
run that needs them, not by `edgesim list policies` or `validate`; best_split's registry entries name it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simulator.jit import njit
from simulator.kernels.decisions import ewma_bps, least_delay, uplink_wait_s
from simulator.kernels.links import planning_bps
from simulator.link import RateTrace
from simulator.policies.base import PolicyKernels

if TYPE_CHECKING:
    from simulator.policies.best_split import BestSplitPolicy


@njit(cache=True)
def decide(state, view, routes, lo, hi):
    """Best-split's choice at a capture: the route with the least predicted delay, planning the uplink with the EWMA
    estimate (state[0] == 0) or the link's true rate now (the oracle), clamped by planning_bps."""
    v = view[0]
    bw = planning_bps(state[2 + v.link] if state[0] == 0.0 else v.uplink_rate_bps)
    return least_delay(routes, lo, hi, v, bw, uplink_wait_s(v, bw))


@njit(cache=True)
def observe(state, link, bits, duration_s):
    """Fold one finished uplink transfer into the link's EWMA estimate (weight state[1] for the newest)."""
    state[2 + link] = ewma_bps(state[2 + link], state[1], bits, duration_s)


def start_state(policy: "BestSplitPolicy", uplinks: list[RateTrace]) -> np.ndarray:
    """[estimate kind (0 EWMA, 1 oracle), alpha, one estimate per uplink, from its rate at time 0]."""
    spec = policy.spec
    return np.array([0.0 if spec.bandwidth_estimate == "ewma" else 1.0, spec.ewma_alpha]
                    + [tr.rate_bps_at(0.0) for tr in uplinks], dtype=float)


KERNELS = PolicyKernels(start_state, decide, observe)
"""Best-split's and best-placement's kernels: both engines run these."""
