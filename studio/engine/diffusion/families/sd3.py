"""Stable Diffusion 3 / 3.5 (Esser et al. 2024, "Scaling Rectified Flow Transformers"): MMDiT
on 16-channel latents (not packed), CLIP-L + CLIP-G pooled and T5-XXL text, rectified flow
with classifier-free guidance. Medium (2.5B, MMDiT-X) and Large (8B, 38 blocks; Turbo is
Large distilled to 4 steps without guidance)."""

from __future__ import annotations

from studio.engine.diffusion.families.base import Family, ModelInfo, TensorProbe
from studio.engine.diffusion.families.latent_factors import SD3_BIAS, SD3_RGB

TRANSFORMER_CLASS = "SD3Transformer2DModel"
_BFL_KEY = "joint_blocks.0.context_block.adaLN_modulation.1.bias"
_DIFFUSERS_KEY = "transformer_blocks.0.attn.add_q_proj.weight"


def _matches(info: ModelInfo) -> bool:
    cfg = info.config("transformer")
    return (
        info.class_name.startswith("StableDiffusion3")
        or cfg.get("_class_name") == TRANSFORMER_CLASS
    )


def _match_file(probe: TensorProbe) -> str | None:
    """sd35-large (38 joint blocks) or sd35-medium, from SD3 checkpoint keys (diffusers'
    ``infer_diffusers_model_type``: joint_blocks.37 exists only in Large)."""
    if probe.shape(_BFL_KEY) is not None:
        return (
            "sd35-large" if probe.shape("joint_blocks.37.x_block.mlp.fc1.weight") else "sd35-medium"
        )
    if probe.shape(_DIFFUSERS_KEY, "transformer." + _DIFFUSERS_KEY) is not None and probe.shape(
        "pos_embed.proj.weight", "transformer.pos_embed.proj.weight"
    ):
        return (
            "sd35-large"
            if probe.has_prefix("transformer_blocks.37.", "transformer.transformer_blocks.37.")
            else "sd35-medium"
        )
    return None


FAMILY = Family(
    name="sd3",
    label="SD 3.5",
    pipelines={
        "txt2img": "StableDiffusion3Pipeline",
        "img2img": "StableDiffusion3Img2ImgPipeline",
        "inpaint": "StableDiffusion3InpaintPipeline",
        "controlnet-txt2img": "StableDiffusion3ControlNetPipeline",
        "controlnet-inpaint": "StableDiffusion3ControlNetInpaintingPipeline",
    },
    matches=_matches,
    match_file=_match_file,
    priority=20,
    default_size=(1024, 1024),
    default_steps=28,
    default_guidance=3.5,
    prediction="flow",
    guidance_kind="cfg",
    supports_negative_prompt=True,
    text_encoders=("text_encoder", "text_encoder_2", "text_encoder_3"),
    pooled_from="text_encoder_2",
    prompt_weighting=False,
    latent_channels=16,
    size_multiple=16,  # VAE factor 8 x 2x2 patches
    latent_rgb=SD3_RGB,
    latent_rgb_bias=SD3_BIAS,
    preview_decoder="taesd3",
    preview_repo="madebyollin/taesd3",
    preview_env="STUDIO_TAESD3",
    controlnet_bases=("sd3",),
    dtypes=("bfloat16", "float16", "float32"),
    single_file_configs={
        "sd35-medium": "stabilityai/stable-diffusion-3.5-medium",
        "sd35-large": "stabilityai/stable-diffusion-3.5-large",
    },
    transformer_class=TRANSFORMER_CLASS,
)
