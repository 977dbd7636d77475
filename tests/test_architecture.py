"""The layout keeps its promises: no import cycles (counting imports inside functions), the loop
never imports the report, the report and the store never import model code, the public API is
what the README shows."""
from __future__ import annotations

import ast
from pathlib import Path

import activeloss

PACKAGE = Path(activeloss.__file__).parent


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """module -> the activeloss modules it imports anywhere (type-checking-only imports excluded)."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = package.split(".")
                if node.level:
                    base = base[: len(base) - node.level + 1]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
            found |= {t for t in targets if t.startswith("activeloss") and t != name}
        graph[name] = {t for t in found if t in modules}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _ancestors_are_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop the edges from a package's __init__ to its own submodules and back (a package that
    collects its parts is not a cycle between modules)."""
    return {m: {t for t in ts if not (t.startswith(m + ".") or m.startswith(t + "."))} for m, ts in graph.items()}


def test_no_import_cycles():
    assert _cycles(_ancestors_are_packages(_imports())) == []


def test_the_loop_never_imports_the_report_and_the_report_no_model_code():
    graph = _imports()
    reach: dict[str, set[str]] = {}

    def closure(m: str) -> set[str]:
        if m not in reach:
            reach[m] = set()
            for t in graph.get(m, ()):
                reach[m] |= {t} | closure(t)
        return reach[m]

    for m in graph:
        if m.startswith("activeloss.loop"):
            assert not {t for t in closure(m) if t.startswith("activeloss.report")}, m
    for m in ("activeloss.store", "activeloss.report.tables", "activeloss.report.collect"):
        assert not {t for t in closure(m) if t.split(".")[1] in ("models", "loop", "trainer", "objectives")}, m


def test_the_public_api():
    for name in ("Learner", "Experiment", "run", "Dataset", "Task", "Settings", "TASKS", "MODELS", "READERS",
                 "OBJECTIVES", "ACQUISITIONS", "STRATEGIES", "register_acquisition", "ScoreAcquisition"):
        assert hasattr(activeloss, name), name
    assert set(activeloss.__all__) <= set(dir(activeloss))


def test_the_labeling_server_sits_on_the_project_and_nothing_below_imports_either():
    graph = _imports()
    for m, targets in graph.items():
        if not m.startswith(("activeloss.label", "activeloss.cli", "activeloss.project.cli")):
            assert not {t for t in targets if t.startswith("activeloss.label")}, m
        if m.startswith(("activeloss.loop", "activeloss.store", "activeloss.report", "activeloss.data")):
            assert not {t for t in targets if t.startswith("activeloss.project")}, m
