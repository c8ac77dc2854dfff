"""The first minute as a user: each test drives the real main window's widgets and
checks what the user would see (pixels of the canvas) or the state that decides it."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QApplication

from studio.ui.panels.control import PREVIEW_DEBOUNCE_MS
from studio.ui.qimage import array_from_qimage


def _canvas_pixels(window) -> np.ndarray:
    QApplication.processEvents()
    return array_from_qimage(window.canvas.viewport().grab().toImage(), "RGB")


# -- 1. no stray overlay ------------------------------------------------------------------------
def test_no_canny_overlay_while_the_control_tab_is_not_shown(qtbot, window, photos):
    window.documents.open_paths([str(photos.astronaut)])
    window.show_panel("Generate")
    control = window.panels["Control"]
    assert control.live_check.isChecked()
    assert control.isVisible()  # Qt's parked tab claims to be visible: not to be trusted
    qtbot.wait(PREVIEW_DEBOUNCE_MS + 300)
    preview = window.canvas.preview_item
    assert preview.image.isNull() and not preview.isVisible()

    control.add_canny_layer()  # a guide the user edits (picked in Layers)...
    guide = next(la for la in window.model.doc.layers if la.kind == "control")
    window.model.set_active(guide.uid)
    control.low_slider.setValue(20)  # other thresholds: edges the guide does not have
    control.high_slider.setValue(50)
    qtbot.wait(PREVIEW_DEBOUNCE_MS + 300)
    assert preview.image.isNull()  # ...but the panel is not in front: nothing yet
    plain = _canvas_pixels(window)
    window.show_panel("Control")  # the user looks at the Control panel: edges appear
    qtbot.waitUntil(lambda: not preview.image.isNull() and preview.isVisible(), timeout=5000)
    with_edges = _canvas_pixels(window)
    assert np.abs(with_edges.astype(int) - plain.astype(int)).max() > 100

    window.show_panel("Generate")  # ...and go when they switch away
    qtbot.waitUntil(lambda: preview.image.isNull(), timeout=5000)
    assert np.array_equal(_canvas_pixels(window), plain)
    control.low_slider.setValue(30)  # a slider moved while hidden draws nothing
    qtbot.wait(PREVIEW_DEBOUNCE_MS + 300)
    assert preview.image.isNull()


# -- 7. the active layer moves only to a layer asked for to edit ------------------------------
def test_a_canny_guide_keeps_painting_on_the_mask_a_skeleton_is_posed(qtbot, window, photos):
    from test_ui_canvas import stroke

    window.documents.open_paths([str(photos.astronaut)])
    window.show_panel("Control")
    control = window.panels["Control"]
    control.add_canny_button.click()
    assert any(la.kind == "control" for la in window.model.doc.layers)
    assert window.model.doc.active_layer.is_mask  # a Canny guide is not painted on
    assert window.menus.target_label.text() == "Mask (inpaint)"  # the badge says so
    guides = {la.uid: la.pixels.copy() for la in window.model.doc.layers if not la.is_mask}
    window.canvas.actual_size()
    window.canvas.centerOn(256, 256)
    window.canvas.set_tool("brush")
    stroke(window.canvas, [(200, 256), (260, 256), (300, 256)])
    assert window.mask()[256, 250] == 255  # the stroke went on the mask...
    for la in window.model.doc.layers:  # ...and into no guide or image layer
        if not la.is_mask:
            assert np.array_equal(la.pixels, guides[la.uid]), la.name
    # A skeleton is placed to be posed: the pose layer is what the next drag edits.
    control.template_button.click()
    pose = next(la for la in window.model.doc.layers if la.kind == "pose")
    assert window.model.doc.active_layer is pose
    assert window.menus.target_label.text() == f"Pose: {pose.name}"
    control.add_scribble_layer()  # asked for to paint on: the brush moves, and says so
    assert window.model.doc.active_layer.name == "Scribble"
    assert "Scribble" in window.menus.target_label.text()


# -- 3. Generate works the first time / 4. imported models appear everywhere ------------------
def _tiny_upscaler(path):
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN as RRDBNet

    torch.manual_seed(0)
    net = RRDBNet(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))


def test_picker_offers_downloads_then_lists_added_models_at_once(
    qtbot, window, tiny_models, tmp_path
):
    import shutil

    gen = window.panels["Generate"]
    up = window.panels["Upscale"]
    models = window.panels["Models"]
    # nothing installed: every catalog model is marked "download" with its size
    labels = [gen.model_combo.itemText(i) for i in range(gen.model_combo.count())]
    assert labels and all("— download" in t for t in labels)
    assert gen.state.model == gen.model_combo.currentData()
    assert not gen.download_button.isHidden() and "Download" in gen.download_button.text()
    assert "GB" in gen.download_button.text() or "MB" in gen.download_button.text()
    assert gen.generate() is None  # a clear message, no job, no CLI command
    assert "not installed" in window._errors[-1].text()
    assert "studio " not in window._errors[-1].text()

    # the user adds a folder of models in the Models panel: a checkpoint and an upscaler
    lib = tmp_path / "my-models"
    shutil.copytree(tiny_models.sd, lib / "diffusers" / "tiny-sd")
    (lib / "upscale_models").mkdir()
    _tiny_upscaler(lib / "upscale_models" / "tiny-x4.safetensors")
    with qtbot.waitSignal(window.models_updated, timeout=20000):
        models.add_folder(str(lib))
    first = gen.model_combo.itemText(0)
    assert "download" not in first and "tiny-sd" in gen.model_combo.itemData(0)
    assert gen.state.model == gen.model_combo.itemData(0)  # an installed model, picked
    assert gen.download_button.isHidden()
    ups = [up.model_combo.itemData(i) for i in range(up.model_combo.count())]
    assert any("tiny-x4" in str(u) for u in ups)  # in the Upscale list, no restart


# -- 2. docks fit ----------------------------------------------------------------------------
def _clipped_controls(window, title):
    """Controls of panel ``title`` cut off at the left/right edge of what its dock shows."""
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QDockWidget

    dock = window.findChild(QDockWidget, f"panel-{title}")
    viewport = dock.widget().viewport()
    out = []
    panel = window.panels[title]
    controls = [
        w for k in (QAbstractSpinBox, QComboBox, QAbstractButton) for w in panel.findChildren(k)
    ]
    for w in controls:
        if not w.isVisibleTo(window.panels[title]) or w.width() <= 0:
            continue
        left = w.mapTo(viewport, QPoint(0, 0)).x()
        # inside an inner scroll area, its viewport is the visible box
        box = w.parentWidget()
        while box is not None and box.objectName() != "qt_scrollarea_viewport":
            box = box.parentWidget()
        right_edge = box.width() if box is not None else viewport.width()
        inner_left = w.mapTo(box, QPoint(0, 0)).x() if box is not None else left
        if inner_left < 0 or inner_left + w.width() > right_edge:
            out.append(f"{type(w).__name__} {w.objectName() or getattr(w, 'text', str)()}")
    return out


def test_every_control_is_whole_at_1280x800_and_1920x1080(qtbot, window, photos):
    window.documents.open_paths([str(photos.chelsea)])
    for size in ((1280, 800), (1920, 1080)):
        window.resize(*size)
        for title in ("Generate", "Inpaint", "Control", "Upscale", "Models"):
            window.show_panel(title)
            qtbot.wait(50)
            assert _clipped_controls(window, title) == [], (size, title)
    window.resize(1280, 800)
    window.show_panel("Inpaint")  # progress and Cancel are in view without scrolling
    qtbot.wait(50)
    inpaint = window.panels["Inpaint"]
    for w in (inpaint.progress, inpaint.cancel_button):
        bottom = w.mapTo(window, w.rect().bottomLeft()).y()
        assert w.isVisible() and bottom < window.height(), w
    models = window.panels["Models"].tree
    assert models.header().length() <= models.viewport().width()  # no sideways scrolling


def test_docks_can_be_widened_and_remember_it(qtbot, window, studio_home):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QDockWidget

    from studio.ui.main_window import MainWindow

    dock = window.findChild(QDockWidget, "panel-Generate")
    before = dock.width()
    window.resizeDocks([dock], [before + 120], Qt.Orientation.Horizontal)
    qtbot.waitUntil(lambda: dock.width() >= before + 100)
    wide = dock.width()
    window.close()
    again = MainWindow()
    qtbot.addWidget(again)
    again.resize(1280, 800)
    again.show()
    qtbot.waitExposed(again)
    qtbot.waitUntil(lambda: again.findChild(QDockWidget, "panel-Generate").width() == wide)
    again.close()


# -- 11. shared PNGs name the model, not its local path ---------------------------------------
def test_exported_png_names_the_model_not_its_path(window, photos, tmp_path):
    from studio.core.metadata import format_parameters, read_metadata

    window.documents.open_paths([str(photos.chelsea)])
    folder = str(tmp_path / "secret-user" / "models" / "dreamshaper-8")
    lora = str(tmp_path / "secret-user" / "loras" / "ink.safetensors")
    meta = {
        "prompt": "/imagine a red fox",  # the user's words are kept as written
        "steps": 3,
        "cfg_scale": 7.0,
        "seed": 42,
        "width": 64,
        "height": 64,
        "sampler": "Euler",
        "model": folder,
        "loras": [{"name": "ink", "weight": 0.8}],
        "request": {"model": folder, "loras": [{"path": lora, "weight": 0.8}]},
    }
    meta["parameters"] = format_parameters(meta)
    assert folder in meta["parameters"]
    window.add_layer(np.zeros((64, 64, 3), np.uint8), "gen", metadata=meta)
    out = tmp_path / "shared.png"
    assert window.documents.export(str(out))
    raw = out.read_bytes()
    assert b"secret-user" not in raw  # no local path anywhere in the file
    assert "secret-user" not in str(got := read_metadata(out))  # (text chunks may be zipped)

    assert got["model"] == "dreamshaper-8" and got["prompt"] == "/imagine a red fox"
    assert "Model: dreamshaper-8" in got.get("parameters", "")
    assert window.model.doc.layers[-2].metadata["model"] == folder  # the project keeps it


# -- 5. (part) the brush cannot paint pixels into a pose layer -------------------------------
def test_brush_does_not_paint_into_a_pose_layer(qtbot, window, photos):
    from test_ui_canvas import stroke

    window.documents.open_paths([str(photos.astronaut)])
    control = window.panels["Control"]
    control.default_skeleton()
    pose = next(la for la in window.model.doc.layers if la.kind == "pose")
    window.model.set_active(pose.uid)
    before = pose.pixels.copy()
    steps = window.model.undo.count()
    messages = []
    window.canvas.status.connect(messages.append)
    window.canvas.actual_size()
    window.canvas.centerOn(256, 256)
    window.canvas.set_tool("brush")
    stroke(window.canvas, [(100, 100), (300, 300)])
    assert np.array_equal(pose.pixels, before)  # what Generate uses is the skeleton
    assert window.model.undo.count() == steps
    assert messages and "keypoints" in messages[-1]
    assert "Control panel" not in messages[-1]  # the canvas drags them: it says so
    assert "canvas" in messages[-1]


def test_pose_keypoints_are_dragged_on_the_main_canvas_with_undo(qtbot, window, photos):
    from test_ui_canvas import stroke

    window.documents.open_paths([str(photos.astronaut)])
    control = window.panels["Control"]
    control.default_skeleton()
    layer = next(la for la in window.model.doc.layers if la.kind == "pose")
    window.model.set_active(layer.uid)
    nose = control.editor.pose.people[0].body[0]
    before_pixels = layer.pixels.copy()
    steps = window.model.undo.count()
    window.canvas.actual_size()
    window.canvas.centerOn(*nose[:2])
    window.canvas.set_tool("brush")
    target = (nose[0] + 40, nose[1] + 30)
    stroke(window.canvas, [nose[:2], (nose[0] + 20, nose[1] + 15), target])
    moved = control.editor.pose.people[0].body[0]
    assert abs(moved[0] - target[0]) <= 1 and abs(moved[1] - target[1]) <= 1
    assert layer.metadata["pose"]["people"][0]["pose_keypoints_2d"][0] == moved[0]
    assert not np.array_equal(layer.pixels, before_pixels)  # the layer shows the new pose
    assert window.model.undo.count() == steps + 1  # one step, as in the side editor
    assert window.model.undo.text(steps).startswith("Move nose")
    window.model.undo.undo()
    assert control.editor.pose.people[0].body[0][:2] == nose[:2]
    assert np.array_equal(layer.pixels, before_pixels)
