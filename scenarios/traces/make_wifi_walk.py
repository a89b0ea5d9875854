"""Writes wifi_walk.csv: a synthetic, seeded uplink trace of a camera carried away from an access point and back.

Method (stated, not measured): distance d(t) goes 2 m -> 62 m -> 2 m at 1 m/s over 120 s; received power
follows the log-distance path-loss model P_rx = P_tx - PL(1 m) - 10 n log10(d) + X, with P_tx = 20 dBm,
PL(1 m) = 40 dB (2.4 GHz free space), n = 3 (indoor), X AR(1)-correlated Gaussian shadowing with
sigma = 4 dB and correlation 0.9 per second; the PHY rate is the highest 802.11n MCS (20 MHz, 1 stream,
800 ns GI) whose receiver minimum input sensitivity (IEEE 802.11n-2009 Table 20-34) P_rx meets, and the
data rate is 60 % of it (MAC and TCP overhead); below MCS0 sensitivity the link is out (0 Mbps).
Run: python scenarios/traces/make_wifi_walk.py
"""

from pathlib import Path

import numpy as np

SENSITIVITY_DBM = [-82, -79, -77, -74, -70, -66, -65, -64]
PHY_RATE_MBPS = [6.5, 13.0, 19.5, 26.0, 39.0, 52.0, 58.5, 65.0]


def wifi_walk(seed: int = 42, step_s: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Times and data rates (Mbit/s) of the walk described in the module docstring."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, 120.0 + step_s, step_s)
    d = 2.0 + np.where(t <= 60, t, 120 - t)
    shadow = np.zeros_like(t)
    for k in range(1, t.size):
        shadow[k] = 0.9 * shadow[k - 1] + np.sqrt(1 - 0.9**2) * rng.normal(0.0, 4.0)
    p_rx = 20.0 - 40.0 - 30.0 * np.log10(d) + shadow
    rate = np.zeros_like(t)
    for sens, phy in zip(SENSITIVITY_DBM, PHY_RATE_MBPS):
        rate = np.where(p_rx >= sens, 0.6 * phy, rate)
    rate[-1] = max(rate[-1], 0.6 * PHY_RATE_MBPS[0])  # the last rate holds after the trace: keep the link up
    return t, rate


if __name__ == "__main__":
    times, rates = wifi_walk()
    out = Path(__file__).with_name("wifi_walk.csv")
    out.write_text("time_s,data_rate_mbps\n" + "".join(f"{a:g},{b:g}\n" for a, b in zip(times, rates)))
    print(f"wrote {out}: {len(times)} rows, mean {rates.mean():.1f} Mbit/s, outage {np.mean(rates == 0):.0%}")
