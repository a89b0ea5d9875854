"""How a process runs the simulator: the cycle collector paused, freed heap memory kept for the next window."""

from __future__ import annotations

import ctypes
import functools
import gc
from contextlib import contextmanager
from typing import Iterator, Optional

# glibc's mallopt(3) parameters
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MIB = 1 << 20
#: while simulating: arrays up to 32 MiB (glibc's own highest moving threshold) from the heap; up to 1 GiB of freed
#: heap kept (more than a city window's arrays, so none is handed back between windows; peak unchanged, 906-922 MB,
#: measured); the heap grown 64 MiB at a time (fewer brk calls as the first windows fill it)
KEPT = {M_MMAP_THRESHOLD: 32 * MIB, M_TRIM_THRESHOLD: 1024 * MIB, M_TOP_PAD: 64 * MIB}
#: afterwards: glibc's default top pad (128 KiB, mallopt(3)) and twice the mmap threshold as the trim threshold, as
#: glibc itself sets them when its threshold moves
AFTER = {M_TOP_PAD: 128 * 1024, M_TRIM_THRESHOLD: 64 * MIB}


@functools.cache
def libc() -> Optional[ctypes.CDLL]:
    """The C library this process runs on (None where it cannot be loaded), loaded once."""
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cycle collector for the block (a no-op where it is already off); it runs again afterwards.

    A run's start-up makes some 208,000 container objects that live on (pydantic's and numba's types, numba's cached
    kernels: gc.get_count() after the imports of a run with the collector off, measured), which the collector would
    walk again and again as they are made: 20-25 % of `edgesim validate`'s CPU and 0.3-0.8 s of a small
    `edgesim run`'s, measured on this project's 2-core VM. A simulation makes next to no cyclic garbage: three runs of
    a 64-point, 4-policy sweep left 163 unreachable objects each (gc.collect(), measured), so nothing piles up while
    it is paused. Model training and profiling keep the collector on.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _mallopt(settings: dict[int, int]) -> bool:
    """glibc's mallopt for each setting; False where this is not glibc."""
    mallopt = getattr(libc(), "mallopt", None)
    if mallopt is None:
        return False
    for param, value in settings.items():
        mallopt(param, value)
    return True


@contextmanager
def heap_kept() -> Iterator[None]:
    """glibc only: within the block, a window's arrays reuse the last window's heap pages instead of faulting in
    fresh zeroed ones (KEPT); afterwards the kept memory goes back to the system (malloc_trim) and the settings are
    AFTER's; the 32 MiB mmap threshold stays.

    glibc's own default hands back what a window frees and maps arrays above a moving threshold afresh: the city
    scenario at 30 % of its cameras took 155,000 page faults and 0.9-1.1 s of system time, with this 109,000 and
    0.6-0.8 s; the full city 327,000-330,000 and 146,000-147,000, and 22.0-23.1 s of CPU against 20.2-20.7 s
    (measured, interleaved)."""
    if not _mallopt(KEPT):  # not glibc: its allocator's own rules
        yield
        return
    try:
        yield
    finally:
        _mallopt(AFTER)
        libc().malloc_trim(0)


def simulation_process() -> None:
    """For a process that only simulates (a sweep worker): the collector off and the heap kept for its whole life,
    as run_to_folder's block gives its own process."""
    gc.disable()
    _mallopt(KEPT)
