"""edgesim's simulator: scenarios in, per-frame records and summaries out (`simulator.run`)."""

__all__ = ["run"]


def __getattr__(name: str):
    """`simulator.run`, imported on first use (PEP 562): importing one simulator module loads no engine."""
    if name == "run":
        from simulator.sweep import run

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
