"""Decisions at capture, written once for both engines: the predicted capture-to-output delay of a route, the least
of them (best-split, Neurosurgeon: Kang et al. 2017, ref. [10] of 002), the EWMA bandwidth estimate, and the edge
server assignment (least-loaded, shortest expected delay).

A stateful policy's own kernels (policies.base.PolicyKernels) take the signatures DECIDE and OBSERVE: the compiled
engine calls them as first-class functions (one compiled loop for every policy), the SimPy engine directly.
"""

from __future__ import annotations

import numpy as np
from numba import from_dtype, types

from simulator.jit import njit
from simulator.kernels.links import planning_bps
from simulator.kernels.records import LOAD_VIEW, ROUTE

DECIDE = types.int64(types.float64[::1], from_dtype(LOAD_VIEW)[::1], from_dtype(ROUTE)[::1], types.int64,
                     types.int64)
"""decide(state, view, routes, lo, hi) -> k: route lo + k of the frame's mobile device's routes."""
OBSERVE = types.void(types.float64[::1], types.int64, types.float64, types.float64)
"""observe(state, link, bits, duration_s): an uplink transfer of `bits` on `link` ended after duration_s."""


@njit(cache=True)
def predicted_delay_s(route, v, bw, uplink_wait):
    """Capture-to-output delay a route would see now (002 section 2's T = tau_head + tau_data + tau_tail, with each
    station's backlog, and over the WAN to the cloud and back): term by term, in one order for both engines."""
    t = v.mobile_backlog_s + route.head_s
    if not route.cloud_on:
        if route.tail_on:
            t += uplink_wait + route.up_bits / bw
            t += v.propagation_s + v.server_backlog_s + route.tail_s
            t += route.down_bits / v.downlink_bps + v.propagation_s
        return t
    t += uplink_wait + route.up_bits / bw + v.propagation_s
    if route.tail_on:
        t += v.server_backlog_s + route.tail_s
    t += v.wan_backlog_s + route.wan_bits / v.wan_bps + v.wan_propagation_s
    t += v.cloud_backlog_s + route.cloud_s
    t += route.down_bits / v.wan_down_bps + v.wan_propagation_s
    return t + route.down_bits / v.downlink_bps + v.propagation_s


@njit(cache=True)
def least_delay(routes, lo, hi, v, bw, uplink_wait):
    """Offset from lo of the route in lo..hi-1 with the least predicted delay, the first of equals."""
    best, best_s = 0, np.inf
    for k in range(hi - lo):
        t = predicted_delay_s(routes[lo + k], v, bw, uplink_wait)
        if t < best_s:
            best, best_s = k, t
    return best


@njit(cache=True)
def ewma_bps(estimate_bps, alpha, bits, duration_s):
    """The bandwidth estimate after one finished transfer: (1 - alpha) x estimate + alpha x bits / duration (an
    instantaneous transfer teaches nothing)."""
    if duration_s > 0:
        return (1 - alpha) * estimate_bps + alpha * bits / duration_s
    return estimate_bps


@njit(cache=True)
def uplink_wait_s(v, bw):
    """Predicted wait for the uplink: the transfer in progress, then the queued bits at bandwidth bw."""
    return v.uplink_residual_s + v.uplink_queued_bits / bw


@njit(cache=True)
def expected_delay_s(routes, k, view, rate_bps):
    """The shortest-expected-delay assignment's measure of an edge server: route k's predicted delay with the
    planning bandwidth of the uplink to it."""
    v = view[0]
    bw = planning_bps(rate_bps)
    return predicted_delay_s(routes[k], v, bw, uplink_wait_s(v, bw))


@njit(cache=True)
def load_per_server(busy, waiting, servers):
    """An edge server's load as least-loaded assignment ranks it: frames in service and waiting per server."""
    return (busy + waiting) / servers


@njit(cache=True)
def least_loaded(busy, waiting, servers):
    """The edge server with the fewest frames in service and waiting per server, the first of equals."""
    best, best_load = 0, np.inf
    for e in range(servers.size):
        load = load_per_server(busy[e], waiting[e], servers[e])
        if load < best_load:
            best, best_load = e, load
    return best


LEAST_LOADED = np.dtype([("edge", np.int64), ("load", float)])
"""A node of least_loaded's tournament tree: the edge server that wins its subtree and that server's load."""


def least_loaded_tree(n_edges: int) -> np.ndarray:
    """least_loaded kept as a tournament tree (LEAST_LOADED records, node k's children 2k and 2k + 1, edge server e
    the leaf P + e) over n_edges idle edge servers: tree[1] is least_loaded's choice, and a change of one server's
    load costs O(log E) (least_loaded_after) instead of a scan of every server at each capture."""
    leaves = 1 << max(n_edges - 1, 0).bit_length()
    tree = np.zeros(2 * leaves, LEAST_LOADED)
    tree["edge"][leaves:] = np.arange(leaves)
    tree["load"][leaves + n_edges:] = np.inf  # padding: never the least loaded
    for k in range(leaves - 1, 0, -1):
        tree[k] = tree[2 * k] if tree["load"][2 * k] <= tree["load"][2 * k + 1] else tree[2 * k + 1]
    return tree


@njit(cache=True)
def least_loaded_after(tree, e, load):
    """Edge server e's load is now `load`: the matches on its path to the root played again (the lower load wins,
    the left one of equals: least_loaded's first of equals), stopping where a winner stays the same."""
    k = (tree.size >> 1) + e
    leaf = tree[k]
    leaf.load = load
    k >>= 1
    while k:
        a, b = tree[2 * k], tree[2 * k + 1]
        w = a if a.load <= b.load else b
        node = tree[k]
        if node.edge == w.edge and node.load == w.load:
            return
        node.edge, node.load = w.edge, w.load
        k >>= 1


@njit(cache=True)
def no_decide(state, view, routes, lo, hi):
    """The decision of a run without a stateful policy: never called (the engines test for a policy first)."""
    return 0


@njit(cache=True)
def no_observe(state, link, bits, duration_s):
    """The observation of a run without a stateful policy: nothing to learn."""
