"""The one progress contract: long work reports (done, total) through a callable; the command line draws it.

Core code never prints: it takes an optional `Progress` and calls it as work proceeds (total 0 = not yet known).
Work of several labelled steps (a study, a demo) takes `Steps`: it asks for one `Progress` per step by label.
"""

from __future__ import annotations

from typing import Callable

Progress = Callable[[int, int], None]
"""progress(done, total): `done` units of `total` are finished."""

Steps = Callable[[str], Progress]
"""steps(label) starts a labelled step and returns the Progress that step reports through."""


def silent(done: int, total: int) -> None:  # noqa: ARG001
    """A Progress that reports nowhere (the default of every long-running function)."""


def silent_steps(label: str) -> Progress:  # noqa: ARG001
    """A Steps whose steps report nowhere."""
    return silent
