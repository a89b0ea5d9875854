"""numba's on-disk cache of the simulator's kernels is stamped with every compiled module's source (simulator.jit):
an edit of a module a kernel imports recompiles it; an edit elsewhere does not."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from simulator import jit

ROOT = Path(__file__).resolve().parent.parent

_RUN = """
import json
from simulator.kern import f
print(json.dumps({"value": f(1), "hits": sum(f.stats.cache_hits.values()), "misses": sum(f.stats.cache_misses.values())}))
"""


def _package(tmp: Path) -> Path:
    """A package named simulator with the real jit.py, a kernel, the module it reads a constant from, another one."""
    pkg = tmp / "simulator"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    shutil.copy(ROOT / "simulator" / "jit.py", pkg / "jit.py")
    (pkg / "dep.py").write_text("K = 1\n")
    (pkg / "other.py").write_text("Z = 1\n")
    (pkg / "kern.py").write_text("from simulator.dep import K\nfrom simulator.jit import njit\n\n\n"
                                 "@njit(cache=True)\ndef f(x):\n    return x + K\n")
    return pkg


def _run(tmp: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", _RUN], cwd=tmp, capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp), "PATH": "/usr/bin:/bin", "NUMBA_CACHE_DIR": ""})
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_an_edit_of_an_imported_module_recompiles_and_one_elsewhere_does_not(tmp_path):
    pkg = _package(tmp_path)
    assert _run(tmp_path) == {"value": 2, "hits": 0, "misses": 1}
    assert _run(tmp_path) == {"value": 2, "hits": 1, "misses": 0}  # cached
    (pkg / "other.py").write_text("Z = 2\n")
    assert _run(tmp_path) == {"value": 2, "hits": 1, "misses": 0}  # not a compiled module's import: still cached
    (pkg / "dep.py").write_text("K = 2\n")  # numba's own check (kern.py unchanged) would load f with K = 1
    assert _run(tmp_path) == {"value": 3, "hits": 0, "misses": 1}


def test_the_digest_covers_compiled_modules_and_their_imports_only(tmp_path):
    pkg = _package(tmp_path)
    assert [p.name for p in jit.compiled_sources(pkg)] == ["dep.py", "jit.py", "kern.py"]
    before = jit.sources_digest(pkg)
    (pkg / "other.py").write_text("Z = 3\n")
    assert jit.sources_digest(pkg) == before
    (pkg / "dep.py").write_text("K = 3\n")
    assert jit.sources_digest(pkg) != before


def test_the_simulator_kernels_carry_the_digest():
    from simulator.loop.events import run_events

    locator = run_events._cache._impl.locator
    assert type(locator) in jit.STAMPED
    assert locator.get_source_stamp()[1] == jit.sources_digest()
    names = {str(p.relative_to(jit.ROOT)) for p in jit.compiled_sources()}
    assert {"loop/events.py", "loop/heap.py", "loop/layout.py", "plan.py", "groupsum.py"} <= names
    assert not names & {"metrics.py", "results.py", "frames.py", "scenario.py"}


def test_no_compiled_function_calls_itself():
    """numba can crash loading a recursive function from its cache (numba issue #6061, open; seen here once):
    no @njit function in the package calls itself."""
    import ast

    recursive = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any("jit" in ast.unparse(d) for d in node.decorator_list):
                if any(isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == node.name
                       for c in ast.walk(node)):
                    recursive.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert recursive == []
