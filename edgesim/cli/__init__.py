"""The `edgesim` command line: one module per command group, mounted by `edgesim.cli.app`."""
