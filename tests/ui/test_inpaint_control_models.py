"""The Inpaint and Control panels' state models (studio.ui.panels.inpaint_model,
control_model): the requests they build without widgets, one clear message for bad input,
persistence through the typed settings, and two-way binding with the real panels' widgets
(a panel keeps no second copy of its settings: what it submits is what the model says)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QObject, Signal

from studio.core.canny import canny
from studio.core.document import Layer
from studio.core.outpaint import Extension
from studio.core.pose import default_pose, render
from studio.engine.jobs import InpaintRequest, PreprocessRequest
from studio.ui.panels.control_model import (
    ControlEntry,
    ControlModel,
    control_image,
    control_input,
    entries,
    new_layer_metadata,
)
from studio.ui.panels.inpaint_model import RANGES, InpaintModel
from studio.ui.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(tmp_path / "settings.ini")


def _rgba(w: int = 40, h: int = 30, alpha: int = 255) -> np.ndarray:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return np.dstack([rgb, np.full((h, w), alpha, np.uint8)])


def _mask(w: int = 40, h: int = 30) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[10:20, 12:25] = 255
    return m


# == Inpaint: requests without widgets ==========================================================
def test_inpaint_defaults_and_erase_request(qapp):
    m = InpaintModel()
    assert (m.padding, m.blend, m.grow, m.feather) == (32, 8, 8, 8)
    assert (m.erase_method, m.steps, m.guidance, m.strength, m.seed) == ("auto", 25, 7.0, 1.0, 0)
    assert (m.overlap, m.outpaint_with, m.aspect) == (32, "diffusion", "")
    image, mask = _rgba(), _mask()
    m.erase_method, m.padding, m.blend = "telea", 12, 3
    r = m.request("erase", image, mask)
    assert isinstance(r, InpaintRequest)
    assert (r.method, r.model, r.padding, r.feather) == ("telea", "", 12, 3)
    assert r.image is image and r.mask is mask
    assert r.prompt == ""  # the prompt belongs to Fill, not Erase


def test_inpaint_fill_request_takes_the_prompt_settings(qapp):
    m = InpaintModel()
    m.model, m.prompt, m.negative_prompt = "  tiny-inpaint ", "  a red door ", " blurry "
    m.steps, m.guidance, m.strength, m.seed = 4, 5.5, 0.6, 1234
    r = m.request("fill", _rgba(), _mask())
    assert (r.method, r.model, r.prompt, r.negative_prompt) == (
        "diffusion",
        "tiny-inpaint",
        "a red door",
        "blurry",
    )
    assert (r.steps, r.guidance, r.strength, r.seed) == (4, 5.5, 0.6, 1234)
    # outpaint uses what "Using" says: the prompt model, or the erase method
    assert m.fields("outpaint")["method"] == "diffusion"
    m.outpaint_with, m.erase_method = "erase", "ns"
    assert m.fields("outpaint") == {"method": "ns", "model": ""}
    # fields taken when a job began are kept (an outpaint's later passes)
    kept = m.request("outpaint", _rgba(), _mask(), fields={"method": "telea", "model": ""})
    assert kept.method == "telea"


def test_inpaint_outpaint_extension_and_pass(qapp):
    m = InpaintModel()
    assert m.extension((150, 100)) is None
    m.left, m.top = 32, 16
    assert m.extension((150, 100)) == Extension(left=32, top=16)
    m.aspect = "1:1"  # the aspect wins over the sides
    assert m.extension((150, 100)).new_size((150, 100)) == (150, 150)
    m.aspect, m.overlap = "", 8
    image = _rgba(150, 100)
    canvas, mask = m.extend(image, Extension(left=32))
    assert canvas.shape[:2] == (100, 182) and mask.shape == (100, 182)
    assert mask[:, :32].min() == 255 and mask[:, 32 + 8 :].max() == 0  # 8 px overlap redrawn


def test_inpaint_bad_input_is_one_clear_message(qapp):
    m = InpaintModel()
    image, mask = _rgba(), _mask()
    with pytest.raises(ValueError, match=r"^Open an image first\.$"):
        m.request("erase", None, mask)
    with pytest.raises(ValueError, match="Paint a mask over the area first"):
        m.request("erase", image, None)
    with pytest.raises(ValueError, match="the image is 40x30: they must be the same size"):
        m.request("erase", image, np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match="Choose a model for Fill from prompt"):
        m.request("fill", image, mask)
    m.model = "tiny"
    m.steps = 0
    with pytest.raises(ValueError, match=r"^Steps must be between 1 and 150 \(it is 0\)\.$"):
        m.request("fill", image, mask)
    m.steps = 20
    m.erase_method = "magic"
    with pytest.raises(ValueError, match="Unknown erase method “magic”: use one of auto, lama"):
        m.request("erase", image, mask)
    with pytest.raises(ValueError, match="Unknown inpaint action"):
        m.request("paint", image, mask)
    assert m.request("fill", image, mask).steps == 20  # one bad setting does not stick
    with pytest.raises(ValueError, match="Set how many pixels to add"):
        m.outpaint_extension((150, 100))
    m.left = 2048
    with pytest.raises(ValueError, match=r"would be 16584x100: too large"):
        m.outpaint_extension((14536, 100))
    m.aspect = "wide"
    with pytest.raises(ValueError, match="bad aspect ratio 'wide'"):
        m.outpaint_extension((150, 100))


def test_inpaint_persists_through_settings(settings, tmp_path):
    m = InpaintModel(settings)
    m.padding, m.blend, m.grow, m.feather = 48, 4, 12, 6
    m.erase_method, m.steps, m.guidance, m.strength = "lama", 30, 4.5, 0.8
    m.overlap, m.outpaint_with = 64, "erase"
    m.prompt, m.seed, m.left, m.aspect = "a cat", 99, 128, "16:9"  # per image: not saved
    m.model = "tiny-inpaint"
    settings.sync()
    again = InpaintModel(Settings(tmp_path / "settings.ini"))
    assert (again.padding, again.blend, again.grow, again.feather) == (48, 4, 12, 6)
    assert (again.erase_method, again.steps, again.guidance, again.strength) == (
        "lama",
        30,
        4.5,
        0.8,
    )
    assert (again.overlap, again.outpaint_with) == (64, "erase")
    assert (again.prompt, again.seed, again.left, again.aspect) == ("", 0, 0, "")
    assert again.model == ""  # the model is saved when a job is submitted, as Generate's
    m.remember_model()
    assert InpaintModel(settings).model == "tiny-inpaint"
    settings.inpaint_erase_method = "broken"  # a damaged setting: the default, unsaved
    assert InpaintModel(settings).erase_method == "auto"
    assert settings.inpaint_erase_method == "broken"
    assert InpaintModel(None).values()["padding"] == 32  # no settings: defaults, no saving


# == Inpaint: the real panel's widgets ==========================================================
class _Worker(QObject):
    started = Signal(int)
    progress = Signal(int, int, int)
    preview = Signal(int, object, object)
    finished = Signal(int, object)
    failed = Signal(int, str, str)
    cancelled = Signal(int)

    def __init__(self) -> None:
        super().__init__()
        self.requests: list = []

    def submit(self, request, region=None, label="", owner=None, target=None):
        self.requests.append(request)
        return len(self.requests)

    def job(self, job_id):
        return None

    def cancel(self, job_id):
        pass


class _Host(QObject):
    """The part of studio.ui.host.Host the two panels use, without a main window."""

    models_updated = Signal()

    def __init__(self, settings, image=None, mask=None) -> None:
        super().__init__()
        from studio.ui.document_model import DocumentModel

        self.settings = settings
        self.worker = _Worker()
        self.model = DocumentModel()
        self.panels: dict = {}
        self.image, self._mask = image, mask
        self.errors: list[str] = []
        self.layers: list = []

    def image_size(self):
        return (0, 0) if self.image is None else (self.image.shape[1], self.image.shape[0])

    def composite(self):
        return self.image

    def active_layer_image(self):
        return self.image

    def mask(self):
        return self._mask

    def selection_rect(self):
        return (0, 0, *self.image_size())

    def show_error(self, message, detail=""):
        self.errors.append(message)

    def add_layer(self, image, name, kind="image", offset=(0, 0), metadata=None):
        self.layers.append((name, kind, metadata))
        self.model.add_layer(image, name, kind, offset, metadata)

    def push_command(self, command):
        self.model.push(command)

    def show_staged(self, image, region):
        pass

    def clear_staged(self):
        pass

    def show_preview(self, image, region):
        pass

    def clear_preview(self):
        pass

    def show_status(self, text, ms=6000):
        pass


@pytest.fixture
def inpaint_panel(qtbot, settings):
    from studio.ui.panels.inpaint import InpaintPanel

    host = _Host(settings, _rgba(), _mask())
    panel = InpaintPanel(host)
    qtbot.addWidget(panel)
    return panel


def test_inpaint_widgets_and_model_bind_both_ways(inpaint_panel):
    p, s = inpaint_panel, inpaint_panel.state
    numbers = {
        "grow": p.grow_spin,
        "feather": p.feather_spin,
        "padding": p.padding_spin,
        "blend": p.blend_spin,
        "steps": p.steps_spin,
        "guidance": p.guidance_spin,
        "strength": p.strength_spin,
        "seed": p.seed_spin,
        "overlap": p.overlap_spin,
        **p.side_spins,
    }
    for name, spin in numbers.items():
        assert spin.value() == getattr(s, name), name
        lo, hi = RANGES[name][1:]
        assert (spin.minimum(), spin.maximum()) == (lo, hi), name  # one source of ranges
        spin.setValue(lo + (hi - lo) / 2 if isinstance(lo, float) else lo + 1)
        assert getattr(s, name) == spin.value(), name  # widget -> model
        setattr(s, name, hi)
        assert spin.value() == hi, name  # model -> widget
    p.prompt_edit.setPlainText("a lighthouse")
    p.negative_edit.setText("fog")
    p.model_combo.setEditText("my-model")
    assert (s.prompt, s.negative_prompt, s.model) == ("a lighthouse", "fog", "my-model")
    s.prompt, s.negative_prompt, s.model = "a boat", "rain", "other-model"
    assert p.prompt_edit.toPlainText() == "a boat" and p.negative_edit.text() == "rain"
    assert p.model_combo.currentText() == "other-model"
    for combo, name, key in (
        (p.erase_method, "erase_method", "ns"),
        (p.aspect_combo, "aspect", "16:9"),
        (p.outpaint_with, "outpaint_with", "erase"),
    ):
        combo.setCurrentIndex(combo.findData(key))
        assert getattr(s, name) == key
        setattr(s, name, combo.itemData(0))
        assert combo.currentIndex() == 0


def test_inpaint_panel_submits_what_the_model_says(inpaint_panel):
    p, s = inpaint_panel, inpaint_panel.state
    s.erase_method, s.padding, s.blend = "telea", 20, 5  # set on the model, not the widgets
    p.erase_button.click()
    (r,) = p.host.worker.requests
    assert r == s.request("erase", p.host.image, p.host._mask)
    assert (r.method, r.padding, r.feather) == ("telea", 20, 5)
    p.job_id = None
    p._set_running(False)
    s.model, s.prompt, s.steps = "tiny", "grass", 3
    p.fill_button_run.click()
    assert p.host.worker.requests[-1].prompt == "grass"
    assert p.host.settings.inpaint_model == "tiny"  # remembered on submit
    p.job_id = None
    p._set_running(False)
    p.host._mask = None
    p.fill_button_run.click()
    assert len(p.host.worker.requests) == 2
    assert p.host.errors == ["Paint a mask over the area first (the brush paints the mask)."]


def test_inpaint_panel_settings_survive_a_restart(qtbot, settings, tmp_path):
    from studio.ui.panels.inpaint import InpaintPanel

    first = InpaintPanel(_Host(settings))
    qtbot.addWidget(first)
    first.padding_spin.setValue(64)
    first.erase_method.setCurrentIndex(first.erase_method.findData("lama"))
    settings.sync()
    second = InpaintPanel(_Host(Settings(tmp_path / "settings.ini")))
    qtbot.addWidget(second)
    assert second.padding_spin.value() == 64 and second.state.padding == 64
    assert second.erase_method.currentData() == "lama"


# == Control: requests without widgets ==========================================================
def test_control_defaults_edges_and_pose_request(qapp):
    m = ControlModel()
    assert (m.source, m.low, m.high, m.blur, m.live, m.pose_model, m.hands) == (
        "layer",
        100,
        200,
        0,
        True,
        "",
        True,
    )
    crop = _rgba(64, 48)
    m.low, m.high, m.blur = 40, 120, 3
    assert np.array_equal(m.edges(crop), canny(crop, 40, 120, blur=3))
    assert m.canny_name() == "Canny 40/120"
    assert m.canny_metadata() == {"control": "canny", "low": 40, "high": 120, "blur": 3}
    r = m.pose_request(_rgba(64, 48, alpha=0))  # transparent is seen as white
    assert isinstance(r, PreprocessRequest) and r.kind == "pose"
    assert r.image.shape == (48, 64, 3) and r.image.min() == 255
    assert (r.param("hands"), r.param("face"), r.param("model")) == (True, True, None)
    m.hands, m.pose_model = False, "  /models/dwpose "
    r = m.pose_request(crop)
    assert (r.param("hands"), r.param("face"), r.param("model")) == (False, False, "/models/dwpose")
    assert np.array_equal(r.image, crop[..., :3])


def test_control_layers_become_control_inputs(qapp):
    size = (64, 48)
    canny_px = np.zeros((16, 20, 4), np.uint8)
    canny_px[4, :, :] = 255  # one white edge row
    scribble = np.zeros((48, 64, 4), np.uint8)
    scribble[10, 5:30] = (200, 30, 30, 255)  # a red stroke on a transparent layer
    pose = default_pose(*size)
    pose_px = np.dstack([render(pose), np.full((48, 64), 255, np.uint8)])
    canny_meta = new_layer_metadata({"control": "canny"})
    layers = [
        Layer("Background", "image", _rgba(*size)),
        Layer("Canny", "control", canny_px, offset=(8, 6), metadata=canny_meta),
        Layer("Scribble", "control", scribble, metadata={"control": "scribble"}),
        Layer("Pose", "pose", pose_px, metadata={"pose": pose.to_dict()}),
    ]
    found = entries(layers)
    assert [(e.kind, e.name) for e in found] == [
        ("canny", "Canny"),
        ("scribble", "Scribble"),
        ("pose", "Pose"),
    ]
    assert [e.model for e in found] == ["sd15-canny", "sd15-scribble", "sd15-openpose"]
    canny_e, scribble_e, pose_e = found
    image = control_image(canny_e, layers[1].pixels, layers[1].offset, size)
    assert image.shape == (48, 64, 3) and (image[10, 8:28] == 255).all()
    assert image.sum() == 20 * 3 * 255  # the edge, placed at the layer's offset, and nothing else
    drawn = control_image(scribble_e, scribble, (0, 0), size)
    assert (drawn[10, 5:30] == 255).all()  # a stroke is white, whatever its colour
    assert np.array_equal(control_image(pose_e, pose_px, (0, 0), size), render(pose))
    assert control_image(canny_e, None, (0, 0), size) is None

    canny_e.settings.update(weight=0.5, start=0.1, end=0.9, model="my/controlnet")
    ci = control_input(canny_e, image, region=(8, 6, 32, 24), size=(16, 12))
    assert (ci.kind, ci.model, ci.weight, ci.start, ci.end) == (
        "canny",
        "my/controlnet",
        0.5,
        0.1,
        0.9,
    )
    assert ci.image.shape == (12, 16, 3)
    plain = control_input(scribble_e, drawn)  # no settings yet: the defaults
    assert (plain.weight, plain.start, plain.end, plain.model) == (1.0, 0.0, 1.0, "sd15-scribble")


def test_control_bad_input_is_one_clear_message(qapp):
    m = ControlModel()
    with pytest.raises(ValueError, match="Open an image first: edges"):
        m.edges(None)
    with pytest.raises(ValueError, match="Open an image first: poses"):
        m.pose_request(None)
    m.high = 900
    message = r"^Canny high threshold must be between 0 and 500 \(it is 900\)\.$"
    with pytest.raises(ValueError, match=message):
        m.edges(_rgba())
    image = np.zeros((8, 8, 3), np.uint8)
    e = ControlEntry("canny", "Edges", settings={"weight": "strong"})
    message = r"“Edges”: weight must be a number from 0 to 2 \(it is 'strong'\)"
    with pytest.raises(ValueError, match=message):
        control_input(e, image)
    e.settings.update(weight=1.0, start=0.8, end=0.8)
    with pytest.raises(ValueError, match=r"“Edges”: start \(0\.8\) must be before end \(0\.8\)"):
        control_input(e, image)
    e.settings.update(start=0.0, end=1.0, model=" ")
    with pytest.raises(ValueError, match="“Edges” has no ControlNet: choose one in the Control"):
        control_input(e, image)


def test_control_persists_through_settings(settings, tmp_path):
    m = ControlModel(settings)
    m.source, m.low, m.high, m.blur = "composite", 30, 90, 5
    m.live, m.pose_model, m.hands = False, "/models/openpose", False
    settings.sync()
    again = ControlModel(Settings(tmp_path / "settings.ini"))
    assert again.values() == m.values()
    settings.control_source = "nowhere"  # damaged: the default, unsaved
    assert ControlModel(settings).source == "layer"
    assert settings.control_source == "nowhere"


# == Control: the real panel's widgets ==========================================================
def test_control_widgets_and_model_bind_both_ways(qtbot, settings):
    from studio.ui.panels.control import POSE_MODEL_TIP, ControlPanel

    host = _Host(settings, _rgba(64, 48))
    p = ControlPanel(host)
    qtbot.addWidget(p)
    s = p.state
    assert (p.low_slider.value(), p.low_spin.value(), p.high_slider.value()) == (100, 100, 200)
    p.low_slider.setValue(30)  # the slider moves the model, and the model the spin box
    assert s.low == 30 and p.low_spin.value() == 30 and settings.control_low == 30
    p.high_spin.setValue(90)
    assert s.high == 90 and p.high_slider.value() == 90
    s.low, s.high, s.blur = 10, 300, 7
    assert (p.low_slider.value(), p.low_spin.value()) == (10, 10)
    assert (p.high_slider.value(), p.blur_spin.value()) == (300, 7)
    p.blur_spin.setValue(3)
    assert s.blur == 3
    p.source_combo.setCurrentIndex(p.source_combo.findData("composite"))
    assert s.source == "composite"
    s.source = "layer"
    assert p.source_combo.currentData() == "layer"
    p.live_check.setChecked(False)
    p.hands_check.setChecked(False)
    assert (s.live, s.hands) == (False, False)
    s.live = s.hands = True
    assert p.live_check.isChecked() and p.hands_check.isChecked()
    p.pose_model.setText("/models/dwpose")
    assert s.pose_model == "/models/dwpose"
    s.pose_model = ""
    assert p.pose_model.text() == ""
    # what the panel sends is what the model says
    p.add_canny_layer()
    name, kind, meta = host.layers[-1]
    assert (name, kind) == ("Canny 10/300", "control")
    assert (meta["low"], meta["high"], meta["blur"]) == (10, 300, 3)
    s.hands, s.pose_model = False, "/models/openpose"
    p.detect_pose()
    assert host.worker.requests[-1].param("hands") is False
    # the pose detector tooltip tells a GUI user what to do, not a command to type
    assert "Models panel" in POSE_MODEL_TIP and "studio models" not in POSE_MODEL_TIP
    assert p.pose_model.toolTip() == POSE_MODEL_TIP


def test_control_panel_reports_a_bad_layer_setting(qtbot, settings):
    from studio.ui.panels.control import ControlPanel, control_inputs

    host = _Host(settings, _rgba(64, 48))
    p = ControlPanel(host)
    qtbot.addWidget(p)
    p.add_scribble_layer()
    (ci,) = control_inputs(host)
    assert ci.kind == "scribble"
    p.table.cellWidget(0, 3).setValue(1.0)  # start = end: the engine would refuse it
    with pytest.raises(ValueError, match="“Scribble”: start \\(1\\) must be before end \\(1\\)"):
        control_inputs(host)
