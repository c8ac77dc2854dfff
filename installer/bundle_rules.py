"""What the frozen app must carry besides its code: the rule the PyInstaller spec applies and
the bundle test checks.

Packages read files of their own at run time (``kernels`` its ``python_depends.json``,
transformers and diffusers their JSON tables, PySide6 its plugins) and their own or their
dependencies' versions through ``importlib.metadata``. Naming them one at a time breaks on the
next release that adds one, so the rule is: **every installed distribution that provides a
top-level package the app bundles contributes its metadata and every file of its package that
is neither code nor a build-time artefact.** Code (``.py``/``.pyc``) goes into the archive and
native libraries are PyInstaller's binaries; headers, sources, type stubs, CMake files and
test folders are never read by a running app.
"""

from __future__ import annotations

import importlib.metadata as md
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

# Suffixes that are code or native libraries (collected by PyInstaller's module and binary
# analysis) or only used to build against the package.
SKIP_SUFFIXES = frozenset(
    {
        ".py", ".pyc", ".pyo", ".pyi", ".pyx", ".pxd", ".pxi",  # code and stubs
        ".so", ".pyd", ".dll", ".dylib", ".lib", ".a", ".exp",  # native (binaries) and linking
        ".h", ".hh", ".hpp", ".hxx", ".cuh", ".inl", ".c", ".cc", ".cpp", ".cxx", ".cu",  # C/C++
        ".cmake", ".pc",  # build systems
    }
)  # fmt: skip
# Folders inside a package whose files only a build or a test run reads.
SKIP_PARTS = frozenset({"__pycache__", "include", "tests", "test", "testing", "cmake"})
# Native libraries with a version after the suffix (libfoo.so.1.2).
_VERSIONED_LIB = re.compile(r"\.so(\.\d+)+$")
# Executables and libraries without a telling suffix (Qt's tools, torch's bin/): ELF, PE and
# Mach-O (thin and fat) start with these bytes.
_NATIVE_MAGIC = (b"\x7fELF", b"MZ", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf",
                 b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")  # fmt: skip

# Distributions the frozen app never imports: test frameworks, linters, the bundler itself
# and packaging tools. The spec excludes their modules; the bundle test fails if one is there.
NOT_SHIPPED = (
    "pytest", "_pytest", "pytestqt", "pluggy", "iniconfig", "hypothesis", "sortedcontainers",
    "pytest_timeout", "ruff", "PyInstaller", "pyinstaller_hooks_contrib", "_pyinstaller_hooks_contrib",
    "altgraph", "pip", "onnx", "uv", "mutmut",
)  # fmt: skip


def top_level(names: Iterable[str]) -> set[str]:
    """The top-level package names of dotted module names."""
    return {n.split(".", 1)[0] for n in names if n and not n.startswith(".")}


def distributions_of(packages: Iterable[str]) -> dict[str, set[str]]:
    """``{distribution name: {top-level packages it provides}}`` for the installed
    distributions that provide any of ``packages`` (from their RECORD files)."""
    provides = md.packages_distributions()
    out: dict[str, set[str]] = {}
    for pkg in packages:
        for dist in provides.get(pkg, ()):
            out.setdefault(dist, set()).add(pkg)
    return out


def is_data_file(rel: PurePosixPath) -> bool:
    """A file of a package that a running app may read: not code, not native, not build-only."""
    if rel.suffix.lower() in SKIP_SUFFIXES or _VERSIONED_LIB.search(rel.name):
        return False
    if any(part in SKIP_PARTS or part.endswith((".dist-info", ".egg-info")) for part in rel.parts):
        return False
    return len(rel.parts) > 1  # a file at site-packages level belongs to no package


def data_files(dist: str, packages: Iterable[str]) -> list[tuple[Path, str]]:
    """``(source file, destination folder inside the bundle)`` for every data file that
    ``dist`` installs inside ``packages``, from the distribution's RECORD."""
    wanted = set(packages)
    d = md.distribution(dist)
    out = []
    for f in d.files or ():
        rel = PurePosixPath(str(f).replace("\\", "/"))
        if rel.parts and rel.parts[0] in wanted and is_data_file(rel):
            src = Path(d.locate_file(f))
            if src.is_file() and not _is_native(src):
                out.append((src, str(rel.parent)))
    return out


def _is_native(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4).startswith(_NATIVE_MAGIC)


def metadata_folder(dist: str) -> str | None:
    """The name of ``dist``'s ``.dist-info`` folder (what ``copy_metadata`` puts in the bundle)."""
    d = md.distribution(dist)
    path = getattr(d, "_path", None)
    return Path(path).name if path is not None else None
