"""The simulator's commands and run_to_folder run with Python's cycle collector paused and (glibc) freed heap memory
kept for the next window, and leave the process as they found it."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from profilers import runtime
from profilers.runtime import collector_paused

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

    seen, fake = [], _FakeLibc()
    real = results._run_locked
    monkeypatch.setattr(results, "_run_locked", lambda *a: seen.append((gc.isenabled(), len(fake.calls))) or real(*a))
    monkeypatch.setattr(runtime, "libc", lambda: fake)
    sc = Scenario.model_validate(scenario_dict(write_toy_profiles(tmp_path), workload={"frames": 20},
                                               outputs={"plots": False}))
    results.run_to_folder(sc, tmp_path / "out")
    assert seen == [(False, 3)] and gc.isenabled() and fake.calls[-1] == ("trim", 0)  # in the block, then after it


class _FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("trim", pad))
        return 1


def test_heap_kept_keeps_freed_memory_in_the_block_and_hands_it_back_after(monkeypatch):
    fake = _FakeLibc()
    monkeypatch.setattr(runtime, "libc", lambda: fake)
    with runtime.heap_kept():
        inside = dict(fake.calls)
    assert inside == {runtime.M_MMAP_THRESHOLD: 32 * runtime.MIB, runtime.M_TRIM_THRESHOLD: 1024 * runtime.MIB,
                      runtime.M_TOP_PAD: 64 * runtime.MIB}
    assert dict(fake.calls[3:]) == {runtime.M_TOP_PAD: 128 * 1024, runtime.M_TRIM_THRESHOLD: 64 * runtime.MIB,
                                    "trim": 0}


def test_heap_kept_is_a_no_op_without_glibc(monkeypatch):
    monkeypatch.setattr(runtime, "libc", lambda: None)  # what libc() says where it cannot load one
    with runtime.heap_kept():
        pass
