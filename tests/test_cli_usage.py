"""Command-line usage errors answer in one line with exit code 2; -h, --version and --debug are there."""

from __future__ import annotations

from importlib import metadata

import pytest
from rich.console import Console

import edgesim.cli.simulate as simulate
from edgesim.cli.app import main

USAGE_ERRORS = [
    (["run", "s.yaml", "--output", "x"], "--output"),
    (["trace", "import", "csv", "in.csv"], "Missing option '--out'"),
    (["frobnicate"], "frobnicate"),
    (["run", "s.yaml", "--jobs", "-1"], "--jobs"),
    (["compare"], "RESULTS"),
]


@pytest.mark.parametrize("argv,needle", USAGE_ERRORS)
def test_usage_errors_are_one_line_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith("edgesim: error: ") and "Traceback" not in line
    assert needle in line and "-h' for help" in line, line


def test_short_help_version_and_debug_in_help(capsys):
    assert main(["-h"]) == 0
    out = capsys.readouterr().out
    assert "--debug" in out and "--version" in out and "run" in out
    assert main(["run", "-h"]) == 0
    out = capsys.readouterr().out
    assert "--resume" in out and "<bool>" not in out and "<list[str]>" not in out and "%%" not in out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"edgesim {metadata.version('edgesim')}"


def test_profile_without_device_name_is_one_line(capsys):
    assert main(["profile", "resnet18"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgesim: error: ") and "--device-name" in err[0], err


def test_list_devices_fits_80_columns(capsys, monkeypatch):
    monkeypatch.setattr(simulate, "console", lambda stderr=False: Console(width=80))
    assert main(["list", "devices"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "jetson-tx2" in line]
    assert len(rows) == 1, out  # one line per device: a short processor name, not a wrapped paragraph
    assert "Cortex-A57" in rows[0] and "quad-core" not in rows[0]
    assert max(len(line) for line in out.splitlines()) <= 80
    assert main(["list", "devices", "--wide"]) == 0
    assert "Cortex-A57 (quad-core)" in " ".join(capsys.readouterr().out.split())
