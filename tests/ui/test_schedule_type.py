"""The Generate panel's Sampler and Schedule type combos, as A1111 >= 1.9 shows them: the
sampler without a schedule, the schedule type beside it ("Automatic": the sampler's own,
Karras for DPM++ 2M), composed into the one name the engine takes; pasted parameters set
both, old combined names ("DPM++ 2M Karras") are shown split, and a pair diffusers can't
build shows one line instead of running."""

from __future__ import annotations

import pytest

from studio.ui.panels.generate_model import GenerateModel
from studio.ui.settings import Settings

# A1111 modules/sd_schedulers.py: the schedulers' labels, in A1111's order.
A1111_SCHEDULE_TYPES = [
    "Automatic",
    "Uniform",
    "Karras",
    "Exponential",
    "Polyexponential",
    "SGM Uniform",
    "KL Optimal",
    "Align Your Steps",
    "Simple",
    "Normal",
    "DDIM",
    "Beta",
]


def _text(fields: str) -> str:
    return f"a fox\nSteps: 20, {fields}, CFG scale: 7, Seed: 1, Size: 512x512"


@pytest.fixture
def panel(window):
    p = window.panels["Generate"]
    window.show_panel("Generate")
    p.model_combo.setCurrentText("fake-model")
    p.prompt.setPlainText("a fox")
    return p


def _shown(panel) -> tuple[str, str]:
    return panel.scheduler.currentText(), panel.schedule_type.currentText()


def test_the_combos_list_samplers_and_a1111s_schedule_types(panel):
    samplers = [panel.scheduler.itemText(i) for i in range(panel.scheduler.count())]
    assert samplers[0] == "Default"
    assert {"Euler", "Euler a", "DPM++ 2M", "DPM++ 2M SDE", "DDIM", "UniPC"} <= set(samplers)
    assert not [s for s in samplers if s.endswith(" Karras")]  # that is the schedule type
    types = [panel.schedule_type.itemText(i) for i in range(panel.schedule_type.count())]
    assert types == A1111_SCHEDULE_TYPES
    assert panel.schedule_type.objectName() == "schedule-type"


@pytest.mark.parametrize(
    ("fields", "shown", "sent"),
    [
        ("Sampler: DPM++ 2M, Schedule type: Karras", ("DPM++ 2M", "Karras"), "DPM++ 2M Karras"),
        (
            "Sampler: DPM++ 2M SDE, Schedule type: Exponential",
            ("DPM++ 2M SDE", "Exponential"),
            "DPM++ 2M SDE Exponential",
        ),
        # A1111 1.9+: Automatic is the sampler's default scheduler (Karras for DPM++ 2M).
        (
            "Sampler: DPM++ 2M, Schedule type: Automatic",
            ("DPM++ 2M", "Automatic"),
            "DPM++ 2M Karras",
        ),
        # A1111 <= 1.8 wrote no Schedule type: its "DPM++ 2M" was the uniform schedule.
        ("Sampler: DPM++ 2M", ("DPM++ 2M", "Uniform"), "DPM++ 2M"),
        # A1111 <= 1.8's combined name.
        ("Sampler: DPM++ 2M Karras", ("DPM++ 2M", "Karras"), "DPM++ 2M Karras"),
        ("Sampler: Euler a", ("Euler a", "Automatic"), "Euler a"),
        ("Sampler: DPM2 a, Schedule type: Karras", ("DPM2 a", "Karras"), "DPM2 a Karras"),
    ],
)
def test_pasted_sampler_and_schedule_type_set_both_combos(panel, fields, shown, sent):
    assert panel.paste_parameters(_text(fields))
    assert _shown(panel) == shown
    assert panel.build_request()[0].scheduler == sent
    assert not panel.sampler_note.isVisible()


def test_the_users_choice_is_composed_for_the_engine(panel):
    panel.scheduler.setCurrentIndex(panel.scheduler.findData("DPM++ 2M SDE"))
    panel.schedule_type.setCurrentIndex(panel.schedule_type.findData("Karras"))
    assert panel.build_request()[0].scheduler == "DPM++ 2M SDE Karras"
    panel.schedule_type.setCurrentIndex(panel.schedule_type.findData("Uniform"))
    assert panel.build_request()[0].scheduler == "DPM++ 2M SDE"
    assert _shown(panel) == ("DPM++ 2M SDE", "Uniform")  # kept, not turned into Automatic
    panel.scheduler.setCurrentIndex(0)  # Default: the model's own sampler
    assert panel.build_request()[0].scheduler is None
    assert not panel.schedule_type.isEnabled()


def test_a_pair_diffusers_cant_build_shows_one_line(panel, monkeypatch):
    errors = []
    monkeypatch.setattr(panel.host, "show_error", lambda message, *a: errors.append(message))
    panel.scheduler.setCurrentIndex(panel.scheduler.findData("Euler a"))
    panel.schedule_type.setCurrentIndex(panel.schedule_type.findData("Karras"))
    note = panel.sampler_note.text()
    assert panel.sampler_note.isVisible() and "\n" not in note
    assert "Euler a" in note and "no use_karras_sigmas" in note
    assert panel.generate() is None and errors == [note]
    panel.schedule_type.setCurrentIndex(panel.schedule_type.findData("Automatic"))
    assert not panel.sampler_note.isVisible()
    assert panel.build_request()[0].scheduler == "Euler a"


def test_a_schedule_type_without_a_diffusers_option_says_so(panel):
    panel.scheduler.setCurrentIndex(panel.scheduler.findData("Euler"))
    panel.schedule_type.setCurrentIndex(panel.schedule_type.findData("Align Your Steps"))
    assert "Align Your Steps" in panel.sampler_note.text()
    with pytest.raises(ValueError, match="Align Your Steps"):
        panel.build_request()


def test_a_saved_combined_name_is_shown_split(qapp, tmp_path):
    settings = Settings(tmp_path / "settings.ini")
    settings.scheduler = "DPM++ 2M Karras"
    m = GenerateModel(settings)
    assert (m.sampler, m.schedule_type, m.scheduler) == ("DPM++ 2M", "Karras", "DPM++ 2M Karras")
    m.schedule_type = "Exponential"
    assert settings.scheduler == "DPM++ 2M Exponential"
