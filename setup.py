"""Package layout for setuptools; everything else is in pyproject.toml.

``resources/`` and ``models/`` sit at the top of the tree beside ``studio/`` (where a source
checkout, an editable install and the PyInstaller bundle use them). A wheel carries them inside
the package as ``studio/_shipped/{resources,models}``, where ``studio.core.paths`` finds them.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
SHIPPED = {"studio._shipped.resources": "resources", "studio._shipped.models": "models"}


def _data_folders(package: str, folder: str) -> list[str]:
    """Every subfolder with an importable name as a (data-only) package: the files come from
    the parent's ``**/*`` glob; listing the folders keeps setuptools from warning, once per
    folder, that it sees an importable package it was not told about."""
    out = []
    for sub in sorted((ROOT / folder).rglob("*")):
        rel = sub.relative_to(ROOT / folder)
        if sub.is_dir() and "__pycache__" not in rel.parts and all(p.isidentifier() for p in rel.parts):  # fmt: skip
            out.append(".".join((package, *rel.parts)))
    return out


setup(
    packages=find_packages(include=["studio", "studio.*"])
    + [name for pkg, folder in SHIPPED.items() for name in (pkg, *_data_folders(pkg, folder))],
    package_dir=SHIPPED,
    package_data={name: ["**/*"] for name in SHIPPED},
    exclude_package_data={name: ["**/__pycache__/*"] for name in SHIPPED},
)
