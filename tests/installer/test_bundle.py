"""Build the PyInstaller bundle and smoke-test the frozen app with `--selftest`, offscreen.

Slow (minutes, several GB: torch's CUDA libraries are bundled for users with GPUs), but it is
the only test that proves the shipped app starts: it runs in CI. Set STUDIO_SKIP_BUNDLE=1 to
skip it locally."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "installer"))
from bundle_rules import NOT_SHIPPED, data_files, distributions_of, metadata_folder  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("STUDIO_SKIP_BUNDLE") == "1", reason="STUDIO_SKIP_BUNDLE=1"),
]


def _run_group(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; on timeout kill the whole group (build.py's
    PyInstaller child would otherwise be left running, orphaned, after the test failed)."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # Windows: no process groups here
            proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"bundle build still running after {timeout:.0f} s: {err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.timeout(3000)
def test_bundle_builds_and_selftest_passes(tmp_path):
    pytest.importorskip("PyInstaller", reason="pip install -e '.[test]' installs PyInstaller")
    need = 12 * 2**30
    if shutil.disk_usage(tmp_path).free < need:
        if os.environ.get("CI"):  # on CI a missing piece fails, it never passes as a skip
            pytest.fail("CI machine has less than 12 GiB free disk for the bundle")
        pytest.skip("needs ~12 GiB free disk for the bundle")
    dist, work = tmp_path / "dist", tmp_path / "work"
    build = _run_group(
        [
            sys.executable,
            str(ROOT / "installer" / "build.py"),
            "--console",
            "--no-archive",
            "--dist",
            str(dist),
            "--work",
            str(work),
        ],
        timeout=2400,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    size_line = next(ln for ln in build.stdout.splitlines() if ln.startswith("bundle:"))
    print(size_line)  # the bundle size, reported in the test log (-rA / -s)

    app = dist / "studio"
    exe = app / ("studio.exe" if sys.platform == "win32" else "studio")
    assert exe.exists()
    # The portable models folder sits next to the executable (users drop models beside the
    # app), with catalog.toml, configs/ and one README'd folder per kind; resources/ is bundled.
    from studio.core.paths import MODEL_FOLDERS

    models = app / "models"
    assert (models / "catalog.toml").is_file() and (models / "configs" / "README.md").is_file()
    for kind in MODEL_FOLDERS:
        assert (models / kind / "README.md").is_file(), kind
    assert not (app / "_internal" / "models").exists()
    assert any((app / sub / "resources" / "icon.png").is_file() for sub in ("", "_internal"))
    imports = tmp_path / "frozen-imports.txt"
    env = dict(
        os.environ, QT_QPA_PLATFORM="offscreen", STUDIO_DEVICE="cpu", HF_HUB_OFFLINE="1",
        STUDIO_SELFTEST_IMPORTS=str(imports), STUDIO_HOME=str(tmp_path / "home"),
    )  # fmt: skip
    env.pop("PYTHONPATH", None)
    run = subprocess.run(
        [str(exe), "--selftest"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "studio selftest: OK (generate, inpaint, upscale, inpaint LaMa, inpaint SD, flow, GUI;" in out, out[-3000:]  # fmt: skip
    internal = app / "_internal"
    _check_packages_carried(imports.read_text().split(), internal)
    _check_nothing_unshipped(exe, internal)
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, env=env)
    assert version.stdout.strip().startswith("studio ")
    # The frozen app keeps the CLI's contract: bad input is one line and exit 2.
    bad = subprocess.run(
        [str(exe), "info", str(tmp_path / "missing.png")], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    shutil.rmtree(dist, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)


def test_selftest_in_process():
    """The same self-test, run from the source tree (fast; what the bundle test checks)."""
    from studio.selftest import run_selftest

    assert run_selftest() == 0


def _check_packages_carried(imported: list[str], internal: Path) -> None:
    """Every distribution behind a package the frozen app imported has its metadata and
    every data file of its installed package (from its RECORD) in the bundle."""
    dists = distributions_of(imported)
    assert "transformers" in dists and "diffusers" in dists, sorted(dists)
    try:
        from importlib.metadata import version

        version("kernels")
    except Exception:  # noqa: BLE001 - kernels not installed: transformers cannot pull it in
        pass
    else:
        assert "kernels" in dists, "transformers imports kernels; the frozen run did not"
    missing: dict[str, list[str]] = {}
    for dist, pkgs in sorted(dists.items()):
        lost = []
        meta = metadata_folder(dist)
        if meta is not None and not any((internal / meta).glob("*")):
            lost.append(f"{meta}/")
        for src, dest in data_files(dist, pkgs):
            if not (internal / dest / src.name).is_file():
                lost.append(f"{dest}/{src.name}")
        if lost:
            missing[dist] = lost
    assert not missing, "package files missing from the bundle: " + "; ".join(
        f"{dist} ({len(lost)}: {', '.join(lost[:3])})" for dist, lost in missing.items()
    )


def _check_nothing_unshipped(exe: Path, internal: Path) -> None:
    """Test frameworks, linters, the bundler and packaging tools are not in the bundle:
    neither as modules in the archive nor as folders beside it."""
    from PyInstaller.archive.readers import pkg_archive_contents

    modules = set(pkg_archive_contents(str(exe)))
    base = internal / "base_library.zip"
    if base.is_file():
        import zipfile

        modules |= {n.rsplit(".", 1)[0].replace("/", ".") for n in zipfile.ZipFile(base).namelist()}
    tops = {m.split(".", 1)[0] for m in modules}
    assert "studio" in tops and "torch" in tops, sorted(tops)[:50]  # the listing is the archive's
    shipped = sorted(n for n in NOT_SHIPPED if n in tops or (internal / n).exists())
    assert not shipped, f"not for the frozen app, but in the bundle: {shipped}"
