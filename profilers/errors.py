"""User-facing errors: one line saying what, where and what would be accepted (STYLE.md rule 9)."""

from __future__ import annotations


class EdgesimError(Exception):
    """A problem with the user's input or environment; the CLI prints it as one line and exits 2."""


class ProfileError(EdgesimError):
    """An unreadable, corrupt or inconsistent profile file, or an unknown model or split point."""


class MeasurementUnavailable(EdgesimError):
    """A requested counter or device (CUDA, NVML, RAPL) is not present on this machine."""


class EdgesimWarning(UserWarning):
    """Something the user should read but that does not stop the work; the CLI prints it as `edgesim: warning: ...`."""


def close_names(name: str, known: list[str] | tuple[str, ...], n: int = 3) -> list[str]:
    """The known names `name` was probably meant to be: the same but for case first, then close spellings."""
    import difflib

    same = [k for k in known if k.lower() == str(name).lower()]
    lower = {k.lower(): k for k in known}
    close = [lower[k] for k in difflib.get_close_matches(str(name).lower(), list(lower), n=n, cutoff=0.75)]
    return list(dict.fromkeys(same + close))[:n]


def did_you_mean(name: str, known: list[str] | tuple[str, ...]) -> str:
    """" (did you mean 'x'?)" (or 'x' or 'y') for a misspelt name, '' when nothing is close."""
    close = close_names(name, known)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def unknown_name(kind: str, name: str, known: list[str] | tuple[str, ...]) -> EdgesimError:
    """Error for a name missing from a registry: the close names (case aside) first, then the known ones."""
    return EdgesimError(f"unknown {kind} '{name}'{did_you_mean(name, known)}; known: {', '.join(sorted(known))}")


def first_line(exc: BaseException, limit: int = 240) -> str:
    """`Type: first line of the message` of an exception from code we do not own, cut to `limit` characters."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".strip()[:limit]


def field_message(where: str, loc: tuple, message: str, more: int = 0) -> str:
    """The one shape of a field error: `WHERE: field 'a.b.c': what is wrong (and N more)`, on one line."""
    field = (".".join(str(p) for p in loc) or "(top level)").encode("unicode_escape").decode("ascii")
    text = message.replace("Value error, ", "").replace("\n", " ")
    return f"{where}: field '{field}': {text}" + (f" (and {more} more)" if more else "")
