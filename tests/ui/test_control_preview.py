"""The Control panel's live Canny overlay shows only while the user edits a Canny guide (the
panel in front and a Canny layer active), with that guide's edges from its own source; with
no guide, or the panel behind another tab, nothing is drawn over the photo."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from studio.core.canny import canny_edges
from studio.ui.main_window import MainWindow
from studio.ui.panels.control import PREVIEW_DEBOUNCE_MS
from studio.ui.qimage import array_from_qimage


def _settle(qtbot):
    qtbot.wait(PREVIEW_DEBOUNCE_MS + 200)


def _pick_layer(window, layer):
    """Click the layer's row in the Layers panel, as the user picks a layer."""
    lst = window.layers_panel.list
    for row in range(lst.count()):
        item = lst.item(row)
        if item.data(Qt.ItemDataRole.UserRole) == layer.uid:
            lst.scrollToItem(item)
            rect = lst.visualItemRect(item)
            QTest.mouseClick(lst.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
            assert window.model.doc.active_layer is layer
            return
    raise AssertionError(f"{layer.name} is not listed")


def _overlay_alpha(window):
    return array_from_qimage(window.canvas.preview_item.image)[..., 3]


def test_no_overlay_without_a_control_layer_even_with_the_panel_in_front(qtbot, window, photos):
    window.documents.open_paths([str(photos.astronaut)])
    window.show_panel("Control")
    control = window.panels["Control"]
    qtbot.waitUntil(lambda: control.shown)
    assert control.live_check.isChecked()
    control.low_slider.setValue(20)  # the user plays with the sliders: still nothing
    _settle(qtbot)
    assert window.canvas.preview_item.image.isNull()
    control.add_canny_button.click()  # a guide, but the mask is what is active
    _settle(qtbot)
    assert window.model.doc.active_layer.is_mask
    assert window.canvas.preview_item.image.isNull()


def test_a_picked_canny_layer_previews_its_own_source_only(qtbot, window, photos):
    window.documents.open_paths([str(photos.astronaut)])
    window.show_panel("Control")
    control = window.panels["Control"]
    control.source_combo.setCurrentIndex(control.source_combo.findData("layer"))
    # A second image layer, a grey square, over part of the photo.
    square = np.zeros((512, 512, 4), np.uint8)
    square[100:300, 150:350] = (128, 128, 128, 255)
    window.add_layer(square, "square")
    top = next(la for la in window.model.doc.layers if la.name == "square")
    _pick_layer(window, top)
    control.low_spin.setValue(50)
    control.high_spin.setValue(120)
    control.add_canny_button.click()  # edges of the square layer only
    guide = next(la for la in window.model.doc.layers if la.kind == "control")
    _pick_layer(window, guide)  # the user edits the guide: its overlay appears
    preview = window.canvas.preview_item
    control.high_slider.setValue(150)
    expected = canny_edges(square, 50, 150)
    qtbot.waitUntil(
        lambda: not preview.image.isNull() and np.array_equal(_overlay_alpha(window), expected),
        timeout=5000,
    )
    assert not np.array_equal(expected, canny_edges(window.composite(), 50, 150))
    assert (preview.rect.width(), preview.rect.height()) == (512, 512)

    window.show_panel("Generate")  # another tab in front: the overlay goes
    qtbot.waitUntil(lambda: preview.image.isNull(), timeout=5000)
    window.show_panel("Control")
    qtbot.waitUntil(lambda: not preview.image.isNull(), timeout=5000)
    photo = next(la for la in window.model.doc.layers if la.name != "square" and la.kind == "image")
    _pick_layer(window, photo)  # back to the photo: nothing over it
    qtbot.waitUntil(lambda: preview.image.isNull(), timeout=5000)


def test_a_restart_with_the_control_tab_in_front_does_not_emboss_the_photo(
    qtbot, window, photos, studio_home
):
    window.show_panel("Control")
    qtbot.waitUntil(lambda: window.panels["Control"].shown)
    window.settings.window_state = window.saveState()  # the tab is remembered
    window.settings.sync()
    again = MainWindow(window.settings)
    again.ask = window.ask
    qtbot.addWidget(again)
    again.resize(1280, 800)
    again.show()
    qtbot.waitExposed(again)
    again.documents.open_paths([str(photos.astronaut)])  # as from the command line
    _settle(qtbot)
    assert again.canvas.preview_item.image.isNull()
    again.model.undo.setClean()
    again.close()
