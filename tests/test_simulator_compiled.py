"""The compiled engine equals the SimPy engine frame by frame (1e-9 s) over random scenarios of every feature, in
memory and window by window."""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

from simulator.compiled import simulate_compiled, simulate_compiled_windows, supports, why_not
from simulator.devices import ServiceTime
from simulator.engine import simulate
from simulator.link import DelayTrace, LinkDelay, RateTrace
from simulator.plan import Batching, EdgeTier, FramePlan, Tiers, Topology
from simulator.policies import ENTRIES, PolicyEntry, PolicyKernels, PolicySpecBase, Route, StatefulPolicy
from simulator.policies.best_split import BestPlacementPolicy, BestPlacementSpec, BestSplitPolicy, BestSplitSpec

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _trace(rng, kind: str, outages: bool = True) -> RateTrace:
    """A constant link, a stepped trace with outages (rate 0), or one that repeats with a period (predictions plan an
    outage with kernels.links.planning_bps, on the uplinks and the WAN alike)."""
    if kind == "constant":
        return RateTrace.constant(float(rng.uniform(0.2, 20)))
    rates = rng.uniform(0.2e6, 20e6, 5)
    rates[(rng.random(5) < 0.25) & outages] = 0.0
    rates[-1] = max(rates[-1], 1e5)
    times = np.cumsum(np.concatenate(([0.0], rng.uniform(0.2, 2.0, 4))))
    return RateTrace(times, rates, float(times[-1] + 1.0) if kind == "periodic" else 0.0)


def _plan(rng, n_mobiles: int, frames: int, routes: int, tiered: bool = False, delay: bool = False,
          per_edge: int = 0) -> FramePlan:
    """Random captures and per-route demands: route 0 local (tail NaN), the others offload; some heads are 0."""
    capture = np.concatenate([np.cumsum(rng.exponential(rng.uniform(0.05, 0.6), frames)) for _ in range(n_mobiles)])
    if rng.random() < 0.3:  # periodic cameras: exact ties between devices
        capture = np.concatenate([np.arange(frames) * 0.1 for _ in range(n_mobiles)])
    n = capture.size
    mobile = np.repeat(np.arange(n_mobiles), frames)
    head = rng.exponential(0.05, (routes, n)) * (rng.random((routes, n)) < 0.8)
    tail = rng.exponential(0.08, (routes, n))
    bits = rng.integers(1_000, 400_000, (routes, n)).astype(float)
    down = np.where(rng.random((routes, n)) < 0.5, 0.0, rng.exponential(0.01, (routes, n)))
    local = np.arange(routes) % (per_edge or routes) == 0 if routes > 1 else np.zeros(routes, bool)
    tail[local], bits[local], down[local] = np.nan, 0.0, 0.0
    route = rng.integers(0, routes, n).astype(np.int16)
    delay_u = rng.random((2, n)) if delay else None
    if not tiered:
        return FramePlan(capture, mobile, route, head, bits, tail, down, n_mobiles, delay_u)
    to_cloud = rng.random(routes) < 0.6
    to_cloud[local] = False
    cloud = np.where(to_cloud[:, None], rng.exponential(0.15, (routes, n)), np.nan)  # busy: batches form
    wan_bits = np.where(to_cloud[:, None], rng.integers(1_000, 200_000, (routes, n)), 0).astype(float)
    wan_down = np.where(to_cloud[:, None], rng.exponential(0.005, (routes, n)), 0.0)
    relay = to_cloud & (rng.random(routes) < 0.5)  # nothing to run on the edge server
    tail[relay] = np.nan
    keys = np.where(to_cloud, np.arange(routes) % 2, -1).astype(np.int64)
    factors = 1 + 0.139 * (np.arange(9)[None, :] - 1) * np.ones((routes, 1))
    return FramePlan(capture, mobile, route, head, bits, tail, down, n_mobiles, delay_u, wan_bits, cloud, wan_down,
                     per_edge, keys, factors)


def _assert_same(plan: FramePlan, topo: Topology, policy=None, routes=None, make_policy=None) -> float:
    """Every field of both engines on copies of the same plan; returns the largest time difference."""
    def copy():
        return FramePlan(**{**plan.__dict__, "route": plan.route.copy()})
    ref = simulate(copy(), topo, make_policy() if make_policy else policy, routes)
    pol = make_policy() if make_policy else policy
    assert supports(plan, topo, pol)
    got = simulate_compiled(copy(), topo, pol, routes)
    assert set(got) == set(ref)
    worst = max(_compare(ref, got), _compare(ref, _windowed(copy(), topo, make_policy() if make_policy else policy,
                                                             routes)))
    return worst


def _windowed(plan: FramePlan, topo: Topology, policy, routes) -> dict:
    """The compiled engine window by window (a few frames of every mobile device each), back in plan order."""
    per_mobile = plan.capture_s.size // plan.n_mobiles
    width = max(1, per_mobile // int(np.random.default_rng(per_mobile).integers(2, 6)))
    index = []

    def load(k: int):
        lo = k * width
        if lo >= per_mobile:
            return None
        idx = np.concatenate([m * per_mobile + np.arange(lo, min(per_mobile, lo + width)) for m in range(plan.n_mobiles)])
        index.append(idx)

        def take(a):
            return None if a is None else a[:, idx]
        return FramePlan(plan.capture_s[idx], plan.mobile[idx], plan.route[idx], take(plan.head_s),
                         take(plan.wire_bits), take(plan.tail_s), take(plan.down_s), plan.n_mobiles, take(plan.delay_u),
                         take(plan.wan_bits), take(plan.cloud_s), take(plan.wan_down_s), plan.routes_per_edge,
                         plan.cloud_key, plan.batch_factors)

    parts: dict[int, dict] = {}
    simulate_compiled_windows(load, topo, lambda k, _p, times: parts.__setitem__(k, times), policy, routes,
                              ring_windows=64)
    assert sorted(parts) == list(range(len(parts)))
    order = np.concatenate(index[:len(parts)])
    out = {}
    for key in parts[0]:
        vals = np.concatenate([parts[k][key] for k in range(len(parts))])
        out[key] = np.empty_like(vals)
        out[key][order] = vals
    return out


def _compare(ref: dict, got: dict) -> float:
    assert set(got) == set(ref)
    worst = 0.0
    for key, a in ref.items():
        b = got[key]
        if key in ("status", "drop_stage", "route"):
            np.testing.assert_array_equal(a, b, err_msg=key)
            continue
        assert np.array_equal(np.isnan(a), np.isnan(b)), key
        diff = float(np.nanmax(np.abs(a - b), initial=0.0))
        assert diff < 1e-9, (key, diff)
        worst = max(worst, diff)
    return worst


features = st.fixed_dictionaries({
    "seed": st.integers(0, 2**31), "n_mobiles": st.integers(1, 3), "routes": st.integers(1, 3),
    "servers": st.integers(1, 3), "trace": st.sampled_from(["constant", "stepped", "periodic"]),
    "prop": st.sampled_from([0.0, 0.0, 0.003]), "deadline": st.sampled_from([None, 0.2]),
})


@settings(max_examples=60, **SETTINGS)
@given(p=features, shared=st.booleans())
def test_stateless_pipeline_and_shared_medium(p, shared):
    rng = np.random.default_rng(p["seed"])
    plan = _plan(rng, p["n_mobiles"], 40, p["routes"])
    uplink = [_trace(rng, p["trace"])] if shared else [_trace(rng, p["trace"]) for _ in range(p["n_mobiles"])]
    topo = Topology(p["servers"], uplink, shared, p["prop"], 2e6, deadline_s=p["deadline"])
    _assert_same(plan, topo)


def _lindley_outcomes(run) -> list[bool]:
    """What compiled._lindley returned during run() (True: frames by recursion, False: met out of order)."""
    import simulator.compiled as compiled

    seen, original = [], compiled._lindley

    def spy(*args):
        seen.append(bool(original(*args)))
        return seen[-1]

    compiled._lindley = spy
    try:
        run()
    finally:
        compiled._lindley = original
    return seen


def _tied(plan: FramePlan) -> FramePlan:
    """One mobile device's plan with equal services and periodic captures: exact ties at every station (a head
    stays where the plan has one, likewise bits, tail and result)."""
    n = plan.capture_s.size
    return FramePlan(np.arange(n) * 0.05, plan.mobile, plan.route, np.where(plan.head_s > 0, 0.04, 0.0),
                     np.where(plan.wire_bits > 0, 80_000.0, 0.0), np.where(np.isnan(plan.tail_s), np.nan, 0.04),
                     np.where(plan.down_s > 0, 0.01, 0.0), 1)


@settings(max_examples=40, **SETTINGS)
@given(p=features, heads=st.sampled_from(["all", "none", "mixed"]), fixed=st.booleans())
def test_one_mobile_device_by_lindley_recursion(p, heads, fixed):
    """One mobile device and one server: frames go by Lindley's recursion, equal to the SimPy engine; where a
    frame without a head meets the uplink before one captured earlier, the recursion says so and events run."""
    rng = np.random.default_rng(p["seed"])
    plan = _plan(rng, 1, 60, p["routes"])
    if fixed:
        plan = _tied(plan)
    offloads = ~np.isnan(plan.tail_s)
    if heads == "all":
        plan.head_s[plan.head_s == 0] = 0.03
    elif heads == "none":
        plan.head_s[offloads] = 0.0
    topo = Topology(1, [_trace(rng, p["trace"])], False, p["prop"], 2e6, deadline_s=p["deadline"])
    outcomes = _lindley_outcomes(lambda: _assert_same(plan, topo))
    assert len(outcomes) == 1  # the in-memory run (windowed runs take the event loop)
    if heads != "mixed":
        assert outcomes == [True]


def test_lindley_falls_back_when_a_frame_overtakes():
    """A frame without a head captured while an earlier one is still on the mobile device reaches the uplink
    first: the recursion stops and the event loop gives the SimPy engine's times."""
    n = 4
    plan = FramePlan(np.array([0.0, 0.1, 0.2, 0.3]), np.zeros(n, np.int64), np.array([1, 0, 1, 0], np.int16),
                     np.array([[0.0] * n, [0.5] * n]), np.full((2, n), 8_000.0), np.full((2, n), 0.02),
                     np.zeros((2, n)), 1)
    topo = Topology(1, [RateTrace.constant(1.0)], False, 0.0, 1e6)
    assert _lindley_outcomes(lambda: _assert_same(plan, topo)) == [False]
    got = simulate_compiled(plan, topo)
    assert got["up_start"][1] == pytest.approx(0.1) and got["up_start"][0] == pytest.approx(0.5)


def _routes(rng, n_routes: int) -> list[Route]:
    """Best-split's candidates: local first, then splits with a head, bytes up, a tail and a result back."""
    out = []
    for k in range(n_routes):
        head = ServiceTime("fixed", float(rng.uniform(0.001, 0.08))) if k == 0 or rng.random() < 0.7 else None
        if k == 0:
            out.append(Route("local", "toy", "output", "", head, 0, None, 0))
            continue
        tail = ServiceTime("exponential", 0.0, mean_s=float(rng.uniform(0.01, 0.1)))
        out.append(Route(f"r{k}", "toy", "mid", "", head, int(rng.integers(500, 50_000)), tail,
                         int(rng.integers(0, 100))))
    return out


def _best_split(kind: str, alpha: float):
    def make():
        pol = BestSplitPolicy.__new__(BestSplitPolicy)  # the engines only call its stateful hooks
        pol.spec = BestSplitSpec(name="best-split", bandwidth_estimate=kind, ewma_alpha=alpha)
        return pol
    return make


@settings(max_examples=50, **SETTINGS)
@given(p=features, shared=st.booleans(), kind=st.sampled_from(["ewma", "oracle"]), alpha=st.floats(0.05, 1.0),
       bound=st.sampled_from([None, 0, 1, 3]), stale=st.booleans())
def test_best_split_with_bounds_drops_and_shared_medium(p, shared, kind, alpha, bound, stale):
    rng = np.random.default_rng(p["seed"])
    n_routes = max(p["routes"], 2)
    plan = _plan(rng, p["n_mobiles"], 40, n_routes)
    uplink = [_trace(rng, p["trace"])] if shared else [_trace(rng, p["trace"]) for _ in range(p["n_mobiles"])]
    topo = Topology(p["servers"], uplink, shared, p["prop"], 2e6, mobile_capacity=bound, server_capacity=bound,
                    drop_stale=stale, deadline_s=p["deadline"], packet_overhead_bytes=int(rng.integers(0, 60)))
    routes = _routes(rng, n_routes)
    # plan demands consistent with the routes: a route without a head has none, a local one sends nothing
    for k, r in enumerate(routes):
        if r.head is None:
            plan.head_s[k] = 0.0
    _assert_same(plan, topo, routes=[routes] * p["n_mobiles"], make_policy=_best_split(kind, alpha))


@settings(max_examples=40, **SETTINGS)
@given(p=features, kind=st.sampled_from(["ewma", "oracle"]), alpha=st.floats(0.05, 1.0),
       heads=st.sampled_from(["all", "mixed", "fixed"]))
def test_best_split_on_one_mobile_device_by_recursion(p, kind, alpha, heads):
    """Best-split with one mobile device and one server: the recursion decides at each capture from the backlogs
    and estimate the event loop would have then, equal to the SimPy engine; with a head on every route and no
    exact ties it never falls back; with ties (equal services, periodic captures) or frames without a head it may,
    and the times are the SimPy engine's either way."""
    rng = np.random.default_rng(p["seed"])
    n_routes = max(p["routes"], 2)
    plan = _plan(rng, 1, 60, n_routes)
    routes = _routes(rng, n_routes)
    if heads != "mixed":  # every route runs a head
        routes = [dataclasses.replace(r, head=r.head or ServiceTime("fixed", 0.02)) for r in routes]
        plan.head_s[plan.head_s == 0] = 0.03
    if heads == "fixed":
        plan = _tied(plan)
    for k, r in enumerate(routes):
        if r.head is None:
            plan.head_s[k] = 0.0
    topo = Topology(1, [_trace(rng, p["trace"])], False, p["prop"], 2e6, deadline_s=p["deadline"],
                    packet_overhead_bytes=int(rng.integers(0, 60)))
    outcomes = _lindley_outcomes(lambda: _assert_same(plan, topo, routes=[routes],
                                                      make_policy=_best_split(kind, alpha)))
    assert len(outcomes) == 1  # the in-memory run (windowed runs take the event loop)
    if heads == "all":
        assert outcomes == [True]


@pytest.mark.parametrize("kind", ["ewma", "oracle"])
def test_best_split_recursion_under_load(kind):
    """The tandem at 1 frame/s with a local route (mean 1.5 s) and a split one (0.5 s head, 200 kbit at 1 Mbit/s,
    0.6 s tail): queues build at every station and best-split changes its mind often, so the backlogs and the
    estimate it reads are exercised (leaving out queued work, the residual or the estimate's updates changes
    hundreds of routes here). By the recursion, equal to the SimPy engine frame by frame."""
    rng = np.random.default_rng(7)
    n = 3000
    capture = np.cumsum(rng.exponential(1.0, n))
    head = np.vstack([rng.exponential(1.5, n), rng.exponential(0.5, n)])
    plan = FramePlan(capture, np.zeros(n, np.int64), np.zeros(n, np.int16), head,
                     np.vstack([np.zeros(n), np.full(n, 200e3)]), np.vstack([np.full(n, np.nan),
                                                                            rng.exponential(0.6, n)]),
                     np.zeros((2, n)), 1)
    routes = [Route("local", "toy", "output", "", ServiceTime("exponential", 0.0, mean_s=1.5), 0, None, 0),
              Route("split", "toy", "mid", "", ServiceTime("exponential", 0.0, mean_s=0.5), 25_000,
                    ServiceTime("exponential", 0.0, mean_s=0.6), 0)]
    topo = Topology(1, [RateTrace.constant(1.0)], False, 0.0, 1e6)
    outcomes = _lindley_outcomes(lambda: _assert_same(plan, topo, routes=[routes],
                                                      make_policy=_best_split(kind, 0.3)))
    assert outcomes == [True]
    got = simulate_compiled(plan, topo, _best_split(kind, 0.3)(), [routes])
    assert 0.3 < (got["route"] == 1).mean() < 0.9  # both routes are chosen
    waited = got["head_start"] > capture
    assert waited.mean() > 0.3 and (got["tail_start"] > got["up_end"]).mean() > 0.1  # queues at the mobile and server


def test_best_split_recursion_falls_back_on_a_tie_at_a_capture():
    """A head that ends exactly at the next capture (0.5 s): which the loop sees first is the tie rule's, so the
    recursion hands the run to the event loop."""
    n = 3
    plan = FramePlan(np.array([0.0, 0.5, 1.0]), np.zeros(n, np.int64), np.zeros(n, np.int16),
                     np.full((2, n), 0.5), np.array([[0.0] * n, [8_000.0] * n]),
                     np.array([[np.nan] * n, [0.1] * n]), np.zeros((2, n)), 1)
    routes = [Route("local", "toy", "output", "", ServiceTime("fixed", 0.5), 0, None, 0),
              Route("split", "toy", "mid", "", ServiceTime("fixed", 0.25), 1_000, ServiceTime("fixed", 0.1), 0)]
    topo = Topology(1, [RateTrace.constant(1.0)], False, 0.0, 1e6)
    outcomes = _lindley_outcomes(lambda: _assert_same(plan, topo, routes=[routes],
                                                      make_policy=_best_split("ewma", 0.3)))
    assert outcomes == [False]


@settings(max_examples=40, **SETTINGS)
@given(p=features, bound=st.sampled_from([0, 1, 2]), stale=st.booleans(), shared=st.booleans())
def test_bounded_queues_and_drop_stale(p, bound, stale, shared):
    rng = np.random.default_rng(p["seed"])
    plan = _plan(rng, p["n_mobiles"], 50, p["routes"])
    uplink = [_trace(rng, p["trace"])] if shared else [_trace(rng, p["trace"]) for _ in range(p["n_mobiles"])]
    topo = Topology(p["servers"], uplink, shared, p["prop"], 2e6, mobile_capacity=bound, server_capacity=bound,
                    drop_stale=stale, deadline_s=p["deadline"])
    _assert_same(plan, topo)


def _delays(rng, n_mobiles: int) -> list[LinkDelay]:
    out = []
    for _ in range(n_mobiles):
        kind = rng.choice(["uniform", "normal", "exponential", "lognormal", "trace", "fixed"])
        fifo = bool(rng.random() < 0.7)
        if kind == "trace":
            times = np.arange(5) * 0.7
            trace = DelayTrace(times, rng.uniform(0.0, 0.05, 5), 3.5 if rng.random() < 0.5 else 0.0)
            out.append(LinkDelay(0.01, trace=trace, fifo=fifo))
        else:
            out.append(LinkDelay(0.01, distribution=None if kind == "fixed" else str(kind), std_s=0.006, fifo=fifo))
    return out


@settings(max_examples=30, **SETTINGS)
@given(p=features, shared=st.booleans())
def test_varying_delay_with_fifo(p, shared):
    rng = np.random.default_rng(p["seed"])
    plan = _plan(rng, p["n_mobiles"], 40, p["routes"], delay=True)
    uplink = [_trace(rng, p["trace"])] if shared else [_trace(rng, p["trace"]) for _ in range(p["n_mobiles"])]
    topo = Topology(p["servers"], uplink, shared, p["prop"], 2e6, deadline_s=p["deadline"],
                    delay=_delays(rng, p["n_mobiles"]))
    _assert_same(plan, topo)


tier_features = st.fixed_dictionaries({
    "seed": st.integers(0, 2**31), "n_mobiles": st.integers(1, 4), "n_edges": st.integers(1, 3),
    "per_edge": st.integers(1, 3), "cloud_servers": st.integers(1, 3),
    "assignment": st.sampled_from(["static", "round-robin", "least-loaded", "shortest-expected-delay"]),
    "batching": st.booleans(), "policy": st.booleans(), "delay": st.booleans(),
    "trace": st.sampled_from(["constant", "stepped"]),
})


@settings(max_examples=50, **SETTINGS)
@given(p=tier_features)
def test_tiers_assignment_cloud_and_batching(p):
    rng = np.random.default_rng(p["seed"])
    n_mob, n_edges, per = p["n_mobiles"], p["n_edges"], p["per_edge"]
    plan = _plan(rng, n_mob, 30, n_edges * per, tiered=True, delay=p["delay"], per_edge=per)
    dynamic = p["assignment"] in ("least-loaded", "shortest-expected-delay")
    if dynamic:
        plan.route[:] = plan.route % per
    edge_of_mobile = np.arange(n_mob) % n_edges if p["assignment"] == "round-robin" else \
        rng.integers(0, n_edges, n_mob)
    if not dynamic:
        plan.route[:] = plan.route % per + edge_of_mobile[plan.mobile] * per
    uplinks = [_trace(rng, p["trace"]) for _ in range(n_mob)]  # outages on the uplinks and the WAN
    edges = []
    for e in range(n_edges):
        shared = bool(rng.random() < 0.3) and not p["policy"]
        edges.append(EdgeTier(f"e{e}", int(rng.integers(1, 3)), [_trace(rng, p["trace"])] if shared else uplinks,
                              shared, _trace(rng, p["trace"]), float(rng.choice([0.0, 0.004]))))
    batching = Batching(int(rng.integers(1, 6)), tuple(sorted({int(x) for x in rng.integers(1, 5, 2)}, reverse=True)),
                        float(rng.uniform(0.0, 0.2))) if p["batching"] else None
    if batching is not None:
        plan.batch_factors = plan.batch_factors[:, :batching.max_batch_size + 1].copy()
    tiers = Tiers(edges, p["assignment"], p["cloud_servers"], batching, edge_of_mobile, float(rng.uniform(1e6, 1e8)))
    topo = Topology(1, uplinks, False, float(rng.choice([0.0, 0.002])), 2e6, server_capacity=None,
                    delay=_delays(rng, n_mob) if p["delay"] else None, tiers=tiers)
    routes = None
    if p["policy"] or dynamic:
        one = []
        for e in range(n_edges):
            for k in range(per):
                cloud = ServiceTime("fixed", 0.05) if plan.cloud_s[e * per + k, 0] == plan.cloud_s[e * per + k, 0] \
                    else None
                tail = ServiceTime("fixed", 0.03) if plan.tail_s[e * per + k, 0] == plan.tail_s[e * per + k, 0] \
                    else None
                one.append(Route(f"r{k}", "toy", "mid", "", ServiceTime("fixed", 0.01), 2_000 * (k + 1), tail, 40,
                                 None, 5_000 if cloud else 0, cloud, "key"))
        routes = [one] * n_mob
    _assert_same(plan, topo, routes=routes, make_policy=_best_split("ewma", 0.3) if p["policy"] else None)


def test_unsupported_policies_are_refused():
    from simulator.policies import StatefulPolicy

    class Other(StatefulPolicy):
        def __init__(self):
            pass

    rng = np.random.default_rng(0)
    plan = _plan(rng, 1, 5, 2)
    topo = Topology(1, [RateTrace.constant(1.0)], False, 0.0, 1e6)
    assert supports(plan, topo) and not supports(plan, topo, Other())
    with pytest.raises(Exception, match="does not cover"):
        simulate_compiled(plan, topo, Other(), [[None, None]])


def test_best_placement_through_a_wan_outage():
    """A WAN trace with a zero-rate step while frames are captured: best-placement plans with the least bandwidth
    (the uplink's clamp, now applied to the WAN too) instead of dividing by zero, and both engines agree."""
    n = 40
    capture = np.arange(n) * 0.1
    routes = [Route("local", "toy", "output", "", ServiceTime("fixed", 0.08), 0, None, 0),
              Route("edge", "toy", "mid", "", ServiceTime("fixed", 0.01), 2_000, ServiceTime("fixed", 0.02), 40),
              Route("cloud", "toy", "mid|mid", "", ServiceTime("fixed", 0.01), 2_000, None, 40, None, 5_000,
                    ServiceTime("fixed", 0.005), "key")]
    head = np.tile([[0.08], [0.01], [0.01]], n)
    tail = np.tile([[np.nan], [0.02], [np.nan]], n)
    bits = np.tile([[0.0], [16_000.0], [16_000.0]], n)
    cloud = np.tile([[np.nan], [np.nan], [0.005]], n)
    plan = FramePlan(capture, np.zeros(n, np.int64), np.zeros(n, np.int16), head, bits, tail, np.zeros((3, n)), 1,
                     None, np.tile([[0.0], [0.0], [40_000.0]], n), cloud, np.zeros((3, n)), 3,
                     np.array([-1, -1, 0]), np.ones((3, 2)))
    wan = RateTrace(np.array([0.0, 1.0, 2.5]), np.array([50e6, 0.0, 50e6]))  # an outage from 1 s to 2.5 s
    uplink = [RateTrace.constant(10.0)]
    tiers = Tiers([EdgeTier("e0", 1, uplink, False, wan, 0.002)], "static", 1, None, np.zeros(1, np.int64), 1e8)
    topo = Topology(1, uplink, False, 0.001, 2e6, tiers=tiers)

    def make():
        pol = BestPlacementPolicy.__new__(BestPlacementPolicy)
        pol.spec = BestPlacementSpec(name="best-placement")
        return pol

    _assert_same(plan, topo, routes=[routes], make_policy=make)
    got = simulate(FramePlan(**{**plan.__dict__, "route": plan.route.copy()}), topo, make(), [routes])
    during = (capture > 1.1) & (capture < 2.4)
    assert (got["route"][during] != 2).all() and (got["route"] == 2).any()  # the cloud while the WAN carries bits


# ---------------------------------------------------------------- a stateful policy added through the registry alone

@njit(cache=True)
def _by_throughput_decide(state, view, routes, lo, hi):
    """The last offloading route while the link's last observed throughput clears state[0] bit/s, else the first."""
    return hi - lo - 1 if state[1 + view[0].link] > state[0] else 0


@njit(cache=True)
def _by_throughput_observe(state, link, bits, duration_s):
    if duration_s > 0:
        state[1 + link] = bits / duration_s


class ByThroughputSpec(PolicySpecBase):
    name: Literal["by-throughput"]
    threshold_bps: float = 1e6


class ByThroughputPolicy(StatefulPolicy):
    """Offload while the last transfer went fast: its rules are only the two kernels above."""


def _by_throughput_state(policy, uplinks):
    return np.array([policy.spec.threshold_bps] + [tr.rate_bps_at(0.0) for tr in uplinks])


BY_THROUGHPUT = PolicyEntry("by-throughput", ByThroughputSpec, ByThroughputPolicy, "offload while transfers go fast",
                            "a test", PolicyKernels(_by_throughput_state, _by_throughput_decide,
                                                    _by_throughput_observe))


@settings(max_examples=25, **SETTINGS)
@given(p=features, shared=st.booleans(), threshold=st.floats(1e5, 1e7))
def test_a_stateful_policy_added_through_the_registry_runs_on_both_engines(p, shared, threshold):
    """A policy registered with its kernels and nothing else (no engine edited) runs in the compiled loop and in the
    SimPy engine with equal frames, outages included."""
    rng = np.random.default_rng(p["seed"])
    n_routes = max(p["routes"], 2)
    plan = _plan(rng, p["n_mobiles"], 40, n_routes)
    uplink = [_trace(rng, p["trace"])] if shared else [_trace(rng, p["trace"]) for _ in range(p["n_mobiles"])]
    topo = Topology(p["servers"], uplink, shared, p["prop"], 2e6, deadline_s=p["deadline"])
    routes = _routes(rng, n_routes)
    for k, r in enumerate(routes):
        if r.head is None:
            plan.head_s[k] = 0.0

    def make():
        pol = ByThroughputPolicy.__new__(ByThroughputPolicy)
        pol.spec = ByThroughputSpec(name="by-throughput", threshold_bps=threshold)
        return pol

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(ENTRIES, "by-throughput", BY_THROUGHPUT)
        assert why_not(plan, topo, make()) is None
        _assert_same(plan, topo, routes=[routes] * p["n_mobiles"], make_policy=make)
    assert "declares no kernels" in why_not(plan, topo, make())  # unregistered: the SimPy engine only, and why
