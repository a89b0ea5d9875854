"""Start-up: commands import torch, transformers, numba and plotly only when they need them (checked in a fresh
process, sys.modules after the command)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from profilers.errors import EdgesimError
from simulator.policies import ENTRIES, PolicyKernels
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


@pytest.mark.parametrize("args", [["list", "policies"], ["validate", "scenarios/matsubara2019_fig3.yaml"]])
def test_list_and_validate_import_nothing_heavy(args):
    # numba stays out in two halves: the policies name their kernels by module path (PolicyEntry.kernels, issue 26)
    # and simulator.link imports its kernels when a link is first evaluated (issue 23)
    assert _heavy_after(args) == set()


def test_validate_of_a_traced_link_imports_no_torch_nor_plotly():
    # numba allowed: the sense checks evaluate the trace's mean rate through the link kernels (RateTrace.bits_until)
    assert _heavy_after(["validate", "scenarios/time_varying_link.yaml"]) <= {"numba"}


def test_kernels_named_by_path_resolve_when_a_run_needs_them():
    entry = ENTRIES["best-split"]
    assert isinstance(entry.kernels, str)  # not imported with the registry
    kernels = entry.resolved_kernels()
    assert isinstance(kernels, PolicyKernels) and kernels is ENTRIES["best-placement"].resolved_kernels()
    with pytest.raises(EdgesimError, match="kernels 'simulator.policies.best_split:ENTRY' name no PolicyKernels"):
        replace(entry, kernels="simulator.policies.best_split:ENTRY").resolved_kernels()


def test_run_without_profiling_never_imports_torch(tmp_path):
    profiles = write_toy_profiles(tmp_path)
    path = write_scenario(tmp_path, scenario_dict(profiles, engine="simpy", workload={"frames": 5},
                                                  outputs={"plots": False}))
    loaded = _heavy_after(["run", str(path), "--out", str(tmp_path / "out"), "--jobs", "1"])
    assert "torch" not in loaded and "transformers" not in loaded
    assert "plotly" not in loaded  # no figure drawn: the report's modules import plotly only to draw
    assert (tmp_path / "out" / "summary.csv").exists()


_MODULES_AFTER = """
import json, sys
from edgesim.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.startswith("edgesim.cli."))), file=sys.stderr)
"""


def test_root_help_imports_no_command_module():
    res = subprocess.run([sys.executable, "-c", _MODULES_AFTER, "-h"], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    loaded = json.loads(res.stderr.strip().splitlines()[-1])
    assert loaded == ["edgesim.cli.app"], loaded
    for name in ("run", "validate", "profile", "dmd", "distill", "trace", "testbed"):
        assert f"\n  {name} " in res.stdout


def test_root_help_reads_the_same_summaries_as_the_mounted_commands(capsys):
    import typer.main

    from edgesim.cli.app import COMMANDS, app, main

    assert main(["-h"]) == 0
    lazy = capsys.readouterr().out
    group = typer.main.get_group(app)
    for name in COMMANDS:  # mount every command, then the help from the built commands must read the same
        assert group.get_command(None, name) is not None
    assert set(group.commands.built) == set(COMMANDS)
    group.main(["-h"], prog_name="edgesim", standalone_mode=False)
    assert capsys.readouterr().out == lazy


def test_a_mistyped_command_is_still_suggested(capsys):
    from edgesim.cli.app import main

    assert main(["distil"]) == 2
    assert "Did you mean 'distill'" in capsys.readouterr().err
