"""The simulator's commands and run_to_folder run with Python's cycle collector paused, and leave it as they found it."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from profilers.collector import collector_paused

ROOT = Path(__file__).resolve().parent.parent


def test_paused_inside_restored_after_even_on_error_and_left_off_where_it_was_off():
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with collector_paused():
            assert not gc.isenabled()
            with collector_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()  # the inner block does not turn it back on
            raise RuntimeError
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # off before, off after
    finally:
        gc.enable()


def test_validate_runs_paused_and_a_profiling_command_does_not(monkeypatch):
    import simulator.assemble
    from edgesim.cli.app import WITHOUT_COLLECTOR, main

    seen = []
    real = simulator.assemble.assemble
    monkeypatch.setattr(simulator.assemble, "assemble", lambda *a, **k: seen.append(gc.isenabled()) or real(*a, **k))
    assert main(["validate", str(ROOT / "scenarios" / "matsubara2019_fig3.yaml")]) == 0
    assert seen and not any(seen) and gc.isenabled()
    assert not {"profile", "distill", "dmd", "derive", "testbed"} & WITHOUT_COLLECTOR


def test_run_to_folder_runs_paused(tmp_path, monkeypatch):
    from simulator import results
    from simulator.scenario import Scenario
    from tests.sim_helpers import scenario_dict, write_toy_profiles

    seen = []
    real = results._run_locked
    monkeypatch.setattr(results, "_run_locked", lambda *a: seen.append(gc.isenabled()) or real(*a))
    sc = Scenario.model_validate(scenario_dict(write_toy_profiles(tmp_path), workload={"frames": 20},
                                               outputs={"plots": False}))
    results.run_to_folder(sc, tmp_path / "out")
    assert seen == [False] and gc.isenabled()
