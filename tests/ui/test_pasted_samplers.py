"""Pasted A1111 / Forge parameters in the Generate panel's state: the sampler with its
separate "Schedule type" (A1111 >= 1.9) becomes the Studio sampler that builds it, one that
can't be built is not taken and says why, and Forge's ``Distilled CFG Scale`` is FLUX's
guidance."""

from __future__ import annotations

import pytest

from studio.core.metadata import parse_parameters
from studio.ui.panels.generate_model import GenerateModel

LIST = ["", "Euler", "Euler a", "DPM2 a Karras", "DPM++ 2M Karras"]


def _text(fields: str) -> str:
    return f"a fox\nSteps: 20, {fields}, Seed: 1, Size: 512x512"


@pytest.mark.parametrize(
    ("fields", "want"),
    [
        ("Sampler: DPM2 a, Schedule type: Karras", "DPM2 a Karras"),
        ("Sampler: DPM++ 2M, Schedule type: Automatic", "DPM++ 2M Karras"),
        ("Sampler: DPM++ 2M SDE, Schedule type: Exponential", "DPM++ 2M SDE Exponential"),
        ("Sampler: Euler, Schedule type: SGM Uniform", "Euler SGM Uniform"),
        ("Sampler: k_euler_a", "Euler a"),
    ],
)
def test_sampler_and_schedule_type_resolve(qapp, fields, want):
    m = GenerateModel()
    assert m.apply_parameters(parse_parameters(_text(fields)), LIST) == []
    assert m.scheduler == want


def test_a_sampler_diffusers_cant_build_is_left_with_a_note(qapp):
    m = GenerateModel()
    m.scheduler = "Euler"
    notes = m.apply_parameters(
        parse_parameters(_text("Sampler: Euler a, Schedule type: Karras")), LIST
    )
    assert m.scheduler == "Euler"
    assert len(notes) == 1 and "no use_karras_sigmas" in notes[0]


FORGE = (
    "a fox\nSteps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, "
    "Distilled CFG Scale: 3.5, Seed: 1, Size: 1024x1024, Model: {model}"
)


@pytest.mark.parametrize(
    ("family", "want"), [("flux1", 3.5), (None, 3.5), ("sd1", 1.0), ("sdxl", 1.0)]
)
def test_distilled_cfg_scale_is_the_guidance_of_distilled_models(qapp, monkeypatch, family, want):
    m = GenerateModel()
    monkeypatch.setattr(m, "family", lambda: family)
    m.apply_parameters(parse_parameters(FORGE.format(model="some-model")), LIST)
    assert m.guidance == want


def test_forge_flux_dev_text_sets_the_guidance(qapp):
    m = GenerateModel()
    m.apply_parameters(parse_parameters(FORGE.format(model="flux1-dev")), LIST)
    assert m.model == "flux1-dev" and m.family() == "flux1" and m.guidance == 3.5


def test_the_panel_lists_and_sends_a_pasted_schedule_type(qtbot, window):
    panel = window.panels["Generate"]
    window.show_panel("Generate")
    panel.model_combo.setCurrentText("fake-model")
    assert panel.scheduler.findData("DPM++ 2M SDE Exponential") < 0  # not listed before
    assert panel.paste_parameters(_text("Sampler: DPM++ 2M SDE, Schedule type: Exponential"))
    # Shown as A1111 1.9+ shows it: the sampler and its schedule type side by side.
    assert (panel.scheduler.currentData(), panel.schedule_type.currentData()) == (
        "DPM++ 2M SDE",
        "Exponential",
    )
    request, _ = panel.build_request()
    assert request.scheduler == "DPM++ 2M SDE Exponential"
    assert panel.paste_parameters(_text("Sampler: DPM2 a, Schedule type: Karras"))
    # Not left empty ("Default").
    assert (panel.scheduler.currentData(), panel.schedule_type.currentData()) == (
        "DPM2 a",
        "Karras",
    )
