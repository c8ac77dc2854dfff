"""installer/build.py without the ``bundle`` extra: one line naming the extra, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WITHOUT_PYINSTALLER = (
    "import runpy, sys\n"
    "sys.modules['PyInstaller'] = None\n"
    "sys.argv = ['installer/build.py', '--no-archive']\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def test_build_without_pyinstaller_names_the_extra(tmp_path):
    r = subprocess.run(
        [sys.executable, "-c", WITHOUT_PYINSTALLER],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install -e ".[bundle]"' in lines[0], r.stderr
    assert r.stdout == ""  # PyInstaller was never started
