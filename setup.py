"""Package layout for setuptools; everything else is in pyproject.toml.

``resources/`` and ``models/`` sit at the top of the tree beside ``studio/`` (where a source
checkout, an editable install and the PyInstaller bundle use them). A wheel carries them inside
the package as ``studio/_shipped/{resources,models}``, where ``studio.core.paths`` finds them.
"""

from setuptools import find_packages, setup

SHIPPED = {"studio._shipped.resources": "resources", "studio._shipped.models": "models"}

setup(
    packages=find_packages(include=["studio", "studio.*"]) + list(SHIPPED),
    package_dir=SHIPPED,
    package_data={name: ["**/*"] for name in SHIPPED},
    exclude_package_data={name: ["**/__pycache__/*"] for name in SHIPPED},
)
