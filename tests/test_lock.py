"""The lock: README's set-up command installs requirements.lock, `.ci/run` runs that command,
the lock pins every declared dependency inside pyproject's ranges, and on CI the installed
environment is exactly the lock."""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SETUP = 'pip install -r requirements.lock -e ".[test]"'


def _lock(path: Path | None = None) -> list[Requirement]:
    reqs = []
    # tools/update-lock.sh tests a candidate lock before it becomes requirements.lock.
    path = path or Path(os.environ.get("STUDIO_LOCK") or ROOT / "requirements.lock")
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            reqs.append(Requirement(line))
    return reqs


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]  # fmt: skip


def _pinned_here(path: Path | None = None) -> dict[str, str]:
    """The lock's row for this interpreter and platform: {name: version}."""
    out = {}
    for r in _lock(path):
        if r.marker is None or r.marker.evaluate():
            (spec,) = r.specifier
            assert spec.operator == "==", f"{r.name}: the lock pins, it does not range ({spec})"
            out[canonicalize_name(r.name)] = spec.version
    return out


def test_readme_setup_is_the_lock_and_ci_runs_it():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Setup, launch, tests.*?```bash\n(.*?)```", readme, re.S)
    assert block and block.group(1).splitlines()[0].startswith(SETUP), "README's setup command"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    installs = [ln.strip() for ln in ci.splitlines() if re.match(r"\s*python -m pip install", ln)]
    # CI installs pip itself, then exactly the README's command (quietly; STUDIO_LOCK defaults
    # to the README's file).
    last = installs[-1].replace('"${STUDIO_LOCK:-requirements.lock}"', "requirements.lock")
    assert last.replace(" -q ", " ") == f"python -m {SETUP}", last
    assert all("torch" not in ln for ln in installs), "torch comes from the lock, not a second command"  # fmt: skip


def test_lock_pins_every_declared_dependency_within_pyproject_ranges():
    pinned = _pinned_here()
    for req in _declared():
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is declared in pyproject but not in the lock"
        assert req.specifier.contains(pinned[name], prereleases=True), (
            f"the lock's {req.name}=={pinned[name]} is outside pyproject's range {req.specifier}"
        )


def test_pyproject_keeps_ranges():
    exact = [str(r) for r in _declared() if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not exact, f"pyproject pins exact versions (the lock's job): {exact}"


def test_lock_has_the_packages_transformers_needs_today():
    """transformers 5.25 requires kernels, which reads its own data files at import (the
    bundle must carry them): both are in today's lock for Python >= 3.11."""
    rows = {
        canonicalize_name(r.name): r for r in _lock() if r.marker is None or r.marker.evaluate()
    }
    if sys.version_info >= (3, 11):
        assert "kernels" in rows and rows["transformers"].specifier.contains("5.25.0")


def test_installed_environment_is_the_lock():
    """Run inside .ci/run's virtualenv: every locked package is installed at its locked version
    (the lock .ci/run installed: STUDIO_LOCK while tools/update-lock.sh tries a candidate).
    Elsewhere (a developer's own environment) a difference is reported as a skip; on CI it fails."""
    installed_from = Path(os.environ["STUDIO_LOCK"]) if os.environ.get("STUDIO_LOCK") else None
    wrong = []
    for name, version in sorted(_pinned_here(installed_from).items()):
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            have = None
        # A local build label (torch 2.14.1+cu126 from the PyTorch index) satisfies ==2.14.1.
        if have is None or have.split("+", 1)[0] != version:
            wrong.append(f"{name}: locked {version}, installed {have}")
    if wrong and not os.environ.get("CI"):
        pytest.skip("this environment is not the lock's: " + "; ".join(wrong[:5]))
    assert not wrong, "; ".join(wrong)
