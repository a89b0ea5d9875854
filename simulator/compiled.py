"""The compiled exact engine: the SimPy engine's stations and policies as one numba event loop (issue 17).

Same contract as engine.simulate: a FramePlan and a Topology in, per-frame stage times out. The loop's events
(time, sequence, kind, frame) wait in a binary heap or, while they are scheduled in time order (captures, arrivals
after a propagation delay), in queues (loop.heap); every station is a FIFO with c servers whose queue
is a list linked through the frames (a frame waits in at most one queue at a time, so one `next` slot per frame
holds every queue in O(N) memory). Each handler mirrors a callback of engine.StationPipeline, computing the same
floating-point expressions in the same order (a service is scheduled at now + (finish - now), a capture at
now + (capture - now)), so the times are the SimPy engine's, bit for bit up to libm; the rules themselves (link
transfer, delays, station bookkeeping, the batcher, predictions, a policy's decisions) are simulator.kernels', the
same functions the SimPy engine calls. Its parts live in simulator.loop, one concept a file.

Tie rule (the SimPy engine's, shared): events at the same instant run in the order they were scheduled (SimPy's
event id; here a global sequence number). Inside one event the follow-ups happen in the SimPy engine's callback
order: a capture first schedules its mobile device's next capture, then enters the mobile device; a station that
ends a service first starts its next queued frame, then hands the finished frame on; zero-length propagation is a
direct hand-over, not an event.

Covered (`why_not` says what is not): every station of the SimPy engine and every stateful policy whose registry
entry declares its kernels (policies.base.PolicyKernels): per-mobile or shared uplinks, constant and
traced links (outages, a period; resends are in the planned wire bits), c servers, propagation and varying delays
with FIFO, deadlines, bounded mobile and server queues with drop-stale, best-split / best-placement (EWMA or oracle
bandwidth, 002 ref. [10]; backlogs are running sums kept as the SimPy engine keeps them), several edge servers with
static, round-robin, least-loaded or shortest-expected-delay assignment, the cloud behind per-edge WAN links and
Triton-style dynamic batching. Runs in memory or window by window (a ring of frame slots: the loop returns to load
the next window when a capture reaches it, and windows go back in order once all their frames have ended).

Speed: numba's reference counts on arrays passed between functions are atomic adds; the loop works on borrowed
views (`loop.heap.borrowed`) so that they cost nothing. An event that would be the next one popped (earlier than
the heap's top, or equal with a smaller sequence number) runs without going through the heap. A run in which no
station is shared (one mobile device, one server, unbounded queues: `loop.lindley.lindley_applies`) goes frame by
frame by Lindley's recursion with the loop's own expressions, a policy's decisions included (each station's backlog
at a capture is replayed from the times of the frames before it, `loop.lindley.replay`), and falls back to the
event loop if a station would meet its frames out of order or something happens at a capture's own instant
(`loop.lindley.lindley`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from profilers.errors import EdgesimError
from simulator.engine import WindowDone, WindowLoader, in_memory
from simulator.kernels.decisions import least_loaded_tree
from simulator.kernels.records import load_view
from simulator.loop.events import run_events
from simulator.loop.heap import first_time, grown, new_events, start_captures
from simulator.loop.layout import GROW, LOAD, Delays, Loop
from simulator.loop.lindley import lindley as _lindley
from simulator.loop.lindley import lindley_applies, replay_state
from simulator.loop.ring import Ring
from simulator.loop.setup import delay_model, policy_arrays, static_state
from simulator.plan import TIER_FIELDS, TIME_FIELDS, FramePlan, Topology
from simulator.policies import Route, StatefulPolicy, policy_kernels


def why_not(plan: FramePlan, topo: Topology, policy: Optional[StatefulPolicy] = None) -> Optional[str]:
    """Why simulate_compiled cannot give this run the SimPy engine's times (None: it can)."""
    if policy is not None and policy_kernels(policy) is None:
        return (f"policy {type(policy).__name__} declares no kernels in its registry entry (PolicyKernels): only "
                "the SimPy engine runs its Python hooks")
    if topo.delay is not None and plan.delay_u is None:
        return "a varying delay without per-frame uniforms (FramePlan.delay_u)"
    tiers = topo.tiers
    if tiers is None:
        if plan.cloud_s is not None:
            return "cloud demands without tiers"
        if len(topo.uplink) < (1 if topo.shared_medium else plan.n_mobiles):
            return "fewer uplinks than mobile devices"
        return None
    if plan.cloud_s is None or plan.cloud_key is None or plan.batch_factors is None:
        return "tiers without the plan's cloud demands, keys and batch factors"
    if tiers.assignment not in ("static", "round-robin", "least-loaded", "shortest-expected-delay"):
        return f"assignment '{tiers.assignment}'"
    if tiers.batching is not None and tiers.cloud_servers < 1:
        return "batching without a cloud server"
    if tiers.cloud_servers and any(e.wan is None for e in tiers.edges):
        return "a cloud behind an edge server without a WAN link"
    # a policy observes link = mobile device on tiers: one uplink entry each
    if policy is not None and len(topo.uplink) < plan.n_mobiles:
        return "a stateful policy with fewer uplinks than mobile devices"
    return None


def supports(plan: FramePlan, topo: Topology, policy: Optional[StatefulPolicy] = None) -> bool:
    """True when simulate_compiled gives this run the SimPy engine's times (else run engine.simulate; why_not says
    why)."""
    return why_not(plan, topo, policy) is None


def simulate_compiled_windows(load_window: WindowLoader, topo: Topology, on_window: WindowDone,
                              policy: Optional[StatefulPolicy] = None,
                              routes_of_mobile: Optional[list[list[Route]]] = None, ring_windows: int = 4) -> None:
    """engine.simulate_windows in the compiled loop: windows of frames in bounded memory, handed back in order."""
    first = load_window(0)
    if first is None or first.capture_s.size == 0:
        return
    why = why_not(first, topo, policy)
    if why is not None:
        raise EdgesimError(f"the compiled engine does not cover this run ({why}); use engine.simulate")
    peeked = load_window(1)  # loaded once: a window loader may draw from random streams
    fields = TIME_FIELDS + (TIER_FIELDS if first.cloud_s is not None else ())
    delay = topo.delay is not None
    ring = Ring(first, peeked is None, ring_windows, len(fields) + (2 if delay else 0), delay)
    stations, run, edges, traces, batches, n_up = static_state(topo, first, len(fields))
    n_mob = first.n_mobiles
    run["policy"] = policy is not None
    traced, fifo, delay_traces = delay_model(topo, n_mob)
    state, routes, n_routes, routes_of, decide, observe = policy_arrays(policy, topo, routes_of_mobile, n_mob)
    view = load_view()
    tiers = topo.tiers
    edge_of_mobile = np.ascontiguousarray(tiers.edge_of_mobile if tiers is not None and tiers.edge_of_mobile is not None
                                          else np.zeros(n_mob), dtype=np.int64)
    last_up, last_down = np.zeros(max(n_up, 1)), np.zeros(max(n_mob, 1))
    tree = least_loaded_tree(int(run["n_edges"][0]))  # every edge server idle
    firsts = ring.load(0, first, topo, 0.0)
    firsts = firsts[firsts >= 0]
    firsts = firsts[np.lexsort((firsts, ring.capture[firsts]))]  # the SimPy engine's start order
    if ring.own and lindley_applies(first, topo):  # slot = frame: Lindley's recursion reads the plan by slot
        replayed = replay_state(firsts[0], ring.capture[firsts[0]])
        decisions = (int(run["policy"][0]), state.copy(), routes, n_routes, view, run, replayed)
        if _lindley(firsts[0], ring.nxt, ring.capture, ring.route, ring.demands[0][:4], traces, ring.T, ring.status,
                    topo.propagation_s, topo.deadline_s is not None, topo.deadline_s or 0.0, decisions, decide,
                    observe):
            ring.flush(on_window, fields, everything=True)
            return
        ring.T[:] = np.nan  # frames met out of order: the event loop runs them from the start
        ring.status[:] = 0
    first = None  # the ring holds what it needs of a window: no second copy of its demands here
    h, meta, queues = new_events(n_mob)
    start_captures(h, meta, queues, firsts, ring.capture)
    while True:
        delays = Delays(traced, fifo, ring.delay_values, delay_traces, last_up, last_down)
        c = Loop(ring.T, ring.demand_at, ring.demand_frames, ring.column, ring.capture, ring.mobile, ring.route,
                 stations, ring.NXT, ring.PRV, run, edges, traces, ring.status, ring.drop_stage, delays, state,
                 batches, routes, view, edge_of_mobile, n_routes, routes_of, ring.rows, tree)  # anew: rings grow
        why = run_events(c, decide, observe, ring.nxt, ring.remaining, ring.width, h, meta, queues)
        if why == GROW:
            h = grown(h)
        elif why == LOAD:
            k = ring.loaded
            wp = peeked if k == 1 else load_window(k)
            if wp is None or wp.capture_s.size == 0:
                ring.last_window()
            else:
                ring.flush(on_window, fields)
                ring.load(k, wp, topo, first_time(h, meta, queues))
            wp = peeked = None  # likewise
        else:
            break
    ring.flush(on_window, fields, everything=True)


def simulate_compiled(plan: FramePlan, topo: Topology, policy: Optional[StatefulPolicy] = None,
                      routes_of_mobile: Optional[list[list[Route]]] = None) -> dict[str, np.ndarray]:
    """engine.simulate's per-frame stage times, status and route, from the compiled event loop (one window)."""
    return in_memory(simulate_compiled_windows, plan, topo, policy, routes_of_mobile)

