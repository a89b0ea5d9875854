"""Real and simulated frames side by side: per-frame components from stamps, and sim_vs_real.csv's statistics.

A real frame's stamps (edgesim.testbed.node) telescope into COMPONENTS, which add up to its delay; a simulated
frame's components (simulator/frames.py) are regrouped into the same ones: the uplink is the wait for the link,
the transfer and the propagation up; the return is the result's transfer and the propagation down.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STAMPS = ("capture", "head_start", "head_end", "encoded", "received", "tail_start", "decoded", "tail_end", "done")
COMPONENTS = ("mobile_queue_s", "head_s", "encode_s", "uplink_s", "server_queue_s", "decode_s", "tail_s", "return_s")
"""Each is the time between two consecutive STAMPS, so a frame's components add up to its delay_s."""
STATISTICS = ("mean", "p50", "p95")


def real_frames(mobile: list[dict], edge: list[dict], t0: float) -> pd.DataFrame:
    """One row per frame: stamps (seconds from t0), COMPONENTS and delay_s, from the two processes' stamps.

    A frame that stays on the mobile device (local) has every later stamp at its head's end, so its encode,
    uplink, server and return components are 0, as in the simulator."""
    df = pd.DataFrame(mobile).set_index("frame").sort_index()
    if edge:
        df = df.join(pd.DataFrame(edge).set_index("frame"), how="left")
    for col in STAMPS:
        if col not in df.columns:
            df[col] = np.nan
    local = df["received"].isna()
    for col in ("encoded", "received", "tail_start", "decoded", "tail_end", "done"):
        df.loc[local, col] = df.loc[local, "head_end"]
    out = pd.DataFrame({"frame": df.index.to_numpy()})
    for col in STAMPS:
        out[f"{col}_s"] = df[col].to_numpy(float) - t0
    for name, (a, b) in zip(COMPONENTS, zip(STAMPS[:-1], STAMPS[1:])):
        out[name] = df[b].to_numpy(float) - df[a].to_numpy(float)
    out["delay_s"] = df["done"].to_numpy(float) - df["capture"].to_numpy(float)
    return out


def simulated_components(frames: pd.DataFrame) -> pd.DataFrame:
    """A simulator frame table regrouped into COMPONENTS and delay_s (encode_s and decode_s 0: the simulator
    counts them inside head_s and tail_s; runner.split_codec_steps moves them out)."""
    prop_down = frames["propagation_s"] - frames["propagation_up_s"]
    out = pd.DataFrame({
        "frame": frames["frame"].to_numpy(),
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
    for quantity in ("delay_s", *COMPONENTS):
        r, s = _stats(real[quantity]), _stats(simulated[quantity])
        for stat in STATISTICS:
            err = s[stat] / r[stat] - 1.0 if r[stat] and np.isfinite(r[stat]) and r[stat] != 0 else float("nan")
            rows.append({**keys, "prediction": prediction, "quantity": quantity, "statistic": stat,
                         "real_s": r[stat], "simulated_s": s[stat], "relative_error": err})
    return rows
