"""The compiled event loop's state as named records: stations, edge servers, the run's constants and the batcher
(numpy structured dtypes, whose fields numba reads and writes by name), the tuples that group its arrays, and the
event kinds and rows of the time table."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from simulator.link import PackedSteps

from simulator.plan import TIER_FIELDS, TIME_FIELDS

# event kinds (code = frame << 4 | kind; a batch's id stands in for the frame of BATCH_FIN)
CAPTURE, MOBILE_FIN, UP_FIN, SERVER_ARRIVE, EDGE_FIN, DOWN_FIN, FINISH = 1, 2, 3, 4, 5, 6, 7
WAN_FIN, CLOUD_ARRIVE, CLOUD_FIN, BATCH_FIN, BATCH_TIMER, WAN_DOWN_FIN, DOWN_ARRIVE = 8, 9, 10, 11, 12, 13, 14

# station kinds; a kind is also the index of its demand among a plan's (head, bits, tail, down, WAN bits, cloud,
# return: Loop.demand_at) and the column of the frame's demand on its route in the time table T
K_MOBILE, K_UP, K_EDGE, K_DOWN, K_WAN, K_CLOUD, K_WDOWN = 0, 1, 2, 3, 4, 5, 6
N_KINDS = 7

# columns of the time table T (slots x columns: what the loop reads and writes of a frame lies side by side, a few
# cache lines a frame): its demand per station kind on the route it takes (K_*, copied at capture), the frame
# table's TIME_FIELDS, then TIER_FIELDS when tiered, then the varying delays
T_TIMES = N_KINDS  # the column of the first time field
HS, HE, US, UE, TS, TE, DS, DE, DONE = (T_TIMES + TIME_FIELDS.index(f) for f in (
    "head_start", "head_end", "up_start", "up_end", "tail_start", "tail_end", "down_start", "down_end", "done"))
EA, WS, WE, CA, CS, CE, WDS, WDE, BW, BSZ = (T_TIMES + len(TIME_FIELDS) + TIER_FIELDS.index(f) for f in (
    "edge_arrive", "wan_start", "wan_end", "cloud_arrive", "cloud_start", "cloud_end", "wan_down_start",
    "wan_down_end", "batch_wait", "batch_size"))
ASSIGN_FIXED, ASSIGN_LEAST_LOADED, ASSIGN_SED = 0, 1, 2  # RUN.assign
DONE_RUN, GROW, LOAD = 0, 1, 2  # why run_events returned
NEXT_WINDOW = -2  # nxt of a mobile device's last frame in a window while the next window is not loaded

STATION = np.dtype([
    ("kind", np.int64), ("servers", np.int64), ("free", np.int64), ("capacity", np.int64),
    ("first", np.int64), ("last", np.int64), ("waiting", np.int64), ("busy_until_s", float), ("queued", float)])
"""A c-server FIFO station (engine._Station): its kind (K_*), servers and how many are idle, queue capacity (-1:
unbounded), its queue as a list linked through the frames (first, last, length), when its longest service in
progress ends, and the waiting frames' total work (s of service, or bits on a link)."""

EDGE = np.dtype([("shared_medium", np.int64), ("servers", np.int64), ("uplink0", np.int64), ("medium", np.int64),
                 ("wan", np.int64), ("wan_propagation_s", float)])
"""An edge server of a tiered run: whether its mobile devices share one medium, its servers, its first uplink trace
(mobile device m's is uplink0 + m, a shared medium's uplink0), the station of its shared medium (-1: none), its
WAN's trace and the WAN's one-way propagation."""

RUN = np.dtype([
    ("n_mobiles", np.int64), ("up0", np.int64), ("edge0", np.int64), ("down0", np.int64), ("wan0", np.int64),
    ("wan_down0", np.int64), ("cloud", np.int64), ("n_edges", np.int64), ("routes_per_edge", np.int64),
    ("shared", np.int64), ("tiered", np.int64), ("policy", np.int64), ("assign", np.int64),
    ("delay", np.int64), ("drop_stale", np.int64), ("has_deadline", np.int64), ("batching", np.int64),
    ("cloud_servers", np.int64), ("row_delay_up", np.int64), ("row_delay_down", np.int64),
    ("propagation_s", float), ("deadline_s", float), ("downlink_bps", float), ("wan_down_bps", float)])
"""A run's constants: the first station of each kind (mobile devices are 0..n_mobiles-1), edge servers and routes
per edge server, what the run has (shared medium, tiers, a stateful policy, the assignment, varying delays,
drop-stale, a deadline, batching, cloud servers), the time table's rows of the varying delays, propagation, the
deadline and the return rates."""

BATCHER = np.dtype([("max_size", np.int64), ("idle", np.int64), ("free_slots", np.int64),
                    ("max_queue_delay_s", float), ("timer_s", float), ("busy_until_s", float)])
"""The dynamic batcher's state (engine._BatchStation): largest batch, idle cloud servers, free batch slots, the
queue delay it waits at most, its pending timer (-1: none) and when its longest batch in progress ends."""

class Demands(NamedTuple):
    """A window's demands per station kind (K_*; rows x frames, Loop.prow gives a route's row): what a frame asks
    of each station on each route it may take (the ring keeps them while the loop reads them by address)."""

    head_s: np.ndarray
    bits: np.ndarray  # uplink wire bits
    tail_s: np.ndarray
    down_s: np.ndarray
    wan_bits: np.ndarray  # (0 x 0 without tiers, likewise the next two)
    cloud_s: np.ndarray
    wan_down_s: np.ndarray


class Batches(NamedTuple):
    """The dynamic batcher (engine._BatchStation) on arrays."""

    state: np.ndarray  # one BATCHER record
    key_of: np.ndarray  # each route's cloud key (routes batch together when their keys match)
    preferred: np.ndarray  # preferred batch sizes
    idle_since: np.ndarray  # when each idle cloud server became idle (the first state.idle entries)
    members: np.ndarray  # each batch slot's frames
    size: np.ndarray  # each batch slot's size
    same: np.ndarray  # scratch: one key's waiting frames
    factors: np.ndarray  # per route and batch size: a batch's service over one frame's
    free_slot: np.ndarray  # the free batch slots (the first state.free_slots entries)


class Delays(NamedTuple):
    """Varying one-way delays (engine._varying_delay) on arrays."""

    traced: np.ndarray  # per mobile device: 1 follows a delay trace, 0 draws per frame
    fifo: np.ndarray  # per mobile device: whether frames keep their order
    drawn: np.ndarray  # per frame slot: the draws up (row 0) and down (row 1)
    traces: PackedSteps  # the delay traces
    last_up: np.ndarray  # latest arrival at the server per uplink (FIFO)
    last_down: np.ndarray  # latest arrival back per mobile device (FIFO)


class Loop(NamedTuple):
    """Everything the event loop reads and writes."""

    T: np.ndarray  # the time table: slots x columns: demands (K_*), HS..DONE (then EA..BSZ when tiered, then the
    # varying delays)
    demand_at: np.ndarray  # per place of the ring and kind (K_*): the address of its window's (rows x frames) float
    # demands (the window's plan's own arrays, kept alive by the ring; 0: none)
    demand_frames: np.ndarray  # per place: its window's frames (a row of its demands)
    column: np.ndarray  # per slot: its frame's index in its window (the column of its demands)
    capture: np.ndarray  # capture time per slot
    mobile: np.ndarray  # mobile device per slot
    route: np.ndarray  # route per slot (r' = edge x routes_per_edge + r when tiered)
    stations: np.ndarray  # STATION records
    NXT: np.ndarray  # per slot: the next frame in its station's queue
    PRV: np.ndarray  # per slot: the one before
    run: np.ndarray  # one RUN record
    edges: np.ndarray  # EDGE records
    links: PackedSteps  # every uplink then the WAN links (EDGE.uplink0, EDGE.wan)
    status: np.ndarray  # per slot: plan.DONE, DROPPED or LATE
    drop_stage: np.ndarray  # per slot: where it was dropped (plan.STAGES)
    delays: Delays
    state: np.ndarray  # the stateful policy's state (its kernels' own)
    batches: Batches
    routes: np.ndarray  # ROUTE records per distinct list of routes (a mobile group's; predictions)
    load_view: np.ndarray  # one LOAD_VIEW record (what a decision sees)
    edge_of_mobile: np.ndarray  # each mobile device's edge server under a fixed assignment
    n_routes: np.ndarray  # each list's number of routes
    routes_of: np.ndarray  # each mobile device's row of `routes` (and `n_routes`)
    prow: np.ndarray  # each route's row of the plan's demands (routes via edge servers alike share one)
    least_loaded: np.ndarray  # least-loaded assignment's tournament tree (decisions.least_loaded_tree)


def new_stations(n: int) -> np.ndarray:
    """n idle single-server stations with unbounded, empty queues."""
    out = np.zeros(n, STATION)
    out["servers"] = out["free"] = 1
    out["capacity"] = out["first"] = out["last"] = -1
    return out
