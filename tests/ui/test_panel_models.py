"""The Inpaint/Control/Upscale panels' state models without widgets: defaults, persistence
through the typed settings, two-way binding, and the engine requests they build."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox

from studio.engine.jobs import UpscaleRequest
from studio.ui.panels.upscale_model import LANCZOS, UpscaleModel
from studio.ui.properties import bind
from studio.ui.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(tmp_path / "settings.ini")


def _rgb(w: int = 24, h: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- Upscale --------------------------------------------------------------------------------
def test_upscale_defaults_and_lanczos_request(settings):
    m = UpscaleModel(settings)
    assert m.model == LANCZOS and m.lanczos
    assert (m.scale, m.tile, m.overlap, m.sharpen) == (4.0, 0, 16, 0.0)
    assert (m.source, m.output) == ("composite", "document")
    m.scale, m.sharpen = 2.0, 0.5
    image = _rgb()
    r = m.request(image)
    assert isinstance(r, UpscaleRequest)
    assert (r.method, r.scale, r.sharpen) == ("lanczos", 2.0, 0.5)
    assert r.image is image


def test_upscale_model_request_and_opaque_alpha_goes_as_rgb(settings):
    m = UpscaleModel(settings)
    m.model, m.scale, m.tile, m.overlap = "/models/x4.safetensors", 3.0, 256, 8
    rgba = np.dstack([_rgb(), np.full((16, 24), 255, np.uint8)])
    r = m.request(rgba)
    assert (r.method, r.model, r.scale, r.tile, r.overlap) == (
        "model",
        "/models/x4.safetensors",
        3.0,
        256,
        8,
    )
    assert r.image.shape == (16, 24, 3) and np.array_equal(r.image, rgba[..., :3])
    rgba[0, 0, 3] = 10  # not opaque: the alpha stays
    assert m.request(rgba).image.shape == (16, 24, 4)


def test_upscale_check_messages(settings):
    m = UpscaleModel(settings)
    assert "open an image" in m.check(None)
    assert m.check(_rgb()) is None
    m.scale = 16.0
    assert "larger than 16384" in m.check(np.zeros((10, 1100, 3), np.uint8))


def test_upscale_persists_through_settings_but_not_the_model(settings, tmp_path):
    m = UpscaleModel(settings)
    m.scale, m.tile, m.overlap, m.sharpen = 2.5, 512, 32, 1.2
    m.source, m.output, m.model = "layer", "layer", "realesrgan-x4plus"
    settings.sync()
    again = UpscaleModel(Settings(tmp_path / "settings.ini"))
    assert (again.scale, again.tile, again.overlap, again.sharpen) == (2.5, 512, 32, 1.2)
    assert (again.source, again.output) == ("layer", "layer")
    assert again.model == LANCZOS  # the panel picks an installed model itself
    assert UpscaleModel(None).values()["scale"] == 4.0  # no settings: defaults, no saving


def test_upscale_binding_is_two_way(qtbot, settings):
    m = UpscaleModel(settings)
    spin = QDoubleSpinBox()
    spin.setRange(1.0, 16.0)
    qtbot.addWidget(spin)
    bind(m, "scale", spin)
    assert spin.value() == 4.0
    spin.setValue(3.0)
    assert m.scale == 3.0 and settings.upscale_scale == 3.0
    m.scale = 1.5
    assert spin.value() == 1.5
    combo = QComboBox()
    qtbot.addWidget(combo)
    combo.addItem("New document", "document")
    combo.addItem("New layer", "layer")
    bind(m, "output", combo, data=True)
    combo.setCurrentIndex(1)
    assert m.output == "layer"
    m.output = "document"
    assert combo.currentIndex() == 0
