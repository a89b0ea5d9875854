"""The `edgesim` app: every command group mounted by name, and the one-line error contract of `main`."""

from __future__ import annotations

import ast
import functools
import importlib
import os
import sys
import warnings
from collections.abc import MutableMapping
from contextlib import nullcontext
from importlib import util

import typer
import typer.core
import typer.main

from profilers.runtime import collector_paused
from profilers.errors import EdgesimError, EdgesimWarning

try:  # typer 0.2x bundles its own copy of click and raises that copy's exceptions, not the click package's
    from typer._click import exceptions as click_exceptions
except ImportError:  # older typer drives the click package itself
    from click import exceptions as click_exceptions

#: every command by name: (module, attribute, whether the attribute is a typer app of subcommands), in help order
COMMANDS: dict[str, tuple[str, str, bool]] = {
    "run": ("edgesim.cli.simulate", "run", False), "validate": ("edgesim.cli.simulate", "validate", False),
    "plot": ("edgesim.cli.simulate", "plot", False), "compare": ("edgesim.cli.simulate", "compare", False),
    "list": ("edgesim.cli.simulate", "list_", False), "schema": ("edgesim.cli.simulate", "schema", False),
    "profile": ("edgesim.cli.profile", "profile", False), "derive": ("edgesim.cli.profile", "derive", False),
    "testbed": ("edgesim.cli.testbed", "testbed", False), "dmd": ("edgesim.cli.dmd", "dmd_app", True),
    "distill": ("edgesim.cli.distill", "distill_app", True), "trace": ("edgesim.cli.trace", "trace_app", True),
}

#: Commands whose work is the simulator's: they run with the cycle collector paused (profilers.runtime says why);
#: commands that train or measure models keep it on.
WITHOUT_COLLECTOR = frozenset({"run", "validate", "plot", "compare", "list", "schema"})


@functools.cache
def _source_tree(module: str) -> ast.Module:
    """A module's syntax tree, parsed once (several commands live in one module)."""
    with open(util.find_spec(module).origin, encoding="utf-8") as source:
        return ast.parse(source.read())


def _declared_help(module: str, attribute: str) -> str:
    """A command's help read from its module's source, not imported: the function's docstring or the app's help=."""
    for node in _source_tree(module).body:
        if isinstance(node, ast.FunctionDef) and node.name == attribute:
            return ast.get_docstring(node) or ""
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and any(isinstance(t, ast.Name) and t.id == attribute for t in node.targets)):
            return next((ast.literal_eval(k.value) for k in node.value.keywords if k.arg == "help"), "")
    return ""


class _MountedOnUse(MutableMapping):
    """The root's commands by name, each built (its module imported) the first time it is looked up."""

    def __init__(self) -> None:
        self.built: dict = {}

    def __getitem__(self, name: str):
        if name not in self.built:
            if name not in COMMANDS:
                raise KeyError(name)
            module, attribute, is_group = COMMANDS[name]
            target = getattr(importlib.import_module(module), attribute)
            holder = typer.Typer(add_completion=False, rich_markup_mode=None)  # mounted as the root mounts it
            if is_group:
                holder.add_typer(target, name=name)
            else:
                holder.command(name)(target)
            self.built[name] = typer.main.get_group(holder).commands[name]
        return self.built[name]

    def __setitem__(self, name: str, command) -> None:
        self.built[name] = command

    def __delitem__(self, name: str) -> None:
        del self.built[name]

    def __iter__(self):
        return iter(dict.fromkeys([*COMMANDS, *self.built]))

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self.built))


class LazyCommands(typer.core.TyperGroup):
    """The root command group: a command's module (torch, numba, pandas behind it) is imported only when that command
    runs or its own help is asked; the root help reads the one-line summaries from source."""

    def __init__(self, **attrs) -> None:
        super().__init__(**attrs)
        self.commands = _MountedOnUse()

    def format_commands(self, ctx, formatter) -> None:
        limit = formatter.width - 6 - max(len(name) for name in self.commands)
        rows = [(name, (self.commands.built.get(name) or typer.core.TyperCommand(
            name, help=_declared_help(*COMMANDS[name][:2]))).get_short_help_str(limit)) for name in self.commands]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


#: plain click-style help: no boxes, and no '<bool>' or '<list[str]>' type labels beside the options
app = typer.Typer(cls=LazyCommands, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="edgesim: edge-cloud split-computing simulator with real-model profiling.")


def edgesim_version() -> str:
    """The installed edgesim package's version ('unknown' when run from a tree that is not installed)."""
    from importlib import metadata  # here, not at start-up: 50 ms that only --version needs

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
        with warnings.catch_warnings(), collector_paused() if args and args[0] in WITHOUT_COLLECTOR else nullcontext():
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
