"""The Generate panel's Advanced group driven through its real widgets:
LoRAs listed from the models folder (re-read when models change, no restart), added,
weighted and removed; A1111 parameters pasted with a ``<lora:...>`` tag and ``Clip skip``
fill the list and the spin box, not the prompt; the request carries all of it, with the
external VAE and the precision."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDoubleSpinBox, QToolButton
from studio_model_files import kohya_lora_spec, write_sparse_safetensors

A1111 = (
    "a lighthouse at dusk, <lora:ink:0.6>\n"
    "Negative prompt: blurry\n"
    "Steps: 12, Sampler: Euler a, CFG scale: 5.5, Seed: 77, Size: 512x512, Clip skip: 2"
)


@pytest.fixture
def loras(studio_home):
    folder = studio_home / "models" / "lora"
    folder.mkdir(parents=True)
    return {
        name: str(write_sparse_safetensors(folder / f"{name}.safetensors", kohya_lora_spec(768)))
        for name in ("ink", "detail_tweaker")
    }


@pytest.fixture
def panel(window, loras):
    p = window.panels["Generate"]
    window.show_panel("Generate")
    window.models_updated.emit()  # as after an import: the lists are read again
    p.model_combo.setCurrentText("fake-model")
    p.prompt.setPlainText("a lighthouse")
    return p


def rows(panel):
    return [(label.text(), spin.value()) for label, spin, _x, _row in panel.lora_widgets]


def test_add_weight_remove_loras_through_the_widgets(qtbot, window, panel, loras):
    labels = [panel.lora_combo.itemText(i) for i in range(panel.lora_combo.count())]
    assert sorted(labels) == ["detail_tweaker", "ink"]
    assert not panel.advanced.isVisible()  # collapsed until used
    panel.advanced_toggle.click()
    assert panel.advanced.isVisible()
    for name in ("ink", "detail_tweaker"):
        panel.lora_combo.setCurrentIndex(panel.lora_combo.findText(name))
        panel.lora_add.click()
    assert rows(panel) == [("ink", 1.0), ("detail_tweaker", 1.0)]
    spin = panel.lora_widgets[0][1]
    spin.setValue(0.65)
    assert panel.state.loras[0] == (loras["ink"], 0.65)
    assert panel.lora_widgets[0][1] is spin  # a weight edit keeps its spin box
    assert "2 LoRAs" in panel.advanced_toggle.text()
    request, _ = panel.build_request()
    assert [(s.path, s.weight) for s in request.loras] == [
        (loras["ink"], 0.65),
        (loras["detail_tweaker"], 1.0),
    ]
    panel.lora_widgets[0][2].click()  # ✕ on ink
    assert rows(panel) == [("detail_tweaker", 1.0)]
    request, _ = panel.build_request()
    assert [s.path for s in request.loras] == [loras["detail_tweaker"]]
    # the ✕ and spin boxes found by name, as a user sees them
    assert len(panel.advanced.findChildren(QDoubleSpinBox, "lora-weight")) == 1
    assert len(panel.advanced.findChildren(QToolButton, "lora-remove")) == 1


def test_pasted_a1111_parameters_fill_the_lora_list_and_clip_skip(qtbot, window, panel, loras):
    clipboard = QGuiApplication.clipboard()
    clipboard.setText(A1111)
    if clipboard.text() == A1111:  # the platform has a clipboard (xcb; offscreen has none)
        panel.paste_params.click()
    else:
        assert panel.paste_parameters(A1111)
    assert panel.prompt.toPlainText() == "a lighthouse at dusk"  # the tag is not duplicated
    assert rows(panel) == [("ink", 0.6)]
    assert panel.clip_skip.value() == 2 and panel.advanced.isVisible()
    assert panel.steps.value() == 12 and panel.seed.value() == 77
    panel.dtype_combo.setCurrentIndex(panel.dtype_combo.findData("float16"))
    request, _ = panel.build_request()
    assert request.clip_skip == 2 and request.dtype == "float16"
    assert [(s.path, s.weight) for s in request.loras] == [(loras["ink"], 0.6)]
    assert "<lora" not in request.prompt
    assert panel.paste_parameters("just some words")  # a bare prompt is a prompt
    assert not panel.paste_parameters("")  # nothing: a status line, no change
    assert panel.prompt.toPlainText() == "just some words"


def test_external_vae_from_the_models_folder(qtbot, window, panel, studio_home):
    assert panel.vae_combo.currentData() == ""  # the model's own
    vae = studio_home / "models" / "vae" / "my-vae.safetensors"
    vae.parent.mkdir(parents=True)
    vae.write_bytes(b"")
    panel.state.vae = str(vae)  # e.g. restored from the settings
    panel.fill_extras()
    assert panel.vae_combo.currentData() == str(vae)
    request, _ = panel.build_request()
    assert request.vae == str(vae)
    panel.vae_combo.setCurrentIndex(0)
    assert panel.build_request()[0].vae is None


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_advanced_group_with_two_loras_fits_the_dock(qtbot, window, panel, size):
    from test_first_minute import _clipped_controls

    window.resize(*size)
    for name in ("ink", "detail_tweaker"):
        panel.lora_combo.setCurrentIndex(panel.lora_combo.findText(name))
        panel.lora_add.click()
    qtbot.wait(50)
    assert panel.advanced.isVisible() and len(panel.lora_widgets) == 2
    assert _clipped_controls(window, "Generate") == []
    for label, spin, remove, _row in panel.lora_widgets:
        assert label.width() >= 40 and spin.width() > 40 and remove.isVisible()
