"""The clock offset between two hosts from round trips (Cristian's algorithm, as NTP's offset estimate).

For each probe the local clock is read before (t1) and after (t2) asking for the remote clock (r); if the
request and the reply took equally long, r was read at (t1 + t2) / 2, so offset = r - (t1 + t2) / 2, wrong by
at most half the round trip (t2 - t1) / 2. The probe with the shortest round trip bounds the error best.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ClockOffset:
    """remote clock - local clock, with the bound on its error (half the shortest round trip)."""

    offset_s: float
    error_bound_s: float
    probes: int

    def to_local(self, remote_s: float) -> float:
        """A remote stamp on the local clock."""
        return remote_s - self.offset_s


def estimate_offset(remote_now: Callable[[], float], probes: int = 20,
                    local_now: Callable[[], float] = time.monotonic) -> ClockOffset:
    """Offset of the clock `remote_now` reads against `local_now`, from the probe with the shortest round trip."""
    best = None
    for _ in range(probes):
        t1 = local_now()
        r = remote_now()
        t2 = local_now()
        if best is None or t2 - t1 < best[0]:
            best = (t2 - t1, r - (t1 + t2) / 2)
    return ClockOffset(best[1], best[0] / 2, probes)
