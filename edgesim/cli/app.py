"""The `edgesim` app: every command group mounted by name, and the one-line error contract of `main`."""

from __future__ import annotations

import os
import sys

import typer

from edgesim.cli import distill, dmd, profile, simulate
from profilers.errors import EdgesimError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="edgesim: edge-cloud split-computing simulator with real-model profiling.")


app.command("run")(simulate.run)
app.command("validate")(simulate.validate)
app.command("plot")(simulate.plot)
app.command("compare")(simulate.compare)
app.command("list")(simulate.list_)
app.command("schema")(simulate.schema)
app.command("profile")(profile.profile)
app.add_typer(dmd.dmd_app, name="dmd")
app.add_typer(distill.distill_app, name="distill")


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line and exit code 2 for user errors; tracebacks only with --debug or EDGESIM_DEBUG=1."""
    import click

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("EDGESIM_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    try:
        rv = app(args=args, prog_name="edgesim", standalone_mode=False)
        if isinstance(rv, int) and rv:
            return rv
    except EdgesimError as exc:
        if debug:
            raise
        print(f"edgesim: error: {' '.join(str(exc).split())}", file=sys.stderr)  # always one line
        return 2
    except KeyboardInterrupt:
        print("edgesim: interrupted", file=sys.stderr)
        return 130
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.exceptions.Abort:
        print("edgesim: interrupted", file=sys.stderr)
        return 130
    except click.exceptions.ClickException as exc:
        exc.show()
        return 2
    except OSError as exc:
        if debug:
            raise
        print(f"edgesim: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
