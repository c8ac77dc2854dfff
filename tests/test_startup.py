"""Start-up: the first frame is painted before the window module (and its
PySide6 enum-heavy imports) and before torch are imported; the real window then replaces it
with the same title and geometry. benchmarks/bench_startup.py measures the time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import sys
import studio.app as app
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

made = app._startup_frame

def frame(settings):
    f = made(settings)
    def first_paint():  # queued before app.main's build step, so it runs first
        mods = sys.modules
        print("FIRST", f.isVisible(), f.windowTitle(), "studio.ui.main_window" in mods,
              "torch" in mods, flush=True)
    QTimer.singleShot(0, first_paint)
    return f

app._startup_frame = frame
code = app.main([])
print("WINDOWS", sorted(w.windowTitle() for w in QApplication.topLevelWidgets() if w.isVisible()))
sys.exit(code)
"""


def test_first_frame_before_the_window_module_and_torch(tmp_path):
    env = dict(
        os.environ, QT_QPA_PLATFORM="offscreen", STUDIO_HOME=str(tmp_path),
        STUDIO_STARTUP_PROBE="1", PYTHONPATH=str(ROOT),
    )  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, env=env
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "FIRST True Studio False False" in r.stdout, r.stdout
    lines = r.stdout.splitlines()
    order = [ln.split()[0] for ln in lines if ln.startswith(("FIRST", "STUDIO_SHOWN", "STUDIO_READY"))]  # fmt: skip
    assert order == ["FIRST", "STUDIO_SHOWN", "STUDIO_READY"], r.stdout
    assert "torch=False" in next(ln for ln in lines if ln.startswith("STUDIO_READY"))


DISPATCH = """
import runpy, sys
import studio.app
studio.app.main = lambda argv=None: print("APP", "studio.cli" in sys.modules) or 0
sys.argv = ["studio", *sys.argv[1:]]
runpy.run_module("studio", run_name="__main__")
"""


def test_python_m_studio_without_arguments_skips_the_cli():
    """`python -m studio` goes straight to the app, without importing the CLI first; with
    arguments it is the CLI."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", DISPATCH], capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip() == "APP False", r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-c", DISPATCH, "--version"], capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert r.returncode == 0 and r.stdout.startswith("studio "), r.stdout + r.stderr
