"""Do two profiles of one model on one host agree? Every split point's head and tail median compared as measured and
with the host's own speed taken out (each profile's per-round ratio to its host reference, measurement_check)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Optional

from profilers.errors import EdgesimError
from profilers.schema import ModelProfile, timed_part

#: parts shorter than this (seconds) are left out: a timer's resolution and call overhead dominate them
MIN_PART_S = 1e-4
#: two medians "agree" when their relative change is at most this (issue 24's goal: 5 %)
WITHIN = 0.05


@dataclass(frozen=True)
class PartAgreement:
    """One split point's head or tail in two profiles: medians and the relative change from the first to the second."""

    split_point: str
    part: str
    first_s: float
    second_s: float
    change: float
    change_host_removed: Optional[float]
    removed_by: Optional[str]  # "per round" (per_reference medians) or "medians" (over the references'), None: not


@dataclass(frozen=True)
class Agreement:
    """All compared parts, and the host reference's medians in both profiles (None where one has none)."""

    model_id: str
    parts: list[PartAgreement]
    reference_first_s: Optional[float]
    reference_second_s: Optional[float]

    @property
    def reference_change(self) -> Optional[float]:
        """The host reference's relative change from the first profile to the second (None: not in both)."""
        if not (self.reference_first_s and self.reference_second_s):
            return None
        return self.reference_second_s / self.reference_first_s - 1

    def summary(self, host_removed: bool, within: float = WITHIN) -> tuple[float, float, int, int]:
        """(largest |change|, median |change|, parts within `within`, parts compared), as measured or host removed."""
        changes = [abs(p.change_host_removed if host_removed else p.change) for p in self.parts
                   if not host_removed or p.change_host_removed is not None]
        if not changes:
            return float("nan"), float("nan"), 0, 0
        return max(changes), statistics.median(changes), sum(c <= within for c in changes), len(changes)


def _per_reference(mp: ModelProfile, part: str, name: str, layer_index: int) -> Optional[float]:
    """A part's per-round ratio to the host reference; a head of every block or a tail of every block is the whole."""
    check = mp.measurement_check
    key = timed_part(part, name, layer_index, len(mp.blocks))
    disp = check.parts.get(key) if check is not None and key is not None else None
    return disp.per_reference if disp is not None else None


def compare_profiles(first: ModelProfile, second: ModelProfile) -> Agreement:
    """Head and tail of every split point both profiles time on their own (at least MIN_PART_S); the host-removed
    change is the ratio of the per-round part/reference medians, else the ratio of medians over the references'."""
    if first.model_id != second.model_id:
        raise EdgesimError(f"the profiles hold different models: '{first.model_id}' and '{second.model_id}'")
    refs = [mp.measurement_check.host_reference if mp.measurement_check is not None else None
            for mp in (first, second)]
    ref_a, ref_b = (r.median_s if r is not None else None for r in refs)
    by_name = {sp.name: sp for sp in second.split_points}
    rows = []
    for sp in first.split_points:
        other = by_name.get(sp.name)
        if other is None:
            continue
        for part in ("head", "tail"):
            a, b = getattr(sp, f"{part}_latency"), getattr(other, f"{part}_latency")
            if a is None or b is None or min(a.median_s, b.median_s) < MIN_PART_S:
                continue
            change = b.median_s / a.median_s - 1
            pa = _per_reference(first, part, sp.name, sp.layer_index)
            pb = _per_reference(second, part, other.name, other.layer_index)
            if pa and pb:
                removed, by = pb / pa - 1, "per round"
            elif ref_a and ref_b:
                removed, by = (b.median_s / a.median_s) / (ref_b / ref_a) - 1, "medians"
            else:
                removed, by = None, None
            rows.append(PartAgreement(sp.name, part, a.median_s, b.median_s, change, removed, by))
    if not rows:
        raise EdgesimError(f"no split point of '{first.model_id}' is timed in both profiles")
    return Agreement(first.model_id, rows, ref_a, ref_b)


#: what two measured profiles must share for their changes to be one host's drift: (field, words for it)
SAME_SETTING = (("host_fingerprint", "host"), ("threads", "threads"), ("torch_version", "torch"),
                ("cuda_version", "CUDA"), ("driver_version", "driver"))


def setting_differences(first, second) -> list[str]:
    """How two profiles' provenances differ where it matters to a comparison ('host a vs b', ...); a derived profile
    has no host of its own ('derived vs measured')."""
    if first.kind != second.kind:
        return [f"{first.kind} vs {second.kind}"]
    if first.kind != "measured":
        return []
    return [f"{words} {getattr(first, field)} vs {getattr(second, field)}" for field, words in SAME_SETTING
            if getattr(first, field) != getattr(second, field)]
