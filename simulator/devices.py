"""Devices as the simulator sees them: service times per model part and a power model.

Service times come from measured or derived profiles (median, or drawn from the kept samples),
or from an inline what-if device (fixed / exponential latency, or a speed factor over a profile).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Literal, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from profilers.catalog import FACTS_PATH, list_devices, load_device, profile_file
from profilers.errors import EdgesimError, ProfileError, did_you_mean
from profilers.io import read_json
from profilers.schema import MAX_LATENCY_S, DeviceProfile, LatencyStats, ModelProfile, RadioPower, SplitPoint

ServiceMode = Literal["median", "sampled"]


class InlineLatency(BaseModel):
    """A what-if service time: fixed or exponential with the given mean (for queueing-theory checks)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    distribution: Literal["fixed", "exponential"] = "fixed"
    mean_s: float = Field(gt=0, le=MAX_LATENCY_S, description="at most MAX_LATENCY_S, as a profile's latencies")


class InlineDevice(BaseModel):
    """A device defined in the scenario: a fixed/exponential latency, or a speed factor over a profiled device."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    name: str
    kind: Literal["mobile", "edge", "cloud"] = "edge"
    latency: Optional[InlineLatency] = None
    speed_factor: Optional[float] = Field(default=None, gt=0, description="2.0 = twice as fast as `over`")
    over: Optional[str] = Field(default=None, description="catalog device or profile path the speed factor applies to")
    idle_w: float = Field(default=0.0, ge=0)
    active_w: float = Field(default=0.0, ge=0)
    radio_tx_w: float = Field(default=0.0, ge=0)
    radio_rx_w: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _one_way(self) -> "InlineDevice":
        if (self.latency is None) == (self.speed_factor is None):
            raise ValueError("give exactly one of 'latency' or 'speed_factor' (with 'over')")
        if self.speed_factor is not None and not self.over:
            raise ValueError("'speed_factor' needs 'over': the profiled device it scales")
        return self


@dataclass(frozen=True)
class ServiceTime:
    """A service-time distribution, drawn by inverse transform from a per-frame uniform u (common random numbers)."""

    distribution: Literal["empirical", "fixed", "exponential"]
    median_s: float
    samples_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mean_s: float = 0.0
    power_w: float = 0.0  # energy rate while serving: measured energy / time, or the power model's active watts
    energy_method: str = "power-model-estimate"

    def draw(self, u: np.ndarray, mode: ServiceMode) -> np.ndarray:
        """Service times for uniforms u: the median, an empirical quantile, or exponential."""
        u = np.asarray(u, dtype=float)
        if self.distribution == "exponential":
            return -self.mean_s * np.log1p(-u)
        if self.constant_s(mode) is not None:
            return np.full(u.shape, self.median_s)
        idx = np.minimum((u * self.samples_s.size).astype(np.int64), self.samples_s.size - 1)
        return self.samples_s[idx]

    def constant_s(self, mode: ServiceMode) -> Optional[float]:
        """The time every draw gives in this mode, whatever its uniform (None: each frame's depends on its own)."""
        if self.distribution != "exponential" and (
                self.distribution == "fixed" or mode == "median" or self.samples_s.size == 0):
            return self.median_s
        return None

    def scaled(self, factor: float) -> "ServiceTime":
        """The same distribution, every time multiplied by factor."""
        return ServiceTime(self.distribution, self.median_s * factor, self.samples_s * factor,
                           self.mean_s * factor, self.power_w, self.energy_method)

    def plus(self, extra_s: float) -> "ServiceTime":
        """The same distribution shifted by a constant (a fixed extra step on the same device)."""
        if self.distribution == "exponential":
            raise EdgesimError("an inline exponential latency cannot take an extra fixed step (switcher_s)")
        return ServiceTime(self.distribution, self.median_s + extra_s, self.samples_s + extra_s, self.mean_s + extra_s,
                           self.power_w, self.energy_method)

    @property
    def expected_s(self) -> float:
        """Mean service time (used by best-split's predictions)."""
        if self.distribution == "exponential":
            return self.mean_s
        return self.median_s


def _from_stats(stats: Optional[LatencyStats], energy_j: Optional[float], active_w: float,
                energy_method: Optional[str], where: str) -> ServiceTime:
    if stats is None:
        raise ProfileError(f"{where}: no latency was measured (shapes-only profile); profile it on a device that can run it")
    power = active_w
    method = "power-model-estimate"
    if energy_j is not None and stats.median_s > 0 and energy_method:
        power, method = energy_j / stats.median_s, energy_method
    samples = np.sort(np.asarray(stats.samples_s, dtype=float))
    return ServiceTime("empirical", stats.median_s, samples, float(samples.mean()) if samples.size else stats.median_s,
                       power, method)


@dataclass(frozen=True)
class Radio:
    """Power of the mobile device's radio while sending and receiving (linear in throughput)."""

    tx_w: float = 0.0
    tx_w_per_mbps: float = 0.0
    rx_w: float = 0.0
    rx_w_per_mbps: float = 0.0


@functools.cache
def catalog_wifi() -> Radio:
    """The Wi-Fi model the catalog gives its mobile devices, read from profilers/data/device_facts.json (cited there:
    Huang et al., MobiSys 2012, Table 3), for mobile devices without a radio model."""
    facts = read_json(FACTS_PATH, "device facts", ProfileError)
    radios = [RadioPower.model_validate(d["power"]["radio"]) for d in facts["devices"].values()
              if d.get("kind") == "mobile" and "radio" in d.get("power", {})]
    if not radios:
        raise ProfileError(f"{FACTS_PATH}: no mobile device has a radio model (power.radio)")
    r = radios[0]
    return Radio(r.tx_w, r.tx_w_per_mbps, r.rx_w, r.rx_w_per_mbps)


def load_profile_device(name_or_path: str, extra: dict[str, DeviceProfile]) -> DeviceProfile:
    """A catalog device, a device from the scenario's extra profiles, or a profile file: the one way a scenario's
    device name becomes a profile, for runs (resolve) and scenario checks alike.

    A listed profile named like a catalog device adds its models to that device (its own win where both have
    one): `edgesim derive my.json --device rpi3b+` puts a new model on the RPi without losing the catalog's.
    """
    if name_or_path in extra:
        own = extra[name_or_path]
        if name_or_path in list_devices():
            catalog = read_device(name_or_path)
            return own.model_copy(update={"models": {**catalog.models, **own.models}})
        return own
    return read_device(name_or_path)


def read_device(name_or_path: str) -> DeviceProfile:
    """load_device, read and checked once per process and file version (path, modification time, size): every
    sweep point (and `edgesim validate` of a 95-point sweep) names the same devices again, and checking a catalog
    profile's statistics against its samples costs 0.1-0.4 s of CPU. An edited file is read again."""
    path = profile_file(name_or_path)
    try:
        stat = path.stat()
    except OSError:
        return load_device(path)  # its one-line error
    cached = _read_version(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    return cached.model_copy(update={"models": dict(cached.models)})  # a caller's edit of its models stays its own


@functools.lru_cache(maxsize=64)
def _read_version(path: str, _mtime_ns: int, _size: int) -> DeviceProfile:
    return load_device(Path(path))


@dataclass(frozen=True)
class Device:
    """A mobile device, edge server or cloud as used in a simulation."""

    name: str
    kind: str
    idle_w: float
    active_w: float
    radio: Radio
    profile: Optional[DeviceProfile] = None
    inline: Optional[InlineDevice] = None
    speed_factor: float = 1.0
    model_speed_factors: tuple[tuple[str, float], ...] = ()

    def speed_of(self, model_id: str) -> float:
        """The speed factor of one model here: the device's, times the model's own where one was drawn for it
        (a model derived by another method than the device's, `uncertainty: device`)."""
        return self.speed_factor * dict(self.model_speed_factors).get(model_id, 1.0)

    def model(self, model_id: str) -> ModelProfile:
        """The model's profile on this device (or on the device an inline speed factor scales)."""
        if self.profile is None:
            raise EdgesimError(f"device '{self.name}' is inline with a fixed latency and has no model profiles")
        if model_id not in self.profile.models and self.profile.provenance.kind == "derived":
            raise ProfileError(f"device '{self.name}' (derived, not measured) has no profile for model '{model_id}'; "
                               f"profile the model on a machine you have (`{profile_command(model_id)}`), then `edgesim derive P.json --device {self.name} --out D.json` and list "
                               "D.json under `profiles:`")
        return self.profile.model(model_id)

    def _inline_time(self, share: float) -> ServiceTime:
        lat = self.inline.latency
        return ServiceTime(lat.distribution, lat.mean_s * share, mean_s=lat.mean_s * share, power_w=self.active_w)

    def head_time(self, model: ModelProfile, sp: SplitPoint) -> Optional[ServiceTime]:
        """Time to run the head (blocks before the split point) here; None when the head is empty."""
        if sp.layer_index == 0:
            return None
        if self.inline is not None and self.inline.latency is not None:
            return self._inline_time(sp.head_flops / model.total_flops if model.total_flops else 1.0)
        own = self.model(model.model_id)
        own_sp = own.split_point(sp.name)
        st = _from_stats(own_sp.head_latency, own_sp.head_energy_j, self.active_w, own.energy_method,
                         f"device '{self.name}', model '{model.model_id}', split point '{sp.name}'")
        speed = self.speed_of(model.model_id)
        return st.scaled(1.0 / speed) if speed != 1.0 else st

    def tail_time(self, model: ModelProfile, sp: SplitPoint) -> Optional[ServiceTime]:
        """Time to run the tail (blocks from the split point on) here; None when the tail is empty."""
        if sp.name == "output":
            return None
        if self.inline is not None and self.inline.latency is not None:
            return self._inline_time(1.0 - (sp.head_flops / model.total_flops if model.total_flops else 0.0))
        own = self.model(model.model_id)
        own_sp = own.split_point(sp.name)
        st = _from_stats(own_sp.tail_latency, own_sp.tail_energy_j, self.active_w, own.energy_method,
                         f"device '{self.name}', model '{model.model_id}', split point '{sp.name}'")
        speed = self.speed_of(model.model_id)
        return st.scaled(1.0 / speed) if speed != 1.0 else st

    def codec_s(self, model: ModelProfile, sp: SplitPoint, encoding: str, step: Literal["encode_s", "decode_s"]) -> float:
        """Measured median seconds to encode (step 'encode_s') or decode ('decode_s') sp's tensor in `encoding` on
        this device (profilers/codec.py, issue 23 point 4); 0 where its profile has no such measurement."""
        if self.profile is None or model.model_id not in self.profile.models:
            return 0.0
        own = {p.name: p for p in self.profile.models[model.model_id].split_points}.get(sp.name)
        return float(getattr(own, step).get(encoding, 0.0)) / self.speed_of(model.model_id) if own is not None else 0.0

    def part_time(self, model: ModelProfile, start: SplitPoint, end: SplitPoint) -> Optional[ServiceTime]:
        """Time to run the blocks between two split points here (the middle of a two-point split); None if empty.

        From the input it is the head up to `end`, up to the output the tail from `start`; in between, the head time
        up to `end` scaled so that its median is head(end) - head(start) (profiles time heads and tails, not parts).
        """
        if end.layer_index <= start.layer_index:
            return None
        if start.layer_index == 0:
            return self.head_time(model, end)
        if end.name == "output":
            return self.tail_time(model, start)
        to_end, to_start = self.head_time(model, end), self.head_time(model, start)
        share = (to_end.median_s - to_start.median_s) / to_end.median_s if to_end.median_s > 0 else 0.0
        return to_end.scaled(max(share, 0.0))


def device_from_profile(profile: DeviceProfile) -> Device:
    """The simulator's view of a profiled device: its power model and radio, its model profiles."""
    radio = profile.power.radio
    return Device(
        name=profile.name,
        kind=profile.kind,
        idle_w=profile.power.idle_w,
        active_w=profile.power.active_w,
        radio=Radio(radio.tx_w, radio.tx_w_per_mbps, radio.rx_w, radio.rx_w_per_mbps) if radio else Radio(),
        profile=profile,
    )


def fidelity_notes(devices: dict[str, Device]) -> list[str]:
    """One line per derived device: the stack its derivation models and the method's validated error, or that it
    has none (docs/device_fidelity.md); results on such devices are as good as that error allows. A model derived
    by another method than the device's (the dense-operator fallback of a model that could not be traced into
    operators) gets a line of its own with that method's own error."""
    notes = []
    for name, dev in devices.items():
        prov = dev.profile.provenance if dev.profile is not None else None
        if getattr(prov, "kind", "") != "derived":
            continue
        stack = getattr(prov, "stack", "") or "stack not stated"
        device_errors = tuple(getattr(prov, "validated_errors", []) or [])
        own: dict[tuple[str, tuple[float, ...]], list[str]] = {}
        for mid, mp in sorted(dev.profile.models.items()):
            if mp.derivation_method and tuple(mp.derivation_errors) != device_errors:
                own.setdefault((mp.derivation_method, tuple(mp.derivation_errors)), []).append(mid)
        if sum(map(len, own.values())) < len(dev.profile.models) or not dev.profile.models:
            notes.append(f"'{name}' is derived, not measured ({stack}): " + _error_text(device_errors, "the method"))
        for (method, errors), models in own.items():
            notes.append(f"'{name}' is derived, not measured ({stack}): model{'s' if len(models) > 1 else ''} "
                         f"{', '.join(models)} {method}: " + _error_text(errors, "that method"))
    return notes


def _error_text(errors: Sequence[float], method: str) -> str:
    """A derivation method's leave-one-out error in words: median and share within +/-25 %, or that it has none."""
    e = np.abs(np.asarray(errors, dtype=float))
    if not e.size:
        return f"too few published latencies to validate {method} on it (a stated fallback)"
    return (f"leave-one-out error of {method} on {e.size} published latencies: median {100 * np.median(e):.0f} %, "
            f"{100 * np.mean(e <= 0.25):.0f} % within +/-25 %")


def find_model(model_id: str, profiles: Iterable[DeviceProfile]) -> Optional[ModelProfile]:
    """The model's profile from the first of `profiles` that has it, else from the catalog; None if none has."""
    for prof in itertools.chain(profiles, _catalog_profiles()):
        if model_id in prof.models:
            return prof.models[model_id]
    return None


def _catalog_profiles() -> Iterator[DeviceProfile]:
    """The catalog's device profiles, the catalog listed only when the first one is asked for."""
    yield from map(read_device, list_devices())


def reference_model(devices: dict[str, Device], model_id: str) -> ModelProfile:
    """The model's profile from any profiled device (shapes, bytes and FLOPs do not depend on the device)."""
    profiles = [dev.profile for dev in devices.values() if dev.profile is not None]
    model = find_model(model_id, profiles)
    if model is not None:
        return model
    known = sorted({m for prof in itertools.chain(profiles, _catalog_profiles()) for m in prof.models})
    raise ProfileError(f"no profile of model '{model_id}' in the scenario's devices or the catalog"
                       f"{did_you_mean(model_id, known)}; measure it on a machine you have "
                       f"(`{profile_command(model_id)}`), derive it onto catalog devices (`edgesim derive P.json "
                       "--device rpi3b+ --out D.json`) and list both files under `profiles:`")


def profile_command(model_id: str) -> str:
    """The `edgesim profile` command that measures a model: a registered or torchvision name, or a Python file."""
    if model_id.endswith(".py") or ".py:" in model_id:
        source = model_id if ":" in model_id else f"{model_id}:FACTORY"
        return f"edgesim profile --model-file {source} --device-name NAME --out P.json"
    return f"edgesim profile {model_id} --device-name NAME --out P.json"
