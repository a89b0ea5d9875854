"""edgesim's simulator: scenarios in, per-frame records and summaries out (`simulator.run`)."""

from simulator.sweep import run

__all__ = ["run"]
