"""Summaries by integer-coded group-bys: each group's sum equals numpy's (and pandas') bit for bit, and the per-edge
rows agree with the frame table they summarise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import metrics, run
from simulator.metrics import group_sums
from tests.sim_helpers import pairwise_sum, run_sums, scenario_dict, write_toy_profiles


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000), st.integers(1, 40), st.booleans(), st.booleans(), st.integers(0, 2**32 - 1))
def test_group_sums_equal_numpy_sum_of_each_group(n, groups, presorted, vectorised, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, groups, n)
    if presorted:
        codes = np.sort(codes)
    values = rng.random(n) * 10.0 ** rng.uniform(-6, 6, n)
    expected = np.array([values[codes == g].sum() for g in range(groups)])
    loop_groups = metrics.LOOP_GROUPS
    metrics.LOOP_GROUPS = 0 if vectorised else loop_groups  # both ways: a call per group, or _pairwise's passes
    try:
        assert np.array_equal(group_sums(codes, values, groups), expected)  # exact: the summary's bytes depend on it
    finally:
        metrics.LOOP_GROUPS = loop_groups


def test_group_sums_of_long_groups_follow_numpys_pairwise_blocks():
    rng = np.random.default_rng(7)
    for n in (7, 8, 9, 127, 128, 129, 255, 256, 1000, 70_001):
        values = rng.random(n) * 1e3
        assert group_sums(np.zeros(n, np.int64), values, 1)[0] == values.sum()
        assert metrics._pairwise(values, np.array([0]), np.array([n]))[0] == values.sum()  # the vectorised passes


def test_compiled_pairwise_walk_adds_as_numpy_at_any_offset_and_length():
    """groupsum's pairwise walk (its own stacks, no recursion) against numpy's sum, over lengths either side of its
    blocks and halvings, from a run that starts inside the order."""
    rng = np.random.default_rng(11)
    for n in (8, 15, 127, 128, 129, 135, 136, 255, 256, 257, 1000, 1024, 4109, 100_003, 1_000_001):
        values = rng.random(n + 5) * 10.0 ** rng.uniform(-6, 6, n + 5)
        values[rng.random(n + 5) < 0.05] = np.nan
        order = rng.permutation(n + 5)
        for zero_nan in (False, True):
            picked = values[order[5:]]
            expected = np.nan_to_num(picked).sum() if zero_nan else picked.sum()
            assert np.array_equal(pairwise_sum(values, order, 5, n, zero_nan), expected, equal_nan=True)


def _tiered_scenario(tmp_path_factory) -> dict:
    profiles = write_toy_profiles(tmp_path_factory.mktemp("profiles"))
    data = scenario_dict(profiles, mobiles=[{"device": "toy-mobile", "count": 5}],
                         edges=[{"name": f"e{k}", "device": "toy-edge"} for k in range(3)],
                         cloud={"device": "toy-edge", "wan": {"data_rate_mbps": 5, "propagation_delay_s": 0.01}},
                         assignment="least-loaded", policies=[{"name": "offload"}, {"name": "split", "split_point": "mid"}],
                         workload={"source": "poisson", "frame_rate_fps": 3.0, "frames": 300, "warmup_frames": 20,
                                   "service_time": "sampled"}, replications=2)
    data.pop("edge")
    return data


@pytest.fixture(scope="module")
def tiered_run(tmp_path_factory):
    return run(_tiered_scenario(tmp_path_factory))


def test_per_edge_rows_summarise_that_edge_servers_frames(tiered_run):
    frames, summary = tiered_run
    kept = frames[~frames["warmup"]]
    rows = summary[summary["scope"] == "edge"]
    assert len(rows) > 0
    for _, row in rows.iterrows():
        mine = kept[(kept["policy"] == row["policy"]) & (kept["edge"] == row["edge"])]
        done = mine[mine["status"] != "dropped"]
        assert row["frames"] == len(mine)
        assert row["delay_mean_s"] == pytest.approx(done["delay_s"].mean(), rel=1e-12)
        assert row["delay_p95_s"] == pytest.approx(np.percentile(done["delay_s"], 95), rel=1e-12)
        assert row["tail_s_mean"] == pytest.approx(done["tail_s"].mean(), rel=1e-12)
        assert row["bytes_per_frame"] == pytest.approx(mine["bytes_up"].mean(), rel=1e-12)
    for policy, part in rows.groupby("policy"):  # the servers' rows split the policy's frames
        assert part["frames"].sum() == summary[(summary["policy"] == policy) & (summary["scope"] == "all")]["frames"].iloc[0]


def test_server_utilisation_is_the_busiest_pools_offered_load(tiered_run):
    frames, summary = tiered_run
    kept = frames[~frames["warmup"]]
    for policy, mine in kept.groupby("policy"):
        worst = 0.0
        for (_rep, _edge), at in mine.groupby(["replication", "edge"]):  # lambda_m x E[S_m] summed over devices
            rate = 0.0
            for _, dev in kept[(kept["policy"] == policy) & (kept["replication"] == _rep)].groupby("mobile"):
                n = len(dev)
                span = (dev["capture_s"].max() - dev["capture_s"].min()) * n / (n - 1)
                rate += at.loc[at["mobile"] == dev["mobile"].iloc[0], "tail_s"].fillna(0).sum() / span
            worst = max(worst, rate)
        row = summary[(summary["policy"] == policy) & (summary["scope"] == "all")].iloc[0]
        assert row["utilisation_server"] == pytest.approx(worst, rel=1e-12)


@pytest.fixture(scope="module")
def tiered_run_compiled(tiered_run, tmp_path_factory):
    """The same scenario with every group-by taking the compiled passes (groupsum), however small the window."""
    compiled_from = metrics.COMPILED_FROM
    metrics.COMPILED_FROM = 1
    try:
        return run(_tiered_scenario(tmp_path_factory))
    finally:
        metrics.COMPILED_FROM = compiled_from


def test_compiled_group_bys_give_numpys_summary_bytes(tiered_run, tiered_run_compiled):
    # every sum, count, extreme and per-edge percentile: the same summary.csv bytes either way
    assert metrics.summary_csv(tiered_run_compiled[1]) == metrics.summary_csv(tiered_run[1])
    test_per_edge_rows_summarise_that_edge_servers_frames(tiered_run_compiled)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3000), st.sampled_from([1, 7, 300, 70_000, 1_000_003]), st.booleans(), st.integers(0, 2**32 - 1))
def test_compiled_sums_of_selected_frames_equal_numpys_with_nan_to_num(n, groups, zero_nan, seed):
    # the codes' runs (a radix sort in two passes beyond 65,536 codes), each run's sum, extremes and first window
    from simulator.groupsum import fold_runs, slot_plan, slot_sums, sorted_runs

    rng = np.random.default_rng(seed)
    codes = rng.integers(0, groups, n)
    values = rng.random(n) * 10.0 ** rng.uniform(-6, 6, n)
    values[rng.random(n) < 0.1] = np.nan
    values[rng.random(n) < 0.01] = np.inf
    values[rng.random(n) < 0.01] = -np.inf
    frames = np.flatnonzero(rng.random(n) < 0.7)
    picked = np.nan_to_num(values[frames]) if zero_nan else values[frames]
    order, starts, run_codes = sorted_runs(codes, frames, groups)
    assert np.array_equal(order, frames[np.argsort(codes[frames], kind="stable")])
    assert np.array_equal(run_codes, np.unique(codes[frames]))
    out = np.full(groups, 0.5)
    run_sums(values, order, starts, run_codes, zero_nan, out)
    slots, counts, bases = slot_plan(codes, frames, groups, True)  # the same sums in frame order, through slots
    by_slots = np.full(1 + groups, 0.5)
    scratch = np.full(bases[-1] + 3, np.nan)  # used, not trusted: zeroed by each call
    slot_sums(values, zero_nan, frames, slots, counts, bases, scratch, by_slots)
    everything = np.full(1, 0.5)
    slot_sums(values, zero_nan, frames, *slot_plan(codes, frames, groups, False), scratch, everything)
    with np.errstate(invalid="ignore", over="ignore"):
        assert np.array_equal(everything, [0.5 + picked.sum()] if frames.size else [0.5], equal_nan=True)
    assert np.array_equal(by_slots, np.concatenate((everything, out)), equal_nan=True)  # every frame's, each code's
    assert np.array_equal(counts, np.concatenate(([frames.size], np.bincount(codes[frames], minlength=groups))))
    state = np.zeros((groups, 6))
    state[:, 1:4] = (np.inf, -np.inf, np.inf)
    state[0, 3] = 3.0
    fold_runs(order, starts, run_codes, np.stack([values, values, values], axis=1), np.array([zero_nan, True]), 7.0,
              state)
    for g in np.unique(np.concatenate(([0], codes))):
        mine = values[frames][codes[frames] == g]
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf in a group without zero_nan; huge sums
            expected = picked[codes[frames] == g].sum() if mine.size else 0.0
            assert np.array_equal(out[g], 0.5 + expected if mine.size else 0.5, equal_nan=True)
            assert np.array_equal(state[g, 4], 0.0 + expected if mine.size else 0.0, equal_nan=True)
            assert np.array_equal(state[g, 5], 0.0 + np.nan_to_num(mine).sum() if mine.size else 0.0, equal_nan=True)
        assert state[g, 0] == mine.size
        assert state[g, 3] == (3.0 if g == 0 else 7.0 if mine.size else np.inf)
        assert np.array_equal(state[g, 1], np.minimum.reduce(mine, initial=np.inf), equal_nan=True)
        assert np.array_equal(state[g, 2], np.maximum.reduce(mine, initial=-np.inf), equal_nan=True)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 3000), st.sampled_from([1, 7, 300, 10_000]), st.sampled_from([1, 3, 101]), st.booleans(),
       st.integers(0, 2**32 - 1))
def test_pair_runs_are_the_sorted_runs_by_camera_and_by_cell(n, cameras, edges, camera_major, seed):
    # the offered load's two groupings from one pass by camera and one by edge server over it, as two sorts give them
    from simulator.groupsum import pair_runs, sorted_runs

    rng = np.random.default_rng(seed)
    camera, edge = rng.integers(0, cameras, n), rng.integers(0, edges, n)
    if camera_major:  # a window's frames camera by camera, as the engine lays them out
        camera = np.sort(camera)
    frames = np.flatnonzero(rng.random(n) < 0.8)
    scratch = np.full(5 * frames.size + 9, -7)  # used, not trusted
    by_camera, by_cell = pair_runs(camera, edge, frames, cameras, edges, scratch)
    for got, expected in ((by_camera, sorted_runs(camera, frames, cameras)),
                          (by_cell, sorted_runs(edge * cameras + camera, frames, edges * cameras))):
        assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    cell = (edge * cameras + camera)[frames]
    assert np.array_equal(by_cell[0], frames[np.argsort(cell, kind="stable")])
    assert np.array_equal(by_cell[2], np.unique(cell))
