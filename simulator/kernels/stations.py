"""A station's rules, written once for both engines: a c-server FIFO station's bookkeeping (its residual service,
its backlog, the running sum of queued work) and Triton's dynamic batcher's dispatch (plan.Batching).
"""

from __future__ import annotations

from simulator.jit import njit


@njit(cache=True)
def busy_until_after(busy_until_s, now_s, service_s):
    """When the station's longest service in progress ends, once a service of service_s starts now."""
    return now_s + service_s if now_s + service_s > busy_until_s else busy_until_s


@njit(cache=True)
def residual_s(free_servers, busy_until_s, now_s):
    """What is left of the longest service in progress (0 when a server is free)."""
    if free_servers:
        return 0.0
    r = busy_until_s - now_s
    return r if r > 0.0 else 0.0


@njit(cache=True)
def backlog_s(residual, queued, per):
    """Predicted wait for a new arrival: residual service, then the queued work over c servers (on a link: the
    queued bits over a bandwidth)."""
    return residual + queued / per


@njit(cache=True)
def queued_after_start(queued, work, still_waiting):
    """The queued work once a waiting frame with `work` starts: a running sum in queue order, exactly 0 when the
    queue empties (a backlog costs O(1) per capture, the same float in both engines)."""
    return queued - work if still_waiting else 0.0


@njit(cache=True)
def batch_size(same_key, max_batch_size, preferred, waited_s, max_queue_delay_s):
    """Frames the batcher dispatches now from the `same_key` oldest frames of one key (0: wait): max_batch_size
    when reached, else the largest preferred size that fits, else all once the oldest has waited max_queue_delay_s."""
    if same_key == max_batch_size:
        return same_key
    for p in preferred:
        if p <= same_key:
            return p
    if waited_s >= max_queue_delay_s - 1e-12:
        return same_key
    return 0


@njit(cache=True)
def batch_wait_s(now_s, arrive_s, server_free_s):
    """A frame's batching wait: the part of its wait after a server was free for it (the rest is queueing)."""
    return now_s - (server_free_s if server_free_s > arrive_s else arrive_s)


@njit(cache=True)
def lindley_step(busy_until_s, arrive_s, service_s):
    """A single-server FIFO station met in service order, by Lindley's recursion: (start, end, busy until)."""
    start = arrive_s if busy_until_s <= arrive_s else busy_until_s
    return start, start + service_s, start + service_s if start + service_s > busy_until_s else busy_until_s
