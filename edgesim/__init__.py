"""edgesim's top floor: studies that combine profiling and simulation, the reports, and the command line.

Layers, each importing only those below it: `profilers` (measure, derive, profile format, models) <-
`simulator` (scenario, engines, policies, metrics) <- `edgesim` (studies, report, cli).
"""
