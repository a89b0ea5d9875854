"""A frame plan holds a demand row per distinct route, not per (edge server, route): edge servers of one device share
rows, routes that draw packet losses keep their own, and both engines give the same frames either way."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from simulator.assemble import assemble, plan_window, route_rows
from simulator.compiled import simulate_compiled, simulate_compiled_windows
from simulator.engine import simulate
from simulator.loop.ring import in_capture_order
from simulator.scenario import Scenario
from simulator.workload import FrameStreams
from tests.sim_helpers import scenario_dict, write_toy_profiles


def _point(tmp_path, edges, loss=0.0, policy=None, assignment="least-loaded"):
    profiles = write_toy_profiles(tmp_path)
    data = scenario_dict(profiles, mobiles=[{"device": "toy-mobile", "count": 4}],
                         edges=[{"name": f"e{k}", "device": dev, "servers": 1 + k % 2} for k, dev in enumerate(edges)],
                         cloud={"device": "toy-edge", "servers": 2, "wan": {"data_rate_mbps": 5, "propagation_delay_s": 0.01},
                                "batching": {"max_batch_size": 4, "preferred_batch_sizes": [4],
                                             "max_queue_delay_s": 0.005}},
                         assignment=assignment, link={"data_rate_mbps": 2.0, "propagation_delay_s": 0.001,
                                                      "packet_overhead_bytes": 40, "loss_probability": loss},
                         policies=[policy or {"name": "best-placement", "candidates": ["input", "mid", "output"]}],
                         workload={"source": "poisson", "frame_rate_fps": 6.0, "frames": 80, "service_time": "sampled"})
    data.pop("edge")
    return assemble(Scenario.model_validate(data))


def _plan(pt):
    pol = pt.policies[0]
    routes = pt.routes_of_group(pol)
    return pt, pol, routes, plan_window(pt, pol, routes, 0, FrameStreams(pt.scenario.seed, 0, pt.n_mobiles), 0, 80)


def test_edge_servers_of_one_device_share_rows_and_losses_keep_their_own(tmp_path):
    pt, pol, routes, w = _plan(_point(tmp_path / "a", ["toy-edge"] * 5))
    per = len(routes[0]) // 5
    assert w.plan.head_s.shape == (per, w.plan.capture_s.size)  # a row per route of one edge server, not five
    assert np.array_equal(w.plan.rows, np.tile(np.arange(per), 5))
    # two devices: the servers of each share rows (edge 2 is toy-mobile, the rest toy-edge)
    mixed = _point(tmp_path / "b", ["toy-edge", "toy-edge", "toy-mobile", "toy-edge"])
    rows = route_rows(mixed, mixed.routes_of_group(mixed.policies[0]))
    assert np.array_equal(rows, np.concatenate([np.arange(per), np.arange(per), per + np.arange(per), np.arange(per)]))
    # a lossy uplink: every route that offloads draws its own resends, so it keeps its own row
    lossy = _point(tmp_path / "c", ["toy-edge"] * 3, loss=0.05)
    lossy_routes = lossy.routes_of_group(lossy.policies[0])
    rows = route_rows(lossy, lossy_routes)
    offloads = np.array([rt.offloads for rt in lossy_routes[0]])
    assert rows is not None and np.unique(rows[offloads]).size == offloads.sum()  # local routes still share
    assert np.unique(rows[~offloads]).size == 1


@pytest.mark.parametrize("assignment", ["least-loaded", "round-robin", "shortest-expected-delay"])
def test_shared_rows_give_the_frames_of_a_row_per_route_in_both_engines(tmp_path, assignment):
    pt, pol, routes, w = _plan(_point(tmp_path, ["toy-edge"] * 3, assignment=assignment))
    assert w.plan.rows is not None
    by_mobile = [routes[g] for g in pt.group_of_instance]
    shared = simulate_compiled(w.plan, pt.topo, pol, by_mobile)
    full = simulate_compiled(w.plan.all_routes(), pt.topo, pol, by_mobile)
    simpy = simulate(w.plan, pt.topo, pol, by_mobile)
    assert shared.keys() == full.keys()
    for name in shared:
        np.testing.assert_array_equal(shared[name], full[name], err_msg=name)
        np.testing.assert_allclose(shared[name], simpy[name], rtol=0, atol=1e-9, err_msg=name)


def test_a_window_handed_to_an_engine_keeps_only_what_its_frame_table_reads(tmp_path):
    # the runner and the compiled ring keep FramePlan.for_tables: no second copy of the demands while frames run
    pt, pol, routes, w = _plan(_point(tmp_path, ["toy-edge"] * 3))
    slim = w.plan.for_tables()
    for name in ("capture_s", "mobile", "wire_bits", "rows", "route"):
        assert getattr(slim, name) is getattr(w.plan, name)
    for name in ("head_s", "tail_s", "down_s", "wan_bits", "cloud_s", "wan_down_s"):
        kept, full = getattr(slim, name), getattr(w.plan, name)
        assert kept.shape == full.shape and kept.strides == (0, 0) and not kept.flags.writeable
        assert np.isnan(kept).all()
    assert slim.n_routes == w.plan.n_routes and np.array_equal(slim.row_of(np.arange(slim.n_routes)),
                                                               w.plan.row_of(np.arange(w.plan.n_routes)))


def _frames(plan, sel):
    """The plan's frames sel (a window of it), every per-frame array cut alike."""
    cut = (lambda a: None if a is None else a[..., sel])
    return replace(plan, capture_s=plan.capture_s[sel], mobile=plan.mobile[sel], route=plan.route[sel].copy(),
                   head_s=cut(plan.head_s), wire_bits=cut(plan.wire_bits), tail_s=cut(plan.tail_s),
                   down_s=cut(plan.down_s), delay_u=cut(plan.delay_u), wan_bits=cut(plan.wan_bits),
                   cloud_s=cut(plan.cloud_s), wan_down_s=cut(plan.wan_down_s))


def test_windows_of_many_demand_rows_laid_in_capture_order_give_the_simpy_engine_times(tmp_path):
    # the compiled ring lays each window's frames in capture order and reads their demands on every route, left in
    # frame order in the window's own arrays, through a slot -> frame column: best-placement's routes (many demand
    # rows) in three windows give the SimPy engine's times for every frame
    pt, pol, routes, w = _plan(_point(tmp_path, ["toy-edge", "toy-mobile", "toy-edge"]))
    plan = w.plan
    assert plan.head_s.shape[0] > 2 and in_capture_order(plan.capture_s) is not None  # mobile-major, many rows
    by_mobile = [routes[g] for g in pt.group_of_instance]
    simpy = simulate(plan, pt.topo, pol, by_mobile)
    nth = np.concatenate([np.arange(np.sum(plan.mobile == m)) for m in range(plan.n_mobiles)])  # mobile-major
    sels = [np.flatnonzero((nth >= lo) & (nth < lo + 27)) for lo in (0, 27, 54)]
    got: dict[int, dict] = {}
    simulate_compiled_windows(lambda k: _frames(plan, sels[k]) if k < len(sels) else None, pt.topo,
                              lambda k, _w, times: got.update({k: times}), pol, by_mobile)
    assert sorted(got) == [0, 1, 2]
    for name, want in simpy.items():
        have = np.empty_like(want)
        for k, sel in enumerate(sels):
            have[sel] = got[k][name]
        np.testing.assert_allclose(have, want, rtol=0, atol=1e-9, err_msg=name)
    assert np.unique(plan.row_of(simpy["route"].astype(np.int64))).size >= 2  # frames take routes of several rows


def test_capture_order_takes_the_last_windows_order_only_where_it_is_this_windows():
    # the ring checks the previous window's order on the next window instead of sorting it again: whatever order it
    # is offered, it gives the stable sort by capture time (equal times in frame order)
    rng = np.random.default_rng(7)
    phase = np.round(rng.random(50), 1)  # ties between devices
    for k in range(3):
        capture = (phase[:, None] + np.arange(k * 4, k * 4 + 4)[None, :]).ravel()  # mobile-major, as planned
        want = np.argsort(capture, kind="stable")
        assert np.array_equal(in_capture_order(capture), want)
        assert in_capture_order(capture, want) is want  # this window's order: taken as it is
        tie = np.flatnonzero(np.diff(capture[want]) == 0)[0]
        swapped = want.copy()
        swapped[[tie, tie + 1]] = swapped[[tie + 1, tie]]  # sorted by time, a tie out of frame order
        for offered in (swapped, rng.permutation(capture.size), want[:-1]):
            assert np.array_equal(in_capture_order(capture, offered), want)
