"""The Generate panel's Hires. fix (AUTOMATIC1111's "Hires. fix"): the group in Advanced,
what it sends (``GenerateRequest.hires``), where it is disabled and why, and A1111 parameters
with its fields (``Hires upscale``, ``Hires steps``, ``Hires upscaler``, ``Denoising
strength``) pasted in, Studio's own output included."""

from __future__ import annotations

import pytest

from studio.core.metadata import format_parameters, parse_parameters, request_metadata
from studio.engine.diffusion.sd.hires import hires_metadata
from studio.engine.jobs import HiresFix
from studio.engine.models import ModelChoice

# A1111 modules/shared.py latent_upscale_modes, then its plain LANCZOS / NEAREST upscalers.
A1111_UPSCALERS = [
    "Latent",
    "Latent (antialiased)",
    "Latent (bicubic)",
    "Latent (bicubic antialiased)",
    "Latent (nearest)",
    "Latent (nearest-exact)",
    "Lanczos",
    "Nearest",
]
PASTED = (
    "a lighthouse at dusk\nNegative prompt: fog\nSteps: 20, Sampler: Euler a, CFG scale: 7, "
    "Seed: 5, Size: 512x512, Denoising strength: 0.45, Hires upscale: 2, Hires steps: 10, "
    "Hires upscaler: Latent"
)


@pytest.fixture
def panel(window):
    p = window.panels["Generate"]
    window.show_panel("Generate")
    p.model_combo.setCurrentText("fake-model")  # family unknown: the engine decides
    p.prompt.setPlainText("a lighthouse")
    return p


def _combo_data(combo) -> list[str]:
    return [combo.itemData(i) for i in range(combo.count())]


def test_the_group_defaults_to_a1111s_values_and_is_off(panel):
    assert panel.hires_box.title() == "Hires. fix"
    assert not panel.hires_check.isChecked()
    assert panel.hires_scale.value() == 2.0 and panel.hires_steps.value() == 0
    assert panel.hires_steps.text() == "Same as Steps"
    assert panel.hires_denoise.value() == 0.7  # A1111's default denoising strength
    assert panel.hires_upscaler.currentData() == "Latent"
    assert _combo_data(panel.hires_upscaler)[:8] == A1111_UPSCALERS
    assert not panel.hires_scale.isEnabled()  # until it is turned on
    assert panel.build_request()[0].hires is None


def test_turned_on_the_request_carries_the_hires_pass(panel):
    panel.advanced_toggle.click()
    assert panel.hires_check.isVisible()
    panel.hires_check.click()
    assert panel.hires_check.isChecked() and panel.hires_scale.isEnabled()
    panel.hires_scale.setValue(1.5)
    panel.hires_steps.setValue(12)
    panel.hires_denoise.setValue(0.4)
    panel.hires_upscaler.setCurrentIndex(panel.hires_upscaler.findData("Latent (bicubic)"))
    request, _ = panel.build_request()
    assert request.hires == HiresFix(scale=1.5, steps=12, denoise=0.4, upscaler="Latent (bicubic)")
    assert "Hires ×1.5" in panel.advanced_toggle.text()


def test_installed_upscalers_are_listed_by_the_names_the_engine_finds(panel, monkeypatch, tmp_path):
    file = tmp_path / "4x-UltraSharp.pth"
    file.write_bytes(b"x")
    rows = [
        ModelChoice("realesrgan-x4plus", "Real-ESRGAN x4plus", "upscaler", "catalog", file),
        ModelChoice("swinir-x4", "SwinIR x4", "upscaler", "catalog", None),  # not installed
        ModelChoice(str(file), "4x-UltraSharp", "upscaler", "folder", file),
    ]
    monkeypatch.setattr("studio.engine.models.list_models", lambda kind: rows)
    panel.fill_extras()
    data = _combo_data(panel.hires_upscaler)
    assert data[8:] == ["R-ESRGAN 4x+", "4x-UltraSharp"]  # A1111's name, the file's stem


@pytest.mark.parametrize("source", ["img2img", "inpaint"])
def test_disabled_with_the_reason_for_img2img_and_inpainting(panel, source):
    panel.state.hires = True
    panel.source.setCurrentIndex(panel.source.findData(source))
    assert not panel.hires_box.isEnabled()
    assert "second pass of txt2img" in panel.hires_box.toolTip()
    assert panel.state.hires_spec() is None  # what a request would carry
    panel.source.setCurrentIndex(panel.source.findData("txt2img"))
    assert panel.hires_box.isEnabled() and panel.state.hires_spec() is not None


def test_disabled_for_flow_families_with_the_reason(panel):
    panel.state.hires = True
    panel.state.model = "flux1-dev"
    assert not panel.hires_box.isEnabled()
    assert "SD 1.x, SD 2.x and SDXL" in panel.hires_box.toolTip()
    assert panel.build_request()[0].hires is None
    panel.state.model = "sd15"
    assert panel.hires_box.isEnabled()
    assert panel.build_request()[0].hires is not None


def test_pasted_hires_fields_turn_it_on_with_their_values(panel):
    panel.strength.setValue(0.6)
    assert panel.paste_parameters(PASTED)
    assert panel.hires_check.isChecked() and panel.advanced.isVisible()
    assert panel.hires_scale.value() == 2.0 and panel.hires_steps.value() == 10
    assert panel.hires_upscaler.currentData() == "Latent"
    assert panel.hires_denoise.value() == 0.45  # the second pass's, not img2img's
    assert panel.strength.value() == 0.6
    request, _ = panel.build_request()
    assert request.hires == HiresFix(scale=2.0, steps=10, denoise=0.45, upscaler="Latent")


def test_a_text_without_hires_fields_turns_it_off_and_keeps_img2img_strength(panel):
    panel.paste_parameters(PASTED)
    assert panel.hires_check.isChecked()
    panel.paste_parameters(
        "a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, "
        "Denoising strength: 0.3"
    )
    assert not panel.hires_check.isChecked()
    assert panel.strength.value() == 0.3  # A1111's img2img denoising strength
    assert panel.build_request()[0].hires is None


def test_pasted_hires_fields_for_a_flow_model_say_why_not(panel, monkeypatch):
    shown = []
    monkeypatch.setattr(panel.host, "show_status", shown.append)
    panel.paste_parameters(PASTED + ", Model: flux1-dev")
    assert panel.hires_check.isChecked() and not panel.hires_box.isEnabled()
    assert "Hires. fix not applied" in shown[-1] and "SD 1.x, SD 2.x and SDXL" in shown[-1]
    assert panel.build_request()[0].hires is None


def test_an_upscaler_not_installed_is_shown_and_sent(panel):
    panel.paste_parameters(PASTED.replace("Hires upscaler: Latent", "Hires upscaler: 4x-Foo"))
    assert panel.hires_upscaler.currentData() == "4x-Foo"
    assert "not installed" in panel.hires_upscaler.currentText()
    assert panel.build_request()[0].hires.upscaler == "4x-Foo"


def test_pasted_second_pass_fields_are_taken_and_named_in_the_status(panel, monkeypatch):
    """A1111 writes these only when they differ from the first pass ("Hires resize" instead
    of "Hires upscale" when a target size was set; processing.py's hr infotext)."""
    shown = []
    monkeypatch.setattr(panel.host, "show_status", shown.append)
    text = (
        "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768, "
        "Denoising strength: 0.5, Hires resize: 1024x1536, Hires steps: 12, "
        "Hires upscaler: Latent, Hires sampler: DPM++ 2M, Hires schedule type: Karras, "
        'Hires prompt: "a cat, detailed fur", Hires negative prompt: "blurry", '
        "Hires CFG Scale: 4"
    )
    assert panel.paste_parameters(text)
    hires = panel.build_request()[0].hires
    assert hires == HiresFix(
        scale=hires.scale,  # the spin box's value: the resize decides the size
        steps=12,
        denoise=0.5,
        upscaler="Latent",
        resize=(1024, 1536),
        sampler="DPM++ 2M Karras",
        prompt="a cat, detailed fur",
        negative_prompt="blurry",
        guidance=4.0,
    )
    assert "Hires CFG Scale taken for the second pass" in shown[-1]
    assert "Hires resize, Hires sampler, Hires prompt, Hires negative prompt" in shown[-1]


def test_choosing_upscale_by_replaces_a_pasted_resize_and_off_forgets_the_rest(panel):
    panel.paste_parameters(PASTED + ", Hires resize: 1024x1024, Hires CFG Scale: 4")
    assert panel.build_request()[0].hires.resize == (1024, 1024)
    panel.hires_scale.setValue(1.5)  # the user picks a factor instead
    hires = panel.build_request()[0].hires
    assert hires.resize is None and hires.scale == 1.5 and hires.guidance == 4.0
    panel.hires_check.setChecked(False)
    panel.hires_check.setChecked(True)
    assert panel.build_request()[0].hires.guidance is None


def test_a_hires_sampler_the_engine_cannot_build_is_named_not_sent(panel, monkeypatch):
    shown = []
    monkeypatch.setattr(panel.host, "show_status", shown.append)
    panel.paste_parameters(PASTED + ", Hires sampler: Restart")
    assert panel.build_request()[0].hires.sampler is None
    assert "Hires sampler not taken" in shown[-1]


def test_studio_output_round_trips(panel):
    """What the engine writes for a hires image (request_metadata + hires_metadata, as the
    job does) pasted back gives the same hires pass."""
    panel.state.hires = True
    panel.hires_scale.setValue(1.75)
    panel.hires_steps.setValue(8)
    panel.hires_denoise.setValue(0.35)
    panel.hires_upscaler.setCurrentIndex(panel.hires_upscaler.findData("Latent (nearest-exact)"))
    panel.random_seed.setChecked(False)
    panel.seed.setValue(123)
    request, _ = panel.build_request()
    text = format_parameters(hires_metadata(request_metadata(request, 123, "fake-model"), request))
    for field in ("Hires upscale: 1.75", "Hires steps: 8", "Denoising strength: 0.35"):
        assert field in text
    assert "Hires upscaler: Latent (nearest-exact)" in text
    panel.state.hires = False
    panel.hires_scale.setValue(3.0)
    panel.hires_denoise.setValue(0.9)
    assert panel.paste_parameters(text)
    again, _ = panel.build_request()
    assert again.hires == request.hires
    assert parse_parameters(text)["hires_upscale"] == 1.75


def test_hires_values_are_remembered_but_not_whether_it_was_on(studio_home, qapp):
    from studio.ui.panels.generate_model import GenerateModel
    from studio.ui.settings import Settings

    first = GenerateModel(Settings())
    first.hires = True
    first.hires_scale, first.hires_steps = 1.5, 12
    first.hires_denoise, first.hires_upscaler = 0.4, "Lanczos"
    first.settings.sync()
    again = GenerateModel(Settings())  # the next start reads the settings file
    assert (again.hires_scale, again.hires_steps, again.hires_denoise, again.hires_upscaler) == (
        1.5,
        12,
        0.4,
        "Lanczos",
    )
    assert again.hires is False
