"""Crash safety: an interrupted sweep keeps its finished points and --resume ends byte-identical."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import simulator.sweep as sweep
from simulator.runner import run_point
from edgesim.cli.app import main
from tests.sim_helpers import scenario_dict, write_scenario, write_toy_profiles


def _full_and_interrupted(tmp_path, monkeypatch, rates, interrupt_at: int):
    """A whole run into full/, and the same sweep into part/ interrupted at the interrupt_at-th sweep point."""
    profiles = write_toy_profiles(tmp_path)
    data = scenario_dict(profiles, sweep={"grid": {"link.data_rate_mbps": rates}}, outputs={"plots": False})
    path = write_scenario(tmp_path, data)
    full = tmp_path / "full"
    assert main(["run", str(path), "--out", str(full)]) == 0

    part = tmp_path / "part"
    _interrupt(path, part, monkeypatch, interrupt_at)
    return full, part


def _interrupt(path, out, monkeypatch, at: int) -> None:
    """Run the scenario into out, interrupted at the at-th sweep point (exit code 130)."""
    real = sweep.run_point
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == at:
            raise KeyboardInterrupt  # what Ctrl-C or SIGTERM (turned into KeyboardInterrupt) does mid-sweep
        return real(*args)

    monkeypatch.setattr(sweep, "run_point", flaky)
    assert main(["run", str(path), "--out", str(out), "--jobs", "1"]) == 130  # in-process, so the patch applies
    monkeypatch.setattr(sweep, "run_point", real)


def test_interrupt_then_resume_is_byte_identical(tmp_path, monkeypatch, capsys):
    full, part = _full_and_interrupted(tmp_path, monkeypatch, {"log": [0.1, 10, 6]}, interrupt_at=4)
    err = capsys.readouterr().err
    assert "3 finished sweep point(s) kept" in err and f"edgesim run --resume {part}" in err
    assert not part.exists() and (tmp_path / "part.partial").exists()

    assert main(["run", "--resume", str(part), "--jobs", "2"]) == 0
    assert (part / "summary.csv").read_bytes() == (full / "summary.csv").read_bytes()
    assert (part / "frames.parquet").read_bytes() == (full / "frames.parquet").read_bytes()
    assert not (tmp_path / "part.partial").exists()


def test_resume_without_interrupted_run(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path / "nothing")]) == 2
    assert "no interrupted run to resume" in capsys.readouterr().err


def test_resume_after_hard_kill_ignores_half_written_files(tmp_path, monkeypatch, capsys):
    """SIGKILL leaves temporary files and may leave a per-point file cut short; resume reruns, never carries them."""
    full, part = _full_and_interrupted(tmp_path, monkeypatch, [0.5, 2.0, 8.0], interrupt_at=3)
    stage = tmp_path / "part.partial"
    points = stage / "points"
    # what a kill during the writes leaves: the final frames.parquet cut short as a temporary file, a point's
    # frames file truncated (a file system that lost the end of it), and a summary half-written under a temp name
    good = (full / "frames.parquet").read_bytes()
    (stage / ".frames.parquet.k1ll3d.tmp").write_bytes(good[: len(good) // 2])
    (points / ".00002.summary.csv.abc.tmp").write_text("point,policy\n2,lo")
    frames1 = points / "00001.frames.arrow"  # a small point's frames, staged for the parent to pool
    frames1.write_bytes(frames1.read_bytes()[:-20])
    assert main(["run", "--resume", str(part), "--jobs", "1"]) == 0
    assert sorted(p.name for p in part.iterdir()) == sorted(p.name for p in full.iterdir())
    assert (part / "frames.parquet").read_bytes() == good
    assert (part / "summary.csv").read_bytes() == (full / "summary.csv").read_bytes()
    assert json.loads((part / "manifest.json").read_text())["resumed_points"] == [0]


def _staged(tmp_path, monkeypatch, n_points=4, stop_at=3):
    """A sweep interrupted at its stop_at-th point: (scenario path, results folder, staging folder)."""
    profiles = write_toy_profiles(tmp_path)
    data = scenario_dict(profiles, sweep={"grid": {"link.data_rate_mbps": [0.5 * 2 ** k for k in range(n_points)]}},
                         outputs={"plots": False})
    path = write_scenario(tmp_path, data)
    out = tmp_path / "out"
    _interrupt(path, out, monkeypatch, stop_at)
    return path, out, tmp_path / "out.partial"


def test_resume_refuses_an_edited_saved_scenario(tmp_path, monkeypatch, capsys):
    """Editing the saved scenario (seed 5 -> 7) used to resume into a folder mixing points of both seeds."""
    path, out, stage = _staged(tmp_path, monkeypatch)
    saved = stage / "scenario.yaml"
    saved.write_text(saved.read_text().replace("seed: 5", "seed: 7"))
    capsys.readouterr()
    assert main(["run", "--resume", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"edgesim: error: {saved}: changed since its finished points were made") and "\n" not in err
    assert not out.exists() and len(list((stage / "points").glob("*.summary.csv"))) == 2  # nothing promoted or lost


def test_resume_refuses_a_replaced_saved_scenario(tmp_path, monkeypatch, capsys):
    path, out, stage = _staged(tmp_path, monkeypatch)
    other = scenario_dict(write_toy_profiles(tmp_path), name="other", outputs={"plots": False})
    write_scenario(stage, other)
    capsys.readouterr()
    assert main(["run", "--resume", str(out)]) == 2
    assert "changed since its finished points were made" in capsys.readouterr().err and not out.exists()


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(tmp_path, capsys):
    from simulator.results import lock_path, writer_lock

    profiles = write_toy_profiles(tmp_path)
    path = write_scenario(tmp_path, scenario_dict(profiles, outputs={"plots": False}))
    out = tmp_path / "out"
    with writer_lock(out):  # what a first run holds while it writes
        for extra in ([], ["--overwrite"]):
            assert main(["run", str(path), "--out", str(out), *extra]) == 2
            err = capsys.readouterr().err
            assert f"{out}: another edgesim run (pid {os.getpid()}) is writing this folder" in err
    assert not lock_path(out).exists() and not out.exists()
    assert main(["run", str(path), "--out", str(out)]) == 0 and not lock_path(out).exists()


def _interrupting_at_point_2(*args):
    """run_point, but point 2 sends SIGINT to the parent alone and then takes long (a worker of a forked pool)."""
    if args[1] == 2:
        os.kill(int(os.environ["EDGESIM_TEST_PARENT"]), signal.SIGINT)  # never pytest's own process
        time.sleep(30)  # a long point: the parent must not wait for it
    return run_point(*args)


def test_sigint_to_the_parent_alone_stops_the_sweep_even_when_started_ignoring_it(tmp_path, monkeypatch, capsys):
    """A background job of a script starts with SIGINT ignored; `kill -INT` then used to let the sweep finish (exit 0).
    Here a worker sends SIGINT to the parent alone at the third point: exit 130, finished points kept, workers gone."""
    profiles = write_toy_profiles(tmp_path)
    data = scenario_dict(profiles, sweep={"grid": {"link.data_rate_mbps": [0.5, 1, 2, 4, 8, 16]}}, outputs={"plots": False})
    path = write_scenario(tmp_path, data)
    monkeypatch.setattr(sweep, "run_point", _interrupting_at_point_2)
    monkeypatch.setenv("EDGESIM_TEST_PARENT", str(os.getpid()))
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = tmp_path / "out"
    try:
        started = time.monotonic()
        assert main(["run", str(path), "--out", str(out), "--jobs", "2"]) == 130
        assert time.monotonic() - started < 25
    finally:
        signal.signal(signal.SIGINT, previous)
    assert multiprocessing.active_children() == []  # the worker sleeping in point 2 was ended, not waited for
    err = capsys.readouterr().err
    assert f"resume with: edgesim run --resume {out}" in err and (tmp_path / "out.partial").exists()


def test_a_worker_dies_with_its_parent(tmp_path):
    """SIGKILL of the parent used to leave its pool's workers computing; the parent-death signal ends them."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from simulator.sweep import _worker_init\n"
        "pool = ProcessPoolExecutor(1, initializer=_worker_init, initargs=(os.getpid(),))\n"
        "print(pool.submit(os.getpid).result(), flush=True)\n"
        "pool.submit(time.sleep, 60)\n"
        "time.sleep(60)\n")
    root = str(Path(__file__).resolve().parent.parent)  # this checkout's simulator, wherever edgesim is installed
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": root})
    worker = int(proc.stdout.readline())
    proc.kill()
    proc.wait()
    for _ in range(100):  # up to 10 s; it goes within milliseconds
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    raise AssertionError(f"worker {worker} outlived its parent")


def _descendants(pid: int) -> list[int]:
    """Every process below pid (children, their children, ...), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        found = children.get(todo.pop(), [])
        out += found
        todo += found
    return out


def _running(pid: int) -> bool:
    """True while pid exists and is not a zombie (a dead child its new parent has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


_DASK_PARENT = """
import ctypes, os
import simulator.sweep as sweep

def busy(*args):
    os.write(1, f"{os.getpid()}\\n".encode())  # one write: two workers' print() could interleave pid and newline
    ctypes.PyDLL(None).sleep(600)  # PyDLL keeps the GIL through the call, as a compiled kernel (no nogil) does

sweep.run_point = busy  # _dask submits sweep.run_point: this one, pickled by value

if __name__ == "__main__":
    for _ in sweep._dask([()] * 2, 2, None):
        pass
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's (prctl)")
def test_dask_local_cluster_workers_die_with_their_parent(tmp_path):
    """`--executor dask` without --scheduler: SIGKILL of edgesim used to leave a LocalCluster worker computing as long
    as its task held the GIL (Dask's own parent check is a thread); the preload's parent-death signal ends it."""
    pytest.importorskip("distributed", reason="dask[distributed] is not installed (the optional extra edgesim[dask])")
    import queue
    import threading

    script = tmp_path / "parent.py"
    script.write_text(_DASK_PARENT)
    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": root})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        workers = [int(lines.get(timeout=120)) for _ in range(2)]  # both workers are in their task
    except BaseException as exc:  # whatever failed: no parent (and its cluster) left running
        proc.kill()
        if isinstance(exc, queue.Empty):
            raise AssertionError("the LocalCluster's workers did not start within 120 s") from None
        raise
    below = _descendants(proc.pid)
    assert set(workers) <= set(below)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(_running(p) for p in below):
        time.sleep(0.05)
    left = [p for p in below if _running(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"processes left 2 s after SIGKILL of their parent: {left} (workers {workers})"
