"""Autosave recovery after a real ``kill -9``.

tests/ui/test_ui_project.py covers a process that autosaves synchronously and then calls
``os._exit``. Here the real app (``studio.app.main``, event loop, engine thread, the autosave
timer writing in its background thread) is edited continuously and killed with SIGKILL at a
random moment, possibly in the middle of an autosave. The recovery file left behind must be
complete, and the next window must offer it and restore a state the user really had."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from studio.core import recovery
from studio.core.document import load_project
from studio.core.imageio import load_image

ROOT = Path(__file__).resolve().parents[2]
PHOTO = ROOT / "tests" / "data" / "photos" / "chelsea.png"

# Runs the real app with a driver: once the photo is open it paints mask A, then inverts the
# mask every 30 ms (each inversion an undo step), so the 1 s autosave keeps writing.
DRIVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication
    app = QApplication([sys.argv[0]])  # studio.app.main uses this instance
    import studio.app
    from studio.ui.main_window import MainWindow

    state = {"phase": 0}

    def tick():
        wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)]
        win = wins[0] if wins else None
        if win is None or not win.built or win.model.doc.is_empty:
            return
        if state["phase"] == 0:
            m = np.zeros((300, 451), np.uint8)
            m[40:120, 100:300] = 255
            win.set_mask(m)
            state["phase"] = 1
            Path(sys.argv[2], "edit").touch()
        else:
            win.invert_mask()
            if state["phase"] == 1:
                state["phase"] = 2
                Path(sys.argv[2], "editing").touch()

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(30)
    sys.exit(studio.app.main([sys.argv[1]]))
    """
)


def _mask_a() -> np.ndarray:
    m = np.zeros((300, 451), np.uint8)
    m[40:120, 100:300] = 255
    return m


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_of_the_running_app_then_recover(window, studio_home, seed):
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        STUDIO_HOME=str(studio_home),
        STUDIO_AUTOSAVE_SECONDS="1",
        PYTHONPATH=str(ROOT),
    )
    marks = studio_home / "marks"
    marks.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(PHOTO), str(marks)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 180
        while not (marks / "editing").exists():
            assert proc.poll() is None, f"the app exited early ({proc.returncode})"
            assert time.time() < deadline, "the app never got to editing"
            time.sleep(0.05)
        autosave = recovery.recovery_path(proc.pid)
        while not autosave.exists():
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        time.sleep(random.Random(seed).uniform(0.3, 2.5))  # keeps editing and autosaving
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL

    found = recovery.orphaned_recoveries()
    assert [p for p, _ in found] == [autosave]
    saved = load_project(autosave)  # complete: atomic writes never leave half a file
    assert saved.mask_layer is not None

    window.answers.queue = [QMessageBox.StandardButton.Yes]
    assert window.offer_recovery()
    assert window.answers.asked[-1][0] == "Recover unsaved work"
    assert window.image_size() == (451, 300)
    mask = window.mask()
    a = _mask_a()
    assert np.array_equal(mask, a) or np.array_equal(mask, 255 - a), "a state never shown"
    photo = load_image(PHOTO, mode="RGB")
    assert np.array_equal(window.model.doc.layers[0].pixels[..., :3], photo)
    assert window.model.dirty  # recovered work is unsaved work
    assert recovery.orphaned_recoveries() == []
