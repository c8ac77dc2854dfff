"""Qwen-Image 2.1 (``families/qwen21.py``) on its tiny random pipeline
(``fixtures/tiny_qwen21.py``): recognition of the folder and of a transformer file, next to
Qwen-Image 1 (``families/qwen.py``), whose recognition takes any ``QwenImage*`` pipeline class;
the job path (txt2img, edit by reference image, sizes, cancel) through ``run_generate``; the
planner row.

Expected values come from diffusers 0.42 (the pipeline floors sizes to multiples of
``vae_scale_factor * 2`` = 32; ``true_cfg_scale``; the RGBA VAE) and from the architecture's
parameter counts, not from the descriptor.
"""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.errors import JobCancelled
from studio.engine.diffusion import model_family, run_generate
from studio.engine.diffusion.families import family
from studio.engine.diffusion.families.registry import probe_file, recognise_flow_file
from tests.engine.diffusion.test_family_contract import Ctx, request

SIZE = 64


@pytest.fixture(scope="module")
def tiny(session_tmp):
    from studio.engine.fixtures.tiny_qwen21 import build_tiny_qwen_image21

    folder = session_tmp / "qwen21" / "tiny-qwen21"
    if not (folder / "model_index.json").exists():
        build_tiny_qwen_image21(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_qwen1(session_tmp):
    from studio.engine.fixtures.tiny_flow_models import build_tiny_qwen_image

    folder = session_tmp / "qwen21" / "tiny-qwen"
    if not (folder / "model_index.json").exists():
        build_tiny_qwen_image(folder)
    return folder


@pytest.fixture(scope="module")
def pipe(tiny):
    from diffusers import QwenImage21Pipeline

    p = QwenImage21Pipeline.from_pretrained(tiny, local_files_only=True)
    p.set_progress_bar_config(disable=True)
    return p


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)


# -- the tiny folder ------------------------------------------------------------------------------


def test_tiny_folder_loads_back_as_the_real_pipeline_and_generates(pipe):
    import torch
    from transformers import Qwen3VLForConditionalGeneration, Qwen3VLProcessor

    assert type(pipe).__name__ == "QwenImage21Pipeline"
    assert isinstance(pipe.processor, Qwen3VLProcessor)
    assert isinstance(pipe.text_encoder, Qwen3VLForConditionalGeneration)
    assert pipe.vae.config.z_dim == pipe.transformer.config.in_channels == 64
    out = pipe(
        "a cat",
        height=32,
        width=32,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert out.shape == (1, 32, 32, 4)  # the VAE reconstructs RGBA
    assert np.isfinite(out).all() and out.std() > 0


def test_processor_chat_template_agrees_with_the_pipeline_prompt(pipe):
    """The pipeline drops as many leading hidden states as its chat template's system message
    has tokens, and formats the prompt by hand: the two must tokenize alike."""
    system = f"<|im_start|>system\n{pipe.sys_prompt}<|im_end|>\n"
    assert pipe._drop_idx == len(pipe.processor.tokenizer(system).input_ids) > 0


# -- recognition ----------------------------------------------------------------------------------


def test_tiny_folder_is_qwen_image_21(tiny):
    fam = model_family(str(tiny))
    assert fam is not None and fam.name == "qwen21"
    assert fam.label == "Qwen-Image 2.1"


def test_qwen_image_1_is_still_qwen(tiny_qwen1):
    fam = model_family(str(tiny_qwen1))
    assert fam is not None and fam.name == "qwen"


def test_transformer_files_are_told_apart(tiny, tiny_qwen1, tmp_path):
    from studio.engine.fixtures.tiny_flow_models import write_transformer_file

    new = probe_file(write_transformer_file(tiny, tmp_path / "qwen-image-2.1.safetensors"))
    old = probe_file(write_transformer_file(tiny_qwen1, tmp_path / "qwen-image.safetensors"))
    fam, config = recognise_flow_file(new)
    assert (fam.name, config) == ("qwen21", "qwen-image-2-1")
    assert recognise_flow_file(old)[0].name == "qwen"
    assert family("qwen").match_file(new) is None
    assert family("qwen-edit").match_file(new) is None
    assert family("qwen21").match_file(old) is None


def test_comfyui_key_names_are_recognised(tiny, tmp_path):
    """ComfyUI files carry the diffusers names under ``model.diffusion_model.`` (diffusers'
    converter only strips that prefix and splits the fused MLP gate)."""
    from studio.engine.diffusion.families.base import TensorProbe
    from studio.engine.fixtures.tiny_flow_models import write_transformer_file

    plain = probe_file(write_transformer_file(tiny, tmp_path / "t.safetensors"))
    comfy = TensorProbe({"model.diffusion_model." + k: s for k, s in plain.shapes.items()})
    assert family("qwen21").match_file(comfy) == "qwen-image-2-1"


# -- the job path ---------------------------------------------------------------------------------


def test_txt2img_job_runs_end_to_end(tiny):
    j = Ctx()
    fin = run_generate(j.ctx, request(tiny, steps=2))
    (img,) = fin.images
    assert img.shape[:2] == (SIZE, SIZE) and img.dtype == np.uint8 and img.std() > 0
    assert fin.extra["family"] == "qwen21"
    assert fin.metadata[0]["seed"] == 3 and fin.metadata[0]["family"] == "qwen21"
    assert max(j.steps) == 2


def test_txt2img_job_returns_rgb(tiny):
    img = run_generate(Ctx().ctx, request(tiny, steps=2)).images[0]
    assert img.shape == (SIZE, SIZE, 3)


def test_txt2img_with_latent_previews(tiny):
    j = Ctx()
    run_generate(j.ctx, request(tiny, steps=2, preview="latent"))
    assert len(j.previews) == 2
    assert j.previews[-1].image.ndim == 3 and j.previews[-1].image.shape[-1] == 3


def test_same_seed_same_image(tiny):
    a = run_generate(Ctx().ctx, request(tiny, steps=2)).images[0]
    b = run_generate(Ctx().ctx, request(tiny, steps=2)).images[0]
    c = run_generate(Ctx().ctx, request(tiny, steps=2, seed=4)).images[0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_reference_image_conditions_the_model_without_strength(tiny):
    """img2img is 2.1's ``image=`` condition: the image changes the result, the strength (a
    request field the pipeline has no argument for) does not."""
    plain = run_generate(Ctx().ctx, request(tiny, steps=2)).images[0]
    low = run_generate(Ctx().ctx, request(tiny, steps=2, init_image=_image(), strength=0.3))
    high = run_generate(Ctx().ctx, request(tiny, steps=2, init_image=_image(), strength=0.9))
    other = run_generate(Ctx().ctx, request(tiny, steps=2, init_image=_image(1), strength=0.3))
    assert low.images[0].shape[:2] == (SIZE, SIZE)
    assert not np.array_equal(plain, low.images[0])
    assert np.array_equal(low.images[0], high.images[0])
    assert not np.array_equal(low.images[0], other.images[0])


def test_inpaint_is_refused_in_one_line(tiny):
    from studio.core.errors import BadInput

    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[16:48, 16:48] = 255
    with pytest.raises(BadInput, match=r"Qwen-Image 2\.1 models can't (do )?inpaint"):
        run_generate(Ctx().ctx, request(tiny, init_image=_image(), mask=mask))


def test_cancel_at_step_one_stops_the_job(tiny):
    j = Ctx(cancel_at=1)
    with pytest.raises(JobCancelled):
        run_generate(j.ctx, request(tiny, steps=4))
    assert max(j.steps) == 1


# -- sizes ----------------------------------------------------------------------------------------


def test_size_multiple_is_what_the_pipeline_floors_to(pipe):
    """The pipeline floors width and height to multiples of 32: asked 48 x 80 it makes 32 x 64.
    The family's work size rounds up to that multiple instead."""
    import torch

    out = pipe(
        "a cat",
        height=80,
        width=48,
        num_inference_steps=1,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert out.shape[1:3] == (64, 32)
    fam = family("qwen21")
    assert fam.size_multiple == 32
    assert fam.work_size(48, 80) == (64, 96)
    assert fam.work_size(64, 64) == (64, 64)
    assert fam.work_size(1000, 700) == (1024, 704)


def test_a_job_at_an_odd_size_comes_back_at_that_size(tiny):
    img = run_generate(Ctx().ctx, request(tiny, steps=1, width=48, height=80)).images[0]
    assert img.shape[:2] == (80, 48)


# -- descriptor values and the planner ------------------------------------------------------------


def test_guidance_goes_to_true_cfg_with_a_blank_negative(pipe):
    from studio.engine.diffusion.flow.generate import flow_kwargs

    fam = family("qwen21")
    on = flow_kwargs(fam, pipe, "a cat", "", 40, 4.0)
    assert on["true_cfg_scale"] == 4.0 and on["negative_prompt"] == " "
    off = flow_kwargs(fam, pipe, "a cat", "", 40, 1.0)
    assert "negative_prompt" not in off  # the pipeline's default 1.0: no CFG pass
    assert (fam.default_size, fam.default_steps, fam.default_guidance) == ((1024, 1024), 40, 1.0)
    assert fam.call_kwargs(pipe, 1024, 576) == {"output_resolution": 768}


def test_planner_row_and_plan():
    from studio.engine.diffusion.shared.memory_models import plan_for_family, row_for

    row = row_for("qwen21")
    assert row is not None and row.family == "qwen21"
    # 7.12B transformer, 8.77B Qwen3-VL-8B, 0.34B VAE parameters at 2 bytes each
    assert row.total_gb == pytest.approx(14.2 + 17.5 + 0.68)
    assert (row.blocks, row.te_blocks) == (32, 36)
    plan = plan_for_family("qwen21", 24)
    assert plan is not None and plan.fits, plan.describe()


def test_transformer_parameter_count_matches_the_row():
    """The row's transformer size is diffusers' default QwenImage21Transformer2DModel config
    (built on the meta device) at bf16."""
    from accelerate import init_empty_weights
    from diffusers import QwenImage21Transformer2DModel

    with init_empty_weights():
        model = QwenImage21Transformer2DModel()
    params = sum(p.numel() for p in model.parameters())
    assert params * 2 / 1e9 == pytest.approx(family("qwen21").memory[0].transformer_gb, abs=0.05)
    assert len(model.transformer_blocks) == family("qwen21").memory[0].blocks
