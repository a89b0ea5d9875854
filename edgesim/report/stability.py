"""Overloaded stations in a summary, for the report and the command line: the rule lives in simulator.sense, so the
Python API warns with the same lines."""

from simulator.sense import CONSEQUENCE, station_columns, unstable_warnings

__all__ = ["CONSEQUENCE", "station_columns", "unstable_warnings"]
