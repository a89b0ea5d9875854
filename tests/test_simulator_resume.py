"""Crash safety: an interrupted sweep keeps its finished points and --resume ends byte-identical."""

from __future__ import annotations

import json

import simulator.sweep as sweep
from edgesim.cli.app import main
from tests.sim_helpers import scenario_dict, write_scenario, write_toy_profiles


def _full_and_interrupted(tmp_path, monkeypatch, rates, interrupt_at: int):
    """A whole run into full/, and the same sweep into part/ interrupted at the interrupt_at-th sweep point."""
    profiles = write_toy_profiles(tmp_path)
    data = scenario_dict(profiles, sweep={"grid": {"link.data_rate_mbps": rates}}, outputs={"plots": False})
    path = write_scenario(tmp_path, data)
    full = tmp_path / "full"
    assert main(["run", str(path), "--out", str(full)]) == 0

    real = sweep.run_point
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == interrupt_at:
            raise KeyboardInterrupt  # what Ctrl-C or SIGTERM (turned into KeyboardInterrupt) does mid-sweep
        return real(*args)

    monkeypatch.setattr(sweep, "run_point", flaky)
    part = tmp_path / "part"
    assert main(["run", str(path), "--out", str(part), "--jobs", "1"]) == 130  # in-process, so the patch applies
    monkeypatch.setattr(sweep, "run_point", real)
    return full, part


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
    frames1 = points / "00001.frames.arrow"
    frames1.write_bytes(frames1.read_bytes()[:-20])
    assert main(["run", "--resume", str(part), "--jobs", "1"]) == 0
    assert sorted(p.name for p in part.iterdir()) == sorted(p.name for p in full.iterdir())
    assert (part / "frames.parquet").read_bytes() == good
    assert (part / "summary.csv").read_bytes() == (full / "summary.csv").read_bytes()
    assert json.loads((part / "manifest.json").read_text())["resumed_points"] == [0]
