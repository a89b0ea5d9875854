"""Studies built on both lower floors: Dual-Model Distillation (000) and knowledge distillation (002, 003)."""
