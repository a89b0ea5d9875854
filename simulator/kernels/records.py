"""The named records the kernels read (numpy structured dtypes; numba reads their fields by name).

ROUTE: what a prediction needs of one route (policies.base.route_table packs them). LOAD_VIEW: what a stateful
policy or the assignment sees at a capture (both engines fill one from their stations).
"""

from __future__ import annotations

import numpy as np

ROUTE = np.dtype([("head_s", float), ("tail_on", float), ("tail_s", float), ("cloud_on", float), ("cloud_s", float),
                  ("up_bits", float), ("down_bits", float), ("wan_bits", float)])
"""One route as predictions see it: expected head, tail and cloud times (tail_on, cloud_on: 1.0 where the route runs
there), and wire bits up, back and over the WAN (per-packet overhead included, resends not predicted)."""

LOAD_VIEW = np.dtype([
    ("now_s", float), ("link", np.int64), ("uplink_rate_bps", float),
    ("mobile_backlog_s", float), ("uplink_residual_s", float), ("uplink_queued_bits", float),
    ("server_backlog_s", float), ("propagation_s", float), ("downlink_bps", float),
    ("wan_backlog_s", float), ("wan_bps", float), ("wan_propagation_s", float), ("wan_down_bps", float),
    ("cloud_backlog_s", float)])
"""What a decision at capture sees: the time, the frame's uplink (its index and true rate now: the oracle's), each
station's backlog on the frame's way (s; the uplink's as residual plus queued bits, since its rate is the policy's
estimate), propagation and the return rates; the WAN's rate is already the planning bandwidth (kernels.links)."""


def load_view() -> np.ndarray:
    """One LOAD_VIEW record (an array of one, as the kernels take it), with no WAN or cloud on the way."""
    view = np.zeros(1, LOAD_VIEW)
    view["wan_bps"] = view["wan_down_bps"] = np.inf
    return view
