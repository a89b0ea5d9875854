"""numba for the simulator's compiled code, its on-disk cache stamped with the source of every compiled module.

numba checks a cached function against its own file only: `run_events` (loop/events.py) compiled before an edit of
loop/heap.py or loop/layout.py alone would load from the cache unchanged and run the old rules. Every compiled
module imports `njit` (or `cfunc`) from here, which puts in front of numba's own cache locators ones that add to
that check a digest of the simulator's compiled modules (those that import numba) and of the simulator modules
they import (one level: what those import in turn is not followed): an edit of any of them, a comment's too,
recompiles every kernel once (2-6 min of CPU on this project's VM, measured); an edit elsewhere (tables, summaries,
the CLI) recompiles nothing. The cache stays where numba puts it (__pycache__ beside the source, else numba's user-wide
folder, or NUMBA_CACHE_DIR where set).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

from numba import cfunc, njit  # noqa: F401  (what the compiled modules import from here)
from numba.core import caching

ROOT = Path(__file__).resolve().parent
_COMPILED = re.compile(r"^\s*(?:from numba\b|import numba\b|from simulator\.jit import)", re.M)
_IMPORTS = re.compile(r"^\s*(?:from|import)\s+(simulator(?:\.\w+)*)", re.M)


def _module_file(root: Path, name: str) -> Path | None:
    """simulator.a.b -> root/a/b.py (or its package's __init__.py), None if neither exists."""
    parts = name.split(".")[1:]
    for path in (root.joinpath(*parts).with_suffix(".py") if parts else None,
                 root.joinpath(*parts, "__init__.py")):
        if path is not None and path.is_file():
            return path
    return None


def compiled_sources(root: Path = ROOT) -> list[Path]:
    """The package's compiled modules (those that import numba or this module) and the package's modules they
    import, in path order."""
    texts = {p: p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts}
    chosen = {p for p, text in texts.items() if _COMPILED.search(text)}
    for p in list(chosen):
        for name in _IMPORTS.findall(texts[p]):
            found = _module_file(root, name)
            if found is not None:
                chosen.add(found)
    return sorted(chosen)


def sources_digest(root: Path = ROOT) -> str:
    """SHA-256 over compiled_sources' relative paths and bytes."""
    h = hashlib.sha256()
    for path in compiled_sources(root):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


@lru_cache(maxsize=None)
def _digest() -> str:
    return sources_digest()  # once a process: the sources do not change under a running simulation


class _Stamped:
    """A numba cache locator for the simulator's own files whose source stamp also holds sources_digest()."""

    def get_source_stamp(self):
        return (super().get_source_stamp(), _digest())

    @classmethod
    def from_function(cls, py_func, py_file):
        try:
            Path(py_file).resolve().relative_to(ROOT)
        except (ValueError, OSError):
            return None  # not ours: numba's own locators take it
        return super().from_function(py_func, py_file)


def _locator(name: str):
    return getattr(caching, name, None) or getattr(caching, "_" + name)  # numba >= 0.61 dropped the underscores


STAMPED = tuple(type(f"Stamped{name}", (_Stamped, _locator(name)), {})
                for name in ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator"))
_impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
if not any(cls.__name__.startswith("Stamped") for cls in _impl._locator_classes):
    _impl._locator_classes[:0] = list(STAMPED)  # tried first, in numba's own order
