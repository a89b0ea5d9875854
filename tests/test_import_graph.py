"""Start-up: commands import torch, transformers, numba and plotly only when they need them (checked in a fresh
process, sys.modules after the command)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sim_helpers import scenario_dict, write_scenario, write_toy_profiles

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "numba", "plotly")

_AFTER = """
import json, sys
from edgesim.cli.app import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(m for m in sys.modules if m.split(".")[0] in %r)}), file=sys.stderr)
""" % (HEAVY,)


def _heavy_after(args: list[str], cwd: Path = ROOT) -> set[str]:
    """The heavy top-level packages in sys.modules once `edgesim ARGS` has run in a fresh interpreter."""
    res = subprocess.run([sys.executable, "-c", _AFTER] + args, cwd=cwd, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    record = json.loads(res.stderr.strip().splitlines()[-1])
    assert record["code"] in (0, None), res.stderr
    return {m.split(".")[0] for m in record["modules"]}


@pytest.mark.parametrize("args", [["-h"], ["--version"]])
def test_help_and_version_import_nothing_heavy(args):
    assert _heavy_after(args) == set()


@pytest.mark.parametrize("args", [["list", "policies"], ["validate", "scenarios/time_varying_link.yaml"]])
def test_list_and_validate_import_no_torch_nor_plotly(args):
    # numba comes with simulator.link and simulator.policies (the link and decision kernels both engines share)
    assert _heavy_after(args) <= {"numba"}


def test_run_without_profiling_never_imports_torch(tmp_path):
    profiles = write_toy_profiles(tmp_path)
    path = write_scenario(tmp_path, scenario_dict(profiles, engine="simpy", workload={"frames": 5},
                                                  outputs={"plots": False}))
    loaded = _heavy_after(["run", str(path), "--out", str(tmp_path / "out"), "--jobs", "1"])
    assert "torch" not in loaded and "transformers" not in loaded
    assert (tmp_path / "out" / "summary.csv").exists()
