"""Policies by name: each module holds its policies' spec models (what a scenario may say) and behaviour.

`PolicySpec` is the union of every spec, discriminated by `name`, so a scenario is checked field by field at
parse time; `make_policy` turns a parsed spec into the policy object a run uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional, Union

from pydantic import Field

from simulator.devices import Device
from simulator.policies import best_split, cascade, fixed
from simulator.policies.base import (
    BasePolicy,
    FrameInputs,
    LoadView,
    PolicyEntry,
    PolicyKernels,
    PolicySpecBase,
    Route,
    StatefulPolicy,
    make_route,
)

if TYPE_CHECKING:
    import pandas as pd

ENTRIES: dict[str, PolicyEntry] = {e.name: e for e in (*fixed.ENTRIES, best_split.ENTRY, best_split.ENTRY_PLACEMENT,
                                                     *cascade.ENTRIES)}
"""Every policy by name, in the order `edgesim list policies` shows them."""

PolicySpec = Annotated[Union[tuple(e.spec for e in ENTRIES.values())], Field(discriminator="name")]
"""A scenario's policy entry: one of the registered spec models, chosen by its `name`."""


def policy_entries() -> dict[str, PolicyEntry]:
    """All registered policies by name."""
    return dict(ENTRIES)


def policy_kernels(policy: Optional[BasePolicy]) -> Optional[PolicyKernels]:
    """The kernels a stateful policy's registry entry declares (None: no policy, or not registered with kernels)."""
    entry = ENTRIES.get(getattr(getattr(policy, "spec", None), "name", None))
    return entry.resolved_kernels() if entry is not None and isinstance(policy, entry.policy) else None


def make_policy(spec: PolicySpecBase, scenario_model: str, devices: dict[str, Device],
                dataset: Optional[pd.DataFrame]) -> BasePolicy:
    """The policy object of a parsed spec, with the scenario's model and devices."""
    return ENTRIES[spec.name].policy(spec, scenario_model, devices, dataset)


__all__ = ["ENTRIES", "BasePolicy", "FrameInputs", "LoadView", "PolicyEntry", "PolicyKernels", "PolicySpec",
           "PolicySpecBase", "Route", "StatefulPolicy", "make_policy", "make_route", "policy_entries", "policy_kernels"]
