"""The `edgesim` app: every command group mounted by name, and the one-line error contract of `main`."""

from __future__ import annotations

import os
import sys
import warnings
from importlib import metadata

import typer

from edgesim.cli import distill, dmd, profile, simulate, testbed, trace
from profilers.errors import EdgesimError, EdgesimWarning

try:  # typer 0.2x bundles its own copy of click and raises that copy's exceptions, not the click package's
    from typer._click import exceptions as click_exceptions
except ImportError:  # older typer drives the click package itself
    from click import exceptions as click_exceptions

#: plain click-style help: no boxes, and no '<bool>' or '<list[str]>' type labels beside the options
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="edgesim: edge-cloud split-computing simulator with real-model profiling.")


def edgesim_version() -> str:
    """The installed edgesim package's version ('unknown' when run from a tree that is not installed)."""
    try:
        return metadata.version("edgesim")
    except metadata.PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        print(f"edgesim {edgesim_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the installed edgesim version and exit."),
    debug: bool = typer.Option(False, "--debug",
                               help="On an error, show the full traceback (also EDGESIM_DEBUG=1); any position."),
) -> None:
    """edgesim: edge-cloud split-computing simulator with real-model profiling."""


app.command("run")(simulate.run)
app.command("validate")(simulate.validate)
app.command("plot")(simulate.plot)
app.command("compare")(simulate.compare)
app.command("list")(simulate.list_)
app.command("schema")(simulate.schema)
app.command("profile")(profile.profile)
app.command("derive")(profile.derive)
app.command("testbed")(testbed.testbed)
app.add_typer(dmd.dmd_app, name="dmd")
app.add_typer(distill.distill_app, name="distill")
app.add_typer(trace.trace_app, name="trace")


def usage_line(exc: click_exceptions.UsageError) -> str:
    """A usage error as one line: the command, what is wrong, and where help is."""
    command = exc.ctx.command_path if exc.ctx is not None else "edgesim"
    return f"{command}: {' '.join(exc.format_message().split()).rstrip('.')}; try '{command} -h' for help"


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """edgesim's own warnings as one line `edgesim: warning: ...` on stderr; others as Python prints them."""
    if issubclass(category, EdgesimWarning):
        print(f"edgesim: warning: {' '.join(str(message).split())}", file=sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line and exit code 2 for user errors; tracebacks only with --debug or EDGESIM_DEBUG=1."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("EDGESIM_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default", EdgesimWarning)  # each distinct warning once
            warnings.showwarning = _show_warning
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
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        print("edgesim: interrupted", file=sys.stderr)
        return 130
    except click_exceptions.NoArgsIsHelpError as exc:  # `edgesim` or `edgesim dmd` alone: the help, as a usage error
        exc.show()
        return 2
    except click_exceptions.UsageError as exc:
        if debug:
            raise
        print(f"edgesim: error: {usage_line(exc)}", file=sys.stderr)
        return 2
    except click_exceptions.ClickException as exc:
        if debug:
            raise
        print(f"edgesim: error: {' '.join(exc.format_message().split())}", file=sys.stderr)
        return 2
    except OSError as exc:
        if debug:
            raise
        print(f"edgesim: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
