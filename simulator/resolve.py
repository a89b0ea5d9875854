"""Which devices a scenario names, resolved from the catalog, its profile files and its inline definitions."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Optional

from profilers.errors import EdgesimError
from profilers.schema import DeviceProfile, load_profile
from simulator.devices import Device, Radio, catalog_wifi, device_from_profile, load_profile_device

if TYPE_CHECKING:  # annotations only: scenario.check_names imports this module
    from simulator.scenario import Scenario


def listed_profiles(scenario: Scenario) -> dict[str, DeviceProfile]:
    """The scenario's extra profile files (`profiles:`), read once each, by device name."""
    return {prof.name: prof for prof in map(load_profile, scenario.profiles)}


def resolve_devices(scenario: Scenario, extra: Optional[dict[str, DeviceProfile]] = None) -> dict[str, Device]:
    """Every device the scenario names (mobiles, server, inline, listed profiles), keyed by its scenario name;
    `extra`: its listed profiles when the caller has read them already."""
    extra = listed_profiles(scenario) if extra is None else extra
    inline = {d.name: d for d in scenario.devices}
    names = [g.device for g in scenario.mobiles] + [e.device for e in scenario.edge_servers()]
    names += [scenario.cloud.device] if scenario.cloud is not None else []
    out: dict[str, Device] = {}
    for name in names:
        if name in out:
            continue
        if name in inline:
            spec = inline[name]
            radio = Radio(tx_w=spec.radio_tx_w, rx_w=spec.radio_rx_w)
            if spec.speed_factor is not None:
                base = device_from_profile(load_profile_device(spec.over, extra))
                out[name] = Device(spec.name, spec.kind, spec.idle_w or base.idle_w, spec.active_w or base.active_w,
                                   radio if (spec.radio_tx_w or spec.radio_rx_w) else base.radio,
                                   profile=base.profile, speed_factor=spec.speed_factor)
            else:
                out[name] = Device(spec.name, spec.kind, spec.idle_w, spec.active_w, radio, inline=spec)
        else:
            out[name] = device_from_profile(load_profile_device(name, extra))
    for name, prof in extra.items():  # listed profiles also supply model shapes for inline devices
        out.setdefault(name, device_from_profile(prof))
    return out


def mobile_radio_notes(scenario: Scenario, devices: dict[str, Device]) -> tuple[dict[str, Device], list[str]]:
    """Give mobile devices without a radio model the catalog's Wi-Fi model, and say so; note devices of the wrong kind.

    Offloading from a mobile device with no radio would cost 0 J on the radio: never silently.
    """
    out, notes = dict(devices), []
    mobiles = list(dict.fromkeys(g.device for g in scenario.mobiles))
    for name in mobiles:
        dev = out[name]
        if dev.radio == Radio():
            out[name] = replace(dev, radio=catalog_wifi())
            notes.append(f"mobile device '{name}' has no radio model; its radio energy uses the catalog's Wi-Fi model "
                         "(Huang et al., MobiSys 2012)")
        if dev.kind != "mobile":
            notes.append(f"device '{name}' is of kind '{dev.kind}' and is used as a mobile device")
    for edge in scenario.edge_servers():
        if out[edge.device].kind == "mobile":
            notes.append(f"device '{edge.device}' is of kind 'mobile' and is used as an edge server")
    if scenario.cloud is not None and out[scenario.cloud.device].kind == "mobile":
        notes.append(f"device '{scenario.cloud.device}' is of kind 'mobile' and is used as the cloud")
    return out, notes


def scenario_devices(scenario: Scenario) -> dict[str, Device]:
    """Every device of the scenario and of its sweep (fields ending in 'device'), resolved once each."""
    extra = listed_profiles(scenario)
    devices = resolve_devices(scenario, extra)
    swept = [v for values in scenario.sweep.grid.values() if isinstance(values, list) for v in values] + [
        v for case in scenario.sweep.cases for k, v in case.items() if k.endswith("device")]
    for name in swept:
        if isinstance(name, str) and name not in devices:
            try:
                devices[name] = device_from_profile(load_profile_device(name, extra))
            except EdgesimError:
                continue
    return devices
