"""No import cycle among slimkit's modules at module level (imports inside functions and under
`if TYPE_CHECKING:` do not run at import time and are not counted): a cycle makes the import
order matter and breaks as soon as one side needs a name at import time."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "slimkit"


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _top_imports(body: list[ast.stmt]):
    """Import statements that run when the module is imported (also inside top-level
    if / try / with blocks, not in functions or classes' methods)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)) and not _type_checking(node):
            for block in ("body", "orelse", "finalbody"):
                yield from _top_imports(getattr(node, block, []) or [])
            for h in getattr(node, "handlers", []):
                yield from _top_imports(h.body)


def import_graph() -> dict[str, set[str]]:
    """module -> slimkit modules it imports at module level."""
    files = {_module(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        deps: set[str] = set()
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in _top_imports(ast.parse(path.read_text()).body):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in files)
                continue
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            if not name.startswith("slimkit"):
                continue
            for a in node.names:  # `from pkg import submodule` imports the submodule
                deps.add(f"{name}.{a.name}" if f"{name}.{a.name}" in files else name)
        graph[mod] = {d for d in deps if d in files and d != mod}
    return graph


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same graph between slimkit's top-level packages (slimkit.graph, slimkit.metrics,
    ...; a top-level module is its own node)."""
    def top(m: str) -> str:
        return ".".join(m.split(".")[:2])

    out: dict[str, set[str]] = {}
    for a, deps in graph.items():
        if a == "slimkit":
            continue  # the root package's own lazy re-exports
        out.setdefault(top(a), set()).update(top(d) for d in deps if top(d) != top(a)
                                             and d != "slimkit")
    return out


def test_no_module_level_import_cycle_between_packages():
    cycles = _strongly_connected(_packages(import_graph()))
    assert not cycles, f"package-level import cycles: {cycles}"


def test_no_module_level_import_cycle_between_modules():
    cycles = _strongly_connected(import_graph())
    assert not cycles, f"module-level import cycles: {cycles}"


def test_the_checker_sees_a_cycle(tmp_path):
    g = {"slimkit.a.x": {"slimkit.b.y"}, "slimkit.b.y": {"slimkit.a.x"}, "slimkit.c": set()}
    assert _strongly_connected(_packages(g)) == [["slimkit.a", "slimkit.b"]]
    assert _strongly_connected(g) == [["slimkit.a.x", "slimkit.b.y"]]
