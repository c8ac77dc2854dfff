"""The keyboard as a user meets it: single-key tools (B, E, M, [ ]) reach the canvas and are
never typed into a field by accident; the model pickers are lists, not text fields; every
shortcut is listed (Help > Keyboard shortcuts, README) and none is bound twice; the first
window lies inside the screen's available area; the empty-canvas hint, the zoom label and
the window title say what is true."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QAction, QKeySequence, QScreen, QShortcut
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QTableWidget,
    QTextEdit,
)

from studio.core import masks
from studio.core.document import Document
from studio.core.imageio import load_image
from studio.ui.qimage import array_from_qimage, qimage_from_array

README = Path(__file__).resolve().parents[2] / "README.md"


def _focus():
    return QApplication.focusWidget()


def _is_text_field(w) -> bool:
    if isinstance(w, QComboBox):
        return w.isEditable()
    return isinstance(w, QLineEdit | QTextEdit | QPlainTextEdit | QAbstractSpinBox)


def _press(key, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    """A key press where the keyboard sends it: to the focused widget."""
    QTest.keyClick(_focus(), key, modifier)


def _hover(window, widget, pos: QPoint | None = None) -> None:
    """Move the pointer over ``widget`` through the window system (enter/leave events)."""
    pos = pos if pos is not None else widget.rect().center()
    QTest.mouseMove(window.windowHandle(), widget.mapTo(window, pos))
    QApplication.processEvents()


def _activate(qtbot, window) -> None:
    """The window has the keyboard (as the one the user works in)."""
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)


@pytest.fixture
def inpaint(window, photos, qtbot):
    _activate(qtbot, window)
    p = window.panels["Inpaint"]
    window.show_panel("Inpaint")
    small = masks.resize(load_image(photos.chelsea), (150, 100))
    window.model.replace(Document.from_image(small, "Background"))
    m = np.zeros((100, 150), np.uint8)
    m[30:50, 60:80] = 255
    window.set_mask(m)
    p.model_combo.setCurrentText(p.model_combo.itemText(0))
    p.erase_method.setCurrentIndex(p.erase_method.findData("telea"))
    return p


# == 1. single keys go to the canvas, never into a field by accident ===========================
def test_erase_object_leaves_the_keys_to_the_canvas(qtbot, window, inpaint):
    """After Erase object the focus used to land in the Inpaint model combo with its text
    selected: E then replaced the model with "e"."""
    model = inpaint.state.model
    QTest.mouseClick(inpaint.erase_button, Qt.MouseButton.LeftButton)
    assert inpaint.running and not inpaint.erase_button.isEnabled()
    assert not _is_text_field(_focus()), _focus()
    _press(Qt.Key.Key_E)
    assert window.canvas.tool == "eraser"
    _press(Qt.Key.Key_M)
    assert window.canvas.tool == "select"
    assert inpaint.state.model == model and inpaint.model_combo.currentText() == model
    qtbot.waitUntil(lambda: not inpaint.running, timeout=120000)
    assert not _is_text_field(_focus()), _focus()  # nor when the job is done
    _press(Qt.Key.Key_B)
    assert window.canvas.tool == "brush"


def test_model_pickers_are_lists_not_text_fields(qtbot, window, photos):
    inpaint = window.panels["Inpaint"]
    assert not inpaint.model_combo.isEditable()
    assert inpaint.model_combo.lineEdit() is None
    # a model set elsewhere (a remembered path, a test's tiny model) is listed and shown
    inpaint.state.model = "/models/my-inpaint.safetensors"
    assert inpaint.model_combo.currentText() == "/models/my-inpaint.safetensors"
    inpaint.model_combo.setCurrentText("other-model")
    assert inpaint.state.model == "other-model"

    window.import_images([str(photos.astronaut)])
    control = window.panels["Control"]
    control.add_canny_layer()
    picker = control.table.cellWidget(0, 5)
    assert isinstance(picker, QComboBox) and not picker.isEditable()
    # the default fits the Generate panel's model (nothing installed: SD-Turbo, SD 2.x)
    assert window.panels["Generate"].state.model == "sd-turbo"
    assert picker.currentText() == "sd21-canny"
    picker.setCurrentText("my/controlnet")
    (ci,) = control.control_inputs()
    assert ci.model == "my/controlnet"
    for panel in (inpaint, control):  # no free-text model field is left in these panels
        for combo in panel.findChildren(QComboBox):
            assert not combo.isEditable(), combo


def test_pointer_over_the_canvas_takes_the_keys_unless_typing(qtbot, window, inpaint):
    view = window.canvas
    # focus parked in a field the user has not typed into (here: tabbed into it)
    inpaint.negative_edit.setText("blurry")
    inpaint.negative_edit.setFocus(Qt.FocusReason.TabFocusReason)
    inpaint.negative_edit.selectAll()
    _hover(window, inpaint.erase_button)
    _hover(window, view.viewport())
    assert view.hasFocus()
    _press(Qt.Key.Key_E)
    assert view.tool == "eraser" and inpaint.negative_edit.text() == "blurry"
    _press(Qt.Key.Key_BracketRight)
    assert view.brush_size > 40

    # a field the user clicked and typed into keeps the keys, pointer over the canvas or not
    QTest.mouseClick(inpaint.negative_edit, Qt.MouseButton.LeftButton)
    QTest.keyClicks(inpaint.negative_edit, " fog")
    _hover(window, inpaint.erase_button)
    _hover(window, view.viewport())
    assert inpaint.negative_edit.hasFocus()
    size = view.brush_size
    _press(Qt.Key.Key_B)
    _press(Qt.Key.Key_BracketLeft)
    assert inpaint.negative_edit.text().endswith(" fogb[")
    assert view.tool == "eraser" and view.brush_size == size  # no tool change while typing

    # a click on the canvas gives it the keys back
    QTest.mouseClick(
        view.viewport(), Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, QPoint(5, 5)
    )
    assert view.hasFocus()
    _press(Qt.Key.Key_B)
    assert view.tool == "brush"


def test_a_field_typed_in_keeps_the_keys_after_another_window(qtbot, window, inpaint):
    from PySide6.QtWidgets import QWidget

    QTest.mouseClick(inpaint.negative_edit, Qt.MouseButton.LeftButton)
    QTest.keyClicks(inpaint.negative_edit, "fog")
    other = QWidget()  # the user looks at another window, and comes back
    qtbot.addWidget(other)
    other.show()
    other.activateWindow()
    qtbot.waitUntil(other.isActiveWindow)
    _activate(qtbot, window)
    assert inpaint.negative_edit.hasFocus()
    _hover(window, inpaint.erase_button)
    _hover(window, window.canvas.viewport())
    _press(Qt.Key.Key_E)
    assert inpaint.negative_edit.text() == "foge" and window.canvas.tool == "brush"


def test_ctrl_wheel_and_wheel_zoom(window, photos):
    from PySide6.QtGui import QWheelEvent

    window.open_paths([photos.astronaut])
    view = window.canvas
    vp = view.viewport()
    for modifier in (Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.NoModifier):
        view.actual_size()
        at = vp.rect().center()
        event = QWheelEvent(
            QPointF(at), QPointF(vp.mapToGlobal(at)), QPoint(0, 0), QPoint(0, 120),
            Qt.MouseButton.NoButton, modifier, Qt.ScrollPhase.NoScrollPhase, False,
        )  # fmt: skip
        QApplication.sendEvent(vp, event)
        assert view.zoom > 1.1, modifier
        assert window.zoom_label.text() == f"{view.zoom * 100:.0f}%"


def test_space_drag_pans_after_the_pointer_enters_from_a_button(qtbot, window, photos):
    _activate(qtbot, window)
    window.open_paths([photos.astronaut])
    view = window.canvas
    view.set_zoom(4.0)
    view.centerOn(256, 256)
    inpaint = window.panels["Inpaint"]
    window.show_panel("Inpaint")
    QTest.mouseClick(inpaint.fill_holes_button, Qt.MouseButton.LeftButton)
    assert inpaint.fill_holes_button.hasFocus()
    _hover(window, inpaint.fill_holes_button)
    _hover(window, view.viewport())
    before = view.mapToScene(view.viewport().rect().center())
    QTest.keyPress(_focus(), Qt.Key.Key_Space)  # used to "click" the focused button
    vp = view.viewport()
    a, b = view.mapFromScene(QPointF(256, 256)), view.mapFromScene(QPointF(256, 236))
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    QTest.mouseMove(vp, b)
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
    QTest.keyRelease(_focus(), Qt.Key.Key_Space)
    assert window.mask() is None  # panned, not painted
    assert view.mapToScene(view.viewport().rect().center()).y() > before.y() + 10


def test_single_key_tools_never_fire_inside_text_fields(qtbot, window, inpaint):
    view = window.canvas
    size = view.brush_size
    for field in (inpaint.negative_edit, inpaint.prompt_edit):
        QTest.mouseClick(field.viewport() if hasattr(field, "viewport") else field,
                         Qt.MouseButton.LeftButton)  # fmt: skip
        assert field.hasFocus()
        QTest.keyClicks(_focus(), "bem[]")
        text = field.text() if isinstance(field, QLineEdit) else field.toPlainText()
        assert text.endswith("bem[]"), text
    spin = inpaint.steps_spin
    QTest.mouseClick(spin.lineEdit(), Qt.MouseButton.LeftButton)
    _press(Qt.Key.Key_E)
    _press(Qt.Key.Key_BracketRight)
    assert view.tool == "brush" and view.brush_size == size


# == 2. the keyboard map =========================================================================
def _bindings(window, enabled_only: bool = True):
    """(context, key, what) of every (enabled) QAction and QShortcut shortcut in the window."""
    out = []
    for a in window.findChildren(QAction):
        if a.isEnabled() or not enabled_only:
            for seq in a.shortcuts():
                out.append((a.shortcutContext(), seq.toString(), a.text().replace("&", "")))
    for s in window.findChildren(QShortcut):
        if s.isEnabled() or not enabled_only:
            for seq in s.keys():
                out.append((s.context(), seq.toString(), f"QShortcut of {s.parent()}"))
    return out


def test_no_key_is_bound_twice(window):
    bound = defaultdict(list)
    for context, key, what in _bindings(window):
        bound[(context, key)].append(what)
    twice = {k: v for k, v in bound.items() if len(v) > 1}
    assert not twice, twice
    actions = {what: key for _c, key, what in _bindings(window)}
    assert len(actions) > 30


def test_keys_match_krita_and_photoshop(window):
    m = window.menus
    keys = {
        m.tool_actions["brush"]: ["B"],
        m.tool_actions["eraser"]: ["E"],
        m.tool_actions["select"]: ["M"],
        m.act_smaller: ["["],
        m.act_larger: ["]"],
        m.act_undo: ["Ctrl+Z"],
        m.act_redo: ["Ctrl+Shift+Z", "Ctrl+Y"],
        m.act_save: ["Ctrl+S"],
    }
    for action, expected in keys.items():
        assert [s.toString() for s in action.shortcuts()] == expected, action.text()
        assert action.shortcutContext() == Qt.ShortcutContext.WindowShortcut


def _dialog_rows(dialog):
    table = dialog.findChild(QTableWidget)
    return [
        tuple(table.item(r, c).text() for c in range(table.columnCount()))
        for r in range(table.rowCount())
    ]


def test_help_lists_every_shortcut_of_every_action(qtbot, window):
    m = window.menus
    m.act_shortcuts.trigger()
    dialog = m.shortcuts_dialog
    qtbot.waitExposed(dialog)
    rows = _dialog_rows(dialog)
    listed = {(r[0], r[1]) for r in rows}
    for a in window.findChildren(QAction):
        if a.shortcuts() and a.text():
            keys = " / ".join(
                s.toString(QKeySequence.SequenceFormat.NativeText) for s in a.shortcuts()
            )
            assert (keys, a.text().replace("&", "").rstrip("…")) in listed, a.text()
    texts = " ".join(" ".join(r) for r in rows)
    for gesture in ("Space", "Ctrl+wheel", "Ctrl+Enter"):
        assert gesture in texts
    m.act_shortcuts.trigger()  # shown again: the same dialog, raised
    assert m.shortcuts_dialog is dialog
    dialog.close()


def test_panel_keys_listed_as_gestures_are_bound(window):
    from studio.ui.actions import GESTURES

    bound = {key for _c, key, _w in _bindings(window, enabled_only=False)}  # staging: off
    for keys, _what, shortcut in GESTURES:
        for key in shortcut:
            assert key in bound, (keys, key)


def test_readme_keyboard_table_matches_the_app(window):
    text = README.read_text(encoding="utf-8")
    section = text.split("### Keyboard", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+) \| ([^|]+) \|$", section, re.M)[1:]  # after the header
    assert rows
    bound = {key for _c, key, _w in _bindings(window, enabled_only=False)}
    firsts = set()
    for keys, _what in rows:
        for key in re.split(r" / |, ", keys):
            key = key.strip().strip("`")
            firsts.add(key)
            if key.startswith(("Space", "Wheel", "Ctrl+wheel", "Shift+wheel", "middle")):
                continue
            assert key in bound, key
    for key in ("B", "E", "M", "[", "]", "Ctrl+Z", "Ctrl+Shift+Z", "Ctrl+Y", "Ctrl+S"):
        assert key in firsts, key
    assert any(k.startswith("Space") for k in firsts) and "Ctrl+wheel" in firsts


# == 3. the first window is inside the screen ===================================================
@pytest.fixture
def panel_bar(monkeypatch):
    """A fake screen whose top 40 px are a panel (availableGeometry starts below it)."""
    area = QRect(0, 40, 800, 760)
    monkeypatch.setattr(QScreen, "availableGeometry", lambda self: QRect(area))
    return area


def _inside(frame: QRect, area: QRect) -> bool:
    return area.contains(frame.topLeft()) and area.contains(frame.bottomRight())


def test_first_window_is_placed_inside_the_available_area(qtbot, studio_home, panel_bar):
    from studio.app import _startup_frame
    from studio.ui.main_window import MainWindow
    from studio.ui.settings import Settings

    settings = Settings()
    assert settings.geometry is None or settings.geometry.isEmpty()
    frame = _startup_frame(settings)
    qtbot.addWidget(frame)
    frame.show()
    qtbot.waitExposed(frame)
    assert frame.frameGeometry().top() >= panel_bar.top()
    assert _inside(frame.frameGeometry(), panel_bar), frame.frameGeometry()
    assert frame.width() <= 1280 and frame.height() <= 800
    centre = frame.frameGeometry().center()
    assert abs(centre.x() - panel_bar.center().x()) <= 8
    assert abs(centre.y() - panel_bar.center().y()) <= 24

    win = MainWindow(settings, deferred=True)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    assert _inside(win.frameGeometry(), panel_bar), win.frameGeometry()


def test_restored_geometry_keeps_the_title_bar_inside(qtbot, studio_home, panel_bar):
    from PySide6.QtWidgets import QMainWindow

    from studio.app import _startup_frame
    from studio.ui.main_window import MainWindow
    from studio.ui.settings import Settings

    old = QMainWindow()  # a window last closed with its title bar above the screen
    qtbot.addWidget(old)
    old.resize(700, 500)
    old.show()
    qtbot.waitExposed(old)
    old.move(30, -20)
    qtbot.waitUntil(lambda: old.frameGeometry().top() < 0)
    settings = Settings()
    settings.geometry = old.saveGeometry()
    for make in (_startup_frame, lambda s: MainWindow(s, deferred=True)):
        w = make(settings)
        qtbot.addWidget(w)
        w.show()
        qtbot.waitExposed(w)
        assert w.frameGeometry().top() >= panel_bar.top(), w.frameGeometry()
        assert _inside(w.frameGeometry(), panel_bar), w.frameGeometry()
        assert abs(w.width() - 700) <= 4  # the saved size is kept when it fits


APP_PROBE = """
import sys
from PySide6.QtCore import QRect
from PySide6.QtGui import QScreen

QScreen.availableGeometry = lambda self: QRect(0, 40, 1200, 760)  # a panel on top
import studio.app as app
import studio.ui.main_window as mw

def close(self):
    g = self.frameGeometry()
    print("FRAME", g.x(), g.y(), g.width(), g.height(), flush=True)
    return mw.QMainWindow.close(self)

mw.MainWindow.close = close
sys.exit(app.main([]))
"""


def test_the_app_window_replacing_the_start_up_frame_is_inside_too(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = dict(
        os.environ, QT_QPA_PLATFORM="offscreen", STUDIO_HOME=str(tmp_path),
        STUDIO_STARTUP_PROBE="1", PYTHONPATH=str(root),
    )  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-c", APP_PROBE], capture_output=True, text=True, timeout=300, env=env
    )
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("FRAME"))
    x, y, w, h = map(int, line.split()[1:])
    assert _inside(QRect(x, y, w, h), QRect(0, 40, 1200, 760)), line


def test_place_window_fits_a_small_screen(qtbot, monkeypatch):
    from PySide6.QtWidgets import QMainWindow

    from studio.ui.placement import place_window

    area = QRect(100, 30, 1000, 600)  # smaller than 1280x800
    monkeypatch.setattr(QScreen, "availableGeometry", lambda self: QRect(area))
    w = QMainWindow()
    qtbot.addWidget(w)
    place_window(w, None)
    w.show()
    qtbot.waitExposed(w)
    assert _inside(w.frameGeometry(), area), w.frameGeometry()


# == 4. small things the user sees ==============================================================
def _viewport(window) -> np.ndarray:
    QApplication.processEvents()
    return array_from_qimage(window.canvas.viewport().grab().toImage(), "RGB")


def test_empty_canvas_hint_is_not_drawn_over_the_first_staged_result(qtbot, window):
    assert window.model.doc.is_empty
    hint = _viewport(window)
    red = np.zeros((128, 128, 4), np.uint8)
    red[..., 0], red[..., 3] = 255, 255
    window.show_staged(qimage_from_array(red), (0, 0, 128, 128))
    qtbot.wait(20)
    shown = _viewport(window)
    h, w = shown.shape[:2]
    centre = shown[h // 2 - 30 : h // 2 + 30, w // 2 - 150 : w // 2 + 150]
    assert (hint != shown).any()
    assert (centre == (255, 0, 0)).all(axis=2).all(), "the hint's text is drawn over the result"


def test_zoom_label_says_the_real_zoom(qtbot, window, photos):
    tiny = np.zeros((64, 96, 4), np.uint8)
    tiny[..., 3] = 255
    window.show_staged(qimage_from_array(tiny), (0, 0, 96, 64))  # the first result: zoomed in
    label = window.zoom_label
    qtbot.waitUntil(lambda: label.text() == f"{window.canvas.zoom * 100:.0f}%", timeout=3000)
    assert window.canvas.zoom > 3
    window.clear_staged()
    window.open_paths([photos.chelsea])
    assert label.text() == f"{window.canvas.zoom * 100:.0f}%"
    window.canvas.set_zoom(5.0)
    assert label.text() == "500%"
    window.canvas.fitInView(QRectF(0, 0, 40, 30), Qt.AspectRatioMode.KeepAspectRatio)
    qtbot.waitUntil(lambda: label.text() == f"{window.canvas.zoom * 100:.0f}%", timeout=3000)


def test_opened_photo_is_titled_with_its_file_name(qtbot, window, photos):
    window.open_paths([photos.chelsea])
    assert window.windowTitle().startswith("chelsea.png"), window.windowTitle()
    window.open_paths([photos.coffee, photos.astronaut])  # the first names the document
    assert window.windowTitle().startswith("coffee.png"), window.windowTitle()
    window.documents.new_document()
    assert window.windowTitle() == "Studio"
