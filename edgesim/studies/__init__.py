"""Studies built on both lower floors: Dual-Model Distillation (000) and knowledge distillation (002, 003).

Shared by both: data.py (scikit-learn's digits as arrays, stratified splits, resizing) and training.py (the one
supervised training loop); dmd/ and distill/ hold what is particular to each study.
"""
