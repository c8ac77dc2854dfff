"""The Generate panel's state without widgets (studio.ui.panels.generate_model) and the
property/binding layer it is made of (studio.ui.properties)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QComboBox, QSpinBox

from studio.ui.panels.generate_model import GenerateModel, generation_size
from studio.ui.properties import bind
from studio.ui.settings import Settings


@pytest.fixture
def settings(tmp_path):
    return Settings(tmp_path / "settings.ini")


def test_properties_persist_and_announce_changes(qapp, settings):
    m = GenerateModel(settings)
    seen = []
    m.changed.connect(lambda name, value: seen.append((name, value)))
    m.steps = 4
    m.steps = 4  # no change: no signal
    m.prompt = "a lighthouse"  # not persisted
    assert seen == [("steps", 4), ("prompt", "a lighthouse")]
    assert settings.steps == 4
    again = GenerateModel(settings)
    assert again.steps == 4 and again.prompt == ""
    m.model = "tiny"
    assert settings.model == ""  # the model is saved when a job is submitted
    m.remember_model()
    assert settings.model == "tiny" and settings.recent_models[0] == "tiny"
    assert GenerateModel(settings).model == "tiny"


def test_txt2img_request_without_a_document(qapp):
    m = GenerateModel()
    with pytest.raises(ValueError, match="Choose a model"):
        m.request(None)
    m.model, m.prompt, m.width, m.height = "tiny", "  a boat ", 96, 64
    m.random_seed, m.seed = False, 2**32 + 5
    request, region = m.request(None)
    assert region == (0, 0, 96, 64)
    assert (request.prompt, request.width, request.height) == ("a boat", 96, 64)
    assert request.seed == 2**32 + 5 and request.init_image is None and request.mask is None
    m.random_seed = True
    assert 0 <= m.request(None)[0].seed < 2**32


def test_img2img_and_inpaint_fit_an_exact_region(qapp):
    m = GenerateModel()
    m.model, m.source = "tiny", "img2img"
    composite = np.zeros((300, 451, 4), np.uint8)
    composite[..., 1] = 200
    composite[..., 3] = 255
    region = (0, 0, 451, 300)
    m.match(region)
    assert (m.width, m.height) == (448, 304) == (generation_size(451), generation_size(300))
    request, got = m.request(region, composite)
    assert got == region  # results are fitted to the exact region
    assert request.init_image.shape == (304, 448, 3) and request.init_image[..., 1].min() == 200
    with pytest.raises(ValueError, match="need an image"):
        m.request(region, None)
    m.source = "inpaint"
    with pytest.raises(ValueError, match="Paint a mask"):
        m.request(region, composite, None)
    mask = np.zeros((300, 451), np.uint8)
    mask[:, 200:] = 255
    request, _ = m.request(region, composite, mask)
    assert request.mask.shape == (304, 448) and request.mask[:, 300].min() == 255


def test_parameters_and_recommendations(qapp):
    m = GenerateModel()
    m.apply_parameters(
        {"prompt": "p", "steps": 12, "cfg_scale": 4.5, "seed": 7, "sampler": "nope"},
        ["", "Euler"],
    )
    assert (m.prompt, m.steps, m.guidance, m.seed, m.random_seed) == ("p", 12, 4.5, 7, False)
    assert m.scheduler == ""  # an unknown sampler is not taken
    m.apply_recommended({"steps": 1, "guidance": 0.0, "scheduler": "Euler"}, ["", "Euler"])
    assert (m.steps, m.guidance, m.scheduler) == (1, 0.0, "Euler")


def test_widgets_bind_two_way(qtbot):
    m = GenerateModel()
    spin = QSpinBox()
    spin.setRange(1, 150)
    combo = QComboBox()
    for key in ("txt2img", "img2img", "inpaint"):
        combo.addItem(key.upper(), key)
    qtbot.addWidget(spin)
    qtbot.addWidget(combo)
    bind(m, "steps", spin)
    bind(m, "source", combo, data=True)
    assert spin.value() == 20 and combo.currentData() == "txt2img"
    m.steps, m.source = 8, "inpaint"
    assert spin.value() == 8 and combo.currentData() == "inpaint"
    spin.setValue(33)
    combo.setCurrentIndex(1)
    assert m.steps == 33 and m.source == "img2img"


# -- LoRAs, external VAE, clip skip, precision ---------------------------


def lookup_of(installed: dict[str, str]):
    return lambda name: installed.get(name)


def test_loras_add_weight_remove_persist_and_reach_the_request(qapp, settings, tmp_path):
    ink, detail = tmp_path / "ink.safetensors", tmp_path / "detail.safetensors"
    ink.write_bytes(b"x")
    detail.write_bytes(b"x")
    m = GenerateModel(settings, lookup=lookup_of({}))
    m.model = "tiny"
    m.add_lora(str(ink))
    m.add_lora(str(detail), 0.5)
    m.add_lora(str(ink), 0.8)  # already there: takes the weight, not a second row
    assert m.loras == ((str(ink), 0.8), (str(detail), 0.5))
    m.set_lora_weight(1, -0.25)
    again = GenerateModel(settings, lookup=lookup_of({}))  # persisted
    assert again.loras == ((str(ink), 0.8), (str(detail), -0.25))
    request, _ = m.request(None)
    assert [(s.path, s.weight) for s in request.loras] == [(str(ink), 0.8), (str(detail), -0.25)]
    m.remove_lora(0)
    assert m.loras == ((str(detail), -0.25),)
    assert GenerateModel(settings).loras == ((str(detail), -0.25),)
    m.remove_lora(5)  # out of range: nothing
    assert len(m.loras) == 1


def test_a1111_parameters_fill_loras_and_clip_skip_without_the_tags_in_the_prompt(qapp, tmp_path):
    from studio.core.metadata import parse_parameters

    ink = tmp_path / "ink.safetensors"
    ink.write_bytes(b"x")
    m = GenerateModel(lookup=lookup_of({"ink": str(ink)}))
    meta = parse_parameters(
        "a cat, <lora:ink:0.6> sitting\nNegative prompt: blurry\n"
        "Steps: 12, Sampler: Euler a, CFG scale: 5.5, Seed: 77, Size: 512x768, Clip skip: 2"
    )
    m.apply_parameters(meta, ["Euler a"])
    assert m.prompt == "a cat, sitting" and "<lora" not in m.prompt
    assert m.loras == ((str(ink), 0.6),) and m.clip_skip == 2
    m.model = "tiny"
    request, _ = m.request(None)
    assert request.clip_skip == 2 and request.loras[0].path == str(ink)
    assert request.loras[0].weight == 0.6 and "<lora" not in request.prompt
    # tags left in a prompt (a Studio history entry, say) move to the list as well
    m.apply_parameters({"prompt": "a dog <lora:ink:0.3>"}, [])
    assert m.prompt == "a dog" and m.loras == ((str(ink), 0.3),)
    # a LoRA that is not installed stays listed by name and Generate says so in one line
    m.apply_parameters({"prompt": "x", "loras": [{"name": "missing", "weight": 1.0}]}, [])
    assert m.loras == (("missing", 1.0),)
    with pytest.raises(ValueError, match="“missing” is not installed"):
        m.request(None)


def test_vae_clip_skip_and_dtype_reach_the_request_and_persist(qapp, settings):
    m = GenerateModel(settings)
    m.model = "tiny"
    request, _ = m.request(None)
    assert request.vae is None and request.dtype is None and request.clip_skip == 1
    m.vae, m.dtype, m.clip_skip = "/models/vae/sdxl-fp16-fix.safetensors", "bfloat16", 2
    request, _ = m.request(None)
    assert request.vae == "/models/vae/sdxl-fp16-fix.safetensors"
    assert request.dtype == "bfloat16" and request.clip_skip == 2
    again = GenerateModel(settings)
    assert (again.vae, again.dtype, again.clip_skip) == (m.vae, "bfloat16", 2)


def test_family_defaults_set_the_size_too(qapp):
    m = GenerateModel()
    m.apply_recommended(
        {"width": 1024, "height": 1024, "steps": 30, "guidance": 5.0, "scheduler": "Euler"},
        ["Euler"],
    )
    assert (m.width, m.height, m.steps, m.guidance, m.scheduler) == (1024, 1024, 30, 5.0, "Euler")


# -- memory plan: quant/offload overrides and the plan line ----------------------------------
GPU12 = {"device": "cuda", "name": "Test GPU", "free_gib": 12.0, "total_gib": 12.0}


def test_quant_and_offload_persist_and_go_into_flow_requests(qapp, settings):
    m = GenerateModel(settings)
    assert (m.quant, m.offload) == ("", "")
    m.model, m.prompt = "flux1-schnell", "a fox"  # a catalog FLUX.1 (no files needed here)
    assert m.is_flow() and m.family() == "flux1"
    request, _ = m.request(None)
    assert (request.quant, request.offload) == (None, None)  # Auto: the planner decides
    m.quant, m.offload = "fp8", "model"
    request, _ = m.request(None)
    assert (request.quant, request.offload) == ("fp8", "model")
    assert (settings.quant, settings.offload) == ("fp8", "model")
    again = GenerateModel(settings)
    assert (again.quant, again.offload) == ("fp8", "model")
    # an SD model takes no overrides: the request leaves them to the planner
    again.model, again.prompt = "sd15", "a fox"
    assert not again.is_flow()
    request, _ = again.request(None)
    assert (request.quant, request.offload) == (None, None)
    again.quant = "bogus"  # a damaged setting is never sent
    again.model = "flux1-schnell"
    assert again.request(None)[0].quant is None


def test_plan_text_follows_device_model_size_and_overrides(qapp):
    m = GenerateModel()
    m.model = "flux1-schnell"
    assert m.plan_text()[0] == "Plan: shown once the engine has started"
    m.set_device({"device": "cpu", "name": "CPU", "free_gib": None})
    assert m.plan_text()[0] == "CPU: no memory plan, runs in float32 on the CPU"
    m.set_device(GPU12)
    m.width = m.height = 1024
    auto, tip = m.plan_text()
    assert auto.startswith("Plan: ") and auto.endswith(", fits") and "of 11.2 GiB" in auto
    assert "Test GPU, 12.0 GiB free" in tip and "enable_group_offload(" in tip  # the calls run
    m.quant, m.offload = "bf16", "none"
    forced = m.plan_text()[0]
    assert forced.startswith("Plan: GPU, bf16") and forced.endswith("does NOT fit")
    m.offload = "sequential"
    assert m.plan_text()[0].startswith("Plan: sequential offload, bf16")
    m.quant = m.offload = ""
    m.width = m.height = 512
    small = m.plan()
    m.width = m.height = 2048  # sixteen times the pixels: more working memory
    assert m.plan().peak_gib > small.peak_gib
    m.model, m.width, m.height = "sdxl", 1024, 1024  # SD: a plan, read-only (no overrides)
    m.quant = "fp8"
    assert m.plan_text()[0].startswith("Plan: GPU, fp16") and m.overrides() == (None, None)
    m.model = "no-such-model-anywhere"
    assert m.plan_text()[0] == "Plan: decided when the model loads (its family is not known here)"
    m.model = "/x/flux1-dev-Q8_0.gguf"
    m.quant = "fp8"  # a GGUF file fixes its format: the line says so instead of a plan
    assert "Q8_0 GGUF file" in m.plan_text()[0]
