"""The frame table's numbers in one compiled pass over a window's frames (frames.frame_table): each delay component,
bytes and energy per frame from its stage times, where numpy's formulas took a whole-window temporary per operation.
The same IEEE operations in the same order as the formulas they replace (no fast-math), so the same bits.

Mobile energy per frame = head time x the route's power + radio energy from a linear Wi-Fi model (Huang et al.,
MobiSys 2012): tx_w x transfer time + tx_w_per_mbps x megabits sent, likewise for the downlink.
"""

from __future__ import annotations

import numpy as np

from simulator.groupsum import nan_to_num
from simulator.jit import njit

NUMBERS = ("mobile_queue_s", "head_s", "uplink_queue_s", "transfer_s", "propagation_s", "propagation_up_s",
           "server_queue_s", "tail_s", "return_s", "delay_s", "wire_bytes_up", "energy_mobile_compute_j",
           "energy_mobile_radio_j", "energy_server_j", "wan_queue_s", "wan_transfer_s", "wan_propagation_s",
           "cloud_queue_s", "batch_wait_s", "cloud_s", "wan_return_s", "energy_cloud_j")
"""The float rows of frame_numbers' output, in order (the last eight only in a tiered run)."""
COUNTS = ("bytes_up", "bytes_down", "batch_size", "bytes_wan", "edge")
"""Its integer rows (the last three only in a tiered run; edge: each frame's edge server)."""
TIERED_FROM = NUMBERS.index("wan_queue_s")


@njit(cache=True)
def frame_numbers(capture, times, tier_times, status, group, route, wire_row, wire_bits, prop_up, prop_down, head_power,
                  tail_power, up_bytes, down_bytes, radio, downlink_bps, tiered, routes_per_edge, wan_prop_of_edge,
                  wan_bytes, cloud_w, out, counts):
    """Fill out (len(NUMBERS) arrays of frames) and counts (len(COUNTS)) for a window (the tiered ones only when
    tiered: others may be empty). Arrays apart, not rows of one block: a block of 22 x 250,000 frames x 8 B = 44 MB
    a window is mapped afresh each time (page faults), column-sized ones come back from the allocator.

    times: the stage times head_start, head_end, up_start, up_end, down_start, down_end, tail_start, tail_end, done;
    tier_times (tiered): edge_arrive, cloud_start, cloud_arrive, cloud_end, wan_start, wan_end, wan_down_end, batch_wait,
    batch_size; prop_up/prop_down: per frame, or one value for all; per (group, route): head_power, tail_power,
    up_bytes, down_bytes, wan_bytes; radio per group: tx_w, tx_w_per_mbps, rx_w, rx_w_per_mbps."""
    nan = np.nan
    (head_starts, head_ends, up_starts, up_ends, down_starts, down_ends, tail_starts, tail_ends, dones) = times
    (edge_arrives, cloud_starts, cloud_arrives, cloud_ends, wan_starts, wan_ends, wan_down_ends, batch_waits,
     batch_sizes) = tier_times
    for i in range(capture.size):
        g, r = group[i], route[i]
        head_start, head_end, up_start, up_end = head_starts[i], head_ends[i], up_starts[i], up_ends[i]
        down_start, down_end, tail_start, tail_end = down_starts[i], down_ends[i], tail_starts[i], tail_ends[i]
        done = dones[i]
        pu = prop_up[i] if prop_up.size > 1 else prop_up[0]
        pd = prop_down[i] if prop_down.size > 1 else prop_down[0]
        offloaded = up_end == up_end
        dropped = status[i] == 2
        wire = wire_bits[wire_row[r], i]
        transfer = up_end - up_start if offloaded else 0.0
        down_dur = down_end - down_start if offloaded else 0.0
        down_bits = down_dur * downlink_bps
        if offloaded:
            radio_j = (radio[g, 0] * transfer + radio[g, 1] * wire / 1e6 + radio[g, 2] * down_dur
                       + radio[g, 3] * down_bits / 1e6)
        else:
            radio_j = 0.0
        propagation = pu + pd if offloaded else 0.0
        propagation_up = pu if offloaded else 0.0
        if not tiered:
            server_queue = tail_start - up_end - pu if offloaded else 0.0
            tail_s = tail_end - tail_start if offloaded else 0.0
            return_s = done - tail_end - pd if offloaded else 0.0
            energy_server = nan_to_num(tail_s, 0.0) * tail_power[g, r]
        else:
            edge_arrive, cloud_start, cloud_arrive, cloud_end = edge_arrives[i], cloud_starts[i], cloud_arrives[i], cloud_ends[i]
            wan_start, wan_end, wan_down_end = wan_starts[i], wan_ends[i], wan_down_ends[i]
            edge = r // routes_per_edge
            computed = tail_start == tail_start
            cloud = cloud_start == cloud_start
            after_edge = tail_end if computed else edge_arrive
            wan_prop = wan_prop_of_edge[edge]
            back = wan_down_end + wan_prop if cloud else after_edge
            server_queue = tail_start - edge_arrive if computed else 0.0
            tail_s = tail_end - tail_start if computed else 0.0
            return_s = done - back - (propagation - propagation_up) if offloaded else 0.0
            energy_server = tail_s * tail_power[g, r]
            batch_wait = nan_to_num(batch_waits[i], 0.0)
            cloud_s = cloud_end - cloud_start if cloud else 0.0
            batch_size = np.int64(nan_to_num(batch_sizes[i], 1.0) if cloud else 0.0)
            out[14][i] = wan_start - after_edge if cloud else 0.0
            out[15][i] = wan_end - wan_start if cloud else 0.0
            out[16][i] = 2 * wan_prop if cloud else 0.0
            out[17][i] = cloud_start - cloud_arrive - batch_wait if cloud else 0.0
            out[18][i] = batch_wait if cloud else 0.0
            out[19][i] = cloud_s
            out[20][i] = wan_down_end - cloud_end if cloud else 0.0
            out[21][i] = cloud_s * cloud_w / max(batch_size, 1)
            if dropped:  # the tier delay components (not energy_cloud_j)
                out[14][i] = out[15][i] = out[16][i] = out[17][i] = out[18][i] = out[19][i] = out[20][i] = nan
            counts[2][i] = batch_size
            counts[3][i] = wan_bytes[g, r] if cloud else 0
            counts[4][i] = edge
        out[0][i] = head_start - capture[i] if not dropped else nan
        out[1][i] = head_end - head_start if not dropped else nan
        out[2][i] = (up_start - head_end if offloaded else 0.0) if not dropped else nan
        out[3][i] = transfer if not dropped else nan
        out[4][i] = propagation
        out[5][i] = propagation_up
        out[6][i] = server_queue if not dropped else nan
        out[7][i] = tail_s if not dropped else nan
        out[8][i] = return_s if not dropped else nan
        out[9][i] = done - capture[i] if not dropped else nan
        out[10][i] = wire / 8.0 if offloaded else 0.0
        out[11][i] = nan_to_num(head_end - head_start, 0.0) * head_power[g, r]
        out[12][i] = radio_j
        out[13][i] = energy_server
        counts[0][i] = up_bytes[g, r] if offloaded else 0
        counts[1][i] = down_bytes[g, r] if offloaded else 0
