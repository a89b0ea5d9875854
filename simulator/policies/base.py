"""What every policy shares: routes, what a policy sees of frames and load, its spec model, and the registry.

A policy offers routes (head on the mobile device, bytes on the uplink, tail on the server) and picks one
per frame. Stateless policies pick for all frames at once from the frames' own fields, so the exact engine can
replay them; stateful ones pick at capture time from the load they see and keep their own state.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from profilers.errors import EdgesimError
from profilers.schema import ModelProfile
from simulator.devices import Device, ServiceTime, reference_model
from simulator.link import TCP_IP_OVERHEAD_BYTES, TCP_PAYLOAD_BYTES, Packetiser, RateTrace

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Route:
    """One way to process a frame: head here, payload over the uplink, tail there, result back."""

    decision: str
    model: str
    split_point: str
    encoding: str
    head: Optional[ServiceTime]  # None: nothing runs on the mobile device
    up_bytes: int  # payload on the uplink (0: nothing is sent)
    tail: Optional[ServiceTime]  # None: nothing runs on the server
    down_bytes: int  # result returned on the downlink
    prediction: Optional[str] = None  # dataset column with this route's prediction
    wan_bytes: int = 0  # payload from the edge server to the cloud (0: the frame does not reach the cloud)
    cloud: Optional[ServiceTime] = None  # None: nothing runs in the cloud
    cloud_key: str = ""  # what the cloud runs (model and split point): frames batch only with the same key

    @property
    def offloads(self) -> bool:
        """True when the frame leaves the mobile device (to the edge server, and maybe on to the cloud)."""
        return self.tail is not None or self.cloud is not None


@dataclass(frozen=True)
class FrameInputs:
    """Per-frame fields a stateless policy may read: which mobile device, which dataset sample."""

    mobile_index: np.ndarray
    sample_index: np.ndarray
    dataset: Optional[pd.DataFrame]
    seed: int


@dataclass(frozen=True)
class LoadView:
    """What a stateful policy sees at capture time: the backlog of each station on the frame's way, and the link."""

    now_s: float
    link: int  # index of the frame's uplink (0 with a shared medium)
    mobile_backlog_s: float
    uplink_residual_s: float  # what is left of the transfer in progress
    uplink_queued_bits: float  # bits of the frames waiting for the uplink (their running total)
    server_backlog_s: float
    propagation_s: float
    downlink_bps: float
    packet_payload_bytes: int = TCP_PAYLOAD_BYTES
    packet_overhead_bytes: int = TCP_IP_OVERHEAD_BYTES
    edge_backlog_s: float = 0.0  # the middle's edge server (the server backlog above is the same pool)
    wan_backlog_s: float = 0.0  # the edge server's WAN link to the cloud
    wan_bps: float = float("inf")
    wan_propagation_s: float = 0.0
    wan_down_bps: float = float("inf")
    cloud_backlog_s: float = 0.0

    def wire_bits(self, size_bytes: int) -> float:
        """Bits on the wire for a payload: per-packet overhead included (resends not predicted)."""
        packets = -(-size_bytes // self.packet_payload_bytes)
        return 8.0 * (size_bytes + packets * self.packet_overhead_bytes)

    def uplink_backlog_s(self, bandwidth_bps: float) -> float:
        """Predicted wait for the uplink: the transfer in progress, then the queued frames at bandwidth_bps."""
        return self.uplink_residual_s + self.uplink_queued_bits / bandwidth_bps


class PolicySpecBase(BaseModel):
    """Fields every policy entry of a scenario has; each policy adds its own (see `edgesim list policies`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    name: str
    label: Optional[str] = Field(default=None, description="name in tables and plots; default: the policy name")

    @property
    def display(self) -> str:
        """The policy's name in tables and plots."""
        return self.label or self.name

    def models(self, scenario_model: str) -> list[str]:
        """The models this policy runs (the report draws their profiles)."""
        return [getattr(self, "model", None) or scenario_model]

    def cloud_field(self) -> Optional[str]:
        """The field of this entry that needs a cloud in the scenario (None: it runs without one)."""
        return None

    #: deferral method of simulator.deferral (000 A.4) a cascade policy applies; None for the others
    deferral_method: ClassVar[Optional[str]] = None


def make_route(decision: str, model: ModelProfile, split: str, encoding: str, mobile: Device, server: Device,
               prediction: Optional[str] = None) -> Route:
    """A route splitting `model` at `split`, sending the head's output in `encoding`."""
    sp = model.split_point(split)
    head = mobile.head_time(model, sp)
    tail = server.tail_time(model, sp)
    if tail is not None:  # the payload is encoded on the mobile device and decoded on the server, where measured
        head = _with_step(head, mobile.codec_s(model, sp, encoding, "encode_s"), mobile.active_w)
        tail = _with_step(tail, server.codec_s(model, sp, encoding, "decode_s"), server.active_w)
    up_bytes = _payload_bytes(model, sp, encoding) if tail is not None else 0
    return Route(decision, model.model_id, split, encoding, head, up_bytes, tail,
                 model.result_bytes if tail is not None else 0, prediction)


def _with_step(st: Optional[ServiceTime], extra_s: float, power_w: float) -> Optional[ServiceTime]:
    """A station's time with a fixed extra step (encoding or decoding) on the same device; the step alone where
    nothing else runs there (full offloading's JPEG encoding on the mobile device)."""
    if extra_s <= 0:
        return st
    if st is None:
        return ServiceTime("fixed", extra_s, mean_s=extra_s, power_w=power_w)
    return st.plus(extra_s)


def place_route(decision: str, model: ModelProfile, to_edge: str, to_cloud: Optional[str], encoding: str,
                wan_encoding: str, mobile: Device, edge: Device, cloud: Optional[Device],
                prediction: Optional[str] = None) -> Route:
    """A route over the three tiers: the mobile device runs up to `to_edge`, the edge server up to `to_cloud`, the
    cloud the rest (002 section 2's head/tail cut twice; to_cloud None: nothing in the cloud).

    The tensor at `to_edge` crosses the uplink in `encoding` (the input image when to_edge is 'input'), the one at
    `to_cloud` the WAN in `wan_encoding`; an edge server with nothing to run relays it.
    """
    a = model.split_point(to_edge)
    if to_cloud is None:
        return make_route(decision, model, to_edge, encoding, mobile, edge, prediction)
    b = model.split_point(to_cloud)
    if b.layer_index < a.layer_index:
        raise EdgesimError(f"model '{model.model_id}': split point '{to_cloud}' comes before '{to_edge}'")
    if cloud is None:
        raise EdgesimError(f"route '{decision}' needs a cloud: the scenario has none")
    # encoding and decoding where measured (as make_route): the mobile device encodes what goes up, an edge server
    # that runs a part decodes it and encodes what goes on, the cloud decodes what it gets (a relay decodes nothing)
    head = _with_step(mobile.head_time(model, a), mobile.codec_s(model, a, encoding, "encode_s"), mobile.active_w)
    middle = edge.part_time(model, a, b)
    if middle is not None:
        middle = _with_step(middle, edge.codec_s(model, a, encoding, "decode_s")
                            + edge.codec_s(model, b, wan_encoding, "encode_s"), edge.active_w)
    tail = _with_step(cloud.tail_time(model, b), cloud.codec_s(model, b, wan_encoding, "decode_s"), cloud.active_w)
    up_bytes = _payload_bytes(model, a, encoding)
    wan_bytes = _payload_bytes(model, b, wan_encoding)
    return Route(decision, model.model_id, f"{to_edge}|{to_cloud}", f"{encoding}|{wan_encoding}", head, up_bytes,
                 middle, model.result_bytes, prediction, wan_bytes, tail, f"{model.model_id}@{to_cloud}")


def _payload_bytes(model: ModelProfile, sp, encoding: str) -> int:
    """Bytes of the tensor at split point sp (the input image at 'input') in an encoding; one line if unknown."""
    table = model.input_bytes if sp.layer_index == 0 else sp.output_bytes
    if encoding not in table:
        raise EdgesimError(f"model '{model.model_id}' split point '{sp.name}' has no encoding '{encoding}'; "
                           f"known: {', '.join(table)}")
    return int(table[encoding])


class BasePolicy:
    """Shared construction (the spec, its model from the devices' profiles); one fixed route unless overridden."""

    stateful: ClassVar[bool] = False

    def __init__(self, spec: PolicySpecBase, scenario_model: str, devices: dict[str, Device],
                 dataset: Optional[pd.DataFrame]) -> None:
        self.spec = spec
        self.model_id = spec.models(scenario_model)[0]
        self.model = reference_model(devices, self.model_id)
        self.dataset = dataset
        self.cloud: Optional[Device] = None

    def with_cloud(self, cloud: Optional[Device]) -> "BasePolicy":
        """The cloud device routes may use (None: the scenario has no cloud)."""
        self.cloud = cloud
        return self

    def routes(self, mobile: Device, server: Device) -> list[Route]:
        """The routes this policy can give a frame of `mobile` via edge server `server` (same order for every pair)."""
        raise NotImplementedError

    def choose(self, frames: FrameInputs, routes: list[Route]) -> np.ndarray:
        """Route index per frame: the single route."""
        return np.zeros(frames.mobile_index.shape, dtype=np.int16)


class StatefulPolicy(BasePolicy):
    """A policy that decides at capture time from the load it sees, and learns from what the engine reports."""

    stateful: ClassVar[bool] = True

    def start(self, uplinks: list[RateTrace]) -> None:
        """Forget what earlier runs taught (a run is one replication of one sweep point)."""

    def observe_transfer(self, link: int, bits: float, duration_s: float) -> None:
        """An uplink transfer of `bits` on `link` ended after duration_s."""

    def choose_one(self, view: LoadView, routes: list[Route]) -> int:
        """Route for one frame at capture time."""
        raise NotImplementedError


@dataclass(frozen=True)
class PolicyKernels:
    """A stateful policy's rules as numba functions both engines run (simulator.kernels.decisions):

    state(policy, uplinks) -> float64 array: what the policy keeps during one run (its parameters too);
    decide(state, view, routes, lo, hi) -> k (signature decisions.DECIDE): route lo + k at a capture, from the
      LOAD_VIEW record and the frame's mobile device's ROUTE records;
    observe(state, link, bits, duration_s) (signature decisions.OBSERVE): an uplink transfer ended.
    The SimPy engine calls decide and observe as they are; the compiled engine calls them as C functions of the same
    code (c_functions), so one compiled event loop serves every policy.
    """

    state: Callable[[Any, list[RateTrace]], np.ndarray]
    decide: Any  # a numba.njit function
    observe: Any  # a numba.njit function

    def c_functions(self) -> tuple:
        """(decide, observe) as numba C functions (compiled once, cached on disk)."""
        return _c_functions(self.decide, self.observe)


_C_FUNCTIONS: dict = {}


def _c_functions(decide, observe) -> tuple:
    from simulator.jit import cfunc  # numba: imported by the first compiled run, not by list or validate

    from simulator.kernels.decisions import DECIDE, OBSERVE

    key = (decide, observe)
    if key not in _C_FUNCTIONS:
        _C_FUNCTIONS[key] = (cfunc(DECIDE, cache=True)(decide.py_func), cfunc(OBSERVE, cache=True)(observe.py_func))
    return _C_FUNCTIONS[key]


def route_records(routes_of_mobile: list[list[Route]], payload_bytes: int,
                  overhead_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct list of routes as ROUTE records (L, R), and each mobile device's list (M,): what predictions
    read of them (expected times, and wire bits with per-packet overhead, resends not predicted). A mobile group's
    devices share one list, so the records are packed once per group (a column at a time), not once per device."""
    from simulator.kernels.records import ROUTE  # the kernels package imports numba: a run's, not list's or validate's

    number: dict[int, int] = {}
    distinct: list[list[Route]] = []
    of_mobile = np.empty(len(routes_of_mobile), dtype=np.int64)
    for m, routes in enumerate(routes_of_mobile):
        k = number.get(id(routes))
        if k is None:
            k = number[id(routes)] = len(distinct)
            distinct.append(routes)
        of_mobile[m] = k
    table = np.zeros((len(distinct), max(len(r) for r in distinct)), ROUTE)
    packetiser = Packetiser(payload_bytes, overhead_bytes)

    def expected(times: list) -> list[float]:
        return [t.expected_s if t is not None else 0.0 for t in times]

    for k, routes in enumerate(distinct):
        row = table[k, :len(routes)]
        row["head_s"] = expected([r.head for r in routes])
        row["tail_on"] = [r.tail is not None for r in routes]
        row["tail_s"] = expected([r.tail for r in routes])
        row["cloud_on"] = [r.cloud is not None for r in routes]
        row["cloud_s"] = expected([r.cloud for r in routes])
        for field_name, size in (("up_bits", "up_bytes"), ("down_bits", "down_bytes"), ("wan_bits", "wan_bytes")):
            row[field_name] = packetiser.wire_bytes([getattr(r, size) for r in routes]) * 8.0
    return table, of_mobile


def route_table(routes_of_mobile: list[list[Route]], payload_bytes: int, overhead_bytes: int) -> np.ndarray:
    """Every mobile device's routes as ROUTE records (M, R) (route_records, a row per device)."""
    table, of_mobile = route_records(routes_of_mobile, payload_bytes, overhead_bytes)
    return table[of_mobile]


@dataclass(frozen=True)
class PolicyEntry:
    """A registered policy: its spec model, its behaviour, the paper section it comes from, and for a stateful
    policy its kernels (None: a stateless policy, or one only the SimPy engine can run), as PolicyKernels or as
    "module:NAME" of a module that holds them (imported when a run first needs them: numba stays out of `edgesim
    list policies` and `validate`)."""

    name: str
    spec: type[PolicySpecBase]
    policy: type[BasePolicy]
    summary: str
    source: str
    kernels: Union[PolicyKernels, str, None] = None

    def resolved_kernels(self) -> Optional[PolicyKernels]:
        """The entry's kernels, their module imported if named by path (one line if the path names nothing)."""
        if not isinstance(self.kernels, str):
            return self.kernels
        module, _, name = self.kernels.partition(":")
        kernels = getattr(importlib.import_module(module), name, None)
        if not isinstance(kernels, PolicyKernels):
            raise EdgesimError(f"policy '{self.name}': kernels '{self.kernels}' name no PolicyKernels "
                               "(PolicyEntry.kernels)")
        return kernels
