"""No import circles among the studio modules, type-only imports (under ``TYPE_CHECKING``)
and imports inside functions included; and no panel module imports another panel.

The imports are read with ``ast`` from the source, so nothing is imported to check them."""

from __future__ import annotations

import ast
from pathlib import Path

import studio

ROOT = Path(studio.__file__).resolve().parent
# The modules that define docked panels (QWidgets taking a Host); their models, layouts and
# shared widgets (``*_model``, ``*_form``, ``staging``, ``fit``, ...) are not panels.
PANELS = {
    f"studio.ui.panels.{name}" for name in ("control", "generate", "inpaint", "models", "upscale")
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the studio modules it imports (``from pkg import mod`` counts as ``mod``)."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_circles_among_studio_modules():
    assert cycles(import_graph()) == []


def test_the_ui_is_free_of_circles_and_panels_import_no_panel():
    graph = import_graph()
    ui = {m: {d for d in deps if d.startswith("studio.ui")} for m, deps in graph.items()}
    assert cycles({m: deps for m, deps in ui.items() if m.startswith("studio.ui")}) == []
    assert "studio.ui.commands" in graph and "studio.ui.panels.generate" in graph
    for panel in PANELS:
        assert not (graph[panel] & (PANELS - {panel})), panel
    users = {m for m, deps in graph.items() if deps & PANELS and m not in PANELS}
    # Only the window shell (which docks them) and the package face know the panels.
    assert users <= {"studio.ui.docks", "studio.ui.main_window", "studio.ui.panels"}, users
