"""Scenario YAML: pydantic models parsed once at the boundary, sweeps expanded into concrete points."""

from __future__ import annotations

import copy
import difflib
import itertools
import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from profilers.errors import EdgesimError, field_message
from profilers.io import read_text
from profilers.schema import DeviceProfile, ModelProfile, load_profile
from simulator.devices import InlineDevice, find_model, load_profile_device
from simulator.link import TCP_IP_OVERHEAD_BYTES, TCP_PAYLOAD_BYTES, RateTrace, SlowStart, load_rate_trace
from simulator.policies import ENTRIES as POLICY_ENTRIES
from simulator.policies import PolicySpec
from simulator.limits import (CONFIRM_RUNS, MAX_FRAME_RATE_FPS, MAX_RATE_MBPS, MAX_SWEEP_POINTS,  # noqa: F401
                              MAX_TIME_S, MAX_TRACE_SCALE)
from simulator.safe_yaml import YamlLimitError, check_size, load_yaml


from simulator.sense import check_scenario


class _Strict(BaseModel):
    """Unknown fields are errors, and every number is finite (inf and nan are refused where they are read)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


TraceEnd = Literal["hold", "wrap"]


class TraceOffsets(_Strict):
    """Where in a rate trace each mobile device starts, and what the trace does after its end."""

    trace_offset_s: float = Field(default=0.0, ge=0, le=MAX_TIME_S, description="the first mobile device starts this far into the trace")
    offset_step_s: float = Field(default=0.0, ge=0, le=MAX_TIME_S, description=(
        "each further mobile device starts this much later in the trace, so cameras do not see identical conditions"))
    trace_end: TraceEnd = Field(default="hold", description=(
        "after the trace ends: 'hold' its last rate, or 'wrap' around to its start (the last time is the end)"))

    def offset_s(self, k: int) -> float:
        """Where in the trace the k-th user of the link starts (mobile device, or edge server on the WAN)."""
        return self.trace_offset_s + k * self.offset_step_s


class TracedRate(TraceOffsets):
    """A link's data rate: constant, or following a trace (scaled, offset per device, held or wrapped at its end)."""

    data_rate_mbps: Optional[float] = Field(default=None, gt=0, le=MAX_RATE_MBPS, description="constant uplink rate")
    trace: Optional[str] = Field(default=None, description="CSV with time_s,data_rate_mbps (edgesim trace import)")
    trace_scale: float = Field(default=1.0, gt=0, le=MAX_TRACE_SCALE, description="multiplies every rate of the trace")

    def rate_trace(self) -> RateTrace:
        """The rate over time at the trace's start: the trace (scaled, held or wrapped at its end), else the constant."""
        if self.trace:
            return load_rate_trace(self.trace, self.trace_scale, self.trace_end)
        return RateTrace.constant(self.data_rate_mbps)


class RateOrTrace(TracedRate):
    """A link's own rate where there is no default one: exactly one of a constant rate or a trace."""

    @model_validator(mode="after")
    def _one_rate(self) -> "RateOrTrace":
        if (self.data_rate_mbps is None) == (self.trace is None):
            raise ValueError("give exactly one of 'data_rate_mbps' or 'trace'")
        return self


class MobileLinkSpec(RateOrTrace):
    """A mobile group's own uplink: a constant rate or a trace (downlink, delay and packets stay the scenario's)."""


class MobileGroup(_Strict):
    """One or more identical mobile devices (cameras), each with its own uplink (the scenario's link unless `link`)."""

    device: str = Field(description="catalog name, profile path, or the name of an inline device")
    count: int = Field(default=1, ge=1, le=10_000)
    link: Optional[MobileLinkSpec] = Field(default=None, description="this group's own uplink rate or trace")
    edge: Optional[str] = Field(default=None, description="the edge server (edges.N.name) of static assignment")


class DelaySpec(_Strict):
    """A one-way propagation delay that varies: from the trace's rtt_ms column (rtt / 2), or a distribution."""

    from_trace: bool = Field(default=False, description="follow the rtt_ms column of the uplink trace")
    distribution: Optional[Literal["uniform", "normal", "lognormal", "exponential"]] = None
    mean_s: Optional[float] = Field(default=None, gt=0, le=MAX_TIME_S, description="default: link.propagation_delay_s")
    std_s: float = Field(default=0.0, ge=0, le=MAX_TIME_S, description="jitter (uniform, normal, lognormal)")

    @model_validator(mode="after")
    def _one_source(self) -> "DelaySpec":
        if self.from_trace == (self.distribution is not None):
            raise ValueError("give either 'from_trace: true' or a 'distribution'")
        return self


class ServerSpec(_Strict):
    """The edge server: c parallel servers shared by all mobile devices (M/G/c)."""

    device: str
    servers: int = Field(default=1, ge=1, le=10_000)


class BatchingSpec(_Strict):
    """Dynamic batching at a server, as Triton's dynamic batcher: batch size cap, preferred sizes, queue delay."""

    max_batch_size: int = Field(default=8, ge=1, le=4096)
    preferred_batch_sizes: list[int] = Field(default_factory=list, description=(
        "sizes dispatched at once when the queue holds them (largest first); others wait up to max_queue_delay_s"))
    max_queue_delay_s: float = Field(default=0.0, ge=0, le=MAX_TIME_S, description=(
        "how long the oldest queued frame may wait for a batch to fill while a server is free"))

    @model_validator(mode="after")
    def _sizes(self) -> "BatchingSpec":
        bad = [b for b in self.preferred_batch_sizes if not 1 <= b <= self.max_batch_size]
        if bad:
            raise ValueError(f"preferred_batch_sizes {bad} must lie in 1..max_batch_size ({self.max_batch_size})")
        return self


class EdgeLinkSpec(RateOrTrace):
    """The uplink rate from the mobile devices to one edge server (packets, loss and delay stay the scenario's)."""

    shared_medium: bool = Field(default=False, description="one wireless medium for all frames sent to this server")


class EdgeSpec(_Strict):
    """One edge server of several: its device, its parallel servers, its uplink, optional dynamic batching."""

    name: str = Field(description="how mobiles.N.edge and tables name it")
    device: str
    servers: int = Field(default=1, ge=1, le=10_000)
    link: Optional[EdgeLinkSpec] = Field(default=None, description="uplink to this server (default: the scenario link)")


class WanSpec(TracedRate):
    """The wide-area link from the edge tier to the cloud (one per edge server) and back."""

    data_rate_mbps: float = Field(default=100.0, gt=0, le=MAX_RATE_MBPS, description=(
        "WAN rate from an edge server to the cloud; a trace overrides it"))
    downlink_data_rate_mbps: Optional[float] = Field(default=None, gt=0, le=MAX_RATE_MBPS, description="default: the WAN rate")
    propagation_delay_s: float = Field(default=0.02, ge=0, le=MAX_TIME_S, description="one way, edge server to cloud")
    loss_probability: float = Field(default=0.0, ge=0, lt=1)


class CloudSpec(_Strict):
    """The cloud behind the WAN: a device, its parallel servers (GPUs) and optional dynamic batching."""

    device: str
    servers: int = Field(default=1, ge=1, le=10_000)
    wan: WanSpec = Field(default_factory=WanSpec)
    batching: Optional[BatchingSpec] = None


class LinkSpec(TracedRate):
    """Uplink and downlink between each mobile device and the server."""

    data_rate_mbps: float = Field(default=10.0, gt=0, le=MAX_RATE_MBPS, description=(
        "uplink data rate, constant (or swept); a trace overrides it"))
    downlink_data_rate_mbps: Optional[float] = Field(default=None, gt=0, le=MAX_RATE_MBPS, description="default: the uplink rate")
    propagation_delay_s: float = Field(default=0.0, ge=0, le=MAX_TIME_S)
    packet_payload_bytes: int = Field(default=TCP_PAYLOAD_BYTES, ge=1, description=(
        "payload per packet (TCP MSS): default 1448, TCP with timestamps over a 1500-byte MTU (1460 without)"))
    packet_overhead_bytes: int = Field(default=TCP_IP_OVERHEAD_BYTES, ge=0, description=(
        "header bytes added per packet: default 52, IPv4 + TCP with timestamps as Linux sends them (66 with "
        "Ethernet's 14); 0 counts the payload only (the default before)"))
    loss_probability: float = Field(default=0.0, ge=0, lt=1, description="per-packet loss; lost packets are resent")
    shared_medium: bool = Field(default=False, description="one wireless medium shared by all mobile devices")
    delay: Optional[DelaySpec] = Field(default=None, description="a varying one-way delay instead of the constant one")
    allow_reordering: bool = Field(default=False, description=(
        "let a varying delay deliver a frame before one sent earlier on the same path (default: FIFO)"))
    slow_start_after_idle: bool = Field(default=False, description=(
        "TCP's slow start after idle on the uplink (RFC 5681 section 4.1; Linux tcp_slow_start_after_idle=1 with "
        "cubic or reno, not BBR): a transfer after more than an RTO (RTT + 0.2 s) idle starts from the initial "
        "window and doubles it each RTT"))
    rtt_s: Optional[float] = Field(default=None, gt=0, le=MAX_TIME_S, description=(
        "round-trip time slow start grows by: default twice the one-way delay (delay.mean_s, else "
        "propagation_delay_s)"))
    initial_window_segments: int = Field(default=10, ge=1, le=100_000, description=(
        "TCP's initial window after idle, in segments (RFC 6928: 10)"))

    def rate_trace(self) -> RateTrace:
        """The uplink's rate over time, with TCP's slow start after idle when the scenario asks for it."""
        trace = super().rate_trace()
        if not self.slow_start_after_idle:
            return trace
        one_way_s = (self.delay.mean_s if self.delay is not None and self.delay.mean_s else None) \
            or self.propagation_delay_s
        rtt_s = self.rtt_s if self.rtt_s is not None else 2.0 * one_way_s
        return replace(trace, slow_start=SlowStart(rtt_s, self.packet_payload_bytes + self.packet_overhead_bytes,
                                                   self.initial_window_segments))


class QueueSpec(_Strict):
    """FIFO queues: optional bounds, drop-stale mode for real-time streams, per-frame deadline."""

    mobile_capacity: Optional[int] = Field(default=None, ge=0, description="frames waiting at the mobile device")
    server_capacity: Optional[int] = Field(default=None, ge=0, description="frames waiting at the server")
    drop_stale: bool = Field(default=False, description="a new capture drops frames still waiting at its mobile device")
    deadline_s: Optional[float] = Field(default=None, gt=0, le=MAX_TIME_S)


class WorkloadSpec(_Strict):
    """Where frames come from: periodic, Poisson, or the timestamps of a dataset trace."""

    source: Literal["periodic", "poisson", "trace"] = "periodic"
    frame_rate_fps: float = Field(default=1.0, gt=0, le=MAX_FRAME_RATE_FPS)
    frames: int = Field(default=100, ge=1, le=100_000_000, description="frames per mobile device")
    trace: Optional[str] = Field(default=None, description="CSV with capture_time_s (source: trace)")
    dataset: Optional[str] = Field(default=None, description="per-sample Parquet/CSV trace (labels, predictions)")
    dataset_split: Optional[str] = Field(default=None, description="keep only rows whose 'split' equals this")
    positive_label: Optional[Union[int, str]] = Field(default=None, description=(
        "the class F1 is reported for; default: the larger of the dataset's two labels (macro F1 with more)"))
    service_time: Literal["median", "sampled"] = Field(default="median")
    warmup_frames: int = Field(default=0, ge=0, description="frames per mobile left out of the summary")
    chunk_frames: int = Field(default=250_000, ge=100, description=(
        "above this many frames per sweep point and policy, the engine runs in windows of this size and writes "
        "frames as it goes (flat memory: 10 M frames peaked at 0.68-0.90 GB here, measured by `python -m benchmarks.memory`)"))

    @model_validator(mode="after")
    def _trace_given(self) -> "WorkloadSpec":
        if self.source == "trace" and not (self.trace or self.dataset):
            raise ValueError("source 'trace' needs 'trace' (CSV with capture_time_s) or 'dataset'")
        if self.warmup_frames >= self.frames:
            raise ValueError(f"warmup_frames ({self.warmup_frames}) must be below frames ({self.frames}): the summary "
                             "would hold no frame")
        return self


class SweepSpec(_Strict):
    """A grid over any field (dotted path) crossed with a list of cases (sets of fields changed together)."""

    grid: dict[str, Union[list[Any], dict[str, list[float]]]] = Field(default_factory=dict)
    cases: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("grid", mode="before")
    @classmethod
    def _ranges_ok(cls, grid: Any) -> Any:
        """Ranges checked before pydantic's union does (its error would name the union's members, not the range)."""
        for path, values in grid.items() if isinstance(grid, dict) else ():
            if isinstance(values, dict):
                _check_range(path, values)
            elif isinstance(values, list) and not values:
                raise ValueError(f"'{path}': empty list of values")
        return grid

    @model_validator(mode="after")
    def _bounded(self) -> "SweepSpec":
        n = self.n_points()
        if n > MAX_SWEEP_POINTS:
            raise ValueError(f"{n:,} sweep points (grid x cases); at most {MAX_SWEEP_POINTS:,}")
        return self

    def n_points(self) -> int:
        """How many points the sweep expands to, counted without expanding it."""
        return math.prod(len(v) if isinstance(v, list) else int(next(iter(v.values()))[2])
                         for v in self.grid.values()) * max(1, len(self.cases))


def _check_range(path: str, values: dict) -> None:
    """A {log|linear: [start, stop, n]} range: finite numbers, a positive start and stop for log, n a whole 1..max."""
    if set(values) - {"log", "linear"} or len(values) != 1:
        raise ValueError(f"'{path}': a range is {{log: [start, stop, n]}} or {{linear: [start, stop, n]}}")
    (kind, spec), = values.items()
    numbers = isinstance(spec, list) and len(spec) == 3 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in spec)
    if not numbers or spec[2] < 1 or int(spec[2]) != spec[2]:
        raise ValueError(f"'{path}': {kind} range needs [start, stop, n]: finite numbers, n a positive integer")
    if spec[2] > MAX_SWEEP_POINTS:
        raise ValueError(f"'{path}': {kind} range of {spec[2]:g} values; at most {MAX_SWEEP_POINTS:,}")
    if kind == "log" and (spec[0] <= 0 or spec[1] <= 0):
        raise ValueError(f"'{path}': log range needs positive start and stop")


class OutputSpec(_Strict):
    """What a results folder gets besides summary.csv and the manifest."""

    frames: bool = True
    plots: bool = True
    png: Literal["auto", "yes", "no"] = "auto"

    @field_validator("png", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        """YAML reads bare yes/no as booleans; take them as the words they were."""
        return {True: "yes", False: "no"}.get(value, value) if isinstance(value, bool) else value


#: what a scenario name may be: it names the folder results/<name>
SCENARIO_NAME = re.compile(r"[\w+-][\w.+ -]{0,99}")


class Scenario(_Strict):
    """A complete scenario: models, devices, link, workload, policies, sweep, seeds and outputs."""

    name: str = Field(default="scenario", description=(
        "names the default results folder results/<name>: letters, digits, spaces and . _ - + (no path)"))
    description: str = ""
    model: str = Field(description="the model all policies use unless a policy names its own")
    devices: list[InlineDevice] = Field(default_factory=list, description="inline devices for what-if studies")
    profiles: list[str] = Field(default_factory=list, description="extra profile files; their devices become known")
    mobiles: list[MobileGroup] = Field(min_length=1)
    edge: Optional[ServerSpec] = Field(default=None, description="one edge server (or give `edges`)")
    edges: list[EdgeSpec] = Field(default_factory=list, description="several edge servers (or give `edge`)")
    cloud: Optional[CloudSpec] = Field(default=None, description="a cloud behind a WAN from the edge tier")
    assignment: Literal["static", "round-robin", "least-loaded", "shortest-expected-delay"] = Field(
        default="static", description=(
            "which edge server a frame goes to: mobiles.N.edge (static), mobile devices in turn (round-robin), or "
            "at capture the least loaded / the one with the shortest expected delay"))
    link: LinkSpec = Field(default_factory=LinkSpec)
    queue: QueueSpec = Field(default_factory=QueueSpec)
    workload: WorkloadSpec = Field(default_factory=WorkloadSpec)
    policies: list[PolicySpec] = Field(min_length=1)
    sweep: SweepSpec = Field(default_factory=SweepSpec)
    seed: int = Field(default=1, ge=0)
    replications: int = Field(default=1, ge=1, le=10_000)
    engine: Literal["auto", "compiled", "simpy"] = Field(default="auto", description=(
        "auto (= compiled): the compiled exact event loop wherever it covers the run, else SimPy; simpy: the "
        "readable reference engine everywhere (same per-frame times, slower)"))
    uncertainty: Literal["none", "device"] = Field(default="none", description=(
        "device: each replication draws every derived device's speed from its validated leave-one-out errors, so "
        "gains come with a band (gain_*_p5/p95 over replications)"))
    outputs: OutputSpec = Field(default_factory=OutputSpec)

    @field_validator("name")
    @classmethod
    def _a_name_not_a_path(cls, name: str) -> str:
        """A name stays a name: results/<name> never leaves results/ (no separators, no '..', no absolute path)."""
        if not SCENARIO_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a scenario name: use letters, digits, spaces and . _ - + (up to 100, "
                             "not starting with '.', no path separators); give --out to choose the results folder")
        return name

    @model_validator(mode="after")
    def _one_edge_form(self) -> "Scenario":
        if (self.edge is None) == (not self.edges):
            raise ValueError("give either 'edge' (one edge server) or 'edges' (several)")
        names = [e.name for e in self.edges]
        if len(set(names)) != len(names):
            raise ValueError(f"edge server names must be distinct: {', '.join(names)}")
        return self

    def edge_servers(self) -> list[EdgeSpec]:
        """Every edge server; the `edge` shorthand is one server named after its device."""
        if self.edge is not None:
            return [EdgeSpec(name=self.edge.device, device=self.edge.device, servers=self.edge.servers)]
        return list(self.edges)

    @property
    def tiered(self) -> bool:
        """True when the scenario has more than one hop: several edge servers, a cloud, or batching."""
        return len(self.edges) > 1 or self.cloud is not None or any(e.link for e in self.edges)

    @model_validator(mode="after")
    def _links_consistent(self) -> "Scenario":
        if self.link.shared_medium and any(g.link for g in self.mobiles):
            raise ValueError("a shared medium has one rate for all mobile devices: per-group 'link' needs "
                             "link.shared_medium: false")
        if self.link.delay and self.link.delay.from_trace and not (self.link.trace or any(
                g.link and g.link.trace for g in self.mobiles)):
            raise ValueError("link.delay.from_trace needs a link trace with an rtt_ms column")
        return self

    @model_validator(mode="after")
    def _labels_unique(self) -> "Scenario":
        labels = [p.display for p in self.policies]
        dup = {x for x in labels if labels.count(x) > 1}
        if dup:
            raise ValueError(f"policies need distinct labels; repeated: {', '.join(sorted(dup))} (set 'label')")
        return self


# ----------------------------------------------------------------------------- loading


class ScenarioError(EdgesimError):
    """A scenario that does not parse or validate."""


def _yaml_line(root: Optional[yaml.Node], loc: tuple) -> Optional[int]:
    """1-based YAML line of the node at a pydantic error location, or of its closest parent."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for key, value in node.value:
                if key.value == str(part):
                    nxt, line = value, key.start_mark.line + 1
                    break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _field_path(loc: tuple) -> tuple:
    """A pydantic error location as the user wrote it: without validator names and union tags (policies.0.split_point)."""
    out: list = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and part.startswith("function-"):
            continue
        if i >= 2 and loc[0] == "policies" and isinstance(loc[i - 1], int) and part in POLICY_ENTRIES:
            continue  # the discriminated union's tag: the entry's own name
        out.append(part)
    return tuple(out)


def _message(err: dict, errors: list[dict]) -> str:
    """What is wrong, in words: unknown fields name the field they were probably meant to be."""
    msg = err.get("msg", "invalid")
    kind = err.get("type")
    if kind == "extra_forbidden":
        loc = _field_path(err.get("loc", ()))
        missing = [_field_path(e.get("loc", ()))[-1] for e in errors if e.get("type") == "missing"
                   and _field_path(e.get("loc", ()))[:-1] == loc[:-1]]
        close = difflib.get_close_matches(str(loc[-1]), [str(m) for m in missing], n=1) if loc else []
        return f"unknown field (did you mean '{close[0]}'?)" if close else "unknown field"
    if kind in ("literal_error", "enum") and "input" in err:
        known = str(err.get("ctx", {}).get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"unknown value {err['input']!r}; known: {known}"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return f"unknown policy '{ctx.get('tag')}'; known: {', '.join(POLICY_ENTRIES)}"
    return msg


def validation_message(exc: ValidationError, source: str, root: Optional[yaml.Node] = None) -> str:
    """One line naming the file, the field (dotted), its YAML line and what is wrong."""
    errors = exc.errors()
    # an unknown key beside a missing one is most likely a typo of it: report the unknown key, naming both
    err = next((e for e in errors if e.get("type") == "extra_forbidden"), errors[0]) if any(
        e.get("type") == "missing" for e in errors) else errors[0]
    loc = _field_path(err.get("loc", ()))
    line = _yaml_line(root, loc) if root is not None else None
    return field_message(f"{source}:{line}" if line else source, loc, _message(err, errors), exc.error_count() - 1)


def parse_scenario(text: str, source: str = "<scenario>", base_dir: Optional[Path] = None,
                   names: bool = True) -> Scenario:
    """Parse YAML text (safe loading only) into a validated Scenario; relative paths resolve from base_dir.

    names=False leaves the device, model and split-point names to be checked when the run assembles: the testbed
    measures the scenario's model in its own session, so the profile the names resolve to does not exist yet."""
    try:
        data, root = load_yaml(text, source)
    except YamlLimitError as exc:
        raise ScenarioError(str(exc)) from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a YAML mapping (name, model, mobiles, edge, policies, ...)")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(validation_message(exc, source, root)) from None
    scenario = resolve_paths(scenario, base_dir) if base_dir is not None else scenario
    check_trace_offsets(scenario, source, root)
    check_topology(scenario, source, root)
    check_profiles(scenario, source, root)
    if names:
        check_names(scenario, source, root)
    check_scenario(scenario, sweep_points(scenario), source, lambda loc: _yaml_line(root, loc))  # warnings only
    return scenario


def _fail(source: str, root: Optional[yaml.Node], loc: tuple, what: str) -> None:
    """Raise one line `FILE:LINE: field 'a.b': what` for a check made after parsing."""
    line = _yaml_line(root, loc) if root is not None else None
    raise ScenarioError(field_message(f"{source}:{line}" if line else source, loc, what))


#: policy fields that name split points of the policy's model (one name, or several)
SPLIT_POINT_FIELDS = ("split_point", "split_points", "candidates", "exit_point")


def _named_devices(scenario: Scenario) -> list[tuple[tuple, str]]:
    """(field, device name) of every device the scenario or its sweep names (inline devices by their `over`)."""
    out = [(("mobiles", k, "device"), g.device) for k, g in enumerate(scenario.mobiles)]
    out += [(("edge", "device"), scenario.edge.device)] if scenario.edge is not None else []
    out += [(("edges", k, "device"), e.device) for k, e in enumerate(scenario.edges)]
    out += [(("cloud", "device"), scenario.cloud.device)] if scenario.cloud is not None else []
    out += [(("devices", k, "over"), d.over) for k, d in enumerate(scenario.devices) if d.over]
    out += [(("sweep", "grid", path), v) for path, values in scenario.sweep.grid.items() if path.endswith(".device")
            and isinstance(values, list) for v in values if isinstance(v, str)]
    out += [(("sweep", "cases", k, path), v) for k, case in enumerate(scenario.sweep.cases) for path, v in case.items()
            if path.endswith(".device") and isinstance(v, str)]
    return out


def check_names(scenario: Scenario, source: str = "<scenario>", root: Optional[yaml.Node] = None) -> None:
    """Every device, model and split point the scenario names exists: one line naming the field and its YAML line
    (these were found only while assembling, without saying where)."""
    from simulator.resolve import listed_profiles, resolve_devices  # resolve imports this module
    from simulator.devices import reference_model

    try:
        extra = listed_profiles(scenario)
    except EdgesimError:
        return  # an unreadable listed profile is resolve_devices' to report, with its file
    inline = {d.name for d in scenario.devices}
    for loc, name in _named_devices(scenario):
        if name not in inline:
            try:
                load_profile_device(name, extra)
            except EdgesimError as exc:
                _fail(source, root, loc, str(exc))
    devices = resolve_devices(scenario, extra)
    models: dict[str, ModelProfile] = {}
    policy_models = [(("policies", k, f), getattr(spec, f)) for k, spec in enumerate(scenario.policies)
                     for f in ("model", "edge_model", "cloud_model") if isinstance(getattr(spec, f, None), str)]
    for loc, model_id in [(("model",), scenario.model), *policy_models]:
        if model_id not in models:
            try:
                models[model_id] = reference_model(devices, model_id)
            except EdgesimError as exc:
                _fail(source, root, loc, str(exc))
    for k, spec in enumerate(scenario.policies):
        model = models.get(spec.models(scenario.model)[0])
        for field in SPLIT_POINT_FIELDS if model is not None else ():
            names = getattr(spec, field, None)
            for i, name in enumerate([names] if isinstance(names, str) else names or ()):
                try:
                    model.split_point(name)
                except EdgesimError as exc:
                    _fail(source, root, ("policies", k, field, *(() if isinstance(names, str) else (i,))), str(exc))


def check_topology(scenario: Scenario, source: str = "<scenario>", root: Optional[yaml.Node] = None) -> None:
    """Edge servers named by mobile groups exist, cloud policies have a cloud."""
    names = [e.name for e in scenario.edge_servers()]
    for k, g in enumerate(scenario.mobiles):
        if g.edge is not None and g.edge not in names:
            _fail(source, root, ("mobiles", k, "edge"), f"unknown edge server '{g.edge}'; known: {', '.join(names)}")
        if g.edge is None and scenario.assignment == "static" and len(names) > 1:
            _fail(source, root, ("mobiles", k), f"static assignment with several edge servers: give 'edge' (one of "
                                                f"{', '.join(names)}) or another assignment")
    for k, spec in enumerate(scenario.policies):
        field = spec.cloud_field()
        if field is not None and scenario.cloud is None:
            _fail(source, root, ("policies", k, field), f"policy '{spec.display}' needs a cloud: add `cloud:` "
                                                        "(device, servers, wan) to the scenario")


def check_profiles(scenario: Scenario, source: str = "<scenario>", root: Optional[yaml.Node] = None) -> None:
    """What the profiles must hold: two-point splits in the model's order, and the sizes the cloud batches in its
    measured batch tables. Reads the listed profile files once (missing ones are resolve_devices' to report)."""
    split2 = [(k, spec) for k, spec in enumerate(scenario.policies) if spec.name == "split2"]
    batching = scenario.cloud is not None and scenario.cloud.batching is not None
    if not split2 and not batching:
        return
    listed = [load_profile(path) for path in scenario.profiles if Path(path).is_file()]
    models = {m: find_model(m, listed) for m in dict.fromkeys(spec.models(scenario.model)[0] for _, spec in split2)}
    for k, spec in split2:
        model = models[spec.models(scenario.model)[0]]
        order = {sp.name: sp.layer_index for sp in model.split_points} if model is not None else {}
        a, b = spec.split_points
        if a in order and b in order and order[b] < order[a]:
            _fail(source, root, ("policies", k, "split_points"), f"out of order: '{b}' (layer {order[b]}) comes "
                                                                 f"before '{a}' (layer {order[a]}) in the model")
    if batching:
        _check_batch_tables(scenario, source, root, listed)


def _check_batch_tables(scenario: Scenario, source: str, root: Optional[yaml.Node], listed: list[DeviceProfile]) -> None:
    """A measured batch table of a model the cloud batches must hold max_batch_size and every preferred size."""
    cloud = scenario.cloud
    needed = {cloud.batching.max_batch_size, *cloud.batching.preferred_batch_sizes}
    models = {m for spec in scenario.policies if spec.cloud_field() for m in spec.models(scenario.model)}
    profile = _profile_of(cloud.device, listed)
    for model_id in sorted(models):
        table = profile.models[model_id].batch_latency_s if profile and model_id in profile.models else {}
        missing = sorted(needed - set(table)) if table else []
        if missing:
            _fail(source, root, ("cloud", "batching", "max_batch_size"), f"the batch table of model '{model_id}' on "
                  f"'{cloud.device}' has sizes {sorted(table)} but not {missing}; measure them (edgesim profile "
                  f"{model_id} --batch-sizes ...) or batch only up to a measured size")


def _profile_of(device: str, listed: list[DeviceProfile]) -> Optional[DeviceProfile]:
    """The profile of a device named by the scenario as a run resolves it (devices.load_profile_device: a listed
    profile with the catalog's models under it, a profile path or the catalog), None if none."""
    try:
        return load_profile_device(device, {prof.name: prof for prof in listed})
    except EdgesimError:
        return None


def check_trace_offsets(scenario: Scenario, source: str = "<scenario>", root: Optional[yaml.Node] = None) -> None:
    """Every offset into a held (not wrapped) trace lies before the trace's end; one line if not.

    Offsets step per mobile device on the scenario's, a group's and a per-mobile edge uplink (by the device's
    index among all mobile devices, as assemble counts it), and per edge server on the WAN.
    """
    own = [g.link is not None for g in scenario.mobiles for _ in range(g.count)]
    to_edge = max((m + 1 for m, o in enumerate(own) if not o), default=0)  # offsets an edge uplink steps through
    links = [(("link",), scenario.link, own.count(False), "mobile device")]
    links += [(("mobiles", k, "link"), g.link, g.count, "mobile device") for k, g in enumerate(scenario.mobiles)
              if g.link is not None]
    links += [(("edges", k, "link"), e.link, 1 if e.link.shared_medium else to_edge, "mobile device")
              for k, e in enumerate(scenario.edges) if e.link is not None]
    if scenario.cloud is not None:
        links.append((("cloud", "wan"), scenario.cloud.wan, len(scenario.edge_servers()), "edge server"))
    for loc, link, count, who in links:
        if not link.trace or link.trace_end == "wrap" or count == 0 or not Path(link.trace).is_file():
            continue
        last = link.offset_s(count - 1)
        end = load_rate_trace(link.trace).end_s
        if last > 0 and last >= end:
            field = "trace_offset_s" if link.offset_step_s == 0 else "offset_step_s"
            _fail(source, root, (*loc, field), f"the last {who} would start {last:g} s into {link.trace}, "
                                               f"which ends at {end:g} s; use trace_end: wrap or a smaller offset")


def load_scenario(path: str | Path, names: bool = True) -> Scenario:
    """Read and validate a scenario file (names: as parse_scenario)."""
    path = Path(path)
    try:
        check_size(path)  # before reading: a huge file is refused without being read
    except YamlLimitError as exc:
        raise ScenarioError(str(exc)) from None
    return parse_scenario(read_text(path, "scenario", ScenarioError), str(path), base_dir=path.parent, names=names)


def as_scenario(scenario: "Scenario | dict | str | Path") -> Scenario:
    """A validated Scenario from a Scenario (checked again: it may have been changed field by field), a dict or a path."""
    if isinstance(scenario, (str, Path)):
        return load_scenario(scenario)
    if isinstance(scenario, Scenario):
        scenario = json.loads(scenario.model_dump_json())
    if not isinstance(scenario, dict):
        raise ScenarioError(f"a scenario is a Scenario, a dict or a YAML path, not {type(scenario).__name__}")
    try:
        validated = Scenario.model_validate(scenario)
    except ValidationError as exc:
        raise ScenarioError(validation_message(exc, "<scenario>")) from None
    check_scenario(validated, sweep_points(validated))  # as a file's are: implausible values warn
    return validated


def _resolve(value: Optional[str], base_dir: Path) -> Optional[str]:
    if value is None or "/" not in value and not value.endswith((".json", ".csv", ".parquet")):
        return value
    p = Path(value)
    if p.is_absolute() or p.exists():
        return str(p)
    candidate = base_dir / p
    return str(candidate) if candidate.exists() else value


def _path_fields(data: dict) -> list[tuple[dict, str]]:
    """Every (holder, key) of a dumped scenario that may name a file: traces, devices, a speed factor's `over`."""
    links = [data["link"], data["workload"], *(g["link"] for g in data["mobiles"]), *(e["link"] for e in data["edges"]),
             data["cloud"]["wan"] if data["cloud"] is not None else None]
    devices = [*data["mobiles"], data["edge"], *data["edges"], data["cloud"]]
    return ([(h, "trace") for h in links if h is not None] + [(data["workload"], "dataset")]
            + [(h, "device") for h in devices if h is not None] + [(d, "over") for d in data["devices"]])


def resolve_paths(scenario: Scenario, base_dir: Path) -> Scenario:
    """Make file paths in the scenario usable from any working directory (relative to the YAML file)."""
    data = scenario.model_dump()
    for holder, key in _path_fields(data):
        holder[key] = _resolve(holder[key], base_dir)
    data["profiles"] = [_resolve(p, base_dir) for p in data["profiles"]]
    return Scenario.model_validate(data)


def scenario_json_schema() -> dict:
    """JSON Schema of the scenario format, for editors (yaml-language-server)."""
    return Scenario.model_json_schema()


def to_yaml(scenario: Scenario) -> str:
    """The resolved scenario as YAML (what a results folder records)."""
    return yaml.safe_dump(json.loads(scenario.model_dump_json()), sort_keys=False)


# ----------------------------------------------------------------------------- overrides and sweeps


def parse_value(text: str) -> Any:
    """A --set value: YAML scalar/list syntax (10, 1e3, true, [1, 2], rpi3b+), within the scenario's YAML limits."""
    try:
        return load_yaml(text, "--set")[0]
    except YamlLimitError as exc:
        if "not valid YAML" in str(exc):
            return text
        raise ScenarioError(str(exc)) from None


def set_path(data: dict, path: str, value: Any) -> None:
    """Set a dotted path (list items by index: mobiles.0.device) inside plain data, in place."""
    parts = path.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ScenarioError(f"'{path}': '{part}' is not an index of a list of {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise ScenarioError(f"'{path}': '{'.'.join(parts[:i])}' is not a mapping or list")


def apply_overrides(scenario: Scenario, overrides: dict[str, Any], source: str = "--set") -> Scenario:
    """A new validated scenario with dotted-path overrides applied."""
    if not overrides:
        return scenario
    data = json.loads(scenario.model_dump_json())
    for path, value in overrides.items():
        set_path(data, path, value)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(validation_message(exc, source)) from None


def expand_values(values: Union[list, dict]) -> list:
    """A sweep axis as a list: explicit values, or log/linear ranges [start, stop, n]."""
    if isinstance(values, list):
        return list(values)
    (kind, (start, stop, n)), = values.items()
    n = int(n)
    if n == 1:
        return [float(start)]
    if kind == "log":
        a, b = math.log10(start), math.log10(stop)
        return [float(f"{10 ** (a + (b - a) * i / (n - 1)):.6g}") for i in range(n)]
    return [float(f"{start + (stop - start) * i / (n - 1):.6g}") for i in range(n)]


def sweep_points(scenario: Scenario) -> list[dict[str, Any]]:
    """Every point of the sweep as a dict of overrides: the grid's cartesian product crossed with the cases."""
    axes = {path: expand_values(v) for path, v in scenario.sweep.grid.items()}
    grid = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())] if axes else [{}]
    cases = scenario.sweep.cases or [{}]
    return [{**copy.deepcopy(case), **point} for case in cases for point in grid]
