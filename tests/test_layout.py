"""The design card's layout: the top level holds pyproject.toml, studio/,
resources/, models/, tests/, installer/, README.md; models/ holds catalog.toml, configs/ and
the portable models folder (one README'd subfolder per kind); a wheel carries resources/ and
models/ inside the package and studio.core.paths finds them there. (The PyInstaller bundle:
tests/installer/test_bundle.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from studio.core import paths

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("checkpoints", "loras", "vae", "controlnet", "upscale_models", "inpaint", "pose", "embeddings", "segment", "depth", "facerestore_models", "facedetection")  # fmt: skip


def test_top_level_layout():
    for name in ("pyproject.toml", "README.md"):
        assert (ROOT / name).is_file(), name
    for name in ("studio", "resources", "models", "tests", "installer"):
        assert (ROOT / name).is_dir(), name
    assert not (ROOT / "studio" / "models").exists()  # moved to the top level
    assert not (ROOT / "studio" / "resources").exists()


def test_resources_and_models_content():
    res = ROOT / "resources"
    for name in ("icon.png", "icon.svg", "dark.qss", "light.qss", "desktop/studio.desktop", "desktop/studio-mime.xml"):  # fmt: skip
        assert (res / name).is_file(), name
    models = ROOT / "models"
    assert (models / "catalog.toml").is_file()
    assert (models / "configs" / "README.md").is_file()
    assert any((models / "configs").glob("sd15/**/*.json"))
    assert tuple(paths.MODEL_FOLDERS) == KINDS
    for kind in KINDS:
        readme = models / kind / "README.md"
        assert readme.is_file(), kind
        assert len(readme.read_text().strip()) > 20, kind


def test_checkout_finds_the_top_level_folders():
    assert paths.resources_dir() == ROOT / "resources"
    assert paths.shipped_models_dir() == ROOT / "models"
    assert paths.configs_dir() == ROOT / "models" / "configs"
    assert paths.portable_models_dir() == ROOT / "models"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (so no build/ or egg-info lands in the
    checkout) with the setuptools already installed (no network, no build isolation)."""
    pytest.importorskip("setuptools", minversion="77")  # pyproject's build-system needs it
    src = tmp_path_factory.mktemp("wheel-src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("studio", "resources", "models"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (whl,) = out.glob("studio-*.whl")
    return whl


def test_wheel_carries_resources_and_models(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "studio/_shipped/resources/icon.png" in names
    assert "studio/_shipped/resources/desktop/studio.desktop" in names
    assert "studio/_shipped/models/catalog.toml" in names
    assert "studio/_shipped/models/configs/README.md" in names
    assert any(n.startswith("studio/_shipped/models/configs/sd15/") for n in names)
    for kind in KINDS:
        assert f"studio/_shipped/models/{kind}/README.md" in names, kind
    assert "studio/engine/fixtures/tiny_models.py" in names  # the self-test's fixtures ship
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]
    assert not [n for n in names if n.startswith(("resources/", "models/"))]  # not top-level


FIND = """
import sys
from studio.core import paths
from studio.core.catalog import load_catalog
print("PKG", paths.__file__)
print("RES", paths.resources_dir())
print("MODELS", paths.shipped_models_dir())
print("CONFIGS", paths.configs_dir())
print("PORTABLE", paths.portable_models_dir())
print("CATALOG", len(load_catalog()))
"""


def test_paths_find_the_shipped_folders_in_a_wheel_install(wheel, tmp_path):
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    env = dict(os.environ, PYTHONPATH=str(site), STUDIO_HOME=str(tmp_path / "home"))
    # -S: no site-packages, so neither the checkout nor an editable install can answer.
    r = subprocess.run(
        [sys.executable, "-S", "-c", FIND],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    got = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    shipped = site / "studio" / "_shipped"
    assert Path(got["PKG"]).is_relative_to(site)
    assert Path(got["RES"]) == shipped / "resources"
    assert Path(got["MODELS"]) == shipped / "models"
    assert Path(got["CONFIGS"]) == shipped / "models" / "configs"
    assert Path(got["PORTABLE"]) == shipped / "models"
    assert int(got["CATALOG"]) > 5
