"""The shape of the package: the core is sans-I/O, and no module imports itself back.

Each check reads the source (every import, including deferred ones and those under
``TYPE_CHECKING``) or imports the core in a fresh interpreter, so a new module that
breaks the layering fails here before anyone has to notice it in a review.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pyflowmesh"
CORE = PACKAGE / "core"
# Directories whose modules must form no import circle.
FOLDERS = ("pyflowmesh", "bench", "web", "tools")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "vendor" in path.parts:
                continue
            found[_module_name(path)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of ``known`` that ``path`` (module ``name``) imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            targets.add(module)
            targets.update(f"{module}.{alias.name}" for alias in node.names)
    found = set()
    for target in targets:
        while target and target not in known:  # "pyflowmesh.core.wire.Result" -> "pyflowmesh.core.wire"
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_import_circle_anywhere() -> None:
    graph = _graph()
    # A package's __init__ re-exporting its submodules is not a circle of the design.
    edges = {m: {t for t in targets if not m.startswith(f"{t}.")} for m, targets in graph.items()}
    circles = sorted({tuple(sorted((m, t))) for m, targets in edges.items() for t in targets
                      if m in _reachable(edges, t) and not t.startswith(f"{m}.")})
    assert not circles, f"import circles: {circles}"


def test_the_core_imports_neither_asyncio_nor_js_nor_the_runtime() -> None:
    graph = _graph()
    forbidden = {"asyncio", "js", "pyodide", "pyflowmesh.mesh", "pyflowmesh.flow",
                 "pyflowmesh.transports", "pyflowmesh.testing", "pyflowmesh.simulation"}
    for path in sorted(CORE.glob("*.py")):
        name = _module_name(path)
        source = path.read_text(encoding="utf-8")
        direct = {n.names[0].name if isinstance(n, ast.Import) else (n.module or "")
                  for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.Import, ast.ImportFrom))}
        assert not {d.split(".")[0] for d in direct} & {"asyncio", "js", "pyodide"}, name
        inside = {m for m in _reachable(graph, name) if m.startswith("pyflowmesh")}
        bad = {m for m in inside for f in forbidden if m == f or m.startswith(f"{f}.")}
        assert not bad, f"{name} reaches {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(_module_name(p) for p in CORE.glob("*.py")))
def test_importing_a_core_module_loads_no_asyncio(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in ('asyncio', 'js', 'pyodide') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"{module} loads {out.stdout.strip()}"


def test_the_public_names_still_load_the_runtime_on_first_use() -> None:
    code = ("import sys, pyflowmesh; assert 'asyncio' not in sys.modules; "
            "from pyflowmesh import use_flow, FlowMesh, Flow, FlowStatus; print(use_flow.__module__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "pyflowmesh.flow"


def test_a_page_that_neither_polls_nor_persists_never_loads_those_modules() -> None:
    # The browser pays for every module a page imports (issue 10, item 7): polling (and the
    # stream driver it rides on) and persistence load with the first flow that asks for them.
    code = ("import sys; from pyflowmesh import use_flow, FlowMesh; "
            "print(sorted(m for m in ('pyflowmesh.polling', 'pyflowmesh.stream', 'pyflowmesh.persist') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    code = ("import sys; from pyflowmesh import use_flow; "
            "use_flow(lambda: 1, key='status', polling={'interval': 1000}, persist_key='status'); "
            "print(sorted(m for m in ('pyflowmesh.polling', 'pyflowmesh.stream', 'pyflowmesh.persist') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['pyflowmesh.persist', 'pyflowmesh.polling', 'pyflowmesh.stream']"
