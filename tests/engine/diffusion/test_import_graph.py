"""No import circles inside studio.engine.diffusion: every import, at module level or inside
a function, points one way (route -> the sd/ and flow/ tracks -> shared/ -> families/), and
neither track imports the other."""

from __future__ import annotations

import ast
from pathlib import Path

import studio.engine.diffusion as diffusion

PKG = "studio.engine.diffusion"
ROOT = Path(diffusion.__file__).parent


def _graph() -> dict[str, set[str]]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join((PKG, *rel)).removesuffix(".__init__")
        mods[name] = path
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t in mods and t != name and t != PKG:
                    graph[name].add(t)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_circles_in_diffusion():
    graph = _graph()
    assert f"{PKG}.shared.crop" in graph[f"{PKG}.route"]  # the checker sees real edges
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_tracks_import_shared_pieces_not_each_other():
    graph = _graph()
    rooms = {"sd": "flow", "flow": "sd"}
    crossing = [
        (name, dep)
        for name, deps in graph.items()
        for dep in deps
        for room, other in rooms.items()
        if name.startswith(f"{PKG}.{room}.") and dep.startswith(f"{PKG}.{other}")
    ]
    shared_up = [
        (name, dep)
        for name, deps in graph.items()
        if name.startswith(f"{PKG}.shared")
        for dep in deps
        if dep.startswith((f"{PKG}.sd", f"{PKG}.flow", f"{PKG}.route"))
    ]
    assert f"{PKG}.shared.lora" in graph[f"{PKG}.flow.generate"]  # real edges are seen
    assert crossing == [] and shared_up == [], (crossing, shared_up)


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
