"""The canvas driven like a user: drops, brush strokes, selection, zoom, layers, undo/redo."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from studio.core.imageio import load_image


def drop(view, paths=None, image: QImage | None = None) -> None:
    md = QMimeData()
    if paths:
        md.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    if image is not None:
        md.setImageData(image)
    pos = QPointF(view.viewport().rect().center())
    # A real drop always starts with a drag-enter (QGraphicsView ignores drops without one).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(
            pos.toPoint(),
            Qt.DropAction.CopyAction,
            md,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
    QApplication.sendEvent(view.viewport(), enter)
    assert enter.isAccepted()
    event = QDropEvent(
        pos, Qt.DropAction.CopyAction, md, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(view.viewport(), event)


def view_point(view, x: float, y: float) -> QPoint:
    """Viewport coordinates of document pixel (x, y)."""
    return view.mapFromScene(QPointF(x, y))


def stroke(view, points, button=Qt.MouseButton.LeftButton) -> None:
    vp = view.viewport()
    pts = [view_point(view, x, y) for x, y in points]
    QTest.mousePress(vp, button, Qt.KeyboardModifier.NoModifier, pts[0])
    for p in pts[1:]:
        QTest.mouseMove(vp, p)
    QTest.mouseRelease(vp, button, Qt.KeyboardModifier.NoModifier, pts[-1])


def test_drop_one_file_opens_it(window, photos):
    drop(window.canvas, [photos.chelsea])
    assert window.image_size() == (451, 300)
    expected = load_image(photos.chelsea, "RGB")
    assert np.array_equal(window.composite()[..., :3], expected)
    assert window.model.doc.active_layer.is_mask  # the brush paints the mask by default
    assert not window.model.dirty


def test_drop_many_files_adds_layers_undoably(window, photos):
    drop(window.canvas, [photos.chelsea])
    drop(window.canvas, [photos.coffee, photos.astronaut])
    names = [la.name for la in window.model.doc.layers]
    assert names == ["chelsea", "coffee", "astronaut", "Mask"]
    assert window.image_size() == (451, 300)  # the document keeps its size
    window.model.undo.undo()  # one step for the whole drop
    assert [la.name for la in window.model.doc.layers] == ["chelsea", "Mask"]
    window.model.undo.redo()
    assert len(window.model.doc.layers) == 4


def test_drop_broken_file_shows_message_and_changes_nothing(window, photos, tmp_path):
    drop(window.canvas, [photos.chelsea])
    before = window.composite().copy()
    layers = [la.uid for la in window.model.doc.layers]
    broken = tmp_path / "broken.png"
    broken.write_bytes(photos.coffee.read_bytes()[:300])
    drop(window.canvas, [broken])
    assert window._errors, "a non-modal error message is shown"
    box = window._errors[-1]
    assert not box.isModal()
    assert "broken.png" in box.text()
    assert [la.uid for la in window.model.doc.layers] == layers
    assert np.array_equal(window.composite(), before)
    assert window.model.undo.count() == 0


def test_drop_image_data_and_paste(window, photos, qtbot):
    image = QImage(str(photos.coffee))
    drop(window.canvas, image=image)
    assert window.image_size() == (600, 400)
    QApplication.clipboard().setImage(QImage(str(photos.chelsea)))
    window.act_paste.trigger()
    assert window.model.doc.layers[-2].name == "Pasted"
    assert window.model.doc.layers[-2].size == (451, 300)
    window.act_copy.trigger()
    copied = QApplication.clipboard().image()
    assert (copied.width(), copied.height()) == (600, 400)


def test_mask_stroke_paints_mask_and_undo_redo(window, photos, qtbot):
    window.open_paths([photos.astronaut])
    window.canvas.actual_size()
    window.canvas.centerOn(256, 256)
    window.canvas.set_brush(size=20, hardness=1.0)
    before = window.canvas.viewport().grab().toImage()
    stroke(window.canvas, [(200, 256), (230, 256), (260, 256), (300, 256)])
    mask = window.mask()
    assert mask is not None
    assert mask[256, 250] == 255 and mask[256, 205] == 255 and mask[256, 295] == 255
    assert mask[200, 250] == 0 and mask[256, 150] == 0  # only along the stroke
    assert (
        window.model.doc.layers[0].pixels[256, 250, 0] == load_image(photos.astronaut)[256, 250, 0]
    )
    # the canvas shows the tinted mask over the photo
    window.canvas.cursor_item.setVisible(False)
    after = window.canvas.viewport().grab().toImage()
    p = view_point(window.canvas, 250, 256)
    q = view_point(window.canvas, 250, 150)
    tinted, plain = after.pixelColor(p), before.pixelColor(p)
    assert tinted.red() - tinted.green() > plain.red() - plain.green() + 40
    assert after.pixelColor(q) == before.pixelColor(q)
    painted = mask.copy()
    window.act_undo.trigger()
    assert window.mask() is None
    window.act_redo.trigger()
    assert np.array_equal(window.mask(), painted)
    # the eraser clears it again
    window.canvas.set_tool("eraser")
    window.canvas.set_brush(size=60)
    stroke(window.canvas, [(190, 256), (310, 256)])
    assert window.mask() is None
    assert window.model.undo.count() == 2


def test_brush_on_selected_image_layer(window, photos):
    window.open_paths([photos.chelsea])
    window.canvas.actual_size()
    image_layer = window.model.doc.layers[0]
    window.layers_panel.list.setCurrentRow(1)  # rows are top to bottom: mask, chelsea
    assert window.model.doc.active_uid == image_layer.uid
    assert "chelsea" in window.target_label.text()
    window.canvas.set_brush(size=10, hardness=1.0)
    window.canvas.brush_color.setRgb(0, 255, 0)
    stroke(window.canvas, [(100, 100), (140, 100)])
    assert tuple(image_layer.pixels[100, 120]) == (0, 255, 0, 255)
    assert window.mask() is None


def test_shortcuts_tools_brush_size_and_zoom(window, photos, qtbot):
    window.open_paths([photos.astronaut])
    view = window.canvas
    view.setFocus()
    QTest.keyClick(view, Qt.Key.Key_E)
    assert view.tool == "eraser"
    QTest.keyClick(view, Qt.Key.Key_B)
    assert view.tool == "brush"
    size = view.brush_size
    QTest.keyClick(view, Qt.Key.Key_BracketRight)
    assert view.brush_size > size
    QTest.keyClick(view, Qt.Key.Key_BracketLeft)
    QTest.keyClick(view, Qt.Key.Key_BracketLeft)
    assert view.brush_size < size
    QTest.keyClick(view, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert view.zoom == pytest.approx(1.0)
    QTest.keyClick(view, Qt.Key.Key_Equal, Qt.KeyboardModifier.ControlModifier)
    assert view.zoom > 1.0
    QTest.keyClick(view, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(view, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    assert view.zoom < 1.0
    QTest.keyClick(view, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    vp = view.viewport().rect()
    shown = view.mapFromScene(0, 0, 512, 512).boundingRect()
    assert vp.contains(shown.adjusted(1, 1, -1, -1))  # fit: the whole image is visible
    assert max(shown.width(), shown.height()) > 0.9 * min(vp.width(), vp.height())


def test_space_drag_and_middle_button_pan(window, photos):
    window.open_paths([photos.astronaut])
    view = window.canvas
    view.set_zoom(4.0)
    view.centerOn(256, 256)
    center_before = view.mapToScene(view.viewport().rect().center())
    vp = view.viewport()
    QTest.mousePress(
        vp, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, QPoint(300, 300)
    )
    QTest.mouseMove(vp, QPoint(200, 300))
    QTest.mouseRelease(
        vp, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, QPoint(200, 300)
    )
    center_after = view.mapToScene(view.viewport().rect().center())
    assert center_after.x() - center_before.x() == pytest.approx(25, abs=2)  # 100 px / 4
    view.setFocus()
    QTest.keyPress(view, Qt.Key.Key_Space)
    stroke(view, [(256, 256), (256, 240)])
    QTest.keyRelease(view, Qt.Key.Key_Space)
    assert window.mask() is None  # space-drag pans instead of painting
    assert view.mapToScene(view.viewport().rect().center()).y() > center_after.y() + 10


def test_selection_snaps_to_8_and_sets_region(window, photos):
    window.open_paths([photos.chelsea])
    window.canvas.actual_size()
    assert window.selection_rect() == (0, 0, 451, 300)  # the whole image, exactly
    window.canvas.set_tool("select")
    stroke(window.canvas, [(13, 21), (60, 70), (114, 95)])
    x, y, w, h = window.selection_rect()
    assert (x, y) == (8, 16)
    assert w % 8 == 0 and h % 8 == 0 and w >= 96 and h >= 72
    window.act_undo.trigger()
    assert window.model.doc.selection is None
    window.act_redo.trigger()
    window.act_deselect.trigger()
    assert window.selection_rect() == (0, 0, 451, 300)


def test_layers_panel_visibility_opacity_rename_order_delete(window, photos):
    window.open_paths([photos.chelsea])
    window.import_images([photos.coffee])
    panel = window.layers_panel
    doc = window.model.doc
    coffee = doc.layers[1]
    assert panel.list.item(1).text() == "coffee"
    # visibility
    panel.list.item(1).setCheckState(Qt.CheckState.Unchecked)
    assert not coffee.visible and not window.canvas.items_[coffee.uid].isVisible()
    assert np.array_equal(window.composite()[..., :3], load_image(photos.chelsea, "RGB"))
    window.act_undo.trigger()
    assert coffee.visible
    # rename
    panel.list.item(1).setText("beans")
    assert coffee.name == "beans"
    # opacity: a drag merges into one undo step
    panel.list.setCurrentRow(1)
    count = window.model.undo.count()
    for v in (90, 70, 50):
        panel.opacity.setValue(v)
    assert coffee.opacity == pytest.approx(0.5)
    assert window.model.undo.count() == count + 1
    assert window.canvas.items_[coffee.uid].opacity() == pytest.approx(0.5)
    # order
    panel.move_down()
    assert doc.layers[0] is coffee
    assert (
        window.canvas.items_[coffee.uid].zValue() < window.canvas.items_[doc.layers[1].uid].zValue()
    )
    window.act_undo.trigger()
    assert doc.layers[1] is coffee
    # delete + undo
    panel.list.setCurrentRow(1)
    panel.delete()
    assert coffee not in doc.layers and coffee.uid not in window.canvas.items_
    window.act_undo.trigger()
    assert doc.layers[1] is coffee and coffee.uid in window.canvas.items_


def test_clear_and_invert_mask(window, photos):
    window.open_paths([photos.chelsea])
    window.act_invert_mask.trigger()
    assert window.mask().min() == 255
    window.act_clear_mask.trigger()
    assert window.mask() is None
    window.act_undo.trigger()
    assert window.mask().min() == 255


def test_export_keeps_generation_metadata(window, photos, tmp_path):
    from studio.core.metadata import read_metadata

    window.open_paths([photos.chelsea])
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    meta = {
        "prompt": "a red fox",
        "negative_prompt": "",
        "steps": 3,
        "cfg_scale": 7.0,
        "seed": 42,
        "width": 64,
        "height": 64,
        "sampler": "Euler",
        "model": "tiny",
    }
    window.add_layer(img, "gen", metadata=meta)
    for ext in ("png", "jpg", "webp"):
        out = tmp_path / f"out.{ext}"
        assert window.export(str(out))
        got = read_metadata(out)
        assert got["prompt"] == "a red fox" and got["seed"] == 42, ext
        arr = load_image(out, "RGB")
        assert arr.shape == (300, 451, 3)


def test_wheel_zooms_around_the_cursor(window, photos):
    from PySide6.QtCore import QPoint as _P
    from PySide6.QtGui import QWheelEvent

    window.open_paths([photos.astronaut])
    view = window.canvas
    view.actual_size()
    vp = view.viewport()
    at = _P(vp.width() // 3, vp.height() // 3)
    under = view.mapToScene(at)
    event = QWheelEvent(
        QPointF(at),
        QPointF(vp.mapToGlobal(at)),
        _P(0, 0),
        _P(0, 240),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(vp, event)
    assert view.zoom > 1.3
    after = view.mapToScene(at)
    assert abs(after.x() - under.x()) < 3 and abs(after.y() - under.y()) < 3


def test_layer_thumbnail_follows_a_stroke(window, photos):
    window.open_paths([photos.chelsea])
    window.canvas.actual_size()
    mask_row = window.layers_panel.list.item(0)
    before = mask_row.icon().pixmap(40, 40).toImage()
    window.canvas.set_brush(size=120, hardness=1.0)
    stroke(window.canvas, [(150, 150), (300, 150)])
    after = window.layers_panel.list.item(0).icon().pixmap(40, 40).toImage()
    assert before != after


def test_q_toggles_paint_target_and_layer_menu(window, photos):
    window.open_paths([photos.chelsea])
    doc = window.model.doc
    photo = doc.layers[0]
    assert doc.active_layer.is_mask
    window.canvas.setFocus()
    QTest.keyClick(window.canvas, Qt.Key.Key_Q)
    assert doc.active_uid == photo.uid and "chelsea" in window.target_label.text()
    QTest.keyClick(window.canvas, Qt.Key.Key_Q)
    assert doc.active_layer.is_mask and "Mask" in window.target_label.text()
    QTest.keyClick(window.canvas, Qt.Key.Key_Q)
    QTest.keyClick(window.canvas, Qt.Key.Key_J, Qt.KeyboardModifier.ControlModifier)
    assert [la.name for la in doc.layers] == ["chelsea", "chelsea copy", "Mask"]
    assert np.array_equal(doc.layers[1].pixels, photo.pixels)
    assert doc.layers[1].pixels is not photo.pixels
    QTest.keyClick(window.canvas, Qt.Key.Key_BracketLeft, Qt.KeyboardModifier.ControlModifier)
    assert [la.name for la in doc.layers] == ["chelsea copy", "chelsea", "Mask"]
    window.act_undo.trigger()
    window.act_undo.trigger()
    assert [la.name for la in doc.layers] == ["chelsea", "Mask"]


def test_drop_model_file_imports_it_and_leaves_the_document(window, photos, tmp_path, qtbot):
    """A LoRA dropped on the canvas goes to the model importer, not the image loader."""
    from pathlib import Path

    from studio_model_files import kohya_lora_spec, write_sparse_safetensors

    drop(window.canvas, [photos.chelsea])
    layers = [la.uid for la in window.model.doc.layers]
    lora = write_sparse_safetensors(tmp_path / "ink.safetensors", kohya_lora_spec(768))
    drop(window.canvas, [lora])
    home = Path(__import__("os").environ["STUDIO_HOME"])
    qtbot.waitUntil(
        lambda: (home / "models" / "loras" / "ink.safetensors").is_file(), timeout=30000
    )
    assert [la.uid for la in window.model.doc.layers] == layers
    assert not window._errors
