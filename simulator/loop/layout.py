"""The compiled event loop's layout: event kinds, rows of the time table, station fields and parameters.

The loop keeps its state in plain numpy arrays indexed by these names (numba compiles them to constants).
"""

from __future__ import annotations


# event kinds (code = frame << 4 | kind; a batch's id stands in for the frame of BATCH_FIN)
CAPTURE, MOBILE_FIN, UP_FIN, SERVER_ARRIVE, EDGE_FIN, DOWN_FIN, FINISH = 1, 2, 3, 4, 5, 6, 7
WAN_FIN, CLOUD_ARRIVE, CLOUD_FIN, BATCH_FIN, BATCH_TIMER, WAN_DOWN_FIN, DOWN_ARRIVE = 8, 9, 10, 11, 12, 13, 14

# rows of the time table T (TIME_FIELDS, then TIER_FIELDS when tiered, then the varying delays)
HS, HE, US, UE, TS, TE, DS, DE, DONE = 0, 1, 2, 3, 4, 5, 6, 7, 8
EA, WS, WE, CA, CS, CE, WDS, WDE, BW, BSZ = 9, 10, 11, 12, 13, 14, 15, 16, 17, 18

# per-station float rows (SF[k, station]): when its longest service in progress ends, the waiting frames' total work
BUSY, QUEUED = 0, 1
# per-station int columns (SI[k, station]) and station kinds
FREE, SERVERS, CAP, QHEAD, QTAIL, QLEN, SKIND = 0, 1, 2, 3, 4, 5, 6
# (a kind is also the index of its demand in the plan tuple: head, bits, tail, down, WAN bits, cloud, WAN return)
K_MOBILE, K_UP, K_EDGE, K_DOWN, K_WAN, K_CLOUD, K_WDOWN = 0, 1, 2, 3, 4, 5, 6

# int parameters Q[...]
(Q_M, Q_UP0, Q_EDGE0, Q_DOWN0, Q_WAN0, Q_WDOWN0, Q_CLOUD, Q_SHARED, Q_TIERED, Q_NE, Q_PER, Q_POLICY, Q_ASSIGN,
 Q_DELAY, Q_STALE, Q_DEADLINE, Q_BATCH, Q_MAXB, Q_ROWPU, Q_ROWPD, Q_CLOUDSRV, Q_NBATCH, Q_NFREE, Q_LAST) = range(24)
# float parameters P[...]
P_PROP, P_DEADLINE, P_DLBPS, P_WANDBPS, P_MAXQD, P_TIMER, P_CBUSY, P_LAST = range(8)
DONE_RUN, GROW, LOAD = 0, 1, 2  # why run_events returned
NEXT_WINDOW = -2  # nxt of a mobile device's last frame in a window while the next window is not loaded
ASSIGN_FIXED, ASSIGN_LEAST_LOADED, ASSIGN_SED = 0, 1, 2
