"""The folders show the layers: profilers <- simulator <- edgesim, checked over every module's syntax tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"profilers": 0, "simulator": 1, "edgesim": 2}
FORBIDDEN_IN_PROFILERS = ("simulator", "edgesim", "typer", "rich")


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported module, inside a function or class body) for every absolute import of a file."""
    out = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree)  # `if TYPE_CHECKING:` imports are annotations, never run
                   if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, node.col_offset > 0) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module, node.col_offset > 0))
    return out


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("profilers"), ids=lambda p: str(p.relative_to(ROOT)))
def test_profilers_import_neither_the_simulator_nor_the_cli(path):
    bad = [(line, mod) for line, mod, _ in _imports(path) if mod.split(".")[0] in FORBIDDEN_IN_PROFILERS]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_packages_import_only_their_own_layer_or_lower():
    upward = []
    for package, level in LAYERS.items():
        for path in _modules(package):
            for line, mod, _ in _imports(path):
                top = mod.split(".")[0]
                if top in LAYERS and LAYERS[top] > level:
                    upward.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not upward, "\n".join(upward)


def test_no_import_cycle_between_subpackages():
    """Edges between subpackages (profilers.models, simulator.policies, edgesim.studies.dmd, ...) form no cycle."""
    def unit(mod: str) -> str:
        parts = mod.split(".")
        return ".".join(parts[:3] if parts[:2] == ["edgesim", "studies"] else parts[:2])

    edges: dict[str, set[str]] = {}
    for package in LAYERS:
        for path in _modules(package):
            rel = path.relative_to(ROOT).with_suffix("")
            here = unit(".".join(p for p in rel.parts if p != "__init__"))
            for _, mod, _ in _imports(path):
                if mod.split(".")[0] in LAYERS and mod.split(".")[1:2] and unit(mod) != here:
                    edges.setdefault(here, set()).add(unit(mod))
    # a package's __init__ (simulator) and its modules (simulator.runner) are separate units; only module-level
    # units count: drop edges to a bare package name that is only its re-exports
    seen, stack, cycle = set(), [], []

    def visit(node: str) -> bool:
        if node in stack:
            cycle.extend(stack[stack.index(node):] + [node])
            return True
        if node in seen:
            return False
        seen.add(node)
        stack.append(node)
        found = any(visit(nxt) for nxt in sorted(edges.get(node, ())))
        stack.pop()
        return found

    assert not any(visit(n) for n in sorted(edges)), " -> ".join(cycle)


def test_imports_inside_functions_still_go_one_way():
    """Own modules imported inside functions (lazily, so `edgesim -h` starts without torch, numba or plotly: issue 26)
    obey the layers as top-level imports do: profilers never imports simulator or edgesim, simulator never edgesim."""
    lower = {"profilers": ("simulator", "edgesim"), "simulator": ("edgesim",), "edgesim": ()}
    wrong = [f"{p.relative_to(ROOT)}:{line} {mod}" for package in LAYERS for p in _modules(package)
             for line, mod, nested in _imports(p) if nested and mod.split(".")[0] in lower.get(package, ())]
    assert not wrong, "\n".join(wrong)
