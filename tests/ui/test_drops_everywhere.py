"""Files dropped anywhere on the window do what a drop on the canvas does: on the prompt box,
on a panel, on a dock. Plain text still drops into a text field as text."""

from __future__ import annotations

import warnings

import numpy as np
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from studio.core.imageio import save_image

SB = QMessageBox.StandardButton


def _send_drop(widget, md: QMimeData) -> bool:
    """Drag ``md`` into ``widget`` and drop it in the middle, as the window system does;
    whether the widget (or whoever watches it) took the drag."""
    pos = QPoint(widget.width() // 2, widget.height() // 2)
    args = (Qt.DropAction.CopyAction, md, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(pos, *args)
        QApplication.sendEvent(widget, enter)
        if not enter.isAccepted():
            return False
        QApplication.sendEvent(widget, QDragMoveEvent(pos, *args))
        QApplication.sendEvent(widget, QDropEvent(QPointF(pos), *args))
    return True


def _files(*paths) -> QMimeData:
    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return md


def _a1111_png(tmp_path):
    path = tmp_path / "a1111.png"
    text = (
        "a castle on a hill, golden hour\nNegative prompt: fog\n"
        "Steps: 12, Sampler: Euler a, CFG scale: 5.5, Seed: 77, Size: 64x64, Model: foo"
    )
    save_image(path, np.zeros((64, 64, 3), np.uint8), parameters=text)
    return path


def test_a1111_png_dropped_on_the_prompt_box_offers_its_parameters(qtbot, window, tmp_path):
    panel = window.panels["Generate"]
    path = _a1111_png(tmp_path)
    panel.prompt.setPlainText("")
    window.answers.queue = [SB.Yes]
    assert _send_drop(panel.prompt.viewport(), _files(path))
    assert "file://" not in panel.prompt.toPlainText()
    assert window.answers.asked and window.answers.asked[-1][0] == "Generation parameters"
    assert panel.prompt.toPlainText() == "a castle on a hill, golden hour"
    assert window.image_size() == (64, 64)  # opened, as a drop on the canvas opens it


def test_image_dropped_on_a_panel_or_dock_is_added_as_on_the_canvas(qtbot, window, photos):
    window.documents.open_paths([str(photos.chelsea)])
    n = len(window.model.doc.layers)
    upscale = window.panels["Upscale"]
    window.show_panel("Upscale")
    assert _send_drop(upscale, _files(photos.astronaut))  # a panel that takes no drops
    assert len(window.model.doc.layers) == n + 1
    assert _send_drop(window.docks.undo_view.viewport(), _files(photos.astronaut))
    assert len(window.model.doc.layers) == n + 2


def test_plain_text_still_drops_into_the_prompt_as_text(qtbot, window):
    panel = window.panels["Generate"]
    panel.prompt.setPlainText("")
    md = QMimeData()
    md.setText("a red fox")
    _send_drop(panel.prompt.viewport(), md)
    assert panel.prompt.toPlainText() == "a red fox"
    assert window.answers.asked == []


def test_gguf_files_import_from_a_drop_and_the_import_dialog(qtbot, window, tmp_path):
    from studio.ui.panels import models as models_mod

    gguf = tmp_path / "flux1-schnell-Q4_K_S.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    errors = []
    window.show_error = lambda message, detail="": errors.append(message)
    panel = window.panels["Models"]
    before = set(panel.jobs)
    assert _send_drop(window.panels["Generate"].prompt.viewport(), _files(gguf))
    queued = [panel.jobs[j] for j in set(panel.jobs) - before]
    assert queued == [("import", str(gguf))]  # the importer, not the image loader
    assert not any("could not be opened" in e or "cannot identify" in e for e in errors)
    assert window.model.doc.is_empty
    assert "*.gguf" in models_mod.MODEL_FILTER  # the Import… dialog lists them
