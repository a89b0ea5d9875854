"""Every shipped scenario validates: its fields, devices, models, split points, policies, traces and profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesim.cli.app import main

SCENARIOS = sorted((Path(__file__).resolve().parent.parent / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenario_validates(path, capsys):
    assert main(["validate", str(path)]) == 0
    assert ": valid (" in capsys.readouterr().out
