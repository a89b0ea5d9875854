"""Studies built on both lower floors: Dual-Model Distillation (000) and knowledge distillation (002, 003).

Shared by both: data.py (bundled digits and MNIST as arrays, stratified splits, resizing), training.py (the one
supervised training loop) and stats.py (t-intervals over seeds, paired bootstrap, AUROC, calibration); dmd/ and
distill/ hold what is particular to each study.
"""
