"""Dual-Model Distillation (DMD, seed paper 000): agreement data, switcher, deferral curves and Table 1.

One concept a file: `generate` (section 2, A.2), `records` (A.2 JSON and Parquet), `switcher` (A.3),
`deferral` (A.4 thresholds, baselines and curves), `adapters` (edge/cloud models), `yolo` (A.1 dataset),
`digits` (the embedded demo), `pipeline` (the steps end to end), `routing` (APGR / CPT, risk-coverage, AUROC and
calibration of the switcher), `seeds` (the demo over several seeds, mean +/- t-interval), `replay` (time and energy
in the simulator, for any two profiled models) and `plots`; the command line is edgesim/cli/dmd.py.
"""

from __future__ import annotations

TRACE_COLUMNS = (
    "sample_id", "label", "edge_pred", "edge_max_prob", "edge_margin", "edge_entropy",
    "cloud_pred", "cloud_max_prob", "agree", "split",
)
"""Per-sample columns of the DMD trace: the contract with the simulator (plus `switcher_score` after scoring)."""
