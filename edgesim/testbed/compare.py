"""Real and simulated frames side by side: per-frame components from stamps, and sim_vs_real.csv's statistics.

A real frame's stamps (edgesim.testbed.node) telescope into COMPONENTS, which add up to its delay; a simulated
frame's components (simulator/frames.py) are regrouped into the same ones: the uplink is the wait for the link,
the transfer and the propagation up; the return is the result's transfer and the propagation down. With a cloud,
the WAN's way up (its queue, transfer and one-way propagation) and back come in between (CLOUD_COMPONENTS).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

STAMPS = ("capture", "head_start", "head_end", "encoded", "received", "tail_start", "decoded", "tail_end", "done")
COMPONENTS = ("mobile_queue_s", "head_s", "encode_s", "uplink_s", "server_queue_s", "decode_s", "tail_s", "return_s")
"""Each is the time between two consecutive STAMPS, so a frame's components add up to its delay_s."""
CLOUD_STAMPS = (*STAMPS[:-1], "wan_encoded", "cloud_received", "cloud_start", "cloud_decoded", "cloud_end", "back",
                "done")
CLOUD_COMPONENTS = (*COMPONENTS[:-1], "wan_encode_s", "wan_uplink_s", "cloud_queue_s", "cloud_decode_s", "cloud_s",
                    "wan_return_s", "return_s")
"""With a cloud: the edge server's part (server_queue_s, decode_s, tail_s: 0 where it only relays), the WAN's
encoding, way up (queue, transfer, propagation), the cloud's queue, decoding and part, the WAN's way back."""
CLOUD_NAMES = {"received": "cloud_received", "tail_start": "cloud_start", "decoded": "cloud_decoded",
               "tail_end": "cloud_end"}
"""The cloud process stamps as the edge server does (edgesim.testbed.node.run_server); its stamps' names here."""
STATISTICS = ("mean", "p50", "p95")


def real_frames(mobile: list[dict], edge: list[dict], t0: float, cloud: Optional[list[dict]] = None) -> pd.DataFrame:
    """One row per frame: stamps (seconds from t0), COMPONENTS (CLOUD_COMPONENTS with `cloud`, the cloud's stamps)
    and delay_s, from the processes' stamps (mobile stamps with a 'mobile' field give a mobile column).

    A stamp a frame does not pass (a local frame's past its head, an edge frame's WAN and cloud stamps) is the one
    before it, so those components are 0, as in the simulator."""
    stamps, components = (STAMPS, COMPONENTS) if cloud is None else (CLOUD_STAMPS, CLOUD_COMPONENTS)
    df = pd.DataFrame(mobile).set_index("frame").sort_index()
    for rows in (edge, [{CLOUD_NAMES.get(k, k): v for k, v in r.items()} for r in cloud or []]):
        if rows:
            df = df.join(pd.DataFrame(rows).set_index("frame"), how="left")
    for col in stamps:
        if col not in df.columns:
            df[col] = np.nan
    df[list(stamps[:-1])] = df[list(stamps[:-1])].ffill(axis=1)
    out = pd.DataFrame({"frame": df.index.to_numpy()})
    if "mobile" in df.columns:
        out["mobile"] = df["mobile"].to_numpy(int)
    for col in stamps:
        out[f"{col}_s"] = df[col].to_numpy(float) - t0
    for name, (a, b) in zip(components, zip(stamps[:-1], stamps[1:])):
        out[name] = df[b].to_numpy(float) - df[a].to_numpy(float)
    out["delay_s"] = df["done"].to_numpy(float) - df["capture"].to_numpy(float)
    return out


def simulated_components(frames: pd.DataFrame) -> pd.DataFrame:
    """A simulator frame table regrouped into COMPONENTS and delay_s, or CLOUD_COMPONENTS where it has a cloud's
    columns (encode_s and decode_s 0: the simulator counts them inside head_s, tail_s and cloud_s;
    runner.split_codec_steps moves them out); mobile: each device's index, in frame order."""
    frames = frames.sort_values("frame", kind="stable").reset_index(drop=True)
    prop_down = frames["propagation_s"] - frames["propagation_up_s"]
    out = pd.DataFrame({
        "frame": frames["frame"].to_numpy(),
        "mobile": pd.factorize(frames["mobile"].astype(str))[0],
        "capture_s": frames["capture_s"].to_numpy(),
        "decision": frames["decision"].astype(str).to_numpy(),
        "mobile_queue_s": frames["mobile_queue_s"].to_numpy(),
        "head_s": frames["head_s"].to_numpy(),
        "encode_s": 0.0,
        "uplink_s": (frames["uplink_queue_s"] + frames["transfer_s"] + frames["propagation_up_s"]).to_numpy(),
        "server_queue_s": frames["server_queue_s"].to_numpy(),
        "decode_s": 0.0,
        "tail_s": frames["tail_s"].to_numpy(),
        "return_s": (frames["return_s"] + prop_down).to_numpy(),
        "delay_s": frames["delay_s"].to_numpy(),
    })
    if "cloud_s" in frames.columns:  # a tiered run: the WAN both ways and the cloud, before the return
        half_wan = frames["wan_propagation_s"].to_numpy() / 2
        out.insert(out.columns.get_loc("return_s"), "wan_encode_s", 0.0)
        for name, values in (("wan_uplink_s", frames["wan_queue_s"] + frames["wan_transfer_s"] + half_wan),
                             ("cloud_queue_s", frames["cloud_queue_s"] + frames["batch_wait_s"]),
                             ("cloud_decode_s", 0.0), ("cloud_s", frames["cloud_s"]),
                             ("wan_return_s", frames["wan_return_s"] + half_wan)):
            out.insert(out.columns.get_loc("return_s"), name, values if np.isscalar(values) else np.asarray(values))
    return out


def _stats(values: np.ndarray) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {s: float("nan") for s in STATISTICS}
    return {"mean": float(v.mean()), "p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))}


def comparison_rows(real: pd.DataFrame, simulated: pd.DataFrame, keys: dict, prediction: str) -> list[dict]:
    """sim_vs_real.csv rows for one run: per quantity (delay_s and each component) and statistic, the real and
    simulated values and the relative error simulated / real - 1 (NaN where the real value is 0)."""
    rows = []
    for quantity in ("delay_s", *(CLOUD_COMPONENTS if "cloud_s" in real.columns else COMPONENTS)):
        r, s = _stats(real[quantity]), _stats(simulated[quantity])
        for stat in STATISTICS:
            err = s[stat] / r[stat] - 1.0 if r[stat] and np.isfinite(r[stat]) and r[stat] != 0 else float("nan")
            rows.append({**keys, "prediction": prediction, "quantity": quantity, "statistic": stat,
                         "real_s": r[stat], "simulated_s": s[stat], "relative_error": err})
    return rows


def busy_intervals(real: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each process's compute intervals (start, end) from a run's stamps: mobile device k's head and encoding
    ('mobile'), the edge server's part with its decoding and the WAN's encoding ('edge'), the cloud's ('cloud')."""
    out = {f"mobile{k}": f[["head_start_s", "encoded_s"]].to_numpy(float) for k, f in real.groupby("mobile")}
    out["edge"] = real[["tail_start_s", "wan_encoded_s" if "wan_encoded_s" in real else "tail_end_s"]].to_numpy(float)
    if "cloud_start_s" in real:
        out["cloud"] = real[["cloud_start_s", "cloud_end_s"]].to_numpy(float)
    return out


def overlap_s(a: np.ndarray, b: np.ndarray) -> float:
    """Total time two sets of (start, end) intervals overlap (each set's own intervals disjoint)."""
    lo = np.maximum(a[:, None, 0], b[None, :, 0])
    hi = np.minimum(a[:, None, 1], b[None, :, 1])
    return float(np.nansum(np.clip(hi - lo, 0.0, None)))


def shared_cpu_overlap(real: pd.DataFrame, cores: dict[str, tuple[int, ...]]) -> tuple[float, float]:
    """(seconds two processes that share a CPU computed at once, seconds those processes computed in all), from a
    run's stamps; `cores` gives each role's CPUs (mobile, edge, cloud). The simulator gives every device its own
    processor, so the first is the time in which sharing could have slowed the real run (0: it could not)."""
    busy = busy_intervals(real)
    names = list(busy)
    role = {n: n.rstrip("0123456789") for n in names}
    together, sharing = 0.0, set()
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if set(cores[role[a]]) & set(cores[role[b]]):
                together += overlap_s(busy[a], busy[b])
                sharing |= {a, b}
    total = sum(float(np.nansum(np.clip(busy[n][:, 1] - busy[n][:, 0], 0.0, None))) for n in sharing)
    return together, total
