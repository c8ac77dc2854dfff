"""The Control panel in the app: live Canny preview, control layers (canny, scribble, pose),
pose detection through the worker, and the ControlInputs the Generate panel reads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QObject, Signal

from studio.core.canny import canny, canny_edges
from studio.core.pose import Person, Pose, default_pose, render
from studio.ui.panels.control import ControlPanel, control_inputs
from studio.ui.qimage import array_from_qimage


@pytest.fixture
def panel(window, photos, qtbot):
    # An SD 1.5 model: its guides' default ControlNets are the SD 1.5 ones (the default
    # follows the Generate panel's model: tests/ui/test_controlnet_picker.py).
    window.panels["Generate"].state.model = "sd15"
    window.import_images([str(photos.astronaut)])
    p = window.panels["Control"]
    window.show_panel("Control")  # live previews run only while the panel is shown
    qtbot.waitUntil(lambda: p.shown)
    p.source_combo.setCurrentIndex(p.source_combo.findData("composite"))
    return p


def _top_layer(window):
    return next(la for la in reversed(window.model.doc.layers) if not la.is_mask)


def rgb(window):
    return window.composite()[..., :3]


def test_sliders_update_live_canny_preview(window, panel, qtbot):
    preview = window.canvas.preview_item
    panel.live_check.setChecked(True)
    panel.add_canny_layer()  # the overlay shows while a Canny guide is edited
    window.model.set_active(_top_layer(window).uid)
    panel.low_slider.setValue(30)
    panel.high_slider.setValue(90)
    assert panel.low_spin.value() == 30
    expected = canny_edges(window.composite(), 30, 90)
    # Debounced: a preview for 30/200 (low moved, high not yet) may come first; wait for 30/90.
    qtbot.waitUntil(
        lambda: (
            not preview.image.isNull()
            and np.array_equal(array_from_qimage(preview.image)[..., 3], expected)
        ),
        timeout=5000,
    )
    shown = array_from_qimage(preview.image)
    assert np.array_equal(shown[..., 0], expected)
    assert (preview.rect.width(), preview.rect.height()) == (512, 512)
    assert panel.last_preview_ms > 0

    panel.high_slider.setValue(300)  # the preview follows the slider
    qtbot.waitUntil(
        lambda: np.array_equal(
            array_from_qimage(preview.image)[..., 3], canny_edges(window.composite(), 30, 300)
        ),
        timeout=5000,
    )
    panel.blur_spin.setValue(5)
    qtbot.waitUntil(
        lambda: np.array_equal(
            array_from_qimage(preview.image)[..., 3],
            canny_edges(window.composite(), 30, 300, blur=5),
        ),
        timeout=5000,
    )
    panel.live_check.setChecked(False)
    assert preview.image.isNull()


def test_add_canny_layer_and_control_inputs(window, panel):
    panel.low_spin.setValue(60)
    panel.high_spin.setValue(160)
    steps = window.model.undo.count()
    panel.add_canny_layer()
    assert window.model.undo.count() == steps + 1
    assert window.model.doc.active_layer.is_mask  # the brush still paints the mask
    layer = _top_layer(window)
    assert layer.kind == "control" and layer.name == "Canny 60/160"
    assert layer.metadata["control"] == "canny" and layer.metadata["low"] == 60
    (ci,) = control_inputs(window)
    assert ci.kind == "canny" and ci.model == "sd15-canny"
    assert (ci.weight, ci.start, ci.end) == (1.0, 0.0, 1.0)
    assert np.array_equal(ci.image, canny(rgb(window), 60, 160))
    assert panel.table.rowCount() == 1

    # the table edits what Generate gets
    panel.table.cellWidget(0, 2).setValue(0.55)
    panel.table.cellWidget(0, 4).setValue(0.8)
    panel.table.cellWidget(0, 5).setCurrentText("my/controlnet")
    (ci,) = control_inputs(window, region=(0, 0, 256, 256), size=(128, 128))
    assert (ci.weight, ci.end, ci.model) == (0.55, 0.8, "my/controlnet")
    assert ci.image.shape == (128, 128, 3)
    on = panel.table.cellWidget(0, 0).findChildren(type(panel.live_check))[0]
    on.setChecked(False)
    assert control_inputs(window) == ()
    window.model.undo.undo()  # removing the layer removes the control
    on.setChecked(True)
    assert control_inputs(window) == () and panel.table.rowCount() == 0


def test_canny_inside_selection(window, panel):
    window.model.set_selection((64, 128, 192, 128))
    panel.invalidate_source()
    panel.add_canny_layer()
    layer = _top_layer(window)
    assert tuple(layer.offset) == (64, 128) and layer.size == (192, 128)
    (ci,) = control_inputs(window)
    full = ci.image
    assert full.shape == (512, 512, 3)
    crop = rgb(window)[128:256, 64:256]
    assert np.array_equal(full[128:256, 64:256], canny(crop, 100, 200))
    full[128:256, 64:256] = 0
    assert not full.any()


def test_scribble_strokes_are_used_as_drawn(window, panel):
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtTest import QTest

    panel.add_scribble_layer()
    layer = window.model.doc.active_layer
    assert layer.kind == "control" and layer.metadata["control"] == "scribble"
    (ci,) = control_inputs(window)
    assert ci.kind == "scribble" and ci.model == "sd15-scribble" and not ci.image.any()

    # the user paints on the (active) scribble layer with the canvas brush
    window.canvas.set_tool("brush")
    vp = window.canvas.viewport()
    pts = [window.canvas.mapFromScene(QPointF(x, 200)) for x in (100, 200, 300, 400)]
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[0])
    for p in pts[1:]:
        QTest.mouseMove(vp, p)
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[-1])
    assert window.model.doc.layer(layer.uid).pixels[..., 3].any()
    (ci,) = control_inputs(window)
    assert (ci.image[200, 120:380] == 255).all()  # the stroke, white, whatever brush colour
    assert not ci.image[:150].any() and not ci.image[250:].any()
    window.model.undo.undo()  # undoing the stroke empties the guide again
    (ci,) = control_inputs(window)
    assert not ci.image.any()


def test_opaque_control_layer_from_the_layers_panel_is_used_as_drawn(window, panel):
    window.layers_panel.new_control()  # black, opaque: paint white on it
    layer = window.model.doc.active_layer
    (ci,) = control_inputs(window)
    assert ci.kind == "scribble" and not ci.image.any()
    strokes = layer.pixels.copy()
    strokes[300:306, 40:200, :3] = 255
    strokes[320:330, 40:200, :3] = 128  # grey stays grey
    window.model.set_pixels(layer.uid, strokes, "Brush")
    (ci,) = control_inputs(window)
    assert (ci.image[300:306, 40:200] == 255).all()
    assert (ci.image[320:330, 40:200] == 128).all()
    assert ci.image.sum() == 6 * 160 * 3 * 255 + 10 * 160 * 3 * 128
    assert panel.table.rowCount() == 1


def test_default_skeleton_makes_a_pose_layer(window, panel):
    panel.default_skeleton()
    layer = window.model.doc.layer(panel.pose_layer_uid)
    assert layer.kind == "pose" and layer.metadata["control"] == "pose"
    (ci,) = control_inputs(window)
    assert ci.kind == "pose" and ci.model == "sd15-openpose"
    assert np.array_equal(ci.image, render(default_pose(512, 512)))
    panel.editor.add_person()
    (ci,) = control_inputs(window)
    assert np.array_equal(ci.image, render(panel.editor.pose))
    assert len(Pose.from_dict(layer.metadata["pose"]).people) == 2


def test_undo_redo_past_the_pose_layer_keeps_it_in_step(window, panel):
    panel.default_skeleton()
    panel.editor.add_person()
    uid = panel.pose_layer_uid
    for _ in range(3):
        window.model.undo.undo()
    assert all(layer.uid != uid for layer in window.model.doc.layers)
    for _ in range(3):
        window.model.undo.redo()
    layer = window.model.doc.layer(uid)
    assert len(panel.editor.pose.people) == 2
    assert np.array_equal(layer.pixels[..., :3], render(panel.editor.pose))
    (ci,) = control_inputs(window)
    assert np.array_equal(ci.image, render(panel.editor.pose))
    window.model.remove_layer(uid)  # deleted for good: the next skeleton makes a new layer
    panel.default_skeleton()
    assert panel.pose_layer_uid != uid
    assert window.model.doc.layer(panel.pose_layer_uid).kind == "pose"


def test_detected_pose_lands_in_document_coordinates(window, panel, qtbot, monkeypatch):
    """The detector sees the selection's crop; its keypoints are moved to the document."""
    from studio.engine.vision import pose_detect

    hand = [(float(10 + i), 20.0, 0.9) for i in range(21)]
    crop_pose = Pose(128, 128, [Person(body=default_pose(128, 128).people[0].body, hand_left=hand)])
    seen = {}

    def fake_detect(self, image, resolution=512, check=None, **kwargs):
        seen["shape"] = image.shape
        return crop_pose

    monkeypatch.setattr(pose_detect.PoseDetector, "detect", fake_detect)
    monkeypatch.setattr(pose_detect, "load_body_model", lambda path, device="cpu": None)
    folder = pose_detect.default_model_folder()
    folder.mkdir(parents=True)
    (folder / pose_detect.BODY_FILE).write_bytes(b"stub")
    window.model.set_selection((64, 32, 128, 128))
    panel.invalidate_source()
    assert panel.detect_pose() is not None
    qtbot.waitUntil(lambda: panel._pose_job is None, timeout=120_000)
    assert seen["shape"] == (128, 128, 3)
    assert panel.pose_status.text().startswith("Found 1 person")
    body = panel.editor.pose.people[0].body
    for (x, y, _), (cx, cy, _) in zip(body, crop_pose.people[0].body, strict=True):
        assert (x, y) == pytest.approx((cx + 64, cy + 32))
    assert panel.editor.pose.people[0].hand_left[3] == (13.0 + 64, 20.0 + 32, 0.9)
    layer = window.model.doc.layer(panel.pose_layer_uid)
    assert layer.size == (512, 512)
    window.model.undo.undo()  # the detection is one undo step
    assert len(panel.editor.pose.people) == 0


def test_detect_with_random_weights_and_without_a_model(window, panel, qtbot, tmp_path):
    from studio.engine.fixtures import write_random_openpose

    panel.pose_model.setText(str(write_random_openpose(tmp_path / "w").parent))
    window.model.set_selection((0, 0, 96, 96))
    panel.invalidate_source()
    panel.detect_pose()
    assert not panel.detect_button.isEnabled()
    qtbot.waitUntil(lambda: panel._pose_job is None, timeout=180_000)
    assert panel.detect_button.isEnabled()
    text = panel.pose_status.text()
    assert text.startswith(("Found", "Nobody found")), text

    panel.pose_model.setText("")  # nothing installed in this STUDIO_HOME
    panel.detect_pose()
    qtbot.waitUntil(lambda: panel._pose_job is None, timeout=60_000)
    assert "No pose detector" in panel.pose_status.text()
    assert "default skeleton" in panel.pose_status.text()
    assert window._errors  # told non-modally; the app stays usable
    panel.default_skeleton()
    assert len(panel.editor.pose.people) == 1


def test_load_json_into_pose_layer(window, panel, tmp_path):
    pose = default_pose(512, 512, people=2)
    path = tmp_path / "p.json"
    pose.save(path)
    panel.load_json(str(path))
    (ci,) = control_inputs(window)
    assert np.array_equal(ci.image, render(Pose.load(path)))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    panel.load_json(str(bad))
    assert window._errors


# -- without a main window: a minimal Host ---------------------------------------------------------
class _Worker(QObject):
    started = Signal(int)
    progress = Signal(int, "qint64", "qint64")
    preview = Signal(int, object, object)
    finished = Signal(int, object)
    failed = Signal(int, str, str)
    cancelled = Signal(int)

    def submit(self, request, region=None, label="", owner=None, target=None):
        self.request = request
        return 1

    def job(self, job_id):
        return None


class FakeHost:
    """A Host without a main window (studio.ui.host.Host: everything a panel uses)."""

    def __init__(self, image):
        from studio.ui.document_model import DocumentModel

        self.worker = _Worker()
        self.model = DocumentModel()
        self.settings = None
        self.panels = {}
        self.image = image
        self.layers = []
        self.previews = []
        self.commands = []
        self.errors = []

    def image_size(self):
        return self.image.shape[1], self.image.shape[0]

    def composite(self):
        return self.image

    def active_layer_image(self):
        return self.image

    def mask(self):
        return None

    def selection_rect(self):
        return (0, 0, *self.image_size())

    def add_layer(self, image, name, kind="image", offset=(0, 0), metadata=None):
        self.layers.append((image, name, kind, offset, metadata))
        self.model.add_layer(image, name, kind, offset, metadata)

    def push_command(self, command):
        self.model.push(command)
        self.commands.append(command)

    def show_error(self, message, detail=""):
        self.errors.append(message)

    def show_preview(self, image, region):
        self.previews.append((image, region))

    def clear_preview(self):
        self.previews.append(None)

    def show_status(self, text, ms=6000):
        pass


def test_panel_with_a_minimal_host(qtbot, photos):
    from studio.core.imageio import load_image

    image = load_image(photos.chelsea, "RGBA")
    host = FakeHost(image)
    p = ControlPanel(host)
    qtbot.addWidget(p)
    p.update_preview()
    assert host.previews == []  # no Canny guide edited: nothing over the picture
    p.add_canny_layer()
    _, name, kind, offset, meta = host.layers[-1]
    assert kind == "control" and meta["control"] == "canny"
    assert meta["source"] == "composite"
    host.model.set_active(host.model.doc.layers[-2].uid)  # the guide (below the mask)
    p.update_preview()
    edges, region = host.previews[-1]
    assert region == (0, 0, 451, 300)
    assert np.array_equal(edges[..., 3], canny_edges(image, 100, 200))
    host.model.set_active(host.model.doc.mask_layer.uid)
    p.default_skeleton()
    assert host.layers[-1][2] == "pose" and len(host.commands) == 1
    kinds = [c.kind for c in control_inputs(host)]
    assert kinds == ["canny", "pose"]
    pose_input = control_inputs(host)[1]
    assert np.array_equal(pose_input.image, render(default_pose(451, 300)))
    assert p.detect_pose() is None and "No pose detector is installed" in host.errors[-1]
    assert not hasattr(host.worker, "request")  # no job without a detector: said in GUI words
    assert "studio " not in host.errors[-1]
    p.state.pose_model = "/models/dwpose"  # a detector folder of the user's
    p.detect_pose()
    assert host.worker.request.kind == "pose" and host.worker.request.image.shape == (300, 451, 3)
    assert control_inputs(FakeHost(image)) == ()  # a document without guides: none


def test_depth_guide_becomes_a_control_layer_of_the_engines_depth(window, panel, qtbot):
    """Add depth as control layer: the engine's depth of the visible image (near = white)
    lands as a "Depth" control layer over the region, one undo step."""
    from studio.engine.fixtures.tiny_depth import build_tiny_depth_anything
    from studio.engine.vision.depth import estimate_depth, load_depth_model
    from studio.ui.pose_editor import rgba_to_control

    home = Path(os.environ["STUDIO_HOME"])  # the window's own (tests/conftest.py)
    folder = build_tiny_depth_anything(home / "models" / "depth" / "depth-anything-v2-small")
    before = len(window.model.doc.layers)
    panel.depth.button.click()
    qtbot.waitUntil(lambda: len(window.model.doc.layers) == before + 1, timeout=30_000)
    layer = _top_layer(window)
    assert layer.name == "Depth" and layer.kind == "control"
    assert layer.metadata["control"] == "depth" and layer.offset == (0, 0)
    got = rgba_to_control(layer.pixels)[..., 0]
    model, processor = load_depth_model(folder, "cpu")
    want = estimate_depth(model, processor, rgb(window))
    assert got.shape == want.shape == (512, 512)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    window.model.undo.undo()
    assert len(window.model.doc.layers) == before
