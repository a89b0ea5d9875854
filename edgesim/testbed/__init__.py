"""The testbed: a scenario run for real (processes, models, TCP through shaped namespaces) beside its simulation."""
