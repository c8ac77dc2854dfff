"""Every import declared: each module under ``studio/`` imports on the installed environment,
each layer without the layers it must not use, and every third-party name the code imports
(at the top of a module or inside a function) belongs to a distribution that pyproject.toml
declares, as a dependency or in an extra.

In CI (`.ci/run`) this runs in a virtualenv that holds only what pyproject declares, so an
undeclared dependency fails here instead of on a user's machine."""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "studio"

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def all_modules() -> list[str]:
    """Dotted names of every module in the source tree (``studio._shipped`` exists in wheels
    only and holds no code)."""
    names = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        if "_shipped" in parts or "__pycache__" in parts:
            continue
        names.append(".".join(parts))
    return names


def _layer(name: str) -> str:
    for prefix in ("studio.core", "studio.engine", "studio.ui", "studio.cli"):
        if name == prefix or name.startswith(prefix + "."):
            return prefix.split(".")[1]
    return "top"


# Blocked: sys.modules[name] = None makes any import of it raise ImportError.
BLOCKED = {
    "core": ("torch", "diffusers", "transformers", "spandrel", "PySide6"),
    "engine": ("PySide6",),
    "ui": ("torch", "diffusers", "transformers", "spandrel", "safetensors", "accelerate"),
    "cli": ("PySide6",),  # the headless commands need no Qt (`studio open` imports it late)
    "top": (),
}

IMPORT_ALL = """
import importlib, sys, traceback
for name in {blocked!r}:
    sys.modules[name] = None
bad = []
for name in {modules!r}:
    try:
        importlib.import_module(name)
    except BaseException as e:
        bad.append(name + ": " + traceback.format_exception_only(type(e), e)[-1].strip())
print("IMPORTED", len({modules!r}) - len(bad))
for line in bad:
    print("FAILED", line)
sys.exit(1 if bad else 0)
"""


def test_module_list_covers_every_layer():
    layers = {_layer(n) for n in all_modules()}
    assert layers == {"core", "engine", "ui", "cli", "top"}
    assert "studio.engine.vision.dwpose" in all_modules()


@pytest.mark.parametrize("layer", ["core", "engine", "ui", "cli", "top"])
def test_every_module_imports(layer):
    modules = [n for n in all_modules() if _layer(n) == layer]
    assert modules
    code = IMPORT_ALL.format(blocked=BLOCKED[layer], modules=modules)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert f"IMPORTED {len(modules)}" in r.stdout


def _norm(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return {_norm(re.match(r"[A-Za-z0-9_.-]+", r).group(0)) for r in reqs}


def imported_top_names() -> dict[str, str]:
    """Top-level module name -> one file importing it, for every absolute import anywhere in
    studio/ (function bodies included: a lazy import is still a dependency)."""
    found: dict[str, str] = {}
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_declared():
    providers = md.packages_distributions()  # import name -> distributions providing it
    declared = declared_distributions()
    # PySide6-Essentials provides the PySide6 import name (shiboken6 comes with it).
    assert "pyside6-essentials" in declared
    missing = []
    for name, where in sorted(imported_top_names().items()):
        if name in sys.stdlib_module_names or name in ("studio", "__future__"):
            continue
        dists = {_norm(d) for d in providers.get(name, [])}
        if _norm(name) in declared:  # e.g. tomli, declared for Python < 3.11 only
            continue
        if not dists:
            missing.append(f"{name} (imported in {where}) is not installed at all")
        elif not dists & declared:
            missing.append(f"{name} (imported in {where}) comes from {sorted(dists)}, not declared")
    assert not missing, "undeclared imports:\n" + "\n".join(missing)


def test_optional_extras_are_declared_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert any(_norm(r).startswith("onnxruntime") for r in extras["pose"])
    assert any(_norm(r).startswith("pyinstaller") for r in extras["bundle"])
    core = " ".join(project["dependencies"]).lower()
    assert "onnxruntime" not in core and "pyinstaller" not in core


if __name__ == "__main__":  # pragma: no cover - a quick listing for humans
    print(textwrap.indent("\n".join(all_modules()), "  "))
