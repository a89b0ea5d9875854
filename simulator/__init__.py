"""edgesim's simulator: scenarios in, per-frame records and summaries out (`simulator.run`)."""

from simulator.runner import run

__all__ = ["run"]
