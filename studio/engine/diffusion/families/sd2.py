"""Stable Diffusion 2.x: OpenCLIP ViT-H/14 text encoder (1024-wide cross attention). Two
models share every tensor shape: 2.x-768 (v-prediction, Salimans & Ho 2022) and 2.x-base
(512 px, epsilon); 2.x inpainting (9-channel UNet) is epsilon too.

Which one a single file is comes from the file, never its name (:func:`is_v_prediction`):
A1111's sidecar ``<model>.yaml`` (``parameterization: "v"``), a ``v_pred`` marker tensor, else
ComfyUI's weight test (``comfy/supported_models.py``, ``SD20.model_type``): in v-prediction
SD2 models the bias of the last output block's first transformer norm
(``output_blocks.11.1.transformer_blocks.0.norm1.bias``) has a standard deviation above 0.09.
"""

from __future__ import annotations

import re

from studio.engine.diffusion.families.base import (
    Family,
    ModelInfo,
    ModelNeeds,
    TensorProbe,
    cross_attention_dim,
)
from studio.engine.diffusion.families.sd1 import SD_LATENT_RGB, SD_PIPELINES

V_PRED_NORM = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"
V_PRED_STD = 0.09
_CTX_KEY = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"


def _matches(info: ModelInfo) -> bool:
    unet = info.config("unet")
    return (
        bool(unet)
        and unet.get("addition_embed_type") != "text_time"
        and cross_attention_dim(unet) == 1024
    )


def is_v_prediction(probe: TensorProbe) -> bool:
    """Whether an SD2 single file is a v-prediction model (see the module docstring)."""
    if probe.sidecar:
        m = re.search(r"parameterization:\s*[\"']?(\w+)", probe.sidecar)
        return bool(m and m.group(1) == "v")
    if "v_pred" in probe.shapes:
        return True
    bias = probe.tensor(V_PRED_NORM)
    if bias is None:
        return False
    return float(bias.float().std(unbiased=False)) > V_PRED_STD


def _match_file(probe: TensorProbe) -> str | None:
    ctx = probe.shapes.get(_CTX_KEY)
    if not (probe.has_prefix("cond_stage_model.model.") or (ctx and ctx[-1] == 1024)):
        return None
    if probe.unet_in_channels() == 9:
        return "sd21-inpaint"
    return "sd21" if is_v_prediction(probe) else "sd21-base"


def _tiny(folder):
    """A tiny random SD 2.x (768-v) pipeline folder (the real architecture, test sizes)."""
    from studio.engine.fixtures.tiny_models import build_tiny_sd2

    return build_tiny_sd2(folder)


FAMILY = Family(
    name="sd2",
    tiny_model=_tiny,
    context_dim=1024,
    label="SD 2.x",
    pipelines=SD_PIPELINES,
    matches=_matches,
    match_file=_match_file,
    priority=10,
    # SD 2.1: UNet 865.9M, OpenCLIP ViT-H/14 text tower 340.4M params (fp16); VAE tile 768
    memory=(
        ModelNeeds(
            "sd21",
            "SD 2.1",
            "sd2",
            1.73,
            0.68,
            0.17,
            8,
            23,
            1.0,
            2.0,
            768,
            0.1,
            False,
            vae_tile_px=768,
        ),
    ),
    default_size=(768, 768),
    default_steps=20,
    default_guidance=7.0,
    default_sampler="DPM++ 2M Karras",
    prediction="v_prediction",
    latent_rgb=SD_LATENT_RGB,
    preview_decoder="taesd",
    preview_repo="madebyollin/taesd",
    preview_env="STUDIO_TAESD",
    controlnet_bases=("sd2",),
    controlnet_defaults={},
    controlnet_scale=1.0,
    single_file_configs={
        "sd21": "stabilityai/stable-diffusion-2-1",
        "sd21-base": "stabilityai/stable-diffusion-2-1-base",
        "sd21-inpaint": "stabilityai/stable-diffusion-2-inpainting",
    },
    tokenizer_fallbacks={
        ("sd21", "tokenizer"): ("stabilityai/stable-diffusion-2-1-base", "stabilityai/sd-turbo"),
        ("sd21-base", "tokenizer"): ("stabilityai/stable-diffusion-2-1", "stabilityai/sd-turbo"),
        ("sd21-inpaint", "tokenizer"): (
            "stabilityai/stable-diffusion-2-1",
            "stabilityai/stable-diffusion-2-1-base",
            "stabilityai/sd-turbo",
        ),
    },
)
