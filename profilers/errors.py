"""User-facing errors: one line saying what, where and what would be accepted (STYLE.md rule 9)."""

from __future__ import annotations


class EdgesimError(Exception):
    """A problem with the user's input or environment; the CLI prints it as one line and exits 2."""


class ProfileError(EdgesimError):
    """An unreadable, corrupt or inconsistent profile file, or an unknown model or split point."""


class MeasurementUnavailable(EdgesimError):
    """A requested counter or device (CUDA, NVML, RAPL) is not present on this machine."""


def unknown_name(kind: str, name: str, known: list[str] | tuple[str, ...]) -> EdgesimError:
    """Error for a name missing from a registry, listing the known ones."""
    return EdgesimError(f"unknown {kind} '{name}'; known: {', '.join(sorted(known))}")
