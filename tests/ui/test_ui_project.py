"""Documents through the window: save/reopen, prompts before discarding changes, autosave and
recovery after a crash, settings; and the layering rule (the UI never imports torch)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QMessageBox

from studio.core import recovery
from studio.core.document import load_project

SB = QMessageBox.StandardButton
ROOT = Path(__file__).resolve().parents[2]


def _env(home: Path, **extra) -> dict:
    env = dict(os.environ)
    env.update(QT_QPA_PLATFORM="offscreen", STUDIO_HOME=str(home), PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def test_save_and_reopen_project(window, photos, tmp_path):
    window.documents.open_paths([photos.chelsea])
    window.documents.import_images([photos.coffee])
    mask = np.zeros((300, 451), np.uint8)
    mask[50:100, 60:200] = 255
    window.set_mask(mask)
    window.model.set_selection((16, 16, 64, 64))
    assert window.model.dirty and window.windowTitle().startswith("chelsea.png")
    path = tmp_path / "work.studio"
    assert window.documents.save_to(str(path))
    assert not window.model.dirty
    assert "work.studio" in window.windowTitle()
    composite = window.composite().copy()

    window.documents.new_document()
    assert window.model.doc.is_empty
    assert window.documents.open_project(str(path))
    assert np.array_equal(window.composite(), composite)
    assert np.array_equal(window.mask(), mask)
    assert window.selection_rect() == (16, 16, 64, 64)
    assert [la.name for la in window.model.doc.layers] == ["chelsea", "coffee", "Mask"]
    assert window.model.path == str(path)
    assert not window.model.dirty


def test_unsaved_changes_are_never_discarded_without_a_prompt(window, photos, tmp_path):
    window.documents.open_paths([photos.chelsea])
    window.edits.invert_mask()
    window.answers.queue = [SB.Cancel]
    assert not window.documents.open_paths([photos.coffee])
    assert window.answers.asked and window.answers.asked[-1][0] == "Unsaved changes"
    assert window.image_size() == (451, 300)  # still the old document
    window.answers.queue = [SB.Cancel]
    assert not window.close()  # the window stays open
    assert window.isVisible()
    window.answers.queue = [SB.Cancel]
    window.documents.new_document()
    assert not window.model.doc.is_empty
    window.answers.queue = [SB.Discard]
    assert window.documents.open_paths([photos.coffee])
    assert window.image_size() == (600, 400)


def test_damaged_project_shows_error_and_keeps_document(window, photos, tmp_path):
    window.documents.open_paths([photos.chelsea])
    bad = tmp_path / "bad.studio"
    bad.write_bytes(b"PK\x03\x04garbage")
    assert not window.documents.open_project(str(bad))
    assert "bad.studio" in window._errors[-1].text()
    assert window.image_size() == (451, 300)


def test_autosave_timer_writes_recovery_file_when_dirty(qtbot, studio_home, photos, monkeypatch):
    from studio.ui.main_window import MainWindow

    monkeypatch.setenv("STUDIO_AUTOSAVE_SECONDS", "1")
    win = MainWindow()
    qtbot.addWidget(win)
    win.documents.open_paths([photos.chelsea])
    target = recovery.recovery_path()
    qtbot.wait(1300)
    assert not target.exists()  # clean: nothing to autosave
    win.edits.invert_mask()
    qtbot.waitUntil(target.exists, timeout=5000)
    assert load_project(target).mask_layer.pixels.min() == 255
    win.model.undo.setClean()
    win.close()
    assert not target.exists()  # a clean exit removes it


def test_recovery_after_a_crash(window, photos, studio_home):
    """A real process opens a photo, paints a mask, autosaves, and dies; the next launch
    offers the autosave and restores it."""
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        from studio.ui.main_window import MainWindow
        w = MainWindow()
        w.show()
        w.documents.open_paths([{str(photos.chelsea)!r}])
        m = np.zeros((300, 451), np.uint8); m[10:60, 20:90] = 255
        w.set_mask(m)
        assert w.documents.autosave(background=False)
        os._exit(9)  # crash: no cleanup
        """
    )
    r = subprocess.run([sys.executable, "-c", script], env=_env(studio_home), timeout=120)
    assert r.returncode == 9
    assert len(recovery.orphaned_recoveries()) == 1
    window.answers.queue = [SB.Yes]
    assert window.documents.offer_recovery()
    assert window.answers.asked[-1][0] == "Recover unsaved work"
    assert window.image_size() == (451, 300)
    assert window.mask()[30, 50] == 255 and window.mask()[100, 200] == 0
    assert window.model.dirty  # recovered work is unsaved
    assert recovery.orphaned_recoveries() == []
    window.model.undo.setClean()


def test_declining_recovery_discards_it(window, photos, studio_home):
    from studio.core.document import Document

    recovery.write_recovery(Document.from_image(np.zeros((8, 8, 3), np.uint8)), pid=2**22 + 7)
    window.answers.queue = [SB.No]
    assert not window.documents.offer_recovery()
    assert window.model.doc.is_empty
    assert recovery.orphaned_recoveries() == []


def test_settings_persist_in_studio_home(studio_home):
    from studio.ui.settings import Settings

    s = Settings()
    assert s.path == studio_home / "settings.ini"
    s.theme = "light"
    s.brush_size = 33
    s.push_recent("recent_files", "/a.png")
    s.push_recent("recent_files", "/b.png")
    s.push_recent("recent_files", "/a.png")
    s.sync()
    t = Settings()
    assert t.theme == "light" and t.brush_size == 33 and isinstance(t.brush_size, int)
    assert t.recent_files == ["/a.png", "/b.png"]
    assert t.brush_hardness == 0.7  # default
    assert "light" in (studio_home / "settings.ini").read_text()


LAYERING = """
import sys
for name in ("torch", "diffusers", "transformers", "spandrel", "safetensors", "accelerate"):
    sys.modules[name] = None  # any import of these now raises ImportError
from PySide6.QtWidgets import QApplication
app = QApplication([])
import studio.ui.main_window as mw
w = mw.MainWindow()
w.show()
app.processEvents()
print("PANELS", sorted(w.panels))
print("ERRORS", w.panel_errors)
w.close()
"""


def test_ui_imports_and_window_work_without_torch(studio_home):
    r = subprocess.run(
        [sys.executable, "-c", LAYERING],
        env=_env(studio_home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Generate" in r.stdout
    assert "ERRORS {}" in r.stdout, r.stdout


def test_app_shows_window_before_torch_is_imported(studio_home, photos):
    for argv in (["-m", "studio"], ["-m", "studio", "open", str(photos.chelsea)]):
        r = subprocess.run(
            [sys.executable, *argv],
            env=_env(studio_home, STUDIO_STARTUP_PROBE="1"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        assert "STUDIO_SHOWN" in r.stdout and "torch=False" in r.stdout, r.stdout


def test_open_command_rejects_missing_file(studio_home):
    r = subprocess.run(
        [sys.executable, "-m", "studio", "open", "/nonexistent.png"],
        env=_env(studio_home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "no such file" in r.stderr and "Traceback" not in r.stderr


def _small_doc(window) -> None:
    from studio.core.document import Document

    window.model.replace(Document.from_image(np.full((16, 24, 3), 90, np.uint8)))


def _edit(window, value: int) -> None:
    m = np.zeros((16, 24), np.uint8)
    m[: 1 + value % 15, :] = 255
    window.set_mask(m)


def test_autosave_keeps_working_past_the_undo_limit_and_after_undo_then_edit(window):
    _small_doc(window)
    limit = window.model.undo.undoLimit()
    for i in range(limit + 3):  # the undo index stops moving at the limit
        _edit(window, i)
    assert window.documents.autosave(background=False)
    assert not window.documents.autosave(background=False)  # nothing new
    _edit(window, 7)  # the index is still at the limit, but this is a new state
    assert window.model.undo.index() == limit
    assert window.documents.autosave(background=False)
    saved = load_project(recovery.recovery_path())
    assert np.array_equal(saved.mask_layer.pixels, window.mask())
    window.model.undo.undo()
    _edit(window, 3)  # same index as before the undo, different content
    assert window.documents.autosave(background=False)
    assert np.array_equal(load_project(recovery.recovery_path()).mask_layer.pixels, window.mask())
    window.model.undo.setClean()


def test_a_freshly_opened_document_drops_the_old_recovery_file(window, photos):
    _small_doc(window)
    _edit(window, 4)
    assert window.documents.autosave(background=False) and recovery.recovery_path().exists()
    window.answers.default = SB.Discard
    window.documents.open_paths([str(photos.chelsea)])  # the user discards the edited document
    window.documents.autosave(background=False)
    assert not recovery.recovery_path().exists()  # a crash now must not offer the old one


def test_own_pid_file_at_startup_is_offered_and_other_crashes_are_kept(window, studio_home):
    """Containers reuse PIDs: a dead session's autosave may carry our PID. Of several crashed
    sessions the newest is offered and only it is removed; the others wait for next time."""
    from studio.core.document import Document

    older = recovery.write_recovery(
        Document.from_image(np.zeros((8, 8, 3), np.uint8)), pid=2**22 + 9
    )
    os.utime(older, (1, 1))
    recovery.write_recovery(Document.from_image(np.zeros((10, 12, 3), np.uint8)), pid=os.getpid())
    window.answers.queue = [SB.Yes]
    assert window.documents.offer_recovery()
    assert window.image_size() == (12, 10)  # the newest one, although it has our PID
    left = [p for p, _ in recovery.orphaned_recoveries()]
    assert left == [older]
    window.model.undo.setClean()


def test_unreadable_recovery_is_set_aside_not_deleted(window, studio_home):
    bad = recovery.recovery_path(2**22 + 11)
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"not a project")
    window.answers.queue = [SB.Yes]
    assert not window.documents.offer_recovery()
    assert window._errors and "could not be read" in window._errors[-1].text()
    assert recovery.orphaned_recoveries() == []
    assert bad.with_name(bad.name + ".unreadable").exists()
