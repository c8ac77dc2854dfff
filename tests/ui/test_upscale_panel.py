"""The Upscale panel in the real main window: Lanczos and a tiny random ESRGAN through the
real worker thread, result as a new document or a new layer (one undo step), cancel, and the
before/after split view."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from studio.core.document import Document
from studio.ui.panels.upscale import BeforeAfterView, UpscalePanel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_upscaler(tmp_path_factory) -> Path:
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN as RRDBNet

    torch.manual_seed(0)
    net = RRDBNet(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4)
    path = tmp_path_factory.mktemp("ui-upscaler") / "tiny-x4.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def _image(w: int = 24, h: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def panel(window) -> UpscalePanel:
    p = window.panels.get("Upscale")
    assert isinstance(p, UpscalePanel), window.panel_errors.get("Upscale")
    window.model.replace(Document.from_image(_image(), "Background"))
    window.model.undo.clear()
    return p


def _wait_done(qtbot, panel, timeout=60000):
    qtbot.waitUntil(lambda: not panel.running, timeout=timeout)


def test_panel_is_docked_and_defaults_to_lanczos_without_models(panel):
    assert panel.model_combo.count() == 1  # no installed upscaler in the test STUDIO_HOME
    assert panel.model_choice == "lanczos"
    assert panel.sharpen_spin.isEnabled() and not panel.tile_spin.isEnabled()
    assert panel.tile_spin.value() == 0 and panel.tile_spin.text() == "Auto"


def test_lanczos_to_new_document(qtbot, window, panel):
    panel.scale_spin.setValue(2.0)
    panel.output_combo.setCurrentIndex(panel.output_combo.findData("document"))
    panel.run_button.click()
    assert panel.running and not panel.run_button.isEnabled()
    _wait_done(qtbot, panel)
    assert panel.result is not None and panel.result.shape == (32, 48, 3)
    # the working document stays; the result opens in a window of its own
    assert (window.model.doc.width, window.model.doc.height) == (24, 16)
    assert not window.model.dirty
    (new,) = window.windows
    qtbot.waitExposed(new)
    doc = new.model.doc
    assert (doc.width, doc.height) == (48, 32)
    assert doc.layers[0].metadata["upscale"]["upscaler"] == "Lanczos"
    assert new.model.dirty and new.windowTitle().startswith("Untitled")
    new.model.undo.setClean()
    new.close()
    qtbot.waitUntil(lambda: not window.windows)
    assert panel.view.has_images
    assert "48×32" in panel.status.text()


def test_model_to_new_layer_is_one_undo_step(qtbot, window, panel, tiny_upscaler):
    panel.add_model_file(str(tiny_upscaler))
    assert panel.model_choice == str(tiny_upscaler)
    assert panel.tile_spin.isEnabled() and not panel.sharpen_spin.isEnabled()
    panel.scale_spin.setValue(4.0)
    panel.tile_spin.setValue(64)
    panel.output_combo.setCurrentIndex(panel.output_combo.findData("layer"))
    progress = []
    window.worker.progress.connect(lambda j, s, t: progress.append((s, t)))
    layers_before = len(window.model.doc.layers)
    panel.run_button.click()
    _wait_done(qtbot, panel)
    doc = window.model.doc
    assert (doc.width, doc.height) == (96, 64)
    assert len(doc.layers) == layers_before + 1
    added = [la for la in doc.layers if la.name.startswith("Upscaled")]
    assert len(added) == 1 and added[0].pixels.shape == (64, 96, 4)
    assert added[0].metadata["upscale"]["architecture"] == "ESRGAN"
    assert "ESRGAN x4" in panel.status.text()
    assert progress and progress[-1][0] == progress[-1][1]
    window.model.undo.undo()
    assert (window.model.doc.width, window.model.doc.height) == (24, 16)
    assert len(window.model.doc.layers) == layers_before
    window.model.undo.redo()
    assert (window.model.doc.width, window.model.doc.height) == (96, 64)


def test_cancel(qtbot, window, panel, tiny_upscaler):
    window.model.replace(Document.from_image(_image(160, 160), "Background"))
    panel.add_model_file(str(tiny_upscaler))
    panel.tile_spin.setValue(32)
    panel.overlap_spin.setValue(4)
    size_before = window.image_size()
    with qtbot.waitSignal(window.worker.progress, timeout=60000):
        panel.run_button.click()
    panel.cancel_button.click()
    _wait_done(qtbot, panel)
    assert panel.status.text() == "Cancelled"
    assert panel.result is None
    assert window.image_size() == size_before
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_failed_job_shows_one_line_error(qtbot, window, panel, tmp_path):
    bogus = tmp_path / "not-an-upscaler.safetensors"
    bogus.write_bytes(b"garbage")
    errors = []
    window.show_error = lambda message, detail="": errors.append(message)
    panel.add_model_file(str(bogus))
    panel.run_button.click()
    _wait_done(qtbot, panel)
    assert errors and "not-an-upscaler.safetensors" in errors[0] and "\n" not in errors[0]
    assert panel.run_button.isEnabled()


def test_nothing_to_upscale(window, panel):
    window.model.replace(Document())
    errors = []
    window.show_error = lambda message, detail="": errors.append(message)
    panel.start()
    assert errors and "Nothing to upscale" in errors[0] and not panel.running


def test_before_after_view_split(qtbot):
    view = BeforeAfterView()
    qtbot.addWidget(view)
    view.resize(200, 100)
    view.show()
    before = np.zeros((10, 20, 3), np.uint8)
    after = np.full((40, 80, 3), 255, np.uint8)
    view.set_images(before, after)
    rect = view.image_rect()
    assert rect.width() == pytest.approx(200) and rect.height() == pytest.approx(100)

    def pixel(x):
        return view.grab().toImage().pixelColor(x, 60).red()

    view.set_split(0.5)
    assert pixel(50) < 20 and pixel(150) > 235
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(180, 50))
    assert view.split == pytest.approx(0.9, abs=0.01)
    assert pixel(150) < 20  # now left of the divider: "before"
    view.set_split(0.0)
    assert pixel(10) > 235


def test_panel_module_does_not_import_torch():
    code = (
        "import sys; import studio.ui.panels.upscale; "
        "bad = [m for m in ('torch', 'spandrel', 'diffusers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_panel_widgets_are_views_of_its_state(window, panel):
    """The widgets bind to the panel's UpscaleModel: edits reach it (and the settings),
    and the request the panel sends is the model's."""
    panel.scale_spin.setValue(2.0)
    panel.sharpen_spin.setValue(0.4)
    panel.output_combo.setCurrentIndex(panel.output_combo.findData("layer"))
    assert (panel.state.scale, panel.state.sharpen, panel.state.output) == (2.0, 0.4, "layer")
    assert window.settings.upscale_scale == 2.0
    panel.state.tile = 256
    assert panel.tile_spin.value() == 256
    r = panel.build_request(_image())
    assert (r.method, r.scale, r.sharpen) == ("lanczos", 2.0, 0.4)
