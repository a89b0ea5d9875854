"""The command line's output: one rich console for tables and text, and progress bars drawn to profilers.progress.

Core code reports through `Progress` (done, total) and `Steps` (label -> Progress); commands draw them with:

    with progress_steps() as steps:
        run_study(..., steps=steps)                    # labelled multi-step work: one bar per step
        measure(..., progress=steps("profiling m"))    # single-step work: one bar
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from profilers.progress import Progress as ProgressFn
from profilers.progress import Steps


def console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr); 160 columns wide when not writing to a terminal (logs, pipes)."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 160)


@contextmanager
def progress_steps(transient: bool = True, disable: bool = False) -> Iterator[Steps]:
    """Rich progress bars on stderr while the block runs; yields a Steps: each steps(label) adds a bar its Progress moves.

    A total of 0 draws an indeterminate bar; transient=False keeps the finished bars on screen; disable draws nothing.
    """
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console(stderr=True), transient=transient, disable=disable) as bars:

        def steps(label: str) -> ProgressFn:
            task = bars.add_task(label, total=None)

            def progress(done: int, total: int) -> None:
                bars.update(task, completed=done, total=total or None)

            return progress

        yield steps


PNG_HELP = ("--png: PNG figures too, an error if they cannot be made (needs kaleido and Chromium); --no-png: HTML "
            "only; neither: PNG where Chromium works, else one warning")
"""The one spelling of the PNG option, for every command that writes figures."""


def png_option():
    """The --png/--no-png option (None when neither is given), as every command that writes figures declares it."""
    return typer.Option(None, "--png/--no-png", metavar="", show_default=False, help=PNG_HELP)


def png_mode(png: Optional[bool], default: Optional[str] = "auto") -> Optional[str]:
    """--png / --no-png / neither as write_figures' png mode: 'yes', 'no', or the default."""
    return default if png is None else ("yes" if png else "no")
